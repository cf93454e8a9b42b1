import { isIP } from 'node:net';
import { Backoff, retryingIn } from '../backoff.js';
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
   * scan, as spamd's replace-every-scan does; while the list keeps changing, `replaceEvery`
   * bounds how long that can take. DEFAULTS.scanInterval.
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
  /** Each push, done or failed: for the status page and /metrics (src/http/activity.ts). */
  onPush?: (push: PushReport) => void;
  /** -v: every push is logged (how many added and removed, how long); otherwise at debug. */
  verbose?: boolean;
}

/** One push to the firewall, as onPush reports it. */
export interface PushReport {
  /** `replace`: the whole table; `diff`: deletions and additions only. */
  kind: 'replace' | 'diff';
  /** Addresses that joined and left the list since the last push (none known after a failure). */
  added: number;
  removed: number;
  /** Addresses in the table after it. */
  size: number;
  /** How long the firewall tool took (s). */
  seconds: number;
  /** The failure's one line, when it failed. */
  error?: string;
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

interface Diff {
  add: string[];
  del: string[];
}

/**
 * Keeps one firewall table converged to the whitelist. The whitelist arrives either whole
 * (`update`) or as the changes since the last one (`change`, what each scan reports), and the
 * sync keeps the changes the table has not seen yet, so a small change is pushed as deletions
 * and additions whose cost does not grow with the table. One push runs at a time and always
 * sends everything pending, so updates arriving during a slow pfctl collapse into one; a failed
 * push is retried with doubling backoff until it goes through. A table whose contents are not
 * known (nothing pushed yet, or a push failed), a large change, and the periodic re-assert of
 * an unchanged list replace the whole table.
 */
export class WhitelistSync {
  private readonly firewall: Firewall;
  private readonly table: string;
  private readonly log: Logger;
  private readonly refresh: number;
  private readonly diffMax: number;
  private readonly diffRatio: number;
  private readonly replaceEvery: number;
  private readonly clock: Clock;
  private readonly onPush: (push: PushReport) => void;
  private readonly pushLog: 'info' | 'debug';

  /** What the table should hold; undefined until the first update. */
  private desired: Set<string> | undefined;
  /**
   * The net changes the table has not seen: true to add, false to delete. Undefined while the
   * table's contents are unknown (before the first successful push, after a failed one): then
   * only a replace puts it right, and there is nothing to keep.
   */
  private pending: Map<string, boolean> | undefined;
  /** A push is under way that carries changes (not a re-assert of an unchanged table). */
  private outstanding = false;
  private pushedSize = 0;
  /** When the last successful push started: what it sent was current as of then. */
  private pushedAt = -Infinity;
  /** When the last successful full replace started. */
  private replacedAt = -Infinity;
  private pushCount = 0;
  private error: string | undefined;
  private readonly backoff: Backoff;
  private running: Promise<void> | undefined;
  /** Set while a failed push waits for its retry; aborting it cancels the retry. */
  private retryWait: AbortController | undefined;
  private stopped = false;

  constructor(opts: WhitelistSyncOptions) {
    this.firewall = opts.firewall;
    this.table = opts.table;
    this.log = opts.log;
    // Unref'd: a retry still waiting must not keep a stopped daemon's process alive.
    this.backoff = new Backoff({
      min: opts.retryMin ?? DEFAULTS.firewallRetryMin,
      max: opts.retryMax ?? DEFAULTS.firewallRetryMax,
      unref: true,
    });
    this.refresh = opts.refresh ?? DEFAULTS.scanInterval;
    this.diffMax = opts.diffMax ?? DEFAULTS.firewallDiffMax;
    this.diffRatio = opts.diffRatio ?? DEFAULTS.firewallDiffRatio;
    this.replaceEvery = opts.replaceEvery ?? 10 * this.refresh;
    this.clock = opts.clock ?? systemClock;
    this.onPush = opts.onPush ?? (() => undefined);
    this.pushLog = opts.verbose ? 'info' : 'debug';
  }

