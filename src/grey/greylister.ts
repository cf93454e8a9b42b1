// Turns tuples from the tarpit into database updates, and decides when a tuple traps its
// sender instead (spec §6.4–6.6). Tuples are decided strictly in arrival order, so two quick
// retries never both count as "new".

import { type Clock, systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { formatDelay } from '../config/duration.js';
import { describe } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/types.js';
import { type Entry, greyKey } from './entry.js';
import { greyHit, type GreyTimes, outsideAllowedDomains, spamtrapAddress } from './rules.js';

export interface TupleInput {
  ip: string;
  helo: string;
  from: string;
  to: string;
  /** The address the client connected to (pf divert-to keeps the original destination). */
  localAddress?: string;
}

export interface GreylisterOptions {
  store: Store;
  times: GreyTimes;
  log: Logger;
  clock?: Clock;
  /** Recipient domain suffixes we accept mail for; empty means any (spamd.alloweddomains). */
  allowedDomains?: () => readonly string[];
  /** -M: the low-priority MX address; new tuples that came in to it trap their sender. */
  lowPriorityMx?: string;
  /** Called when a tuple traps its sender, so the tarpit can hold it from its next connection. */
  onTrap?: (ip: string) => void;
  /**
   * How long after start the low-priority MX rule stays off: spamd waits a minute, so that
   * connections pf had already sent on their way before a restart do not trap anyone.
   */
  mxGrace?: number;
}

/** `1 tuple`, `2 tuples`. */
const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

interface Queued {
  t: TupleInput;
  done: () => void;
}

/** What a stop gave up: tuples whose clients had their replies but that never reached the store. */
export interface StopLoss {
  tuples: number;
  /** The store's last error. */
  reason: string;
}

export class Greylister {
  private queue: Queued[] = [];
  private draining: Promise<void> | undefined;
  /** Failed attempts at the batch at the head of the queue (0: the store is taking updates). */
  private failures = 0;
  private failingSince = 0;
  private stopping = false;
  /** While stopping: aborted when the stop gives up (its deadline, a second SIGTERM). */
  private giveUp: AbortSignal | undefined;
  private lost: StopLoss | undefined;
  private retryWait: (() => void) | undefined;
  private readonly clock: Clock;
  private readonly startedAt: number;

  constructor(private readonly opts: GreylisterOptions) {
    this.clock = opts.clock ?? systemClock;
    this.startedAt = this.clock.now();
  }

  /**
   * Records one tuple; resolves once the update is queued for the next group commit. Tuples
   * are decided in arrival order, in batches: the tuples that arrive in one turn of the event
   * loop share one store lookup, which is what lets ingest keep up with thousands of clients.
   */
  tuple(t: TupleInput): Promise<void> {
    return new Promise((done) => {
      this.queue.push({ t, done });
      this.draining ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.drain());
    });
  }

  /** Tuples handed in and not yet decided. */
  get queued(): number {
    return this.queue.length;
  }

  /** Resolves when every tuple handed in so far has been queued. */
  async settle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /**
   * Decides every tuple handed in, retrying a store that refuses them until `giveUp` is aborted
   * (at once without it); what is left then is dropped, so a daemon on a failing disk can still
   * shut down. Resolves with what was dropped, for the caller's one line about the stop's
   * losses; nothing is logged about it here.
   */
  async stop(giveUp?: AbortSignal): Promise<StopLoss | undefined> {
    this.stopping = true;
    this.giveUp = giveUp;
    const cut = () => this.retryWait?.();
    giveUp?.addEventListener('abort', cut, { once: true });
    cut();
    try {
      await this.settle();
    } finally {
      giveUp?.removeEventListener('abort', cut);
    }
    return this.lost;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, DEFAULTS.greyBatch);
        try {
          await this.applyBatch(batch.map((q) => q.t));
        } catch (err) {
          // These clients have had their replies: the tuples must not be lost to a store that
          // fails for a while (a locked database, a disk briefly full). They go back to the head
          // of the queue, and the backlog check holds the tarpit meanwhile. A store that keeps
          // failing (a damaged file) must not hold it for ever: past greyRetryFor the batch is
          // given up, said in one line, and the queue moves on.
          const now = this.clock.now();
          if (this.failures === 0) this.failingSince = now;
          const stopNow = this.stopping && (this.giveUp?.aborted ?? true);
          if (stopNow) {
            // The stop has given up: each further attempt could wait out the busy timeout, so
            // the rest goes too; the stop's caller says how many in its one line.
            const lost = batch.concat(this.queue.splice(0));
            this.lost = { tuples: (this.lost?.tuples ?? 0) + lost.length, reason: describe(err) };
            for (const q of lost) q.done();
            this.failures = 0;
            continue;
          }
          if (now - this.failingSince >= DEFAULTS.greyRetryFor) {
            this.opts.log.error(`greylist update of ${count(batch.length, 'tuple')} failed for ` +
              `${formatDelay(now - this.failingSince)}; lost: ${describe(err)}`);
            for (const q of batch) q.done();
            this.failures = 0;
            continue;
          }
          if (this.failures === 0) {
            this.opts.log.error(`greylist update of ${count(batch.length, 'tuple')} failed, retrying: ${describe(err)}`);
          }
          this.failures += 1;
          this.queue = batch.concat(this.queue);
          const delay = Math.min(DEFAULTS.greyRetryMin * 2 ** Math.min(this.failures - 1, 10), DEFAULTS.greyRetryMax);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, delay);
            this.retryWait = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.retryWait = undefined;
          continue;
        }
        if (this.failures > 0) {
          this.opts.log.notice(`greylist updates resumed after ${count(this.failures, 'failed attempt')}`);
          this.failures = 0;
        }
        for (const q of batch) q.done();
      }
    } finally {
      this.draining = undefined;
    }
  }

  private async applyBatch(batch: readonly TupleInput[]): Promise<void> {
    const keys: string[] = [];
    for (const t of batch) keys.push(greyKey(t.ip, t.helo, t.from, t.to), spamtrapAddress(t.to), t.ip);
    // The batch's view of the store; each decision below updates it, so a later tuple of the
    // batch sees an earlier one's write.
    const view = await this.opts.store.getMany(keys);
    for (const t of batch) this.apply(t, view);
  }

  private apply(t: TupleInput, view: Map<string, Entry>): void {
    const { store, log, times } = this.opts;
    const now = this.clock.now();
    const tupleKey = greyKey(t.ip, t.helo, t.from, t.to);
    const rcpt = spamtrapAddress(t.to);
    let why: string | undefined;
    if (outsideAllowedDomains(rcpt, this.opts.allowedDomains?.() ?? [])) why = `(${rcpt} is outside the allowed domains)`;
    else if (view.has(rcpt)) why = `(${rcpt} is a spamtrap)`;

    let mxFirst = false;
    let key = why ? t.ip : tupleKey;
    let existing = view.get(key);
    const mx = this.opts.lowPriorityMx;
    if (!why && !existing && mx !== undefined && t.localAddress === mx &&
      now - this.startedAt > (this.opts.mxGrace ?? DEFAULTS.mxGrace)) {
      // spamd writes a fresh TRAPPED entry here, over whatever the ip had (even WHITE).
      why = '(low-priority MX)';
      mxFirst = true;
      key = t.ip;
      existing = undefined;
    }
    const entry = greyHit(existing, key, now, times, why !== undefined);
    store.put(entry);
    view.set(key, entry);
    if (why) {
      // spamd's words, so existing log greps keep matching; the reason follows in brackets.
      const tuple = `${t.ip} ${t.helo} ${t.from} ${t.to}`;
      log.info(mxFirst ? `Trapping ${t.ip} for trying ${mx} first for tuple ${tuple} ${why}`
        : `Trapping ${t.ip} for tuple ${tuple} ${why}`);
      this.opts.onTrap?.(t.ip);
    } else if (!existing) {
      log.debug(`new entry ${t.ip} from ${t.from} to ${t.to}, helo ${t.helo}`);
    }
  }
}
