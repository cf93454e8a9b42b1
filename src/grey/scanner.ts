// The periodic scan: expires entries, promotes passed tuples to WHITE, and publishes the
// whitelist. It walks the store in chunks and yields between them, so a scan over a million
// entries never holds the event loop for more than one chunk's worth of work.

import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { type Clock, systemClock } from '../clock.js';
import { describe, isPfgreyError, type PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store, StoreWrite } from '../store/types.js';
import { PCOUNT_TRAPPED } from './entry.js';
import type { CoreEvents } from './requests.js';
import { ScanAccumulator, type ScanPlan } from './rules.js';

export interface ScannerOptions {
  store: Store;
  log: Logger;
  clock?: Clock;
  interval: number;
  whiteExpiry: number;
  chunk: number;
  isBlacklisted?: (ip: string) => boolean;
  /**
   * Called after every successful scan, changed or not (spamd re-asserts the table), with how
   * the whitelist changed since the previous successful scan; undefined for the first.
   */
  onResult: (plan: ScanPlan, changes: WhitelistChanges | undefined) => void;
  /**
   * Runs before each scan: the daemon checks there that its database file is still the one it
   * opened (recovering it if not), so a file truncated underneath it is noticed within one
   * scan interval. A failure fails that scan.
   */
  beforeScan?: () => Promise<void>;
  /**
   * A scan found the database damaged (E_DB_CORRUPT): the daemon recovers it. Without this
   * hook the failure is only logged.
   */
  onCorrupt?: (err: PfgreyError) => Promise<void>;
  /** The core's event hook: the scan says what it whitelists (white) and expires (expire). */
  events?: CoreEvents;
  /**
   * Whether this scan does maintenance (expires entries, writes the WHITE entries of passed
   * tuples) besides publishing. Several hosts sharing one database run maintenance on one of
   * them and publishing on all: without it the scan only reads, and its whitelist still holds
   * the passed tuples' addresses, which the maintaining host will write. A function is asked
   * before each scan (the PostgreSQL maintenance election); one that fails means no. Default true.
   */
  maintain?: boolean | (() => Promise<boolean>);
}

export interface WhitelistChanges {
  add: string[];
  del: string[];
}

