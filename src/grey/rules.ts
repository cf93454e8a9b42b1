// The greylisting rules, as pure functions of (entries, event, now). Times are milliseconds.
// They follow spamd's grey.c (OpenBSD's libexec/spamd); where spamd has a quirk we fix, it says so
// here and README.md's "Where pfgrey differs from spamd" lists it.

import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { asciiLower, clientNet } from '../policy/postgrey-key.js';
import { type Entry, entryType, goodKey, keyIp, PCOUNT_SPAMTRAP, PCOUNT_TRAPPED } from './entry.js';

export interface GreyTimes {
  passTime: number;
  greyExpiry: number;
  whiteExpiry: number;
  trapExpiry: number;
}

/**
 * A tuple was seen (spamd(8), GREYLISTING). A new entry gets first = now and pass = expire = now + its
 * lifetime (greyexp, or trapexp when trapping); a known one counts the hit and, once more than
 * passtime has gone by since its first sighting, passes (pass = now). expire never moves, so a
 * tuple dies greyexp after it was first seen unless the scan promoted its ip first, and a
 * trapped ip is released trapexp after its first trap hit.
 *
 * With `trap` the entry is the client's ip entry (TRAPPED, pcount −1), not the tuple's: an
 * existing WHITE entry hit by a trap becomes TRAPPED but keeps its expiry, as in spamd.
 */
export function greyHit(existing: Entry | undefined, key: string, now: number, t: GreyTimes, trap = false): Entry {
  const pcount = trap ? PCOUNT_TRAPPED : 0;
  if (!existing) {
    const life = trap ? t.trapExpiry : t.greyExpiry;
    return { key, first: now, pass: now + life, expire: now + life, bcount: 1, pcount };
  }
  return {
    ...existing,
    bcount: existing.bcount + 1,
    pcount,
    pass: existing.first + t.passTime < now ? now : existing.pass,
  };
}

/**
 * The form of a recipient that the spamtrap check compares (spamd(8), GREYTRAPPING): one leading `<` and a
 * final `>` removed, ASCII lower-cased. Only this check normalises; the tuple keeps `to` raw.
 */
export function spamtrapAddress(to: string): string {
  let a = to.startsWith('<') ? to.slice(1) : to;
  if (a.endsWith('>')) a = a.slice(0, -1);
  return asciiLower(a);
}

/** True when allowed domains are configured and `address` (normalised) ends with none of them. */
export function outsideAllowedDomains(address: string, suffixes: readonly string[]): boolean {
  return suffixes.length > 0 && !suffixes.some((s) => address.endsWith(asciiLower(s)));
}

/**
 * A passed, logged SMTP connection seen by `pfgrey logd` (as spamlogd(8) sees one): the address is
 * whitelisted for `whiteExpiry` from now. An existing entry counts the pass and has its expiry
 * moved; a TRAPPED one thereby turns WHITE (pcount −1 + 1 = 0), as in spamlogd.
 */
export function logdHit(existing: Entry | undefined, key: string, now: number, whiteExpiry: number): Entry {
  if (!existing) return { key, first: now, pass: now, expire: now + whiteExpiry, bcount: 1, pcount: 0 };
  return { ...existing, pcount: existing.pcount + 1, expire: now + whiteExpiry };
}

/**
 * A WHITE or TRAPPED record from a sync peer (spamd's receive rules; spamd(8),
 * SYNCHRONISATION). Returns undefined when it is to be ignored: its expiry has passed, or the
 * address's entry is a SPAMTRAP (which no peer may change). A new address gets first = now,
 * pass = 0, bcount 0, pcount 0 (WHITE) or −1 (TRAPPED) and the peer's expiry. A known one
 * counts the record: WHITE adds one to pcount (a TRAPPED entry thereby turns WHITE, as with
 * spamlogd's WHITE), TRAPPED sets pcount −1 and adds one to bcount. spamd never moves a known
 * entry's expiry; pfgrey takes a WHITE record's expiry when it is later than the entry's (the
 * peer's logd saw the host pass, as logdHit does here), and leaves a TRAPPED one's alone, as the
 * local trap rule (greyHit) does.
 */
export function syncAddress(existing: Entry | undefined, ip: string, type: 'WHITE' | 'TRAPPED', expire: number, now: number): Entry | undefined {
  if (expire < now) return undefined;
  if (!existing) return { key: ip, first: now, pass: 0, expire, bcount: 0, pcount: type === 'WHITE' ? 0 : PCOUNT_TRAPPED };
  if (existing.pcount === PCOUNT_SPAMTRAP) return undefined;
  if (type === 'TRAPPED') return { ...existing, pcount: PCOUNT_TRAPPED, bcount: existing.bcount + 1 };
  return { ...existing, pcount: existing.pcount + 1, expire: Math.max(existing.expire, expire) };
}

