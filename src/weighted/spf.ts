// The SPF check of weighted greylisting (RFC 7208): may a client at this address send mail for
// the sender's domain? The record is evaluated by the SPF part of the `mailauth` package (a
// maintained RFC 7208 implementation; only lib/spf is loaded, on first use), and mailauth asks
// DNS only through the caller's DnsLookups (src/weighted/dns.ts): the cache, the bound on queries
// in flight and the decision's budget apply to SPF as to every other check, and node:dns is never
// called by mailauth itself. RFC 7208 section 4.6.4's limits (10 mechanisms that query DNS, 2
// lookups that find nothing) are mailauth's maxResolveCount and maxVoidCount, set from
// src/config/defaults.ts. The scoring stage weighs the verdict; there temperror, permerror, none
// and neutral count as neutral. Nothing here throws: a DNS timeout or failure is temperror, and
// so is a failure inside mailauth, with what it said.

import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import { domainToASCII } from 'node:url';
import { DEFAULTS } from '../config/defaults.js';
import { type DnsLookups, type DnsResult, type DnsType, normalizeName } from './dns.js';
import { unmapped } from './dnslists.js';

/** RFC 7208 section 2.6's results. */
export type SpfVerdict = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';

export interface SpfResult {
  verdict: SpfVerdict;
  /** The domain whose record was checked (A-labels, lower case), '' when there was none to check. */
  domain: string;
  /**
   * One short phrase: the mechanism that matched (`matched include:_spf.example.com > ip4:192.0.2.0/24`),
   * why there is no result (`no SPF record at example.com`), or the error. Printable ASCII only and
   * at most SPF_DETAIL_MAX characters, so that it fits a log line and a header comment as it is.
   */
  detail: string;
}

export interface SpfQuery {
  /** The client's address; an IPv4-mapped IPv6 address is checked as IPv4. */
  ip: string;
  /** The HELO/EHLO argument: the identity checked for the null sender, and the %{h} macro. */
  helo: string;
  /** The MAIL FROM address, with or without its angle brackets; '' or '<>' is the null sender. */
  sender: string;
}

export interface SpfOptions {
  /** Mechanisms and modifiers that query DNS, at most (RFC 7208 section 4.6.4); DEFAULTS.spfMaxLookups. */
  maxLookups?: number;
  /** Lookups that find nothing, at most (RFC 7208 section 4.6.4); DEFAULTS.spfMaxVoidLookups. */
  maxVoidLookups?: number;
  /** This host's name, for the %{r} macro (RFC 7208 section 7.3); the system's host name by default. */
  receiver?: string;
  /**
   * A check that has not ended by then is temperror (ms); DEFAULTS.dnsBudget. Only a backstop:
   * the lookups of a DnsClient.budget() view end by the budget's deadline anyway.
   */
  timeout?: number;
}

export const SPF_DETAIL_MAX = 200;

/** RFC 5321 section 4.5.3.1.3: a path is at most 256 octets. */
const MAX_SENDER = 256;

// What mailauth's lib/spf uses and returns, as far as this module relies on it (its own
// index.d.ts types the resolver without the MX answers it asks for).
type MailauthResolver = (name: string, type: string) => Promise<unknown[]>;
interface MailauthSpfOptions {
  sender: string;
  ip: string;
  helo: string;
  mta: string;
  maxResolveCount: number;
  maxVoidCount: number;
  resolver: MailauthResolver;
}
interface MailauthSpf {
  spf(opts: MailauthSpfOptions): Promise<{ status?: { result?: unknown; comment?: unknown } } | undefined>;
}
/** What lib/spf/spf-verify.js settles to: the mechanism that matched, or an error (also what it throws, as err.spfResult). */
interface Evaluation {
  type?: string;
  val?: string;
  qualifier?: string;
  include?: Evaluation;
  error?: string;
  text?: string;
  message?: string;
}
type SpfVerify = (domain: string, opts: unknown) => Promise<Evaluation | false>;

