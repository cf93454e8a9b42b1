// What the daemon is doing, in numbers: one place every room reports to (the core's events,
// the tarpit's tuples, the policy door's answers, the firewall's pushes, the store's commits,
// the scan's counts). It keeps plain totals for the status page, `pfgrey stats` and the SIGUSR1
// line, and the same numbers as Prometheus metrics (prom-client) for /metrics.

import type { SyncCounts } from '../sync/peers.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type Clock, systemClock } from '../clock.js';
import type { CoreEvents } from '../grey/requests.js';
import type { ScanPlan } from '../grey/rules.js';
import type { PushReport } from '../firewall/sync.js';
import type { AnswerOutcome } from '../policy/server.js';
import { VERSION } from '../version.js';

/** Tarpit connections held now, by how they are treated (see Tarpit.held). */
export interface Held {
  /** Not on any list: greylisted, stuttered only while young (-S). */
  grey: number;
  /** On a blacklist: stuttered for their whole life (up to maxblack). */
  black: number;
  /** On the greytrap list (trapped hosts), stuttered like blacklisted ones. */
  trapped: number;
}

/** The entries the last scan read that are in force, by type. */
export interface Counts {
  grey: number;
  white: number;
  trapped: number;
  spamtraps: number;
  /** When that scan ended (ms since the epoch). */
  at: number;
}

export interface PushRecord extends PushReport {
  table: string;
  at: number;
}

/** How the policy door answers (the verdict label of pfgrey_policy_requests_total), every one. */
export const POLICY_OUTCOMES: readonly AnswerOutcome[] = ['greylisted', 'passed', 'whitelisted', 'trapped', 'exempt', 'ignored', 'late', 'failed'];

export interface BlacklistInForce {
  tag: string;
  /** Address blocks it was given. */
  blocks: number;
}

/** What the activity reads when asked, rather than being told. */
export interface ActivitySources {
  command: 'run' | 'policy';
  held?: () => Held;
  /** Requests waiting for the core plus writes waiting for their commit. */
  backlog?: () => number;
  lists?: () => BlacklistInForce[];
  /** The firewall backend and table, for the page (known once the backend is chosen). */
  firewall?: () => { name: string; table: string } | undefined;
  /** A policy door answers here (pfgrey policy, pfgrey run --policy). */
  policy?: boolean;
  /** Weighted greylisting judges first attempts (--weighted). */
  weighted?: boolean;
  /** The sync door's counts (-y, -Y), once it runs. */
  sync?: () => SyncCounts | undefined;
}

export interface Totals {
  tuples: number;
  promotions: number;
  traps: number;
  expiries: number;
  pushes: number;
  pushFailures: number;
  commits: number;
  commitFailures: number;
}

/** Everything the status page, `pfgrey stats` and the SIGUSR1 line show: plain, serialisable. */
export interface Status {
  version: string;
  command: 'run' | 'policy';
  now: number;
  startedAt: number;
  held?: Held;
  counts?: Counts;
  backlog?: number;
  totals: Totals;
  policy: Record<AnswerOutcome, number>;
  firewall?: { name: string; table: string };
  lastPush?: PushRecord;
  lists?: BlacklistInForce[];
}

// Buckets for things that take milliseconds normally and seconds when something is wrong (a
// firewall tool, a commit on a busy disk); the last ones catch the firewall timeout.
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * prom-client's default metrics that promtool's lint refuses: gauges named `_total`, which
 * the format keeps for counters. Each has a twin without the suffix (nodejs_active_handles,
 * …_requests, …_resources) carrying the same number, so nothing is lost by leaving them out.
 */
const LINT_FAILING_DEFAULTS = new Set(['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']);

export class Activity {
  /** This daemon's own registry: several daemons in one process (tests) do not share counts. */
  readonly registry = new Registry();
  readonly totals: Totals = {
    tuples: 0, promotions: 0, traps: 0, expiries: 0, pushes: 0, pushFailures: 0, commits: 0, commitFailures: 0,
  };
  readonly policy = Object.fromEntries(POLICY_OUTCOMES.map((o) => [o, 0])) as Record<AnswerOutcome, number>;
  counts: Counts | undefined;
  lastPush: PushRecord | undefined;
  private readonly startedAt: number;
  private processMetrics = false;