  get lastError(): string | undefined {
    return this.error;
  }

  get pushedCount(): number {
    return this.pushedSize;
  }

  get inSync(): boolean {
    return this.pushCount > 0 && this.isPushed();
  }

  get status(): WhitelistSyncStatus {
    return { lastError: this.lastError, pushedCount: this.pushedCount, inSync: this.inSync, pushes: this.pushCount };
  }

  /**
   * Records the whole whitelist the table should hold, and pushes it unless that is not
   * needed. Linear in the list: a caller that knows what changed uses `change`.
   */
  update(addrs: readonly string[]): void {
    if (this.stopped) return;
    const next = new Set(this.valid(addrs));
    const prev = this.desired;
    this.desired = next;
    if (prev !== undefined) {
      for (const a of prev) if (!next.has(a)) this.note(a, false);
      for (const a of next) if (!prev.has(a)) this.note(a, true);
    }
    this.changed();
  }

  /**
   * Records a change to the whitelist: `add` joins it, `del` leaves it. Costs what the change
   * costs, whatever the size of the table. Before any `update` the list starts out empty.
   */
  change(add: readonly string[], del: readonly string[]): void {
    if (this.stopped) return;
    const desired = (this.desired ??= new Set());
    for (const a of del) {
      if (desired.delete(a)) this.note(a, false);
    }
    for (const a of this.valid(add)) {
      if (!desired.has(a)) {
        desired.add(a);
        this.note(a, true);
      }
    }
    this.changed();
  }

  /**
   * Resolves when the latest desired list has been pushed or the attempt at it has failed; a
   * push waiting for its retry delay is tried at once. Never rejects.
   */
  flush(): Promise<void> {
    if (!this.running && !this.stopped && this.desired !== undefined &&
        (this.retryWait !== undefined || !this.isPushed())) {
      this.start();
    }
    return this.running ?? Promise.resolve();
  }

  /** No further pushes or retries; a push already running is left to finish. */
  stop(): void {
    this.stopped = true;
    this.clearRetry();
  }

  /** The addresses a firewall tool will take; the rest are named in one warning. */
  private valid(addrs: readonly string[]): string[] {
    const good: string[] = [];
    const bad: string[] = [];
    for (const a of addrs) {
      // A zone id (`fe80::1%eth0`) passes isIP but no firewall tool takes it.
      if (isIP(a) === 0 || a.includes('%')) bad.push(a);
      else good.push(a);
    }
    if (bad.length > 0) {
      // The firewall refuses a whole batch over one bad string; leaving it out keeps the rest
      // of the whitelist working.
      this.log.warning(`firewall: leaving ${bad.length} invalid address${bad.length === 1 ? '' : 'es'} ` +
        `out of <${this.table}>: ${bad.slice(0, 5).map((b) => JSON.stringify(b)).join(', ')}` +
        `${bad.length > 5 ? ', …' : ''}`);
    }
    return good;
  }

  /** An address joined (true) or left (false) the list; a change and its undoing cancel out. */
  private note(addr: string, add: boolean): void {
    const p = this.pending;
    if (p === undefined) return;
    if (p.get(addr) === !add) p.delete(addr);
    else p.set(addr, add);
  }

  private changed(): void {
    // While a push runs it picks the changes up when it finishes; while a retry waits, the
    // retry sends them.
    if (this.running || this.retryWait) return;
    if (this.needsPush()) this.start();
  }

  private needsPush(): boolean {
    if (this.desired === undefined) return false;
    if (!this.isPushed()) return true;
    // Scans do not tick exactly `refresh` apart; a tenth of slack keeps one push per scan
    // instead of one every other scan.
    return this.clock.now() - this.pushedAt >= this.refresh * 0.9;
  }

  private isPushed(): boolean {
    return this.error === undefined && !this.outstanding && this.pending !== undefined && this.pending.size === 0;
  }