/** What the top-level evaluation of one check settled to, caught on its way to mailauth's verify(). */
interface Trace {
  settled?: Evaluation | false;
  thrown?: Evaluation;
}
/**
 * The trace of the check being started: mailauth's spf() calls spfVerify() before its first
 * await, so the wrapper takes it synchronously, before any other check can start. (An
 * AsyncLocalStorage would do the same, but turns on promise hooks for every promise in the
 * process, which costs the whole daemon several per cent.)
 */
let handoff: Trace | undefined;
/** The receiver's name for mailauth's `mta` (%{r}), asked of the system once. */
let systemName: string | undefined;

let library: MailauthSpf | undefined;

/**
 * Loads mailauth's SPF module (about 0.2 s and a hundred small modules, once). Wiring may call it
 * at start when SPF is on, so that no client waits for it; spfCheck calls it otherwise.
 *
 * mailauth's verify() reports the verdict but not which mechanism matched. Its index.js takes
 * spfVerify from spf-verify.js's exports when it loads, so a wrapper put there first sees the
 * evaluation of each check, and the hand-off above tells whose it is. The verdict never
 * depends on it: should a later mailauth not load this way, details are mailauth's comments.
 */
export function loadSpf(): void {
  mailauth();
}

function mailauth(): MailauthSpf {
  if (library) return library;
  const require = createRequire(import.meta.url);
  const index = require.resolve('mailauth/lib/spf/index.js');
  if (!(index in require.cache)) {
    const inner = require('mailauth/lib/spf/spf-verify.js') as { spfVerify?: unknown };
    const original = inner.spfVerify;
    if (typeof original === 'function') {
      const verify = original as SpfVerify;
      inner.spfVerify = async (domain: string, opts: unknown) => {
        const trace = handoff;
        handoff = undefined;
        try {
          const settled = await verify(domain, opts);
          if (trace) trace.settled = settled;
          return settled;
        } catch (err) {
          if (trace) trace.thrown = (err as { spfResult?: Evaluation } | null)?.spfResult ?? { text: errorText(err) };
          throw err;
        }
      };
    }
  }
  library = require(index) as MailauthSpf;
  return library;
}

/**
 * Checks whether `q.ip` may send mail from `q.sender` (RFC 7208 section 4, check_host()); for
 * the null sender, from `postmaster@` the HELO name (section 2.3). A sender without a domain,
 * or whose domain is no multi-label domain name (an address literal, `user@localhost`), is
 * 'none' (section 4.3), as is a client address that is no IP address. Never throws.
 */
export async function spfCheck(dns: Pick<DnsLookups, 'lookup'>, q: SpfQuery, opts: SpfOptions = {}): Promise<SpfResult> {
  let domain = '';
  try {
    const id = spfIdentity(q.sender, q.helo);
    domain = id.domain;
    if ('none' in id) return result('none', domain, id.none);
    const ip = typeof q.ip === 'string' ? unmapped(q.ip.trim()) : '';
    if (!net.isIP(ip)) return result('none', domain, `the client address ${JSON.stringify(String(q.ip))} is not an IP address`);
    const lib = mailauth();
    const maxLookups = Math.max(1, Math.floor(opts.maxLookups ?? DEFAULTS.spfMaxLookups));
    const maxVoid = Math.max(1, Math.floor(opts.maxVoidLookups ?? DEFAULTS.spfMaxVoidLookups));
    const mta = opts.receiver ?? (systemName ??= os.hostname());
    const timeout = opts.timeout ?? DEFAULTS.dnsBudget;
    const trace: Trace = {};
    const timeouts: string[] = [];
    handoff = trace;
    let run: ReturnType<MailauthSpf['spf']>;
    try {
      run = lib.spf({
        sender: id.sender,
        ip,
        helo: typeof q.helo === 'string' ? q.helo.trim() : '',
        mta,
        maxResolveCount: maxLookups,
        maxVoidCount: maxVoid,
        resolver: resolverOver(dns, timeouts),
      });
    } finally {
      handoff = undefined;
    }
    const done = await within(run, timeout);
    if (done === 'late') return result('temperror', domain, `the SPF check did not end within ${timeout} ms`);
    const verdict = done?.status?.result;
    if (typeof verdict !== 'string' || !VERDICTS.has(verdict)) return result('temperror', domain, 'the SPF library gave no result');
    const comment = done?.status?.comment;
    const said = typeof comment !== 'string' ? verdict : comment.startsWith(`${mta}: `) ? comment.slice(mta.length + 2) : comment;
    return result(verdict as SpfVerdict, domain, describe(trace, timeouts, said, { maxLookups, maxVoid }));
  } catch (err) {
    return result('temperror', domain, `the SPF check failed: ${errorText(err)}`);
  }
}

