// DNS lookups for weighted greylisting (DNSBLs, DNSWLs, reverse DNS, SPF): A, AAAA, PTR, TXT and MX
// through node:dns's Resolver (c-ares), shaped so that DNS can only ever make a decision slower
// by a bounded amount, and never wrong or crashed:
// - every lookup settles to a DnsResult; no exception escapes, and a malformed name is answered
//   BADNAME without a query;
// - a timeout or an error (SERVFAIL, REFUSED, an overloaded client…) is a result of its own that
//   callers treat as neutral; it is never cached, so the next decision asks again;
// - A and AAAA answers are cached for their TTL (at most maxTtl); PTR, TXT and MX answers, whose
//   TTL node:dns does not report, for defaultTtl, which may be longer than theirs; "no such
//   name" and "no such record" for negativeTtl, not the zone's SOA minimum (RFC 2308 section 5),
//   which node:dns does not report either; all in a cache bounded in entries (least recently
//   used goes first);
// - identical lookups in flight share one query; at most maxInFlight queries are out at once,
//   at most maxQueued lookups wait for a slot, and past that a lookup is answered OVERLOAD at once;
// - budget(ms) gives a decision a view whose lookups all end by one deadline: what has not
//   answered by then is a timeout for that decision, while a query already sent may still
//   finish and fill the cache for the next one; a lookup still queued leaves the queue unsent,
//   unless a caller whose time is not up waits for it too, so that a decision already over
//   never takes an in-flight slot from a live one.

