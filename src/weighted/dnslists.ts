// DNS lists for weighted greylisting: DNSBLs (block lists) and DNSWLs (allow lists), each a zone
// asked for an A record at the client's address written backwards in front of it (RFC 5782
// section 2.1 for IPv4, section 2.4 for IPv6), each with a weight that a listing adds to the
// client's score. A list that does not answer in the decision's budget, answers with an error,
// or answers with its own error codes is "unknown": weight 0, neutral, never bad and never a crash.

import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import { type DnsLookups, type DnsResult, normalizeName, reverseName, settled } from './dns.js';

export type ListKind = 'dnsbl' | 'dnswl';

export interface ListSpec {
  kind: ListKind;
  /** Lower case, without the final dot. */
  zone: string;
  /** Added to the score when the list lists the client. */
  weight: number;
  /**
   * The return codes that count as a listing. None: any answer in 127.0.0.0/8 but the lists'
   * error codes (isListError), not only 127.0.0.x, because allow lists answer in other /24s
   * (dnswl.org answers 127.0.CATEGORY.TRUST).
   */
  codes?: string[];
}

export interface ListResult {
  zone: string;
  kind: ListKind;
  /** 'unknown': no usable answer (timeout, error, the list's own error codes): neutral. */
  listed: boolean | 'unknown';
  /** The codes that made the listing (listed), or what the list answered (not listed, unknown). */
  codes: string[];
  /** The spec's weight when listed, 0 otherwise. */
  weight: number;
  /** One line for the log: what was asked and what it meant. */
  why: string;
}

/** Weights beyond this are typing errors, not policy. */
const MAX_WEIGHT = 1000;

/** Return codes a log line shows; the rest are counted. */
const SHOWN_CODES = 4;

/**
 * `ZONE[=WEIGHT][:CODE,CODE…]` as --dnsbl and --dnswl take it: `zen.spamhaus.org`,
 * `bl.example.org=2`, `zen.spamhaus.org=5:127.0.0.4,127.0.0.2`. A missing weight is the kind's
 * default (DEFAULTS.dnsblWeight, DEFAULTS.dnswlWeight); codes are 127.0.0.0/8 addresses, the
 * range RFC 5782 section 2.3 gives to DNSxL answers.
 */
export function parseListSpec(text: string, kind: ListKind): ListSpec {
  const option = `--${kind}`;
  const bad = (why: string) => new PfgreyError('E_BAD_OPTION', `${option} ${text}: ${why}`);
  if (typeof text !== 'string' || text.trim() === '') throw bad('empty (ZONE[=WEIGHT][:CODE,...])');
  const m = /^([^=:]*)(?:=([^:]*))?(?::(.*))?$/.exec(text.trim());
  if (!m) throw bad('not ZONE[=WEIGHT][:CODE,...]');
  const [, zoneText, weightText, codesText] = m;
  const zone = normalizeName(zoneText);
  if (zone === undefined || !zone.includes('.')) {
    throw bad(`bad zone "${zoneText}" (a DNS name such as zen.spamhaus.org: letters, digits, hyphens, at least two labels)`);
  }
  let weight: number = kind === 'dnsbl' ? DEFAULTS.dnsblWeight : DEFAULTS.dnswlWeight;
  if (weightText !== undefined) {
    if (!/^[+-]?[0-9]+(?:\.[0-9]+)?$/.test(weightText)) throw bad(`bad weight "${weightText}" (a number such as 2, -1 or 0.5)`);
    weight = Number(weightText);
    if (Math.abs(weight) > MAX_WEIGHT) throw bad(`weight ${weightText} is out of range (-${MAX_WEIGHT} to ${MAX_WEIGHT})`);
    if (Object.is(weight, -0)) weight = 0;
  }
  const spec: ListSpec = { kind, zone, weight };
  if (codesText !== undefined) {
    const codes = codesText.split(',').map((c) => c.trim());
    for (const c of codes) {
      if (!net.isIPv4(c) || !c.startsWith('127.')) throw bad(`bad return code "${c}" (an address in 127.0.0.0/8 such as 127.0.0.2)`);
    }
    spec.codes = [...new Set(codes)];
  }
  return spec;
}

/**
 * The IPv4 address an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, `::ffff:c000:201`, RFC 4291
 * section 2.5.5.2) stands for; any other address as given.
 */
export function unmapped(ip: string): string {
  if (!net.isIPv6(ip)) return ip;
  const forward = ipv6Nibbles(ip);
  if (forward === undefined || !forward.startsWith('00000000000000000000ffff')) return ip;
  const tail = forward.slice(24);
  return [0, 2, 4, 6].map((i) => parseInt(tail.slice(i, i + 2), 16)).join('.');
}

/** The 32 hexadecimal digits of an IPv6 address, in order. */
function ipv6Nibbles(ip: string): string | undefined {
  const reversed = reverseName(ip);
  if (reversed === undefined || !reversed.endsWith('.ip6.arpa')) return undefined;
  return reversed.slice(0, -'.ip6.arpa'.length).split('.').reverse().join('');
}

