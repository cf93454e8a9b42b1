// Turns tuples from the tarpit into database updates. Updates of one key are applied in order
// (a later hit waits for the earlier one), so two quick retries never both count as "new".

import { type Clock, systemClock } from '../clock.js';
import { describe } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/types.js';
import { greyKey } from './entry.js';
import { greyHit, type GreyTimes } from './rules.js';

export interface TupleInput {
  ip: string;
  helo: string;
  from: string;
  to: string;
}

export class Greylister {
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly clock: Clock;

  constructor(
    private readonly store: Store,
    private readonly times: GreyTimes,
    private readonly log: Logger,
    clock?: Clock,
  ) {
    this.clock = clock ?? systemClock;
  }

  /** Records one tuple; resolves once the update is queued for the next group commit. */
  tuple(t: TupleInput): Promise<void> {
    const key = greyKey(t.ip, t.helo, t.from, t.to);
    const prev = this.inflight.get(key) ?? Promise.resolve();
    const next = prev.then(() => this.apply(key, t)).catch((err) => {
      this.log.error(`greylist update for ${t.ip} failed: ${describe(err)}`);
    });
    this.inflight.set(key, next);
    void next.finally(() => {
      if (this.inflight.get(key) === next) this.inflight.delete(key);
    });
    return next;
  }

  /** Resolves when every tuple handed in so far has been queued. */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight.values()]);
  }

  private async apply(key: string, t: TupleInput): Promise<void> {
    const existing = await this.store.get(key);
    const entry = greyHit(existing, key, this.clock.now(), this.times);
    if (!existing) this.log.debug(`new entry ${t.ip} from ${t.from} to ${t.to}, helo ${t.helo}`);
    this.store.put(entry);
  }
}