/** The policy door's times and its auto-whitelist, with postgrey's meanings (postgrey(8)). */
export interface PolicyTimes {
  /** --delay: how long a new triplet is deferred. */
  delay: number;
  /** --max-age: a triplet or client unseen this long is forgotten. */
  maxAge: number;
  /** --retry-window: see policyHit. */
  retryWindow: number;
  /** --auto-whitelist-clients: passes that whitelist a client; 0 turns it off. */
  awlClients: number;
  /** How often a client's count (or a whitelisted client's expiry) may move: postgrey's hour. */
  awlEvery: number;
}

/** What one policy request did to its triplet. */
export interface PolicyHit {
  entry: Entry;
  /** Time until the triplet may pass; 0 or less: it passes now. */
  left: number;
  /** Whether this is the triplet's first pass (postgrey adds its X-Greylist header then). */
  firstPass: boolean;
  /** How long the triplet waited, from its first attempt to now. */
  waited: number;
  /** Whether the triplet started (again) with this request: new, or past its retry window. */
  fresh: boolean;
}

/**
 * A policy request's triplet, as postgrey decides it (postgrey's smtpd_access_policy). A POLICY
 * entry keeps first = first attempt and pass = last seen. A triplet passes once `delay` has
 * gone by since its first attempt; one not passed yet whose first attempt is older than the
 * retry window starts again from now (a sender that comes back days later is new again); a
 * first attempt in the future (a clock set back) is taken as now. bcount counts requests and
 * pcount the passes. The expiry is postgrey's maintenance rule made a date: a triplet that has
 * passed is forgotten maxAge after it was last seen, one that has not, the retry window after.
 */
export function policyHit(existing: Entry | undefined, key: string, now: number, t: PolicyTimes): PolicyHit {
  let first = now;
  let passedBefore = false;
  if (existing) {
    first = existing.first;
    passedBefore = existing.pass - existing.first >= t.delay;
    if (!passedBefore && now - first > t.retryWindow) first = now;
    if (first > now) first = now;
  }
  const waited = now - first;
  const left = t.delay - waited;
  const passed = passedBefore || left <= 0;
  const entry: Entry = {
    key,
    first,
    pass: now,
    expire: now + (passed ? t.maxAge : Math.min(t.maxAge, t.retryWindow)),
    bcount: (existing?.bcount ?? 0) + 1,
    pcount: (existing?.pcount ?? 0) + (left <= 0 ? 1 : 0),
  };
  return { entry, left, firstPass: left <= 0 && !passedBefore, waited, fresh: first === now && waited === 0 };
}

/**
 * A client's first pass of a triplet, counted toward postgrey's auto-whitelist: at most one
 * count per `awlEvery`, so one burst of mail counts once. An AWL entry keeps first = first
 * count, pass = last count, bcount = the count; it is forgotten maxAge after its last count.
 * Returns the entry unchanged when the hour has not gone by.
 */
export function awlCount(existing: Entry | undefined, key: string, now: number, t: PolicyTimes): Entry {
  if (existing && now < existing.pass + t.awlEvery && existing.pass <= now) return existing;
  return {
    key,
    first: existing?.first ?? now,
    pass: now,
    expire: now + t.maxAge,
    bcount: (existing?.bcount ?? 0) + 1,
    pcount: 0,
  };
}

/**
 * A whitelisted client seen again at the policy door, as spamlogd sees a WHITE host pass
 * (logdHit): its expiry moves to maxAge from now and the pass is counted, at most once per
 * `awlEvery` (postgrey's hourly update), so a busy client does not write on every request.
 * An expiry already later (the tarpit's white expiry) is kept. Returns undefined when nothing
 * needs writing.
 */
export function whiteSeen(existing: Entry, now: number, t: PolicyTimes): Entry | undefined {
  const expire = now + t.maxAge;
  if (expire - existing.expire < t.awlEvery) return undefined;
  return { ...existing, pcount: existing.pcount + 1, expire };
}

export type ManualType = 'WHITE' | 'TRAPPED' | 'SPAMTRAP';

/**
 * `pfgrey db -a` (spamdb(8) -a). A new entry starts with first = now and bcount 1; an
 * existing one of any type keeps first and bcount and counts pcount up before the type's own
 * fields are set, so a TRAPPED entry made WHITE starts at pcount 0. spamdb's expiries are fixed
 * (36 days, 24 hours), whatever the daemon's flags say. A new SPAMTRAP address is lower-cased;
 * the lookup before it used the key as typed, as spamdb does.
 */