const VERDICTS = new Set<string>(['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror']);

function result(verdict: SpfVerdict, domain: string, detail: string): SpfResult {
  return { verdict, domain, detail: printable(detail) };
}

/** Printable ASCII, one line, at most SPF_DETAIL_MAX characters. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]+/g, '?').replace(/ {2,}/g, ' ').trim();
  return clean.length > SPF_DETAIL_MAX ? `${clean.slice(0, SPF_DETAIL_MAX - 3)}...` : clean;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The identity SPF checks: the MAIL FROM address with "postmaster" for a missing local part
 * (RFC 7208 section 4.3), or for the null sender postmaster@ the HELO name (section 2.3); its
 * domain in A-labels (section 4.3 expects them), lower case. `none` says why there is none.
 */
export function spfIdentity(sender: string, helo: string): { sender: string; domain: string } | { none: string; domain: string } {
  let s = typeof sender === 'string' ? sender.trim() : '';
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1).trim();
  if (s.length > MAX_SENDER) return { none: `the sender is longer than ${MAX_SENDER} characters`, domain: '' };
  if (s === '') {
    const h = typeof helo === 'string' ? helo.trim() : '';
    const domain = asDomain(h);
    if (domain === undefined) return { none: `null sender, and the HELO name ${JSON.stringify(h.slice(0, 80))} is no domain name to check`, domain: '' };
    return { sender: `postmaster@${domain}`, domain };
  }
  const at = s.lastIndexOf('@');
  if (at < 0) return { none: 'the sender has no domain', domain: '' };
  const text = s.slice(at + 1);
  const domain = asDomain(text);
  if (domain === undefined) return { none: `the sender's domain ${JSON.stringify(text.slice(0, 80))} is no domain name to check`, domain: '' };
  return { sender: `${s.slice(0, at) || 'postmaster'}@${domain}`, domain };
}

/** A multi-label domain name in A-labels, lower case, without the final dot; undefined if `text` is none (an address literal, a bare address, one label). */
function asDomain(text: string): string | undefined {
  if (text === '' || text.startsWith('[') || net.isIP(text)) return undefined;
  const ascii = domainToASCII(text.endsWith('.') ? text.slice(0, -1) : text);
  const name = ascii === '' ? undefined : normalizeName(ascii);
  if (name === undefined || !name.includes('.')) return undefined;
  const labels = name.split('.');
  if (/^[0-9]+$/.test(labels[labels.length - 1]) || labels.some((l) => l.startsWith('-') || l.endsWith('-'))) return undefined;
  return name;
}