  private start(): void {
    this.clearRetry();
    this.running = this.loop().finally(() => {
      this.running = undefined;
      this.outstanding = false;
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      const desired = this.desired;
      if (desired === undefined || this.stopped) return;
      const startedAt = this.clock.now();
      const diff = this.diffFor(startedAt);
      // From here on, changes are recorded against what this push sends.
      const sent = this.pending;
      this.pending = new Map();
      this.outstanding = sent === undefined || sent.size > 0;
      let size: number;
      // What this push changes, as far as known: a replace after a failure knows nothing.
      let added = diff?.add.length ?? 0;
      let removed = diff?.del.length ?? 0;
      if (diff === undefined && sent !== undefined) {
        for (const isAdd of sent.values()) {
          if (isAdd) added++;
          else removed++;
        }
      }
      const kind = diff === undefined ? 'replace' : 'diff';
      const began = performance.now();
      const seconds = () => (performance.now() - began) / 1000;
      try {
        if (diff === undefined) {
          const list = [...desired];
          size = list.length;
          await this.firewall.replace(this.table, list);
        } else {
          if (diff.del.length > 0) await this.firewall.delete(this.table, diff.del);
          if (diff.add.length > 0) await this.firewall.add(this.table, diff.add);
          size = this.pushedSize + diff.add.length - diff.del.length;
        }
      } catch (err) {
        this.pending = undefined;
        this.onPush({ kind, added, removed, size: this.pushedSize, seconds: seconds(), error: describe(err).replace(/\s*\n\s*/g, '; ') });
        this.failed(err);
        return;
      }
      const took = seconds();
      this.onPush({ kind, added, removed, size, seconds: took });
      const changes = kind === 'diff' || sent !== undefined ? `added ${added}, removed ${removed}` : 'contents were unknown';
      this.log[this.pushLog](`firewall: table <${this.table}> ${kind === 'diff' ? 'updated' : 'replaced'} (${changes}): ` +
        `${size} address${size === 1 ? '' : 'es'}, ${took < 0.01 ? (took * 1000).toFixed(1) : Math.round(took * 1000)} ms`);
      const wasFailing = this.error !== undefined;
      this.outstanding = false;
      this.pushedSize = size;
      this.pushedAt = startedAt;
      if (diff === undefined) this.replacedAt = startedAt;
      this.pushCount++;
      this.error = undefined;
      this.backoff.reset();
      if (wasFailing) {
        this.log.notice(`firewall: table <${this.table}> is back in sync with ` +
          `${size} address${size === 1 ? '' : 'es'}`);
      }
      if (this.pending.size === 0) return;
    }
  }

  /** The changes to push instead of replacing the table, when that is both safe and worth it. */
  private diffFor(now: number): Diff | undefined {
    const pending = this.pending;
    // After a failure the table holds whatever the failed command left: only a replace is
    // known to put it right. No change means this push re-asserts the table, which takes a
    // replace too.
    if (pending === undefined || this.error !== undefined || pending.size === 0) return undefined;
    if (now - this.replacedAt >= this.replaceEvery) return undefined;
    if (pending.size > Math.min(this.diffMax, this.pushedSize * this.diffRatio)) return undefined;
    const add: string[] = [];
    const del: string[] = [];
    for (const [a, isAdd] of pending) (isAdd ? add : del).push(a);
    return { add, del };
  }

  private failed(err: unknown): void {
    const message = describe(err).replace(/\s*\n\s*/g, '; ');
    this.error = message;
    if (this.stopped) {
      this.log.error(`firewall: cannot update table <${this.table}>: ${message}`);
      return;
    }
    this.log.error(`firewall: cannot update table <${this.table}>: ${message}; ${retryingIn(this.backoff.current)}`);
    const wait = (this.retryWait = new AbortController());
    void this.backoff.wait(wait.signal).then((passed) => {
      if (!passed) return;
      this.retryWait = undefined;
      if (!this.running && !this.stopped) this.start();
    });
  }

  private clearRetry(): void {
    this.retryWait?.abort();
    this.retryWait = undefined;
  }
}