  private readonly m: {
    tuples: Counter;
    promotions: Counter;
    traps: Counter;
    expiries: Counter;
    pushes: Counter<'result'>;
    pushSeconds: Histogram<'kind'>;
    commits: Counter<'result'>;
    commitSeconds: Histogram;
    policy: Counter<'verdict'>;
    weighed: Counter<'decision'>;
    unanswered: Counter;
  };

  constructor(private readonly sources: ActivitySources, private readonly clock: Clock = systemClock) {
    this.startedAt = clock.now();
    const registers = [this.registry];
    const self = this;
    new Gauge({
      name: 'pfgrey_info', help: 'pfgrey\'s version and command (always 1).', labelNames: ['version', 'command'], registers,
    }).set({ version: VERSION, command: sources.command }, 1);
    if (sources.held) {
      const held = sources.held;
      new Gauge({
        name: 'pfgrey_held_connections', help: 'Tarpit connections held now, by kind: grey (greylisted), black (blacklisted), trapped (greytrapped).',
        labelNames: ['kind'], registers,
        collect() {
          const h = held();
          for (const kind of ['grey', 'black', 'trapped'] as const) this.set({ kind }, h[kind]);
        },
      });
    }
    new Gauge({
      name: 'pfgrey_entries', help: 'Entries in force in the database as of the last scan, by type.',
      labelNames: ['type'], registers,
      collect() {
        const c = self.counts;
        if (!c) return;
        this.set({ type: 'grey' }, c.grey);
        this.set({ type: 'white' }, c.white);
        this.set({ type: 'trapped' }, c.trapped);
        this.set({ type: 'spamtrap' }, c.spamtraps);
      },
    });
    new Gauge({
      name: 'pfgrey_last_scan_timestamp_seconds', help: 'When the last successful scan ended (Unix time; 0 before the first).', registers,
      collect() {
        this.set((self.counts?.at ?? 0) / 1000);
      },
    });
    if (sources.backlog) {
      const backlog = sources.backlog;
      new Gauge({
        name: 'pfgrey_store_backlog', help: 'Requests waiting for the greylist core plus writes waiting for their commit.', registers,
        collect() {
          this.set(backlog());
        },
      });
    }
    if (sources.lists) {
      const lists = sources.lists;
      new Gauge({
        name: 'pfgrey_blacklist_blocks', help: 'Address blocks of each blacklist in force (loaded through the config port).',
        labelNames: ['list'], registers,
        collect() {
          this.reset();
          for (const l of lists()) this.set({ list: l.tag }, l.blocks);
        },
      });
    }
    if (sources.firewall) {
      new Gauge({
        name: 'pfgrey_firewall_table_addresses', help: 'Addresses in the firewall\'s whitelist table as of the last successful push.', registers,
        collect() {
          const p = self.lastPush;
          if (p && !p.error) this.set(p.size);
        },
      });
      new Gauge({
        name: 'pfgrey_firewall_last_push_timestamp_seconds', help: 'When the last firewall push ended, failed or not (Unix time; 0 before the first).', registers,
        collect() {
          this.set((self.lastPush?.at ?? 0) / 1000);
        },
      });
    }
    this.m = {
      tuples: new Counter({ name: 'pfgrey_tuples_total', help: 'Tuples (ip, helo, from, to) the tarpit handed to the greylist core.', registers }),
      promotions: new Counter({ name: 'pfgrey_promotions_total', help: 'Addresses whitelisted (a passed tuple, the auto-whitelist, a first contact weighted greylisting lets by).', registers }),
      traps: new Counter({ name: 'pfgrey_traps_total', help: 'Addresses trapped (spamtrap, outside the allowed domains, low-priority MX, pfgrey db -T).', registers }),
      expiries: new Counter({ name: 'pfgrey_expiries_total', help: 'Entries the scan expired.', registers }),
      pushes: new Counter({ name: 'pfgrey_firewall_pushes_total', help: 'Pushes of the whitelist to the firewall, by result.', labelNames: ['result'], registers }),
      pushSeconds: new Histogram({
        name: 'pfgrey_firewall_push_duration_seconds', help: 'How long a push to the firewall took, failed ones included.',
        labelNames: ['kind'], buckets: DURATION_BUCKETS, registers,
      }),
      commits: new Counter({ name: 'pfgrey_store_commits_total', help: 'Store transactions (group commits and atomic updates), by result.', labelNames: ['result'], registers }),
      commitSeconds: new Histogram({
        name: 'pfgrey_store_commit_duration_seconds', help: 'How long a store transaction took, from its start to its commit.',
        buckets: DURATION_BUCKETS, registers,
      }),
      policy: new Counter({ name: 'pfgrey_policy_requests_total', help: 'Policy requests answered, by verdict.', labelNames: ['verdict'], registers }),
      weighed: new Counter({
        name: 'pfgrey_weighted_decisions_total', help: 'First attempts judged by weighted greylisting, by decision (accept, greylist, trap).',
        labelNames: ['decision'], registers,
      }),
      unanswered: new Counter({
        name: 'pfgrey_weighted_unanswered_total',
        help: 'First attempts greylisted only because DNS lookups did not answer (a resolver or a DNS list failing); also counted as greylist decisions.',
        // Without labels it would show as 0 everywhere: only where weighted greylisting runs.
        registers: sources.weighted ? registers : [],
      }),
    };
    // Every label value there is, from zero: a rate over a series that appears late is wrong.
    for (const result of ['ok', 'failed']) {
      this.m.pushes.inc({ result }, 0);
      this.m.commits.inc({ result }, 0);
    }
    if (sources.policy) {
      for (const verdict of POLICY_OUTCOMES) this.m.policy.inc({ verdict }, 0);
    }
    if (sources.sync) {
      const counts = sources.sync;
      // The sync door keeps its own counts; these report them as they stand at each scrape.
      new Counter({
        name: 'pfgrey_sync_packets_total', help: 'spamd sync packets: received and applied, refused (HMAC, version, length, records), sent.',
        labelNames: ['result'], registers,
        collect() {
          const c = counts() ?? { received: 0, refused: 0, sent: 0, dropped: 0 };
          this.reset();
          for (const result of ['received', 'refused', 'sent'] as const) this.inc({ result }, c[result]);
        },
      });
      new Counter({
        name: 'pfgrey_sync_dropped_records_total', help: 'Sync records dropped: received while the database was behind, or past the send queue.', registers,
        collect() {
          this.reset();
          this.inc(counts()?.dropped ?? 0);
        },
      });
    }
    if (sources.weighted) {
      for (const decision of ['accept', 'greylist', 'trap']) this.m.weighed.inc({ decision }, 0);
    }
  }