export function manualAdd(existing: Entry | undefined, key: string, type: ManualType, now: number): Entry {
  const e: Entry = existing
    ? { ...existing, pcount: existing.pcount + 1 }
    : { key: type === 'SPAMTRAP' ? asciiLower(key) : key, first: now, pass: 0, expire: 0, bcount: 1, pcount: 0 };
  if (type === 'WHITE') {
    e.pass = now;
    e.expire = now + DEFAULTS.whiteExpiry;
  } else if (type === 'TRAPPED') {
    e.expire = now + DEFAULTS.trapExpiry;
    e.pcount = PCOUNT_TRAPPED;
  } else {
    e.expire = 0;
    e.pcount = PCOUNT_SPAMTRAP;
  }
  return e;
}

/** An envelope path without its angle brackets: `<a@example.org>` → `a@example.org`, `<>` → ''. */
export function unangled(path: string): string {
  return path.startsWith('<') && path.endsWith('>') ? path.slice(1, -1) : path;
}

/**
 * The domain of an envelope address (`<user@Example.ORG>` or `user@example.org`), ASCII lower
 * case; undefined for a bounce (empty sender) or an address without a domain, which the known-
 * good-sender memory cannot remember.
 */
export function senderDomain(address: string): string | undefined {
  const plain = unangled(address);
  const at = plain.lastIndexOf('@');
  const domain = at < 0 ? '' : asciiLower(plain.slice(at + 1));
  return /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)+$/.test(domain) ? domain : undefined;
}

/** The known-good memory's key of a sender and client, or undefined for a bounce or a sender without a domain. */
export function knownGoodKey(sender: string, ip: string): string | undefined {
  const domain = senderDomain(sender);
  if (domain === undefined) return undefined;
  try {
    const net = clientNet(ip, { ipv4cidr: DEFAULTS.knownGoodIpv4Cidr, ipv6cidr: DEFAULTS.knownGoodIpv6Cidr }).toLowerCase();
    return goodKey(domain, `${net}/${net.includes(':') ? DEFAULTS.knownGoodIpv6Cidr : DEFAULTS.knownGoodIpv4Cidr}`);
  } catch {
    return undefined;
  }
}

/**
 * A known-good sender (weighted greylisting's memory) after a pass: a new entry (first = pass =
 * now, one pass), or the known one with its last pass, count and expiry renewed. Undefined when
 * the known one was renewed less than DEFAULTS.knownGoodRenewEvery ago: a busy sender's every
 * retry need not write.
 */
export function goodHit(existing: Entry | undefined, key: string, now: number, expiry: number): Entry | undefined {
  const live = existing && existing.expire > now ? existing : undefined;
  if (!live) return { key, first: now, pass: now, expire: now + expiry, bcount: 1, pcount: 0 };
  if (now - live.pass < DEFAULTS.knownGoodRenewEvery) return undefined;
  return { ...live, pass: now, expire: now + expiry, bcount: live.bcount + 1 };
}

/** Whether a known-good entry is in force. */
export function goodKnown(e: Entry | null | undefined, now: number): boolean {
  return !!e && e.expire > now && entryType(e) === 'GOOD';
}

/**
 * The WHITE entry weighted greylisting writes for a client it lets by on its first contact:
 * whitelisted now, for the white expiry, as the scan would write it for a passed tuple.
 */
export function weightedWhite(ip: string, now: number, whiteExpiry: number): Entry {
  return { key: ip, first: now, pass: now, expire: now + whiteExpiry, bcount: 1, pcount: 0 };
}

// ASCII-only lower-casing, as spamd's tolower() loop (and Perl's lc): other bytes are left
// alone. One function for the rules and the policy door's keys.
export { asciiLower };

/**
 * Whether the scan counts `e` as passed: a GREY tuple retried after its pass time, or a WHITE
 * entry (whose pass is when it was whitelisted). A passed, unexpired entry puts its ip in the
 * whitelist and, for a tuple whose ip has no entry, writes that ip's WHITE entry.
 */
function passed(e: Entry, now: number): boolean {
  return e.pcount >= 0 && e.pass <= now;
}

/**
 * A GREY tuple from which the next scan would whitelist its ip (again): passed and not yet
 * expired. A tuple stays in the database until greyexp after its first sighting, promotion
 * or not, so `pfgrey db -d ip` of a host just whitelisted leaves such tuples behind; pfgrey db
 * says so, and `-d --passed` deletes them too (the delete-passed request).
 */
export function promotesAgain(e: Entry, now: number): boolean {
  return e.key.includes('\n') && e.expire > now && passed(e, now);
}

