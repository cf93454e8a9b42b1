// The weighted stage: before the greylist core decides a first attempt, the checks look at it
// and each adds a weight to a score (README, "Weighted greylisting"); the core then greylists
// only a score at or over the threshold. This module runs the checks that need DNS (DNSBLs and
// DNSWLs, HELO, reverse DNS, SPF) and the one that needs nothing (sender = recipient) and sums
// them; the known-good-sender memory needs the database and is weighed by the core, which
// reads it with the rest of the batch (src/grey/greylister.ts).
//
// What the stage hands the core is plain data (a Score), so that a request stays serialisable.
// All lookups of one score share one DNS budget: a slow or dead resolver delays a decision by at
// most DEFAULTS.dnsBudget and its lookups count as neutral (weight 0), never as bad.

import { type Clock, systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { describe } from '../errors.js';
import { asciiLower } from '../policy/postgrey-key.js';
import type { DnsLookups } from './dns.js';
import { checkLists, type ListResult, type ListSpec } from './dnslists.js';
import { DEFAULT_GENERIC_PATTERNS, heloCheck, rdnsCheck, WORST_WEIGHT } from './helo-rdns.js';
import { spfCheck, type SpfResult } from './spf.js';

/** What the checks are asked about: one attempt's client, HELO and envelope. */
export interface Attempt {
  ip: string;
  helo: string;
  /** The envelope sender, without angle brackets; empty for a bounce. */
  sender: string;
  /** The envelope recipient, without angle brackets. */
  rcpt: string;
}

/** The checks a score is made of, in the order the explanation lists them. */
export type CheckName = 'dnswl' | 'dnsbl' | 'helo' | 'rdns' | 'spf' | 'sender' | 'known';

/** One check's finding: its verdict word, its weight, and one line saying why. */
export interface Finding {
  check: CheckName;
  result: string;
  weight: number;
  why: string;
  /** What the reasons name instead of the verdict word: a DNS list's zone. */
  label?: string;
  /** A check that got no answer: the most its answer could have added (doubt, below). */
  doubt?: number;
}

/** A score: the findings and their sum. Plain data: it travels in a request to the core. */
export interface Score {
  total: number;
  findings: Finding[];
  /** A lookup timed out or failed: the score may be lower than the truth (it is not cached). */
  partial: boolean;
  /**
   * The most the checks that got no answer could have added: 0 when every check answered. A
   * score under the threshold only by grace of this doubt decides nothing (judge): a resolver
   * outage must not let spam by, or make its sender WHITE for weeks.
   */
  doubt: number;
}

export interface WeightedSettings {
  /** Scores at or over this are greylisted (--greylist-threshold). */
  threshold: number;
  /** Scores at or over this trap the client (--trap-threshold); undefined: never. */
  trapThreshold?: number;
  /** --dnsbl and --dnswl, in the order given. */
  lists: ListSpec[];
  /** Our host names and addresses: a HELO that claims one of them is a lie. */
  ourNames: string[];
  /** Generic-rDNS patterns (--generic-rdns FILE), or the built-in ones. */
  genericPatterns?: readonly RegExp[];
  /** Check the sender domain's SPF (on unless --no-spf). */
  spf: boolean;
  /** The DNS budget of one score (ms). */
  budget?: number;
}

/** The DNS the stage needs: lookups with one deadline per score. */
export interface BudgetedDns {
  budget(ms?: number): DnsLookups;
}

/** The SPF check's signature (src/weighted/spf.ts), injectable for tests. */
export type SpfCheck = (dns: DnsLookups, q: { ip: string; helo: string; sender: string }) => Promise<SpfResult>;

export interface StageOptions {
  dns: BudgetedDns;
  settings: WeightedSettings;
  clock?: Clock;
  spf?: SpfCheck;
  cacheTtl?: number;
  cacheEntries?: number;
}

/** The most each check could have added had it answered: the doubt of one that did not. */
const WORST = { ...WORST_WEIGHT, spf: DEFAULTS.spfFailWeight } as const;

/** Whole numbers as they are, others to two places: `2`, `0.5`, `-100`. */
export function formatWeight(w: number): string {
  return Number.isInteger(w) ? String(w) : String(Math.round(w * 100) / 100);
}

/**
 * The sender = recipient check: spamware forges the recipient as the sender; a bounce (empty
 * sender) is not that. Addresses compare case-insensitively (domains are; local parts nearly
 * always are in practice).
 */
export function senderIsRecipient(sender: string, rcpt: string): Finding {
  if (sender !== '' && asciiLower(sender) === asciiLower(rcpt)) {
    const w = DEFAULTS.senderIsRecipientWeight;
    return { check: 'sender', result: 'is-recipient', weight: w, why: `sender is the recipient, weight ${formatWeight(w)}` };
  }
  return { check: 'sender', result: 'ok', weight: 0, why: 'sender is not the recipient' };
}

/** What an SPF verdict weighs: fail and softfail count, everything else is neutral. */
export function spfFinding(r: SpfResult): Finding {
  const weight = r.verdict === 'fail' ? DEFAULTS.spfFailWeight : r.verdict === 'softfail' ? DEFAULTS.spfSoftfailWeight : 0;
  const domain = r.domain === '' ? 'no domain' : r.domain;
  const tail = weight === 0 ? (r.verdict === 'pass' ? '' : ', neutral') : `, weight ${formatWeight(weight)}`;
  return { check: 'spf', result: r.verdict, weight, why: `SPF of ${domain}: ${r.verdict} (${r.detail})${tail}` };
}

/** Sums findings into a score (pure): the weights in the order given, and the doubts. */
export function sumScore(findings: Finding[], partial: boolean): Score {
  let total = 0;
  let doubt = 0;
  for (const f of findings) {
    total += f.weight;
    doubt += f.doubt ?? 0;
  }
  // Half points add up exactly in binary; rounding keeps 0.1-sized weights from showing 0.30000000000000004.
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return { total: round(total), findings, partial, doubt: round(doubt) };
}

/**
 * The score of an attempt the stage could not score at all (a bug made it throw): nothing is
 * known, so nothing is decided by weight, and the attempt is greylisted as without weighting.
 */
export function unscorable(why: string): Score {
  return sumScore([{ check: 'known', result: 'unknown', weight: 0, why, doubt: Infinity }], true);
}

/**
 * A score with the known-good-sender memory's finding added: `known` names the sender domain
 * and client network (`example.org 192.0.2.0/24`) that passed greylisting before.
 */
export function withKnownGood(score: Score, known: string): Score {
  const weight = DEFAULTS.knownGoodWeight;
  return sumScore([...score.findings, { check: 'known', result: 'known', weight, why: `${known} passed greylisting before, weight ${formatWeight(weight)}`, label: known }], score.partial);
}

/** What a score means against the thresholds. */
export type Judgement = 'accept' | 'greylist' | 'trap';

export function judge(score: Pick<Score, 'total' | 'doubt'>, s: Pick<WeightedSettings, 'threshold' | 'trapThreshold'>): Judgement {
  // Only what was found traps; what was not answered can hold back an accept, never trap.
  if (s.trapThreshold !== undefined && score.total >= s.trapThreshold) return 'trap';
  return score.total + score.doubt >= s.threshold ? 'greylist' : 'accept';
}

/**
 * The explanation of a decision: one summary line, then one line per finding that weighs
 * something (or every finding with `all`), as `pfgrey explain` prints them and -v logs them.
 */
export function explain(score: Score, s: Pick<WeightedSettings, 'threshold' | 'trapThreshold'>, all = false): string[] {
  const j = judge(score, s);
  const under = score.total < s.threshold;
  const against = j === 'trap' ? `>= trap threshold ${formatWeight(s.trapThreshold!)}`
    : under ? `< threshold ${formatWeight(s.threshold)}` : `>= threshold ${formatWeight(s.threshold)}`;
  const unanswered = score.doubt === Infinity ? 'the checks could not be made'
    : `lookups that did not answer could add up to ${formatWeight(score.doubt)}`;
  const tail = j === 'greylist' && under ? `, but ${unanswered}: greylist, as without weighting`
    : `: ${j}${score.partial ? ' (some lookups did not answer: counted neutral)' : ''}`;
  const lines = [`score ${formatWeight(score.total)} ${against}${tail}`];
  for (const f of score.findings) if (all || f.weight !== 0) lines.push(`  ${f.check}: ${f.why}`);
  return lines;
}

/** The findings that weigh, in a few words each, for a log line or a header: `dnsbl bl.example +2, helo not-fqdn +1`. */
export function reasons(score: Score): string {
  const parts = score.findings.filter((f) => f.weight !== 0)
    .map((f) => `${f.check} ${f.label ?? f.result} ${f.weight > 0 ? '+' : ''}${formatWeight(f.weight)}`);
  return parts.length > 0 ? parts.join(', ') : 'nothing suspicious';
}

interface Cached {
  score: Score;
  until: number;
}

/**
 * Scores attempts. Each score runs the checks at once under one DNS budget; a score without a
 * failed lookup is kept for DEFAULTS.scoreCacheTtl for the same client, HELO, sender and
 * "sender is the recipient", so that the RCPTs of one message, and its retries, ask DNS once.
 */
export class WeightedStage {
  private readonly clock: Clock;
  private readonly spf: SpfCheck;
  private readonly cache = new Map<string, Cached>();
  private readonly ttl: number;
  private readonly entries: number;
  private scoring = 0;

  constructor(private readonly opts: StageOptions) {
    this.clock = opts.clock ?? systemClock;
    this.spf = opts.spf ?? spfCheck;
    this.ttl = opts.cacheTtl ?? DEFAULTS.scoreCacheTtl;
    this.entries = opts.cacheEntries ?? DEFAULTS.scoreCacheEntries;
  }

  get settings(): WeightedSettings {
    return this.opts.settings;
  }

  /** Scores being computed now (waiting for DNS): the core counts them in its backlog. */
  get inFlight(): number {
    return this.scoring;
  }

  /** The attempt's score. Never rejects: a check that throws counts as neutral, and says so. */
  async score(a: Attempt): Promise<Score> {
    const same = senderIsRecipient(a.sender, a.rcpt);
    const key = `${a.ip}\n${a.helo}\n${asciiLower(a.sender)}\n${same.weight}`;
    const now = this.clock.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit.score;
    }
    this.scoring++;
    try {
      const score = await this.compute(a, same);
      if (!score.partial) {
        this.cache.delete(key);
        this.cache.set(key, { score, until: this.clock.now() + this.ttl });
        while (this.cache.size > this.entries) this.cache.delete(this.cache.keys().next().value!);
      }
      return score;
    } finally {
      this.scoring--;
    }
  }

  private async compute(a: Attempt, same: Finding): Promise<Score> {
    const s = this.opts.settings;
    const dns = this.opts.dns.budget(s.budget);
    const neutral = (check: CheckName, err: unknown): Finding =>
      ({ check, result: 'unknown', weight: 0, why: `${check} check failed: ${describe(err)}, neutral` });
    const [lists, helo, rdns, spf] = await Promise.all([
      checkLists(dns, a.ip, s.lists).catch((err: unknown) => [{ zone: '', kind: 'dnsbl' as const, listed: 'unknown' as const, codes: [], weight: 0, why: `DNS lists: ${describe(err)}` }]),
      heloCheck(dns, a.helo, a.ip, s.ourNames).catch((err: unknown) => neutral('helo', err)),
      rdnsCheck(dns, a.ip, s.genericPatterns ?? DEFAULT_GENERIC_PATTERNS).catch((err: unknown) => neutral('rdns', err)),
      s.spf ? this.spf(dns, { ip: a.ip, helo: a.helo, sender: a.sender }).then(spfFinding, (err: unknown) => neutral('spf', err)) : undefined,
    ]);
    const findings: Finding[] = [];
    // Allow lists first, as bley asks them first; then what makes a client suspicious.
    // What an unanswered check could have added: a block list its weight (all of them when
    // the lists could not be asked at all), an allow list nothing, the others their worst.
    const blocking = (zone: string) => s.lists.filter((x) => x.kind === 'dnsbl' && (zone === '' || x.zone === zone))
      .reduce((sum, x) => sum + Math.max(0, x.weight), 0);
    const listed = (l: ListResult): Finding => l.listed === 'unknown'
      ? { check: l.kind, result: 'unknown', weight: 0, why: l.why, label: l.zone, doubt: l.kind === 'dnsbl' ? blocking(l.zone) : 0 }
      : { check: l.kind, result: l.listed ? 'listed' : 'not-listed', weight: l.weight, why: l.why, label: l.zone };
    const unanswered = (f: { result: string }) => f.result === 'unknown' || f.result === 'temperror';
    const checked = (f: { result: string; weight: number; why: string }, check: keyof typeof WORST): Finding =>
      ({ check, result: f.result, weight: f.weight, why: f.why, ...(unanswered(f) ? { doubt: WORST[check] } : {}) });
    for (const kind of ['dnswl', 'dnsbl'] as const) for (const l of lists) if (l.kind === kind) findings.push(listed(l));
    findings.push(checked(helo, 'helo'), checked(rdns, 'rdns'));
    if (spf) findings.push(checked(spf, 'spf'));
    findings.push(same);
    return sumScore(findings, findings.some(unanswered));
  }
}