  /**
   * Adds prom-client's process and Node.js metrics (CPU, memory, event-loop lag, GC) for
   * /metrics, minus the three that fail promtool's lint (LINT_FAILING_DEFAULTS). Only a daemon
   * with --http pays for their observers.
   */
  withProcessMetrics(): void {
    if (this.processMetrics) return;
    this.processMetrics = true;
    const scratch = new Registry();
    collectDefaultMetrics({ register: scratch });
    for (const { name } of scratch.getMetricsAsArray()) {
      const metric = scratch.getSingleMetric(name);
      if (metric && !LINT_FAILING_DEFAULTS.has(name)) this.registry.registerMetric(metric);
    }
  }

  /** Follows the core's events: promotions (white), traps, expiries. Returns the unsubscribe. */
  follow(events: CoreEvents): () => void {
    return events.on((e) => {
      switch (e.kind) {
        case 'white':
          this.totals.promotions++;
          this.m.promotions.inc();
          break;
        case 'trap':
          this.totals.traps++;
          this.m.traps.inc();
          break;
        case 'expire':
          this.totals.expiries++;
          this.m.expiries.inc();
          break;
        case 'weighed':
          this.m.weighed.inc({ decision: e.judgement });
          if (e.unanswered) this.m.unanswered.inc();
          break;
        case 'grey':
          break;
      }
    });
  }

