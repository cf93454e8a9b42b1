// The greylist core: the one owner of the rules that every door asks (requests.ts). It turns
// the tarpit's tuples into database updates and decides when a tuple traps its sender instead
// (as spamd's greylister does: spamd(8), GREYTRAPPING), and it applies pfgrey db's additions and
// deletions, logd's whitelist extensions and imports, answering each with a verdict. Requests
// are decided strictly in arrival order, in batches that share one store lookup, so two quick
// retries never both count as "new" and a door never reads, decides and writes by itself.

import { randomUUID } from 'node:crypto';
import { Backoff } from '../backoff.js';
import { type Clock, systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { formatDelay } from '../config/duration.js';
import { describe, PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store, StoreWrite } from '../store/types.js';
import {
  explain, formatWeight, judge, type Judgement, reasons, type Score, sumScore, unscorable, type WeightedStage, withKnownGood,
} from '../weighted/score.js';
import { awlKey, type Entry, entryType, GOOD_PREFIX, greyKey, keyProblem, policyKey } from './entry.js';
import {
  type CoreEvent, CoreEvents, type GreyRequest, type PolicyRequest, type SyncRequest, type TupleRequest, type Verdict, type WeightedPass,
} from './requests.js';
import type { Tuple } from './types.js';
import {
  awlCount, goodHit, goodKnown, greyHit, knownGoodKey, type GreyTimes, logdHit, manualAdd, outsideAllowedDomains, policyHit, type PolicyTimes,
  promotesAgain, spamtrapAddress, syncAddress, unangled, weightedWhite, whiteSeen,
} from './rules.js';

/** postgrey's defaults, for a core whose door did not set its own (DEFAULTS.policy*). */
export const DEFAULT_POLICY_TIMES: PolicyTimes = {
  delay: DEFAULTS.policyDelay,
  maxAge: DEFAULTS.policyMaxAge,
  retryWindow: DEFAULTS.policyRetryWindow,
  awlClients: DEFAULTS.policyAwlClients,
  awlEvery: DEFAULTS.policyAwlEvery,
};

/**
 * Weighted greylisting in the core: the stage that scores an attempt before it is decided, and
 * the thresholds its score is judged by (README, "Weighted greylisting").
 */
export interface WeightedCore {
  stage: Pick<WeightedStage, 'score'>;
  /** A first attempt scoring under this is let by (--greylist-threshold). */
  threshold: number;
  /** A first attempt scoring this or more traps its client (--trap-threshold); undefined: never. */
  trapThreshold?: number;
  /** Each decision's explanation is logged at info (run -v) rather than debug. */
  verbose?: boolean;
}

export interface GreylisterOptions {
  store: Store;
  /** The daemon's times (-G and the long options); spamd's defaults where a door has none. */
  times?: GreyTimes;
  /** The policy door's times and auto-whitelist (postgrey's options); DEFAULT_POLICY_TIMES. */
  policy?: PolicyTimes;
  log: Logger;
  clock?: Clock;
  /** Recipient domain suffixes we accept mail for; empty means any (spamd.alloweddomains). */
  allowedDomains?: () => readonly string[];
  /** -M: the low-priority MX address; new tuples that came in to it trap their sender. */
  lowPriorityMx?: string;
  /**
   * Where the core says what happened (grey, trap; the scan adds white and expire): the
   * tarpit's trap list and the scan's trap notes follow it, and later sync and metrics.
   */
  events?: CoreEvents;
  /** How long a WHITE entry lives after logd sees its host pass (the daemon's white expiry). */
  whiteExpiry?: number;
  /**
   * Read and write each batch in one atomic store update (Store.update), so that a write by
   * another process between this core's read and its write is never lost: for the doors that
   * write seldom and share the file with the daemon (pfgrey db, logd). The daemon's tuples go
   * through the group commit instead, for its throughput.
   */
  atomic?: boolean;
  /**
   * How long after start the low-priority MX rule stays off: spamd waits a minute, so that
   * connections pf had already sent on their way before a restart do not trap anyone.
   */
  mxGrace?: number;
  /** Weighted greylisting (--weighted): the first attempt of a tuple or triplet is scored before it is decided. */
  weighted?: WeightedCore;
}

/** `1 tuple`, `2 tuples`. */
const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : what.endsWith('s') ? 'es' : 's'}`;

interface Queued {
  req: GreyRequest;
  done: (verdict: Verdict) => void;
}

/**
 * A batch being decided. While the store refuses it, it is retried as it is, under one id: a
 * store that may have committed an update whose reply it lost (a PostgreSQL connection dropped
 * after COMMIT was sent) recognises the id and does not make the update twice.
 */
interface Attempt {
  batch: Queued[];
  id: string;
  /** The last decision handed to the store inside an atomic update: what it made, if it did. */
  offered?: Decided;
}

/**
 * A first attempt that weighted greylisting must score before it can be decided: it goes to
 * the stage, and comes back to the queue with its score (Greylister.scoreThenQueue).
 */
const UNSCORED = { kind: 'unscored' } as const;

/** A request's outcome in a batch: its verdict, or UNSCORED. */
type Decision = Verdict | typeof UNSCORED;

/** A batch's decision: one per request, and what to say once its writes are made. */
interface Decided {
  verdicts: Decision[];
  events: CoreEvent[];
  notes: Decisions['notes'];
}

/** The batch's view of the store: what it read, with each decision's write (null: deleted). */
type View = Map<string, Entry | null>;

/**
 * What deciding a batch produces: the writes, the events and log lines to say once they are
 * made (a batch may be decided again, on a newer read, before they are), the view.
 */
interface Decisions {
  writes: StoreWrite[];
  events: CoreEvent[];
  notes: Array<{ level: 'info' | 'debug'; line: string }>;
  view: View;
}

/** What a stop gave up: tuples whose clients had their replies but that never reached the store. */
export interface StopLoss {
  tuples: number;
  /** The store's last error. */
  reason: string;
}

export class Greylister {
  private queue: Queued[] = [];
  /** A batch the store refused, to be tried again before the queue (see Attempt). */
  private again: Attempt | undefined;
  /** Requests in the weighted stage: being scored, not yet queued again (bounded by the DNS budget). */
  private readonly scoring = new Set<Promise<void>>();
  private draining: Promise<void> | undefined;
  /** Delays between attempts at a batch the store refuses; its attempts count the failures. */
  private readonly retry = new Backoff({ min: DEFAULTS.greyRetryMin, max: DEFAULTS.greyRetryMax });
  private failingSince = 0;
  /** The one line about batches held for an unreachable database server has been logged. */
  private heldSaid = false;
  private stopping = false;
  /** While stopping: aborted when the stop gives up (its deadline, a second SIGTERM). */
  private giveUp: AbortSignal | undefined;
  private lost: StopLoss | undefined;
  /** Ends the retry delay under way at once: stop(), and giveUp's abort. */
  private retryCut: AbortController | undefined;
  private readonly clock: Clock;
  private readonly startedAt: number;

  readonly events: CoreEvents;

  private readonly times: GreyTimes;

  constructor(private readonly opts: GreylisterOptions) {
    this.times = opts.times ?? {
      passTime: DEFAULTS.passTime, greyExpiry: DEFAULTS.greyExpiry, whiteExpiry: DEFAULTS.whiteExpiry, trapExpiry: DEFAULTS.trapExpiry,
    };
    this.clock = opts.clock ?? systemClock;
    this.startedAt = this.clock.now();
    this.events = opts.events ?? new CoreEvents();
  }

  /**
   * Decides one request; resolves with the verdict once its update is queued for the next
   * group commit. Requests are decided in arrival order, in batches: those that arrive in one
   * turn of the event loop share one store lookup, which is what lets ingest keep up with
   * thousands of clients.
   */
  handle(req: GreyRequest): Promise<Verdict> {
    return this.enqueue(req);
  }

  private enqueue(req: GreyRequest): Promise<Verdict> {
    return new Promise((done) => this.push({ req, done }));
  }

  private push(q: Queued): void {
    this.queue.push(q);
    this.draining ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.drain());
  }

  /**
   * The weighted stage, for a first attempt that the core found needs a score (UNSCORED): the
   * score travels in the request, which joins the queue again, so the decision itself stays
   * synchronous over one view of the store. Requests whose decision needs no score (a client
   * already WHITE, a retry, a known-good sender: bley's "delivered before, accept at once")
   * never wait for DNS.
   */
  private scoreThenQueue(q: Queued): void {
    const req = q.req as TupleRequest | PolicyRequest;
    const attempt = req.kind === 'tuple'
      ? { ip: req.ip, helo: req.helo, sender: unangled(req.from), rcpt: unangled(req.to) }
      : { ip: req.ip, helo: req.helo ?? '', sender: req.sender ?? '', rcpt: req.rcpt };
    const scored = this.opts.weighted!.stage.score(attempt).catch((err: unknown) => {
      // The stage never rejects; if a bug makes it, the attempt is greylisted as without it.
      this.opts.log.error(`weighted greylisting: cannot score ${req.ip}: ${describe(err)}; greylisting as usual`);
      return unscorable(`the checks failed: ${describe(err)}`);
    }).then((score) => this.push({ req: { ...req, score }, done: q.done }));
    // settle() and stop() wait for these too: a tuple being scored has had its reply.
    this.scoring.add(scored);
    void scored.finally(() => this.scoring.delete(scored));
  }

  /** The tarpit's door: records one tuple (see handle). */
  tuple(t: Tuple): Promise<Verdict> {
    return this.handle({ kind: 'tuple', ...t });
  }

  /** Requests handed in and not yet decided (being scored, or waiting for a batch). */
  get queued(): number {
    return this.queue.length + (this.again?.batch.length ?? 0) + this.scoring.size;
  }

  /**
   * True while the database is behind: more requests wait, here and in the store's queue, than
   * DEFAULTS.maxBacklog. The tarpit holds clients' commands back meanwhile, so memory stays
   * bounded and a crash loses at most one commit window.
   */
  get backlogged(): boolean {
    return this.queued + this.opts.store.pendingWrites > DEFAULTS.maxBacklog;
  }

  /** Resolves when every tuple handed in so far has been queued. */
  async settle(): Promise<void> {
    while (this.draining || this.scoring.size > 0) {
      if (this.scoring.size > 0) await Promise.allSettled([...this.scoring]);
      if (this.draining) await this.draining;
    }
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
    const cut = () => this.retryCut?.abort();
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
      while (this.again || this.queue.length > 0) {
        const attempt = this.again ?? { batch: this.queue.splice(0, DEFAULTS.greyBatch), id: randomUUID() };
        this.again = undefined;
        const { batch } = attempt;
        let verdicts: Decision[];
        try {
          verdicts = await this.applyBatch(attempt);
        } catch (err) {
          // These clients have had their replies: the tuples must not be lost to a store that
          // fails for a while (a locked database, a disk briefly full). The batch is tried again
          // as it is, under its name (Attempt), before the queue, and the backlog check holds
          // the tarpit meanwhile. A store that keeps
          // failing (a damaged file) must not hold it for ever: past greyRetryFor the batch is
          // given up, said in one line, and the queue moves on.
          const now = this.clock.now();
          if (this.retry.attempts === 0) this.failingSince = now;
          const stopNow = this.stopping && (this.giveUp?.aborted ?? true);
          if (stopNow) {
            // The stop has given up: each further attempt could wait out the busy timeout, so
            // the rest goes too; the stop's caller says how many in its one line.
            const lost = batch.concat(this.queue.splice(0));
            this.lost = { tuples: (this.lost?.tuples ?? 0) + lost.length, reason: describe(err) };
            for (const q of lost) q.done({ kind: 'dropped', why: describe(err) });
            this.retry.reset();
            continue;
          }
          // A database server that cannot be reached is waited for, however long: the batch is
          // held (and the backlog check holds the tarpit), so nothing acknowledged is lost.
          const unreachable = err instanceof PfgreyError && err.code === 'E_DB_UNREACHABLE';
          if (now - this.failingSince >= DEFAULTS.greyRetryFor && unreachable && !this.heldSaid) {
            this.heldSaid = true;
            this.opts.log.error(`greylist updates failing for ${formatDelay(now - this.failingSince)}: ` +
              `${count(batch.length + this.queued, 'request')} held until the database server answers again: ${describe(err)}`);
          }
          if (now - this.failingSince >= DEFAULTS.greyRetryFor && !unreachable) {
            this.opts.log.error(`greylist update of ${count(batch.length, 'tuple')} failed for ` +
              `${formatDelay(now - this.failingSince)}; lost: ${describe(err)}`);
            for (const q of batch) q.done({ kind: 'dropped', why: describe(err) });
            this.retry.reset();
            continue;
          }
          if (this.retry.attempts === 0) {
            this.opts.log.error(`greylist update of ${count(batch.length, 'tuple')} failed, retrying: ${describe(err)}`);
          }
          this.again = attempt;
          this.retryCut = new AbortController();
          await this.retry.wait(this.retryCut.signal);
          this.retryCut = undefined;
          continue;
        }
        if (this.retry.attempts > 0) {
          this.opts.log.notice(`greylist updates resumed after ${count(this.retry.attempts, 'failed attempt')}`);
          this.retry.reset();
          this.heldSaid = false;
        }
        batch.forEach((q, i) => {
          const v = verdicts[i]!;
          if (v.kind === 'unscored') this.scoreThenQueue(q);
          else q.done(v);
        });
      }
    } finally {
      this.draining = undefined;
    }
  }

  private async applyBatch(attempt: Attempt): Promise<Decision[]> {
    const batch = attempt.batch.map((q) => q.req);
    const keys: string[] = [];
    // spamdb -d -G deletes the first tuple of an ip in key order: which keys those are is read
    // first, and each is then read and decided with the rest.
    const tuplesOf = new Map<string, string[]>();
    for (const r of batch) {
      switch (r.kind) {
        case 'tuple': {
          keys.push(greyKey(r.ip, r.helo, r.from, r.to), spamtrapAddress(r.to), r.ip);
          const good = this.opts.weighted ? knownGoodKey(unangled(r.from), r.ip) : undefined;
          if (good) keys.push(good);
          break;
        }
        case 'policy': {
          keys.push(policyKey(r.triplet), awlKey(r.client), spamtrapAddress(r.rcpt), r.ip);
          const good = this.opts.weighted && !r.privacy ? knownGoodKey(r.sender ?? '', r.ip) : undefined;
          if (good) keys.push(good);
          break;
        }
        case 'add': keys.push(r.key); break;
        case 'delete': keys.push(r.key); break;
        case 'extend': keys.push(r.ip); break;
        case 'restore': keys.push(r.entry.key); break;
        case 'sync': {
          const c = r.record;
          if (c.type === 'GREY') keys.push(greyKey(c.ip, c.helo, c.from, c.to), spamtrapAddress(c.to), c.ip);
          else keys.push(c.ip);
          break;
        }
        case 'delete-tuple':
        case 'delete-passed':
          if (!tuplesOf.has(r.ip)) tuplesOf.set(r.ip, (await this.opts.store.tuplesOf(r.ip)).map((e) => e.key));
          keys.push(...tuplesOf.get(r.ip)!);
          break;
      }
    }
    // Decides the whole batch on one view of the store; each decision updates the view, so a
    // later request of the batch sees an earlier one's write.
    const decide = (current: Map<string, Entry>): Decided & { writes: StoreWrite[] } => {
      const out: Decisions = { writes: [], events: [], notes: [], view: new Map(current) };
      const verdicts = batch.map((r): Decision => {
        if (r.kind === 'delete-passed') {
          // Judged on the entries read inside this update: a tuple that passed meanwhile goes too.
          const now = this.clock.now();
          const passed = tuplesOf.get(r.ip)!.filter((k) => {
            const e = out.view.get(k);
            return e ? promotesAgain(e, now) : false;
          });
          for (const k of passed) this.remove(k, out);
          return passed.length > 0 ? { kind: 'deleted', key: r.ip, count: passed.length } : { kind: 'absent', key: r.ip };
        }
        if (r.kind !== 'delete-tuple') return this.apply(r, out);
        const first = tuplesOf.get(r.ip)!.find((k) => out.view.get(k));
        return first ? this.remove(first, out) : { kind: 'absent', key: r.ip };
      });
      return { verdicts, writes: out.writes, events: out.events, notes: out.notes };
    };
    // Inside the store's atomic update: the decision offered is the one made if it commits.
    const offer = (current: Map<string, Entry>): StoreWrite[] => {
      const d = decide(current);
      attempt.offered = d;
      return d.writes;
    };
    let decided: Decided;
    if (this.opts.atomic) {
      decided = await this.atomically(attempt, keys, offer);
    } else {
      // The daemon's path: tuples join the group commit. A GREY key is written by this daemon
      // alone, but an address (a trap, an addition) may also be written by pfgrey db or logd
      // in another process: a batch that writes one is decided again inside one atomic update
      // (a trap is rare), so such a write between this read and the commit is not lost.
      const planned = decide(await this.opts.store.getMany(keys));
      if (planned.writes.some((w) => !('put' in w ? w.put.key : w.delete).includes('\n'))) {
        decided = await this.atomically(attempt, keys, offer);
      } else {
        for (const w of planned.writes) {
          if ('put' in w) this.opts.store.put(w.put);
          else this.opts.store.delete(w.delete);
        }
        decided = planned;
      }
    }
    for (const n of decided.notes) this.opts.log[n.level](n.line);
    for (const e of decided.events) this.events.emit(e);
    return decided.verdicts;
  }

  /**
   * The store's atomic update under the attempt's id. If the store made it already, at an
   * earlier try whose outcome was lost, the decision offered then is the one that holds.
   */
  private async atomically(attempt: Attempt, keys: readonly string[], offer: (current: Map<string, Entry>) => StoreWrite[]): Promise<Decided> {
    const before = attempt.offered;
    if (await this.opts.store.update(keys, offer, attempt.id)) return attempt.offered!;
    if (!before) throw new Error(`the store says update ${attempt.id} was made, but it was never offered`);
    this.opts.log.notice(`greylist update of ${count(attempt.batch.length, 'request')} had been committed before its reply was lost; not made twice`);
    return before;
  }

  private write(entry: Entry, out: Decisions): void {
    out.writes.push({ put: entry });
    out.view.set(entry.key, entry);
  }

  private remove(key: string, out: Decisions): Verdict {
    out.writes.push({ delete: key });
    out.view.set(key, null);
    return { kind: 'deleted', key };
  }

  private apply(r: Exclude<GreyRequest, { kind: 'delete-tuple' | 'delete-passed' }>, out: Decisions): Decision {
    const { view } = out;
    const now = this.clock.now();
    switch (r.kind) {
      case 'tuple':
        return this.decideTuple(r, out, now, true);
      case 'policy':
        return this.decidePolicy(r, out, now);
      case 'sync':
        return this.decideSync(r, out, now);
      case 'add': {
        const old = view.get(r.key) ?? undefined;
        // spamdb refuses a new spamtrap that is not an address (an existing one it updates).
        if (!old && r.type === 'SPAMTRAP' && !r.key.includes('@')) return { kind: 'refused', why: `not an email address: ${r.key}` };
        const entry = manualAdd(old, r.key, r.type, now);
        this.write(entry, out);
        if (r.type === 'TRAPPED') out.events.push({ kind: 'trap', ip: r.key });
        return { kind: 'written', entry };
      }
      case 'delete':
        return view.get(r.key) ? this.remove(r.key, out) : { kind: 'absent', key: r.key };
      case 'extend': {
        const entry = logdHit(view.get(r.ip) ?? undefined, r.ip, now, this.opts.whiteExpiry ?? DEFAULTS.whiteExpiry);
        this.write(entry, out);
        // The host is whitelisted anew: spamlogd tells its sync peers so (a WHITE record).
        out.events.push({ kind: 'white', ip: r.ip });
        return { kind: 'written', entry };
      }
      case 'restore':
        this.write({ ...r.entry }, out);
        return { kind: 'written', entry: r.entry };
    }
  }

  /** A tuple from the tarpit (`weigh`: weighted greylisting judges its first attempt) or a sync peer. */
  private decideTuple(t: TupleRequest, out: Decisions, now: number, weigh = false): Decision {
    const { view } = out;
    const times = this.times;
    const tupleKey = greyKey(t.ip, t.helo, t.from, t.to);
    const rcpt = spamtrapAddress(t.to);
    let why: string | undefined;
    if (outsideAllowedDomains(rcpt, this.opts.allowedDomains?.() ?? [])) why = `(${rcpt} is outside the allowed domains)`;
    else if (view.get(rcpt)) why = `(${rcpt} is a spamtrap)`;

    let mxFirst = false;
    let key = why ? t.ip : tupleKey;
    let existing = view.get(key) ?? undefined;
    const mx = this.opts.lowPriorityMx;
    if (!why && !existing && mx !== undefined && t.localAddress === mx &&
      now - this.startedAt > (this.opts.mxGrace ?? DEFAULTS.mxGrace)) {
      // spamd writes a fresh TRAPPED entry here, over whatever the ip had (even WHITE).
      why = '(low-priority MX)';
      mxFirst = true;
      key = t.ip;
      existing = undefined;
    }
    const ipEntry = view.get(t.ip) ?? undefined;
    const whiteNow = ipEntry !== undefined && ipEntry.expire > now && entryType(ipEntry) === 'WHITE';
    if (!why && !existing && !whiteNow && weigh && this.opts.weighted) {
      // Weighted greylisting looks at the first attempt of a client not yet WHITE only: a
      // tuple already greylisted goes its usual way.
      const good = knownGoodKey(unangled(t.from), t.ip);
      const score = this.scoreOf(t.score, good, out, now);
      if (!score) return UNSCORED;
      const w = this.weigh(score, good, out, now, `${t.ip} ${t.from} -> ${t.to}`);
      if (w.judgement === 'trap') {
        why = `(score ${formatWeight(w.pass.score)} >= trap threshold ${formatWeight(this.opts.weighted.trapThreshold!)}: ${w.pass.reasons})`;
        key = t.ip;
        existing = ipEntry;
      } else if (w.judgement === 'accept') {
        // Whitelisted on its first contact: the next scan puts it in the firewall's whitelist,
        // so its retry reaches the real MTA minutes later instead of after the pass time.
        this.write(weightedWhite(t.ip, now, times.whiteExpiry), out);
        out.events.push({ kind: 'white', ip: t.ip });
        out.notes.push({ level: 'info', line: `whitelisted: ${t.ip} on first contact, score ${formatWeight(w.pass.score)} (${w.pass.reasons})` });
        return { kind: 'whitelisted', ip: t.ip, by: 'weighted', weighted: w.pass };
      }
    }
    const entry = greyHit(existing, key, now, times, why !== undefined);
    this.write(entry, out);
    if (why) {
      // spamd's words, so existing log greps keep matching; the reason follows in brackets.
      const tuple = `${t.ip} ${t.helo} ${t.from} ${t.to}`;
      out.notes.push({ level: 'info', line: mxFirst ? `Trapping ${t.ip} for trying ${mx} first for tuple ${tuple} ${why}`
        : `Trapping ${t.ip} for tuple ${tuple} ${why}` });
      out.events.push({ kind: 'trap', ip: t.ip });
      return { kind: 'trapped', ip: t.ip, why: why.slice(1, -1) };
    }
    if (!existing) out.notes.push({ level: 'debug', line: `new entry ${t.ip} from ${t.from} to ${t.to}, helo ${t.helo}` });
    out.events.push({ kind: 'grey', entry });
    if (ipEntry && entryType(ipEntry) === 'WHITE') return { kind: 'whitelisted', ip: t.ip };
    const passAt = entry.first + times.passTime;
    if (passAt >= now) return { kind: 'greylisted', key, left: passAt - now };
    if (weigh && this.opts.weighted) this.rememberGood(knownGoodKey(unangled(t.from), t.ip), out, now);
    return { kind: 'passed', key };
  }

  /**
   * The score a first attempt is judged by: the stage's, if it has been scored; for a known-good
   * sender, none is needed (the memory's weight alone accepts it, no DNS asked); otherwise
   * undefined: the attempt goes to the stage first.
   */
  private scoreOf(score: Score | undefined, good: string | undefined, out: Decisions, now: number): Score | undefined {
    if (score) return score;
    return good !== undefined && goodKnown(out.view.get(good), now) ? sumScore([], false) : undefined;
  }

  /**
   * Weighted greylisting's judgement of a first attempt: the stage's score, with the known-good
   * memory's weight when `good` names a sender domain and network that passed before. The
   * explanation is logged in one line (info with -v, debug otherwise).
   */
  private weigh(score: Score, good: string | undefined, out: Decisions, now: number, what: string): { judgement: Judgement; pass: WeightedPass } {
    const w = this.opts.weighted!;
    const full = good !== undefined && goodKnown(out.view.get(good), now) ? withKnownGood(score, good.slice(GOOD_PREFIX.length)) : score;
    out.notes.push({ level: w.verbose ? 'info' : 'debug', line: `weighted: ${what}: ${explain(full, w).map((l) => l.trim()).join('; ')}` });
    const judgement = judge(full, w);
    const unanswered = judgement === 'greylist' && full.total < w.threshold;
    out.events.push({ kind: 'weighed', judgement, ...(unanswered ? { unanswered } : {}) });
    return { judgement, pass: { score: full.total, reasons: reasons(full) } };
  }

  /** A pass of a weighed sender: its domain and network go into (or renew) the known-good memory. */
  private rememberGood(key: string | undefined, out: Decisions, now: number): void {
    if (key === undefined) return;
    const next = goodHit(out.view.get(key) ?? undefined, key, now, DEFAULTS.knownGoodExpiry);
    if (next) this.write(next, out);
  }

  /**
   * A record from a sync peer. A GREY tuple is decided as the tarpit's are (spamtraps and the
   * allowed domains apply; -M does not, it is about this host's own address), a WHITE or
   * TRAPPED address by spamd's receive rules (rules.ts, syncAddress). What it emits is marked
   * as the peer's, so that the sync sender does not send it on.
   */
  private decideSync(r: SyncRequest, out: Decisions, now: number): Decision {
    const first = out.events.length;
    const verdict = this.syncRecord(r, out, now);
    for (let i = first; i < out.events.length; i++) {
      const e = out.events[i]!;
      if (e.kind !== 'expire') out.events[i] = { ...e, origin: 'sync' };
    }
    return verdict;
  }

  private syncRecord({ peer, record: c }: SyncRequest, out: Decisions, now: number): Decision {
    if (c.type === 'GREY') {
      const problem = keyProblem(greyKey(c.ip, c.helo, c.from, c.to), 'GREY');
      if (problem) return { kind: 'refused', why: `GREY tuple from sync peer ${peer} ${problem}` };
      return this.decideTuple({ kind: 'tuple', ip: c.ip, helo: c.helo, from: c.from, to: c.to }, out, now);
    }
    const old = out.view.get(c.ip) ?? undefined;
    const entry = syncAddress(old, c.ip, c.type, c.expire, now);
    if (!entry) {
      return { kind: 'refused', why: old && !(c.expire < now) ? `${c.ip} is a spamtrap entry` : `${c.type} ${c.ip} from ${peer} has expired` };
    }
    this.write(entry, out);
    // spamd's words (LOG_DEBUG).
    if (!old) out.notes.push({ level: 'debug', line: `new ${c.type === 'WHITE' ? 'WHITE' : 'TRAP'} from ${peer} for ${c.ip}, expires ${Math.floor(c.expire / 1000)}` });
    out.events.push(c.type === 'WHITE' ? { kind: 'white', ip: c.ip } : { kind: 'trap', ip: c.ip });
    return { kind: 'written', entry };
  }

  /**
   * The policy door's request, in postgrey's order: a client already decided (WHITE, by the
   * tarpit or the auto-whitelist; TRAPPED) is answered at once; then the auto-whitelist count
   * of a --privacy client; then the spamtrap check (a recipient listed with `pfgrey db -a -T`
   * traps the client as at the tarpit); then the triplet (policyHit). A triplet's first pass
   * counts toward the client's auto-whitelist, and the pass that completes it makes the client
   * WHITE, so the next scan puts it in the firewall's whitelist and the tarpit lets it by too.
   */
  private decidePolicy(r: PolicyRequest, out: Decisions, now: number): Decision {
    const { view } = out;
    const t = this.opts.policy ?? DEFAULT_POLICY_TIMES;
    const known = view.get(r.ip) ?? undefined;
    const live = known && known.expire > now ? known : undefined;
    if (live && entryType(live) === 'WHITE') {
      const renewed = whiteSeen(live, now, t);
      if (renewed) this.write(renewed, out);
      return { kind: 'whitelisted', ip: r.ip };
    }
    if (live && entryType(live) === 'TRAPPED') return { kind: 'trapped', ip: r.ip, why: 'trapped', left: live.expire - now };

    const clientKey = awlKey(r.client);
    const counted = t.awlClients > 0 ? view.get(clientKey) ?? undefined : undefined;
    if (counted && counted.expire > now && counted.bcount >= t.awlClients) {
      const next = awlCount(counted, clientKey, now, t);
      if (next !== counted) this.write(next, out);
      return { kind: 'whitelisted', ip: r.ip, by: 'awl' };
    }

    const rcpt = spamtrapAddress(r.rcpt);
    const trap = view.get(rcpt);
    if (trap && entryType(trap) === 'SPAMTRAP') return this.trapClient(r, known, out, now, `${rcpt} is a spamtrap`);

    const key = policyKey(r.triplet);
    const prior = view.get(key) ?? undefined;
    const good = this.opts.weighted && !r.privacy ? knownGoodKey(r.sender ?? '', r.ip) : undefined;
    if (this.opts.weighted && !(prior && prior.expire > now)) {
      // A first attempt (no triplet in force) is weighed; a triplet already greylisted goes its usual way.
      const score = this.scoreOf(r.score, good, out, now);
      if (!score) return UNSCORED;
      const w = this.weigh(score, good, out, now, `${r.ip} <${r.sender ?? ''}> -> <${r.rcpt}>`);
      if (w.judgement === 'accept') return { kind: 'passed', key, weighted: w.pass };
      if (w.judgement === 'trap') {
        return this.trapClient(r, known, out, now, `score ${formatWeight(w.pass.score)} >= trap threshold ${formatWeight(this.opts.weighted.trapThreshold!)}: ${w.pass.reasons}`);
      }
    }
    const hit = policyHit(prior, key, now, t);
    this.write(hit.entry, out);
    if (hit.firstPass) this.rememberGood(good, out, now);
    if (hit.firstPass && t.awlClients > 0) {
      const live = counted && counted.expire > now ? counted : undefined;
      const next = awlCount(live, clientKey, now, t);
      if (next !== live && next.bcount >= t.awlClients && !r.privacy) {
        // The count is complete: the client becomes WHITE, and its count is no longer needed.
        this.write({ key: r.ip, first: next.first, pass: now, expire: now + t.maxAge, bcount: next.bcount, pcount: 0 }, out);
        if (counted) this.remove(clientKey, out);
        out.events.push({ kind: 'white', ip: r.ip });
        out.notes.push({ level: 'info', line: `whitelisted: ${r.ip} after ${count(next.bcount, 'pass')} (auto-whitelist)` });
      } else if (next !== live) {
        this.write(next, out);
      }
    }
    if (hit.left > 0) return { kind: 'greylisted', key, left: hit.left, fresh: hit.fresh };
    return hit.firstPass ? { kind: 'passed', key, waited: hit.waited } : { kind: 'passed', key };
  }

  /** The policy door traps a client (a spamtrap recipient, a score over the trap threshold), as the tarpit does. */
  private trapClient(r: PolicyRequest, known: Entry | undefined, out: Decisions, now: number, why: string): Verdict {
    // With --privacy no entry may name the client: it is deferred, and not remembered.
    if (!r.privacy) {
      this.write(greyHit(known, r.ip, now, this.times, true), out);
      out.events.push({ kind: 'trap', ip: r.ip });
    }
    out.notes.push({ level: 'info', line: `Trapping ${r.ip} for policy request to ${r.rcpt} (${why})` });
    return { kind: 'trapped', ip: r.ip, why, left: this.times.trapExpiry };
  }
}