/** What one scan decided: entries to delete and to write, and the lists to publish. */
export interface ScanPlan {
  /** Entries to delete, as the scan read them: a row changed since is not deleted (Store.deleteIf). */
  deletes: Entry[];
  puts: Entry[];
  /** Addresses for the firewall's whitelist table, in key order. */
  whitelist: string[];
  /** Trapped addresses (spamd-greytrap), in key order. */
  traps: string[];
  /** Entries read, expired, promoted; and of those in force, the GREY tuples and the spamtraps. */
  counts: { entries: number; expired: number; promoted: number; grey: number; spamtraps: number };
}

type IpState = 'white' | 'trapped';

/**
 * The periodic scan (spamd(8) expires entries and puts passed addresses in <spamd-white>) as an accumulator: feed it every entry (in chunks, so the
 * caller can yield to the event loop between them), then `finish`. Differences from spamd:
 * an address that is blacklisted is not given a WHITE entry it would lose at the next scan,
 * and an expired WHITE entry does not stop a passed tuple from re-creating it at once.
 */
export class ScanAccumulator {
  private readonly deletes: Entry[] = [];
  private readonly ipState = new Map<string, IpState>();
  private readonly passed: Entry[] = [];
  private readonly traps = new Set<string>();
  private entries = 0;
  private expired = 0;
  private grey = 0;
  private spamtraps = 0;
  private settled = 0;
  private readonly white = new Set<string>();
  private readonly puts: Entry[] = [];
  /** Expired ip entries: a passed tuple may re-create one in the same scan. */
  private readonly expiredIps = new Set<string>();

  constructor(
    private readonly now: number,
    private readonly whiteExpiry: number,
    private readonly isBlacklisted: (ip: string) => boolean = () => false,
  ) {}

  add(chunk: Iterable<Entry>): void {
    for (const e of chunk) {
      this.entries += 1;
      if (e.key === '') {
        this.deletes.push(e);
        continue;
      }
      if (e.pcount === PCOUNT_SPAMTRAP) {
        this.spamtraps += 1;
        continue;
      }
      if (e.expire <= this.now) {
        this.expired += 1;
        this.deletes.push(e);
        if (!e.key.includes('\n') && !e.key.includes(' ')) this.expiredIps.add(e.key);
        continue;
      }
      const type = entryType(e);
      // The policy door's triplets and counts, and the known-good senders, only expire: they make no address WHITE.
      if (type === 'POLICY' || type === 'AWL' || type === 'GOOD') continue;
      if (type === 'TRAPPED') {
        if (net.isIP(e.key) === 0) this.deletes.push(e);
        else {
          this.ipState.set(e.key, 'trapped');
          this.traps.add(e.key);
        }
        continue;
      }
      if (type === 'GREY') this.grey += 1;
      if (type === 'WHITE' && !this.ipState.has(e.key)) this.ipState.set(e.key, 'white');
      if (passed(e, this.now)) this.passed.push(e);
    }
  }

  /**
   * Decides up to `limit` of the passed entries (they need the whole scan's view of each ip, so
   * they wait until every chunk is in). Returns true once all are decided. A caller that must
   * not hold the event loop calls it with a limit and yields between calls.
   */
  settle(limit = Infinity): boolean {
    const end = Math.min(this.passed.length, this.settled + limit);
    for (; this.settled < end; this.settled++) {
      const e = this.passed[this.settled]!;
      const ip = keyIp(e.key);
      const state = this.ipState.get(ip);
      if (state === 'trapped') continue;
      if (net.isIP(ip) === 0 || this.isBlacklisted(ip)) {
        this.deletes.push(e);
        continue;
      }
      this.white.add(ip);
      if (e.key !== ip && state === undefined) {
        this.puts.push({ key: ip, first: e.first, pass: e.pass, expire: this.now + this.whiteExpiry,
          bcount: e.bcount, pcount: e.pcount });
        this.ipState.set(ip, 'white');
      }
    }
    return this.settled >= this.passed.length;
  }

  finish(): ScanPlan {
    this.settle();
    // A WHITE entry that expired this scan but is re-created by a passed tuple is replaced, not
    // deleted: the plan never both deletes and writes a key.
    const rewritten = new Set(this.puts.filter((p) => this.expiredIps.has(p.key)).map((p) => p.key));
    return {
      deletes: rewritten.size ? this.deletes.filter((e) => !rewritten.has(e.key)) : this.deletes,
      puts: this.puts,
      // Not sorted: the firewall compares sets, and the scan's key order is already stable.
      whitelist: [...this.white],
      traps: [...this.traps],
      counts: { entries: this.entries, expired: this.expired, promoted: this.puts.length, grey: this.grey, spamtraps: this.spamtraps },
    };
  }
}