import { Resolver } from 'node:dns';
import net from 'node:net';
import { type Clock, systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';

export type DnsType = 'A' | 'AAAA' | 'PTR' | 'TXT' | 'MX';

/**
 * What a lookup found. `records` are addresses (A, AAAA), host names without the final dot (PTR),
 * texts with their character-strings joined (TXT, as RFC 7208 section 3.3 joins SPF's) or
 * `PRIORITY EXCHANGE` (MX: `10 mail.example.com`, the exchange without the final dot; `0 .` is
 * RFC 7505's "null MX", a domain that accepts no mail); `ttl` is in seconds, as DNS counts it
 * (for PTR, TXT and MX the assumed defaultTtl: node:dns reports none): for a cached answer,
 * what is left of it.
 */
export type DnsResult =
  | { kind: 'answer'; records: string[]; ttl: number }
  /** The name does not exist (NXDOMAIN). */
  | { kind: 'nxdomain' }
  /** The name exists but has no record of this type (NOERROR, empty answer). */
  | { kind: 'nodata' }
  /** No answer in time, or the budget was spent: neutral. */
  | { kind: 'timeout' }
  /**
   * Neutral too: SERVFAIL, REFUSED, FORMERR, NOTIMP, CONNREFUSED… (node:dns's code without its
   * E), BADNAME for a name that cannot be asked, OVERLOAD when too many lookups wait already.
   */
  | { kind: 'error'; code: string };

/** Sends one query and settles to its result; never rejects. Tests put a fake in its place. */
export type DnsQuery = (type: DnsType, name: string) => Promise<DnsResult>;

export interface DnsOptions {
  /** `HOST[:PORT]` resolvers (see parseResolver), asked in order; none: the system's (resolv.conf). */
  servers?: readonly string[];
  /** One query to one resolver (ms). */
  timeout?: number;
  /** A budget() without a length (ms). */
  budget?: number;
  cacheEntries?: number;
  maxInFlight?: number;
  maxQueued?: number;
  /** How long negative answers are cached (ms). */
  negativeTtl?: number;
  /** The TTL given to PTR, TXT and MX answers, whose TTL node:dns does not report (ms). */
  defaultTtl?: number;
  /** Longest time any answer is cached (ms). */
  maxTtl?: number;
  clock?: Clock;
  /** Replaces the resolver: for tests of the cache, the queue and the budget. */
  query?: DnsQuery;
}

/** The lookups a caller makes; DnsClient and its budget() views both offer them. */
export interface DnsLookups {
  lookup(type: DnsType, name: string): Promise<DnsResult>;
  a(name: string): Promise<DnsResult>;
  aaaa(name: string): Promise<DnsResult>;
  txt(name: string): Promise<DnsResult>;
  /** The PTR records of an IPv4 or IPv6 address (in-addr.arpa / ip6.arpa); BADNAME if it is none. */
  ptr(address: string): Promise<DnsResult>;
}

export interface DnsStats {
  /** Queries sent (cache misses not shared with one in flight). */
  queries: number;
  cacheHits: number;
  /** Lookups that joined an identical one in flight. */
  shared: number;
  overloads: number;
  /** Queued lookups that left the queue unsent because every budget waiting for them had ended. */
  dropped: number;
  inFlight: number;
  queued: number;
  cached: number;
}

const TIMEOUT: DnsResult = Object.freeze({ kind: 'timeout' });
const BADNAME: DnsResult = Object.freeze({ kind: 'error', code: 'BADNAME' });
const OVERLOAD: DnsResult = Object.freeze({ kind: 'error', code: 'OVERLOAD' });

/**
 * `HOST[:PORT]` as --resolver takes it → the form Resolver.setServers takes. HOST is an IP
 * address (c-ares asks addresses, not names); an IPv6 address with a port is written in
 * brackets, `[2001:db8::53]:5353`, as in URLs (RFC 3986 section 3.2.2).
 */
export function parseResolver(spec: string): string {
  const bad = (why: string) => new PfgreyError('E_BAD_OPTION', `--resolver ${spec}: ${why}`);
  let host = spec;
  let port: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(spec);
  if (bracketed) {
    host = bracketed[1];
    port = bracketed[2];
    if (!net.isIPv6(host)) throw bad('not an IPv6 address in brackets');
  } else if (net.isIPv6(spec)) {
    return spec;
  } else {
    const colon = spec.lastIndexOf(':');
    if (colon >= 0) {
      host = spec.slice(0, colon);
      port = spec.slice(colon + 1);
    }
    if (!net.isIPv4(host)) throw bad('not an IP address (HOST[:PORT], an IPv6 address with a port in brackets)');
  }
  if (port === undefined) return spec;
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw bad(`bad port "${port}" (1-65535)`);
  return net.isIPv6(host) ? `[${host}]:${Number(port)}` : `${host}:${Number(port)}`;
}

/**
 * A lookup that settles to a result even where a stand-in for DnsClient (a test's fake) rejects:
 * DnsClient itself never does, and no check may turn a rejection into a crash.
 */
export async function settled(lookup: () => Promise<DnsResult>): Promise<DnsResult> {
  try {
    return await lookup();
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    return { kind: 'error', code: typeof code === 'string' ? code : 'UNKNOWN' };
  }
}

/**
 * A name as asked and cached: lower case, without the final dot; undefined if it cannot be a
 * host name or a DNSBL/SPF/DKIM-style name: letters, digits, hyphens and underscores (RFC 8552's
 * `_spf`-like labels), labels of 1-63 bytes, 253 bytes in all (RFC 1035 section 2.3.4).
 */
export function normalizeName(name: string): string | undefined {
  if (typeof name !== 'string') return undefined;
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 253) return undefined;
  if (!/^[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*$/.test(n)) return undefined;
  return n.toLowerCase();
}

/** The PTR name of an address: `192.0.2.7` → `7.2.0.192.in-addr.arpa` (RFC 1035 section 3.5, RFC 3596 section 2.5). */
export function reverseName(address: string): string | undefined {
  if (net.isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  if (!net.isIPv6(address)) return undefined;
  let text = address;
  // An IPv4 tail (::ffff:192.0.2.7) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    text = text.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const nibbles = all.map((g) => g.padStart(4, '0')).join('').toLowerCase();
  return `${[...nibbles].reverse().join('.')}.ip6.arpa`;
}

interface CacheEntry {
  result: DnsResult;
  /** Clock time (ms) after which the entry is stale. */
  expires: number;
}

/** The lookups of one budget() view that were queued when it asked, given up when it ends. */
interface Holder {
  queued: Set<Waiting>;
  ended: boolean;
}

interface Waiting {
  type: DnsType;
  name: string;
  resolve: (r: DnsResult) => void;
  queued: boolean;
  /**
   * While queued: the budgets waiting for it, the last of which to end takes it out of the
   * queue; undefined when a caller without a budget waits for it, so that it stays until sent.
   */
  holders: Set<Holder> | undefined;
}

/** A lookup in flight or queued, which identical lookups join. */
interface Pending {
  result: Promise<DnsResult>;
  /** Its place in the queue, while it has one. */
  waiting: Waiting | undefined;
}

export class DnsClient implements DnsLookups {
  private readonly clock: Clock;
  private readonly query: DnsQuery;
  private readonly resolver: Resolver | undefined;
  private readonly cacheEntries: number;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly negativeTtl: number;
  private readonly maxTtl: number;
  private readonly budgetMs: number;
  /** A query that c-ares has not ended by then (it always should) gives its slot back anyway. */
  private readonly guardMs: number;
  /** Insertion order is recency order: a hit moves its entry to the end. */
  private readonly cache = new Map<string, CacheEntry>();
  private readonly pending = new Map<string, Pending>();
  private readonly queue: Waiting[] = [];
  private active = 0;
  private closed = false;
  private readonly counts = { queries: 0, cacheHits: 0, shared: 0, overloads: 0, dropped: 0 };

  constructor(options: DnsOptions = {}) {
    this.clock = options.clock ?? systemClock;
    const timeout = options.timeout ?? DEFAULTS.dnsTimeout;
    this.cacheEntries = options.cacheEntries ?? DEFAULTS.dnsCacheEntries;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? DEFAULTS.dnsMaxInFlight);
    this.maxQueued = Math.max(0, options.maxQueued ?? DEFAULTS.dnsMaxQueued);
    this.negativeTtl = options.negativeTtl ?? DEFAULTS.dnsNegativeTtl;
    this.maxTtl = options.maxTtl ?? DEFAULTS.dnsMaxTtl;
    this.budgetMs = options.budget ?? DEFAULTS.dnsBudget;
    const defaultTtl = Math.min(options.defaultTtl ?? DEFAULTS.dnsDefaultTtl, this.maxTtl);
    if (options.query) {
      this.query = options.query;
      this.guardMs = timeout;
    } else {
      // tries: 1, because the budget, not c-ares's retries, decides how long a decision waits;
      // with several resolvers c-ares asks each in turn, one try each.
      const resolver = new Resolver({ timeout, tries: 1 });
      if (options.servers && options.servers.length > 0) resolver.setServers(options.servers.map(parseResolver));
      this.resolver = resolver;
      this.query = resolverQuery(resolver, Math.round(defaultTtl / 1000));
      this.guardMs = timeout * Math.max(1, resolver.getServers().length) + 1000;
    }
  }

  lookup(type: DnsType, name: string): Promise<DnsResult> {
    return this.ask(type, name, undefined);
  }

  /** A lookup for `holder`, a budget() view, or for a caller without a budget (undefined). */
  private ask(type: DnsType, name: string, holder: Holder | undefined): Promise<DnsResult> {
    const n = normalizeName(name);
    if (n === undefined) return Promise.resolve(BADNAME);
    const key = `${type} ${n}`;
    const hit = this.fromCache(key);
    if (hit) {
      this.counts.cacheHits++;
      return Promise.resolve(hit);
    }
    const joined = this.pending.get(key);
    if (joined) {
      this.counts.shared++;
      if (joined.waiting) this.hold(joined.waiting, holder);
      return joined.result;
    }
    const scheduled = this.schedule(type, n, holder);
    const entry: Pending = {
      result: scheduled.result.then((result) => {
        if (this.pending.get(key) === entry) this.pending.delete(key);
        this.store(key, result);
        return result;
      }),
      waiting: scheduled.waiting,
    };
    this.pending.set(key, entry);
    return entry.result;
  }

  private readonly byType = lookupsOver((type, name) => this.lookup(type, name));
  readonly a = this.byType.a;
  readonly aaaa = this.byType.aaaa;
  readonly txt = this.byType.txt;
  readonly ptr = this.byType.ptr;

  /**
   * The lookups of one decision: each settles by `ms` from now at the latest, as a timeout if
   * its answer has not come (a query already sent goes on, and its answer is cached for later
   * lookups; one still queued leaves the queue unless another caller still waits for it).
   */
  budget(ms: number = this.budgetMs): DnsLookups {
    const deadline = this.clock.now() + ms;
    const holder: Holder = { queued: new Set(), ended: false };
    const lookup = (type: DnsType, name: string): Promise<DnsResult> => {
      const left = deadline - this.clock.now();
      if (left <= 0 || holder.ended) return Promise.resolve(TIMEOUT);
      return withDeadline(this.ask(type, name, holder), left, () => this.release(holder));
    };
    return lookupsOver(lookup);
  }

  /** `w`, still queued, is waited for by `holder` too (undefined: by a caller without a budget). */
  private hold(w: Waiting, holder: Holder | undefined): void {
    if (!w.queued || w.holders === undefined) return;
    if (holder === undefined) {
      w.holders = undefined;
      return;
    }
    w.holders.add(holder);
    holder.queued.add(w);
  }

  /** `holder`'s budget has ended: what it alone still waits for in the queue leaves it unsent. */
  private release(holder: Holder): void {
    if (holder.ended) return;
    holder.ended = true;
    for (const w of holder.queued) {
      if (!w.queued || w.holders === undefined) continue;
      w.holders.delete(holder);
      if (w.holders.size > 0) continue;
      this.queue.splice(this.queue.indexOf(w), 1);
      w.queued = false;
      this.counts.dropped++;
      // At once, not when the timeout settles: a lookup made meanwhile must not join this one.
      const key = `${w.type} ${w.name}`;
      if (this.pending.get(key)?.waiting === w) this.pending.delete(key);
      w.resolve(TIMEOUT);
    }
    holder.queued.clear();
  }

  stats(): DnsStats {
    return { ...this.counts, inFlight: this.active, queued: this.queue.length, cached: this.cache.size };
  }

  /** Ends the queries in flight (they settle as errors) and answers every queued lookup as a timeout. */
  close(): void {
    this.closed = true;
    for (const w of this.queue.splice(0)) {
      w.queued = false;
      w.resolve(TIMEOUT);
    }
    this.resolver?.cancel();
  }

  private fromCache(key: string): DnsResult | undefined {
    const entry = this.cache.get(key);
    if (!entry) return undefined;
    const now = this.clock.now();
    if (entry.expires <= now) {
      this.cache.delete(key);
      return undefined;
    }
    this.cache.delete(key);
    this.cache.set(key, entry);
    if (entry.result.kind !== 'answer') return entry.result;
    return { kind: 'answer', records: entry.result.records, ttl: Math.ceil((entry.expires - now) / 1000) };
  }

  /** Answers for their `ttl` (defaultTtl for PTR, TXT, MX), negative answers for negativeTtl; timeouts and errors not at all. */
  private store(key: string, result: DnsResult): void {
    let life: number;
    if (result.kind === 'answer') life = Math.min(result.ttl * 1000, this.maxTtl);
    else if (result.kind === 'nxdomain' || result.kind === 'nodata') life = Math.min(this.negativeTtl, this.maxTtl);
    else return;
    if (!(life > 0) || this.cacheEntries <= 0) return;
    this.cache.delete(key);
    this.cache.set(key, { result, expires: this.clock.now() + life });
    while (this.cache.size > this.cacheEntries) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  /** Sends a query now, queues it (`waiting`) or answers at once. */
  private schedule(type: DnsType, name: string, holder: Holder | undefined): { result: Promise<DnsResult>; waiting?: Waiting } {
    if (this.closed) return { result: Promise.resolve(TIMEOUT) };
    if (this.active < this.maxInFlight) {
      return { result: new Promise((resolve) => this.send({ type, name, resolve, queued: false, holders: undefined })) };
    }
    if (this.queue.length >= this.maxQueued) {
      this.counts.overloads++;
      return { result: Promise.resolve(OVERLOAD) };
    }
    let waiting!: Waiting;
    const result = new Promise<DnsResult>((resolve) => {
      waiting = { type, name, resolve, queued: true, holders: holder ? new Set() : undefined };
      this.queue.push(waiting);
    });
    this.hold(waiting, holder);
    return { result, waiting };
  }

  private send(w: Waiting): void {
    w.queued = false;
    w.holders = undefined;
    this.active++;
    this.counts.queries++;
    let settled = false;
    const settle = (result: DnsResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      this.active--;
      w.resolve(result);
      const next = this.queue.shift();
      if (next) this.send(next);
    };
    const guard = setTimeout(() => settle(TIMEOUT), this.guardMs);
    let sent: Promise<DnsResult>;
    try {
      sent = this.query(w.type, w.name);
    } catch (err) {
      sent = Promise.resolve(errorResult(err));
    }
    sent.then(settle, (err: unknown) => settle(errorResult(err)));
  }
}

/** The per-type lookups over one `lookup`. */
function lookupsOver(lookup: DnsLookups['lookup']): DnsLookups {
  return {
    lookup,
    a: (name) => lookup('A', name),
    aaaa: (name) => lookup('AAAA', name),
    txt: (name) => lookup('TXT', name),
    ptr: (address) => {
      const name = reverseName(address);
      return name === undefined ? Promise.resolve(BADNAME) : lookup('PTR', name);
    },
  };
}

/** `result` if it settles within `ms`, else a timeout, after which `ended` is called. */
function withDeadline(result: Promise<DnsResult>, ms: number, ended: () => void): Promise<DnsResult> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      resolve(TIMEOUT);
      ended();
    }, ms);
    result.then(
      (r) => {
        clearTimeout(timer);
        resolve(r);
      },
      (err: unknown) => {
        clearTimeout(timer);
        resolve(errorResult(err));
      },
    );
  });
}