/** DnsResult as node:dns's resolve() would answer or reject, the way mailauth's resolver is called. */
function resolverOver(dns: Pick<DnsLookups, 'lookup'>, timeouts: string[]): MailauthResolver {
  return async (name, type) => {
    const what = `${type} ${name}`;
    if (!['A', 'AAAA', 'TXT', 'MX', 'PTR'].includes(type)) throw failure('ENOTIMP', `${what}: a type SPF does not ask`);
    let r: DnsResult;
    try {
      r = await dns.lookup(type as DnsType, name);
    } catch (err) {
      r = { kind: 'error', code: `a lookup threw: ${errorText(err)}` };
    }
    switch (r.kind) {
      case 'answer':
        if (type === 'TXT') return r.records.map((text) => [text]);
        if (type === 'MX') return r.records.map(mxRecord);
        return r.records;
      // Without spfResult: mailauth counts these as void lookups.
      case 'nxdomain':
        throw failure('ENOTFOUND');
      case 'nodata':
        throw failure('ENODATA');
      case 'timeout':
        timeouts.push(what);
        throw failure('ETIMEOUT', `no answer in time for ${what}`);
      case 'error':
        // A name the DNS layer will not ask (a macro expanded to characters outside letters,
        // digits, '-' and '_', or past 253 bytes) matches nothing, as a name that does not exist.
        if (r.code === 'BADNAME') return [];
        throw failure(`E${r.code}`, `${r.code} for ${what}`);
    }
  };
}

/** An error as node:dns's promises reject with; `text` marks it temperror for mailauth (any code but a void one). */
function failure(code: string, text?: string): Error {
  const err = new Error(text ?? code) as Error & { code: string; spfResult?: Evaluation };
  err.code = code;
  if (text !== undefined) err.spfResult = { error: 'temperror', text };
  return err;
}

/** `10 mail.example.com` → node:dns's MX record; RFC 7505's null MX `0 .` has no exchange, which mailauth skips. */
function mxRecord(record: string): { priority: number; exchange: string } {
  const space = record.indexOf(' ');
  const exchange = record.slice(space + 1);
  return { priority: Number(record.slice(0, space)), exchange: exchange === '.' ? '' : exchange };
}

/** One mechanism as the record spells it: `ip4:192.0.2.0/24`, `-all`, `mx (mail.example.com)`. */
function mechanismText(m: Evaluation): string {
  const q = m.qualifier && m.qualifier !== '+' ? m.qualifier : '';
  switch (m.type) {
    // mailauth names the current domain for `a`, not the mechanism's target.
    case 'a':
    case 'all':
      return `${q}${m.type}`;
    // The exchange or PTR name whose address matched.
    case 'mx':
    case 'ptr':
      return `${q}${m.type} (${m.val ?? ''})`;
    default:
      return `${q}${m.type ?? '?'}${m.val ? `:${m.val}` : ''}`;
  }
}

/** The detail: the matched mechanism, through the includes that led to it, or the error. */
function describe(trace: Trace, timeouts: string[], said: string, limits: { maxLookups: number; maxVoid: number }): string {
  const ended = trace.thrown ?? (trace.settled || undefined);
  if (ended?.type) {
    const chain: string[] = [];
    for (let m: Evaluation | undefined = ended; m && chain.length < 12; m = m.type === 'include' ? m.include : undefined) chain.push(mechanismText(m));
    return `matched ${chain.join(' > ')}`;
  }
  if (ended && !ended.error && ended.qualifier === '?') return 'no mechanism matched, neutral by default (RFC 7208 section 4.7)';
  const text = ended?.text ?? ended?.message;
  if (typeof text !== 'string') return said;
  if (text === 'Too many DNS requests') return `more than ${limits.maxLookups} DNS lookups (RFC 7208 section 4.6.4)`;
  if (text === 'Too many void DNS results') return `more than ${limits.maxVoid} DNS lookups found nothing (RFC 7208 section 4.6.4)`;
  if (text === 'DNS timeout') return timeouts.length > 0 ? `no answer in time for ${timeouts[0]}` : 'no DNS answer in time';
  return text.replace(/^no SPF records found for /, 'no SPF record at ');
}

/** `p`'s value, or 'late' if it has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | 'late'> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve('late'), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