  tuple(): void {
    this.totals.tuples++;
    this.m.tuples.inc();
  }

  policyAnswer(outcome: AnswerOutcome): void {
    this.policy[outcome]++;
    this.m.policy.inc({ verdict: outcome });
  }

  push(table: string, p: PushReport): void {
    this.lastPush = { ...p, table, at: this.clock.now() };
    if (p.error) this.totals.pushFailures++;
    else this.totals.pushes++;
    this.m.pushes.inc({ result: p.error ? 'failed' : 'ok' });
    this.m.pushSeconds.observe({ kind: p.kind }, p.seconds);
  }

  /** One store transaction (a group commit or an atomic update), as the store reports it. */
  commit(seconds: number, ok: boolean): void {
    if (ok) this.totals.commits++;
    else this.totals.commitFailures++;
    this.m.commits.inc({ result: ok ? 'ok' : 'failed' });
    this.m.commitSeconds.observe(seconds);
  }

  /** A scan's result: the entries in force by type. */
  scanned(plan: ScanPlan): void {
    const c = plan.counts;
    this.counts = {
      grey: c.grey, white: plan.whitelist.length, trapped: plan.traps.length, spamtraps: c.spamtraps, at: this.clock.now(),
    };
  }

  /** /metrics: Prometheus' text format. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  status(): Status {
    const s = this.sources;
    return {
      version: VERSION,
      command: s.command,
      now: this.clock.now(),
      startedAt: this.startedAt,
      held: s.held?.(),
      counts: this.counts && { ...this.counts },
      backlog: s.backlog?.(),
      totals: { ...this.totals },
      policy: { ...this.policy },
      firewall: s.firewall?.(),
      lastPush: this.lastPush && { ...this.lastPush },
      lists: s.lists?.(),
    };
  }
}

/** `3m ago`, `12s ago`: how long before `now`, roughly. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** The last push in a few words: `ok, diff +2 -1, 40 addresses, 3 ms, 1m ago`. */
export function pushText(p: PushRecord, now: number): string {
  const what = p.kind === 'diff' ? `diff +${p.added} -${p.removed}` : 'replace';
  const result = p.error ? `failed (${p.error})` : `ok, ${what}, ${p.size} address${p.size === 1 ? '' : 'es'}`;
  return `<${p.table}> ${result}, ${Math.round(p.seconds * 1000)} ms, ${ago(now - p.at)}`;
}

/**
 * The one-line status SIGUSR1 (SIGINFO on the BSDs) writes to the log: what is held, the last
 * scan's counts, what happened since the start, the last push.
 */
export function statusLine(s: Status): string {
  const parts: string[] = [];
  if (s.held) {
    const h = s.held;
    parts.push(`held ${h.grey + h.black + h.trapped} (grey ${h.grey}, black ${h.black}, trapped ${h.trapped})`);
  }
  parts.push(s.counts
    ? `entries grey ${s.counts.grey}, white ${s.counts.white}, trapped ${s.counts.trapped}, spamtraps ${s.counts.spamtraps} (scan ${ago(s.now - s.counts.at)})`
    : 'no scan yet');
  const t = s.totals;
  if (s.held) parts.push(`since start: tuples ${t.tuples}, promotions ${t.promotions}, traps ${t.traps}, expiries ${t.expiries}`);
  else parts.push(`since start: promotions ${t.promotions}, traps ${t.traps}, expiries ${t.expiries}`);
  const answered = POLICY_OUTCOMES.filter((o) => s.policy[o] > 0);
  if (s.command === 'policy' || answered.length > 0) {
    const total = POLICY_OUTCOMES.reduce((n, o) => n + s.policy[o], 0);
    parts.push(`policy requests ${total}${answered.length ? ` (${answered.map((o) => `${o} ${s.policy[o]}`).join(', ')})` : ''}`);
  }
  if (s.firewall) parts.push(s.lastPush ? `last push ${pushText(s.lastPush, s.now)}` : `no push to <${s.firewall.table}> yet`);
  if (s.backlog !== undefined) parts.push(`backlog ${s.backlog}`);
  return `status: ${parts.join('; ')}`;
}