/**
 * The name to ask `zone` about `ip`: `192.0.2.2` → `2.2.0.192.ZONE`, an IPv6 address as its 32
 * nibbles backwards (RFC 5782 section 2.4), an IPv4-mapped IPv6 address as its IPv4 address;
 * undefined if `ip` is not an address.
 */
export function listQueryName(ip: string, zone: string): string | undefined {
  const address = unmapped(ip);
  if (net.isIPv4(address)) return `${address.split('.').reverse().join('.')}.${zone}`;
  const nibbles = net.isIPv6(address) ? ipv6Nibbles(address) : undefined;
  if (nibbles === undefined) return undefined;
  return `${[...nibbles].reverse().join('.')}.${zone}`;
}

/**
 * A list's answers that mean "this query failed", not "this address is listed": Spamhaus
 * answers 127.255.255.252 (typo in the zone), 127.255.255.254 (query through a public
 * resolver) and 127.255.255.255 (too many queries) for every address it is asked about (the
 * return codes in Spamhaus's DNSBL usage FAQ), and dnswl.org answers 127.0.0.255 to clients
 * over its query limit (its documentation of return codes). Counted as listings they would
 * block, or let through, every client; so they make the list's result unknown.
 */
function isListError(code: string): boolean {
  return code.startsWith('127.255.255.') || code === '127.0.0.255';
}

function inLoopbackNet(code: string): boolean {
  return net.isIPv4(code) && code.startsWith('127.');
}

/** What one list's A answer means for one client. */
function judge(spec: ListSpec, name: string, result: DnsResult): ListResult {
  const base = { zone: spec.zone, kind: spec.kind };
  const unknown = (codes: string[], why: string): ListResult => ({ ...base, listed: 'unknown', codes, weight: 0, why: `${name}: ${why}, neutral` });
  const notListed = (codes: string[], why: string): ListResult => ({ ...base, listed: false, codes, weight: 0, why: `${name}: ${why}` });
  switch (result.kind) {
    case 'nxdomain':
      return notListed([], 'not listed (no such name)');
    case 'nodata':
      return notListed([], 'not listed (no A record)');
    case 'timeout':
      return unknown([], 'no answer in time');
    case 'error':
      return unknown([], `lookup failed (${result.code})`);
    case 'answer':
      break;
  }
  const records = result.records.length;
  const answered = [...new Set(result.records.slice(0, DEFAULTS.dnslistMaxRecords))].sort();
  const list = (codes: readonly string[]) => shown(codes, records);
  const errors = answered.filter(isListError);
  if (errors.length > 0) return unknown(answered, `the list answered its error code ${list(errors)}`);
  // RFC 5782 section 2.3: DNSxL answers are in 127.0.0.0/8; anything else is a broken or
  // hijacked zone (a resolver that rewrites NXDOMAIN to an advertising page), not a listing.
  const codes = answered.filter(inLoopbackNet);
  if (codes.length === 0) return unknown(answered, `answered ${list(answered)}, outside 127.0.0.0/8, ignored`);
  const hits = spec.codes ? codes.filter((c) => spec.codes!.includes(c)) : codes;
  if (hits.length === 0) return notListed(codes, `answered ${list(codes)}, none of the selected codes ${spec.codes!.join(', ')}`);
  return { ...base, listed: true, codes: hits, weight: spec.weight, why: `${name}: listed (${list(hits)}), weight ${spec.weight}` };
}

/**
 * Return codes as a log line and `pfgrey explain` show them, bounded whatever a list answers:
 * the first few, how many more, and how many of the answer's `records` were looked at if not all.
 */
function shown(codes: readonly string[], records: number): string {
  let text = codes.slice(0, SHOWN_CODES).join(', ');
  if (codes.length > SHOWN_CODES) text += ` … and ${codes.length - SHOWN_CODES} more`;
  if (records > DEFAULTS.dnslistMaxRecords) text += `; the first ${DEFAULTS.dnslistMaxRecords} of ${records} records`;
  return text;
}

/**
 * Asks every list about `ip` at once through `dns` (a budget() view, so that all of them end by
 * the decision's deadline) and says, per list in the order of `specs`, whether it lists the
 * client and what that weighs. Never rejects: whatever goes wrong is an unknown, weight 0.
 */
export async function checkLists(dns: Pick<DnsLookups, 'a'>, ip: string, specs: readonly ListSpec[]): Promise<ListResult[]> {
  return Promise.all(
    specs.map(async (spec): Promise<ListResult> => {
      const name = listQueryName(ip, spec.zone);
      if (name === undefined) {
        return { zone: spec.zone, kind: spec.kind, listed: 'unknown', codes: [], weight: 0, why: `${spec.zone}: "${ip}" is not an IP address, neutral` };
      }
      return judge(spec, name, await settled(() => dns.a(name)));
    }),
  );
}