export class Scanner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ScanPlan | undefined> | undefined;
  private stopped = false;
  private readonly clock: Clock;
  /** The whitelist of the last successful scan, to tell the next one's changes. */
  private lastWhite: ReadonlySet<string> | undefined;
  /** Addresses trapped since the running scan began (it may have read them before). */
  private trappedDuringScan = new Set<string>();

  constructor(private readonly opts: ScannerOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  /** Scans now, then every interval after each scan ends. */
  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Scans first after `delay`, then every interval after each scan ends. */
  startLater(delay: number): void {
    this.stopped = false;
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  stop(): Promise<unknown> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    return this.running ?? Promise.resolve();
  }

  /**
   * Tells the scan that `ip` was just trapped. spamd's scan holds a lock that keeps the
   * greylister out; ours yields between chunks, so a trap can land after the scan read the
   * address: it must neither be whitelisted nor be missing from the trap list for that round.
   */
  noteTrap(ip: string): void {
    if (this.running) this.trappedDuringScan.add(ip);
  }

  /** Runs one scan (or joins the one in progress). */
  scanOnce(): Promise<ScanPlan | undefined> {
    this.running ??= this.scan().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async tick(): Promise<void> {
    await this.scanOnce();
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.opts.interval);
    this.timer.unref();
  }

  private async scan(): Promise<ScanPlan | undefined> {
    const { store, log } = this.opts;
    this.trappedDuringScan = new Set();
    try {
      await this.opts.beforeScan?.();
      const { maintain = true } = this.opts;
      const maintaining = typeof maintain === 'function' ? await maintain().catch(() => false) : maintain;
      await store.flush();
      const now = this.clock.now();
      const acc = new ScanAccumulator(now, this.opts.whiteExpiry, this.opts.isBlacklisted);
      for await (const chunk of store.chunks(this.opts.chunk)) {
        acc.add(chunk);
        await yieldToLoop();
      }
      while (!acc.settle(this.opts.chunk)) await yieldToLoop();
      const plan = acc.finish();
      if (!maintaining) {
        plan.deletes = [];
        plan.puts = [];
      }
      // Applied a chunk at a time too: a scan that expires a million entries must not queue
      // them all in one turn of the event loop.
      for (let i = 0; i < plan.deletes.length; i += this.opts.chunk) {
        // Each deletion holds the row as the walk read it: one rewritten since (by `pfgrey db -a`
        // in another process, or by the greylister here) is newer, and stays.
        for (const entry of plan.deletes.slice(i, i + this.opts.chunk)) {
          log.debug(`queueing deletion of ${JSON.stringify(entry.key)}`);
          store.deleteIf(entry);
          this.opts.events?.emit({ kind: 'expire', key: entry.key });
        }
        await yieldToLoop();
      }
      // Addresses whose own entry appeared while the walk ran and is a trap (written by
      // `pfgrey db -t`, say); traps set by this daemon are in trappedDuringScan.
      const trappedSinceRead = new Set<string>();
      for (let i = 0; i < plan.puts.length; i += this.opts.chunk) {
        const puts = plan.puts.slice(i, i + this.opts.chunk);
        // A WHITE entry is added only where the address had none when the walk read it; one
        // written since (a trap, `pfgrey db -a` in another process) is newer and stays. The
        // check and the write are one atomic update, so nothing can land between them.
        const whitened: string[] = [];
        await store.update(puts.map((p) => p.key), (current) => {
          whitened.length = 0;
          const writes: StoreWrite[] = [];
          for (const entry of puts) {
            const live = current.get(entry.key);
            if (this.trappedDuringScan.has(entry.key) || (live && live.expire > now)) {
              log.debug(`${entry.key} changed while the scan ran; not whitelisting it this round`);
              if (live?.pcount === PCOUNT_TRAPPED) trappedSinceRead.add(entry.key);
              continue;
            }
            log.debug(`whitelisting ${entry.key} in ${store.path}`);
            writes.push({ put: entry });
            whitened.push(entry.key);
          }
          return writes;
        });
        for (const ip of whitened) this.opts.events?.emit({ kind: 'white', ip });
        await yieldToLoop();
      }
      await store.flush();
      const white = new Set(plan.whitelist);
      const changes = this.lastWhite && await whitelistChanges(this.lastWhite, white, this.opts.chunk);
      // From here to onResult nothing yields, so every trap noted during the scan is in.
      const late = new Set([...trappedSinceRead, ...this.trappedDuringScan]);
      if (late.size > 0) {
        if (changes) {
          changes.add = changes.add.filter((ip) => !late.has(ip));
          for (const ip of late) if (white.has(ip) && this.lastWhite!.has(ip)) changes.del.push(ip);
        }
        for (const ip of late) white.delete(ip);
        plan.whitelist = plan.whitelist.filter((ip) => !late.has(ip));
        plan.traps = [...new Set([...plan.traps, ...late])];
      }
      this.lastWhite = white;
      this.opts.onResult(plan, changes);
      return plan;
    } catch (err) {
      if (isPfgreyError(err) && err.code === 'E_DB_CORRUPT') {
        // Not a passing fault: every later scan would fail the same way and promote nothing.
        log.error(`scan of ${store.path} failed: ${describe(err)}`);
        await this.opts.onCorrupt?.(err).catch((e: unknown) => log.error(`cannot recover ${store.path}: ${describe(e)}`));
        return undefined;
      }
      log.notice(`scan of ${store.path} failed: ${describe(err)}`);
      return undefined;
    }
  }
}

/**
 * What joined and what left the whitelist between two scans. Linear like the scan itself, and
 * done in chunks like it, so the firewall is handed only the changes.
 */
export async function whitelistChanges(
  prev: ReadonlySet<string>, next: ReadonlySet<string>, chunk: number,
): Promise<WhitelistChanges> {
  const add: string[] = [];
  const del: string[] = [];
  let n = 0;
  for (const a of next) {
    if (!prev.has(a)) add.push(a);
    if (++n % chunk === 0) await yieldToLoop();
  }
  for (const a of prev) {
    if (!next.has(a)) del.push(a);
    if (++n % chunk === 0) await yieldToLoop();
  }
  return { add, del };
}