/** node:dns's error codes (`dns.NOTFOUND`…) as results. */
function errorResult(err: unknown): DnsResult {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOTFOUND':
      return { kind: 'nxdomain' };
    case 'ENODATA':
      return { kind: 'nodata' };
    case 'ETIMEOUT':
      return TIMEOUT;
    default:
      return { kind: 'error', code: typeof code === 'string' ? code.replace(/^E/, '') : 'UNKNOWN' };
  }
}

function resolverQuery(resolver: Resolver, defaultTtl: number): DnsQuery {
  return (type, name) =>
    new Promise<DnsResult>((resolve) => {
      const fail = (err: unknown) => resolve(errorResult(err));
      const answer = (records: string[], ttl: number) =>
        resolve(records.length === 0 ? { kind: 'nodata' } : { kind: 'answer', records, ttl });
      const withTtls = (err: Error | null, recs: { address: string; ttl: number }[]) => {
        if (err) return fail(err);
        answer(
          recs.map((r) => r.address),
          Math.min(...recs.map((r) => r.ttl)),
        );
      };
      try {
        switch (type) {
          case 'A':
            resolver.resolve4(name, { ttl: true }, withTtls);
            break;
          case 'AAAA':
            resolver.resolve6(name, { ttl: true }, withTtls);
            break;
          case 'PTR':
            resolver.resolvePtr(name, (err, names) => (err ? fail(err) : answer(names.map((h) => h.replace(/\.$/, '')), defaultTtl)));
            break;
          case 'TXT':
            resolver.resolveTxt(name, (err, texts) => (err ? fail(err) : answer(texts.map((chunks) => chunks.join('')), defaultTtl)));
            break;
          case 'MX':
            resolver.resolveMx(name, (err, mxs) =>
              err ? fail(err) : answer(mxs.map((mx) => `${mx.priority} ${mx.exchange.replace(/\.$/, '') || '.'}`), defaultTtl),
            );
            break;
        }
      } catch (err) {
        fail(err);
      }
    });
}
