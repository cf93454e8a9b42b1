import { isIP } from 'node:net';
import { systemClock, type Clock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { describe } from '../errors.js';
import type { Logger } from '../log.js';
import type { Firewall } from './types.js';

export interface WhitelistSyncOptions {
  firewall: Firewall;
  table: string;
  log: Logger;
  /** First retry delay after a failed push; DEFAULTS.firewallRetryMin. */
  retryMin?: number;
  /** Cap of the doubling retry delay; DEFAULTS.firewallRetryMax. */
  retryMax?: number;
  /**
   * An unchanged list is pushed again when the last successful push is this old (the daemon
   * passes its scan interval), so a table flushed behind our back is refilled by the next
   * scan, as spamd's replace-every-scan does. DEFAULTS.scanInterval.
   */
  refresh?: number;
  /**
   * A changed list is pushed as `delete` + `add` of the changes when there are at most this
   * many of them (DEFAULTS.firewallDiffMax; 0 always replaces) and at most `diffRatio` of the
   * table (DEFAULTS.firewallDiffRatio).
   */
  diffMax?: number;
  diffRatio?: number;
  /**
   * Changes are pushed as diffs only while the last full replace is younger than this (ten
   * refresh intervals), so a table edited behind our back is put right even while the
   * whitelist changes at every scan.
   */
  replaceEvery?: number;
  clock?: Clock;
}

export interface WhitelistSyncStatus {
  /** Message of the last failed push; undefined once a push has succeeded again. */
  lastError: string | undefined;
  /** Addresses in the table as of the last successful push. */
  pushedCount: number;
  /** A push has succeeded and it holds the latest desired list. */
  inSync: boolean;
  /** Successful pushes so far. */
  pushes: number;
}

interface Desired {
  list: string[];
  set: Set<string>;
}

interface Diff {
  add: string[];
  del: string[];
}

/**
 * Keeps one firewall table converged to the whitelist each DB scan computes. One push runs at a
 * time and always sends the newest list, so updates arriving during a slow pfctl collapse into
 * one; a failed push is retried with doubling backoff until it goes through. A small change to
 * a table whose contents are known is pushed as deletions and additions; anything else, and the
 * periodic re-assert of an unchanged list, replaces the whole table.
 */
export class WhitelistSync {
  private readonly firewall: Firewall;
  private readonly table: string;
  private readonly log: Logger;
  private readonly retryMin: number;
  private readonly retryMax: number;
  private readonly refresh: number;
  private readonly diffMax: number;
  private readonly diffRatio: number;
  private readonly replaceEvery: number;
  private readonly clock: Clock;

  private desired: Desired | undefined;
  private pushed: Set<string> | undefined;
  /** When the last successful push started: what it sent was current as of then. */
  private pushedAt = -Infinity;
  /** When the last successful full replace started. */
  private replacedAt = -Infinity;
  private pushCount = 0;
  private error: string | undefined;
  private backoff: number;
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: WhitelistSyncOptions) {
    this.firewall = opts.firewall;
    this.table = opts.table;
    this.log = opts.log;
    this.retryMin = Math.max(1, opts.retryMin ?? DEFAULTS.firewallRetryMin);
    this.retryMax = Math.max(this.retryMin, opts.retryMax ?? DEFAULTS.firewallRetryMax);
    this.refresh = opts.refresh ?? DEFAULTS.scanInterval;
    this.diffMax = opts.diffMax ?? DEFAULTS.firewallDiffMax;
    this.diffRatio = opts.diffRatio ?? DEFAULTS.firewallDiffRatio;
    this.replaceEvery = opts.replaceEvery ?? 10 * this.refresh;
    this.clock = opts.clock ?? systemClock;
    this.backoff = this.retryMin;
  }

  get lastError(): string | undefined {
    return this.error;
  }

  get pushedCount(): number {
    return this.pushed?.size ?? 0;
  }

  get inSync(): boolean {
    return this.error === undefined && this.desired !== undefined && this.pushed !== undefined &&
      sameSet(this.desired.set, this.pushed);
  }

  get status(): WhitelistSyncStatus {
    return { lastError: this.lastError, pushedCount: this.pushedCount, inSync: this.inSync, pushes: this.pushCount };
  }

  /** Records the whitelist the table should hold, and pushes it unless that is not needed. */
  update(addrs: readonly string[]): void {
    if (this.stopped) return;
    const set = new Set<string>();
    const bad: string[] = [];
    for (const a of addrs) {
      // A zone id (`fe80::1%eth0`) passes isIP but no firewall tool takes it.
      if (isIP(a) === 0 || a.includes('%')) bad.push(a);
      else set.add(a);
    }
    if (bad.length > 0) {
      // The firewall refuses a whole batch over one bad string; leaving it out keeps the rest
      // of the whitelist working.
      this.log.warning(`firewall: leaving ${bad.length} invalid address${bad.length === 1 ? '' : 'es'} ` +
        `out of <${this.table}>: ${bad.slice(0, 5).map((b) => JSON.stringify(b)).join(', ')}` +
        `${bad.length > 5 ? ', …' : ''}`);
    }
    this.desired = { list: [...set], set };
    // While a push runs it picks the new list up when it finishes; while a retry waits, the
    // retry sends it.
    if (this.running || this.retryTimer) return;
    if (this.needsPush()) this.start();
  }

  /**
   * Resolves when the latest desired list has been pushed or the attempt at it has failed; a
   * push waiting for its retry delay is tried at once. Never rejects.
   */
  flush(): Promise<void> {
    if (!this.running && !this.stopped && this.desired !== undefined &&
        (this.retryTimer !== undefined || !this.isPushed(this.desired))) {
      this.start();
    }
    return this.running ?? Promise.resolve();
  }

  /** No further pushes or retries; a push already running is left to finish. */
  stop(): void {
    this.stopped = true;
    this.clearRetry();
  }

  private needsPush(): boolean {
    if (this.desired === undefined) return false;
    if (!this.isPushed(this.desired)) return true;
    // Scans do not tick exactly `refresh` apart; a tenth of slack keeps one push per scan
    // instead of one every other scan.
    return this.clock.now() - this.pushedAt >= this.refresh * 0.9;
  }

  private isPushed(d: Desired): boolean {
    return this.error === undefined && this.pushed !== undefined && sameSet(d.set, this.pushed);
  }

  private start(): void {
    this.clearRetry();
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      const d = this.desired;
      if (d === undefined || this.stopped) return;
      const startedAt = this.clock.now();
      const diff = this.diffFor(d, startedAt);
      try {
        if (diff === undefined) {
          await this.firewall.replace(this.table, d.list);
        } else {
          if (diff.del.length > 0) await this.firewall.delete(this.table, diff.del);
          if (diff.add.length > 0) await this.firewall.add(this.table, diff.add);
          this.log.debug(`firewall: table <${this.table}>: added ${diff.add.length}, deleted ${diff.del.length}`);
        }
      } catch (err) {
        this.failed(err);
        return;
      }
      const wasFailing = this.error !== undefined;
      this.pushed = d.set;
      this.pushedAt = startedAt;
      if (diff === undefined) this.replacedAt = startedAt;
      this.pushCount++;
      this.error = undefined;
      this.backoff = this.retryMin;
      if (wasFailing) {
        this.log.notice(`firewall: table <${this.table}> is back in sync with ` +
          `${d.set.size} address${d.set.size === 1 ? '' : 'es'}`);
      }
      if (this.desired === d || (this.desired !== undefined && sameSet(this.desired.set, d.set))) return;
    }
  }

  /** The changes to push instead of replacing the table, when that is both safe and worth it. */
  private diffFor(d: Desired, now: number): Diff | undefined {
    const pushed = this.pushed;
    // After a failure the table holds whatever the failed command left: only a replace is
    // known to put it right.
    if (pushed === undefined || this.error !== undefined) return undefined;
    if (now - this.replacedAt >= this.replaceEvery) return undefined;
    const limit = Math.min(this.diffMax, pushed.size * this.diffRatio);
    if (Math.abs(d.set.size - pushed.size) > limit) return undefined;
    const add = d.list.filter((a) => !pushed.has(a));
    const del: string[] = [];
    for (const a of pushed) if (!d.set.has(a)) del.push(a);
    const changes = add.length + del.length;
    // No change means this push re-asserts the table, which takes a replace.
    if (changes === 0 || changes > limit) return undefined;
    return { add, del };
  }

  private failed(err: unknown): void {
    const message = describe(err).replace(/\s*\n\s*/g, '; ');
    this.error = message;
    if (this.stopped) {
      this.log.error(`firewall: cannot update table <${this.table}>: ${message}`);
      return;
    }
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.retryMax);
    this.log.error(`firewall: cannot update table <${this.table}>: ${message}; retrying in ${formatDelay(delay)}`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.running && !this.stopped) this.start();
    }, delay);
    this.retryTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function formatDelay(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
