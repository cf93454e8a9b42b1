// HELO and reverse-DNS checks for weighted greylisting: does the client introduce itself as
// RFC 5321 asks (section 4.1.1.1: its fully qualified domain name, or an address literal when it
// has none), and does its address look like a mail server's (a PTR record whose name resolves
// back to the address, and is not a generic name an ISP gives every dial-up or dynamic line)?
// Each finding adds a weight (src/config/defaults.ts) to the client's score, as bley scores them.
// A lookup that times out or fails is "unknown": weight 0, neutral, never bad and never a crash,
// like the DNS lists' (src/weighted/dnslists.ts).

import { open } from 'node:fs/promises';
import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError, systemErrorText } from '../errors.js';
import { type DnsLookups, type DnsResult, normalizeName, reverseName, settled } from './dns.js';
import { unmapped } from './dnslists.js';

export type HeloVerdict =
  /** A name with an A or AAAA record. */
  | 'ok'
  /** An address literal that is the client's own address: allowed by RFC 5321, weight 0. */
  | 'literal'
  | 'empty'
  /** No dot, a single label, or not a host name at all (RFC 1123 section 2.1 letters, digits, hyphens). */
  | 'not-fqdn'
  /** A bare IP address, without the brackets an address literal has (RFC 5321 section 4.1.3). */
  | 'ip'
  /** An address literal that is not the client's address. */
  | 'foreign-literal'
  /** One of our own names or addresses: a client pretending to be us. */
  | 'ours'
  /** The name has neither an A nor an AAAA record. */
  | 'no-address'
  /** A lookup timed out or failed: neutral. */
  | 'unknown';

export type RdnsVerdict =
  /** A PTR name resolves back to the client's address and does not look generic. */
  | 'confirmed'
  /** No PTR record. */
  | 'missing'
  /** PTR names, but none resolves back to the client's address. */
  | 'unconfirmed'
  /**
   * The names look generic (dsl-192-0-2-1.pool.example): the confirmed ones all do (weight
   * DEFAULTS.rdnsGenericWeight), or none confirms and every one does (the unconfirmed weight
   * and the generic weight together).
   */
  | 'generic'
  /** A lookup timed out or failed, or the client is no address: neutral. */
  | 'unknown';

export interface HeloResult {
  check: 'helo';
  result: HeloVerdict;
  /** What the finding adds to the score: DEFAULTS.heloWeight when bad, 0 otherwise. */
  weight: number;
  /** One line for the log: what was asked and what it meant. */
  why: string;
}

export interface RdnsResult {
  check: 'rdns';
  result: RdnsVerdict;
  weight: number;
  why: string;
  /** The PTR name the verdict is about (confirmed or generic), if there is one. */
  name?: string;
}

/** HELO text as a log line shows it: quoted, control characters escaped, cut at 80 characters. */
function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** One form per address, whatever its spelling: `::FFFF:192.0.2.1`, `::ffff:c000:201` and `192.0.2.1` are the same. */
function canonical(address: string): string | undefined {
  return reverseName(unmapped(address));
}

function failure(result: DnsResult): string | undefined {
  if (result.kind === 'timeout') return 'no answer in time';
  if (result.kind === 'error') return `lookup failed (${result.code})`;
  return undefined;
}

/** RFC 1123 section 2.1 host name labels; a top-level label of digits only is an address, not a name. */
function isFqdn(name: string): boolean {
  const labels = name.split('.');
  if (labels.length < 2) return false;
  if (!labels.every((l) => /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/.test(l))) return false;
  return !/^[0-9]+$/.test(labels[labels.length - 1]);
}

/** Our names lower case without the final dot, our addresses in canonical form. */
function ourSet(ourNames: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const n of ourNames) {
    const address = net.isIP(n) ? canonical(n) : undefined;
    const name = address ?? normalizeName(n);
    if (name !== undefined) set.add(name);
  }
  return set;
}

/**
 * Judges the HELO/EHLO argument `helo` of a client at `clientIp`: its syntax first, then
 * whether the name has an address. `ourNames` are this server's names and addresses.
 *
 * An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, RFC 5321 section 4.1.3) is what
 * RFC 5321 section 4.1.1.1 tells a client without a meaningful name to send; a literal that is
 * the client's own address is therefore no finding (weight 0, verdict 'literal'), and the rDNS
 * check judges the address on its own, even when it is also one of ours (a client on this
 * host). A literal of any other address is a lie (bad), and a bare address without brackets
 * does not conform (bad) even when it is the client's.
 */
export async function heloCheck(dns: Pick<DnsLookups, 'a' | 'aaaa'>, helo: string, clientIp: string, ourNames: readonly string[]): Promise<HeloResult> {
  const text = typeof helo === 'string' ? helo.trim() : '';
  const shown = `HELO ${quote(text)}`;
  const bad = (result: HeloVerdict, why: string): HeloResult => ({ check: 'helo', result, weight: DEFAULTS.heloWeight, why: `${shown}: ${why}, weight ${DEFAULTS.heloWeight}` });
  if (text === '') return { check: 'helo', result: 'empty', weight: DEFAULTS.heloWeight, why: `HELO without a name, weight ${DEFAULTS.heloWeight}` };
  const ours = ourSet(ourNames);
  const client = canonical(clientIp);

  const literal = /^\[(.*)\]$/.exec(text);
  if (literal) {
    const inner = literal[1];
    const tagged = /^ipv6:(.*)$/i.exec(inner);
    const address = tagged ? (net.isIPv6(tagged[1]) ? tagged[1] : undefined) : net.isIPv4(inner) ? inner : undefined;
    if (address === undefined) return bad('not-fqdn', 'not an address literal ([192.0.2.1] or [IPv6:2001:db8::1])');
    const c = canonical(address);
    // The client's own address first: a client on this host (127.0.0.1) that says so is honest.
    if (c !== undefined && c === client) return { check: 'helo', result: 'literal', weight: 0, why: `${shown}: the client's own address literal` };
    if (c !== undefined && ours.has(c)) return bad('ours', 'our own address');
    return bad('foreign-literal', `an address literal that is not the client's address ${clientIp}`);
  }
  if (net.isIP(text)) {
    const c = canonical(text);
    if (c !== undefined && ours.has(c)) return bad('ours', 'our own address');
    return bad('ip', 'a bare IP address (an address literal is written in brackets)');
  }
  const name = normalizeName(text);
  if (name !== undefined && ours.has(name)) return bad('ours', 'our own name');
  if (name === undefined || !isFqdn(name)) return bad('not-fqdn', 'not a fully qualified domain name');

  const [a, aaaa] = await Promise.all([settled(() => dns.a(name)), settled(() => dns.aaaa(name))]);
  if (a.kind === 'answer' || aaaa.kind === 'answer') {
    const records = [...(a.kind === 'answer' ? a.records : []), ...(aaaa.kind === 'answer' ? aaaa.records : [])];
    return { check: 'helo', result: 'ok', weight: 0, why: `${shown}: resolves (${records.slice(0, 4).join(', ')}${records.length > 4 ? ', …' : ''})` };
  }
  const failed = failure(a) ?? failure(aaaa);
  if (failed !== undefined) return { check: 'helo', result: 'unknown', weight: 0, why: `${shown}: ${failed}, neutral` };
  return bad('no-address', a.kind === 'nxdomain' && aaaa.kind === 'nxdomain' ? 'no such name' : 'no A or AAAA record');
}

const WORDS = 'dynamic|dyn|dsl|adsl|vdsl|xdsl|dialup|dial-up|dial|pool|ppp|pppoe|cable|dhcp|client|host|broadband|customer|cust';
const NUMBERS = '[0-9]{1,3}(?:[-.][0-9]{1,3}){2,3}';

/**
 * Names that look generic whatever the client's address: one of the words ISPs put in the names
 * of dial-up, DSL, cable and DHCP lines next to three or four numbers, or eight hexadecimal
 * digits (an IPv4 address in hex). A pattern file given instead replaces these; that the name
 * carries the client's own address (looksGeneric) is checked either way.
 */
export const DEFAULT_GENERIC_PATTERNS: readonly RegExp[] = Object.freeze([
  new RegExp(`(?:^|[.-])(?:${WORDS})[-.]?${NUMBERS}(?:[.-]|$)`, 'i'),
  new RegExp(`(?:^|[.-])${NUMBERS}[-.](?:[a-z0-9-]+\\.)?(?:${WORDS})[0-9]*(?:[.-]|$)`, 'i'),
  new RegExp(`(?:^|[.-])(?:${WORDS})[-.]?[0-9a-f]{8}(?:[.-]|$)`, 'i'),
]);

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether `name` carries the address `ip`: its octets forwards or backwards, dashed, dotted, zero-padded and run together, or in hex; an IPv6 address's groups or nibbles. */
export function embedsAddress(name: string, ip: string): boolean {
  const address = unmapped(ip);
  const n = name.toLowerCase();
  if (net.isIPv4(address)) {
    const octets = address.split('.').map(Number);
    const hex = octets.map((o) => o.toString(16).padStart(2, '0')).join('');
    // Cheap tests first, for the common name that holds no trace of the address: each form
    // below holds the hex string, or every octet's digits.
    if (n.includes(hex) && new RegExp(`(?<![0-9a-f])${hex}(?![0-9a-f])`).test(n)) return true;
    if (!octets.every((o) => n.includes(String(o)))) return false;
    for (const order of [octets, [...octets].reverse()]) {
      const separated = order.map((o) => `0{0,2}${o}`).join('[-._]');
      const together = order.map((o) => String(o).padStart(3, '0')).join('');
      if (new RegExp(`(?<![0-9])(?:${separated}|${together})(?![0-9])`).test(n)) return true;
    }
    return false;
  }
  const reversed = net.isIPv6(address) ? reverseName(address) : undefined;
  if (reversed === undefined) return false;
  const nibbles = reversed.slice(0, -'.ip6.arpa'.length).split('.').reverse().join('');
  if (n.replace(/[^0-9a-f]/g, '').includes(nibbles)) return true;
  // The compressed form, colons as dashes: 2001-db8--25.dyn.example.
  const compressed = new URL(`http://[${address}]/`).hostname.slice(1, -1).replace(/:/g, '-');
  return new RegExp(`(?<![0-9a-f-])${escape(compressed)}(?![0-9a-f])`).test(n);
}

/** Whether a PTR name of `ip` looks like a dial-up or dynamic line's: it carries the address, or matches one of `patterns`. */
export function looksGeneric(name: string, ip: string, patterns: readonly RegExp[] = DEFAULT_GENERIC_PATTERNS): boolean {
  return embedsAddress(name, ip) || patterns.some((p) => {
    p.lastIndex = 0;
    return p.test(name);
  });
}

/** The most heloCheck and rdnsCheck weigh: what one that got no answer could have added. */
export const WORST_WEIGHT = {
  helo: DEFAULTS.heloWeight,
  rdns: Math.max(DEFAULTS.rdnsMissingWeight, DEFAULTS.rdnsGenericWeight, DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight),
} as const;

/**
 * Judges the client's reverse DNS: its PTR names (at most DEFAULTS.rdnsMaxNames), each looked
 * up forward (A for an IPv4 client, AAAA for IPv6) for the client's address — "forward-
 * confirmed" — and the names against `genericPatterns` and looksGeneric: the confirmed names
 * when one confirms, all of them when none does, so that a dial-up pool's PTR without a
 * matching A record weighs no less than one with it. A timeout or failure that leaves the
 * verdict open is unknown, weight 0; one that does not (another name confirms) is ignored.
 */
export async function rdnsCheck(
  dns: Pick<DnsLookups, 'a' | 'aaaa' | 'ptr'>,
  clientIp: string,
  genericPatterns: readonly RegExp[] = DEFAULT_GENERIC_PATTERNS,
): Promise<RdnsResult> {
  const address = typeof clientIp === 'string' ? unmapped(clientIp) : '';
  const client = net.isIP(address) ? canonical(address) : undefined;
  if (client === undefined) return { check: 'rdns', result: 'unknown', weight: 0, why: `rDNS of ${quote(String(clientIp))}: not an IP address, neutral` };
  const shown = `rDNS of ${address}`;
  const ptr = await settled(() => dns.ptr(address));
  if (ptr.kind === 'nxdomain' || ptr.kind === 'nodata') {
    return { check: 'rdns', result: 'missing', weight: DEFAULTS.rdnsMissingWeight, why: `${shown}: no PTR record, weight ${DEFAULTS.rdnsMissingWeight}` };
  }
  if (ptr.kind !== 'answer') return { check: 'rdns', result: 'unknown', weight: 0, why: `${shown}: ${failure(ptr)}, neutral` };

  const names = [...new Set(ptr.records.map((r) => normalizeName(r)).filter((r): r is string => r !== undefined))].slice(0, DEFAULTS.rdnsMaxNames);
  const forward = await Promise.all(names.map((name) => settled(() => (net.isIPv4(address) ? dns.a(name) : dns.aaaa(name)))));
  const confirmed = names.filter((_, i) => {
    const r = forward[i];
    return r.kind === 'answer' && r.records.some((a) => canonical(a) === client);
  });
  if (confirmed.length > 0) {
    const plain = confirmed.find((name) => !looksGeneric(name, address, genericPatterns));
    if (plain !== undefined) return { check: 'rdns', result: 'confirmed', weight: 0, why: `${shown}: ${plain}, forward-confirmed`, name: plain };
    const w = DEFAULTS.rdnsGenericWeight;
    return { check: 'rdns', result: 'generic', weight: w, why: `${shown}: ${confirmed[0]} looks generic (a dial-up or dynamic line), weight ${w}`, name: confirmed[0] };
  }
  const failed = forward.map(failure).find((f) => f !== undefined);
  if (failed !== undefined) return { check: 'rdns', result: 'unknown', weight: 0, why: `${shown}: looking up its PTR names: ${failed}, neutral` };
  const list = names.length > 0 ? names.slice(0, 3).join(', ') + (names.length > 3 ? ', …' : '') : 'no usable name';
  if (names.length > 0 && names.every((name) => looksGeneric(name, address, genericPatterns))) {
    const w = DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight;
    return { check: 'rdns', result: 'generic', weight: w, why: `${shown}: PTR ${list} does not resolve back to it and looks generic (a dial-up or dynamic line), weight ${w}`, name: names[0] };
  }
  const w = DEFAULTS.rdnsUnconfirmedWeight;
  return { check: 'rdns', result: 'unconfirmed', weight: w, why: `${shown}: PTR ${list} does not resolve back to it, weight ${w}` };
}

/** Lines of a pattern file beyond this are refused: each pattern is tried on every PTR name. */
const MAX_PATTERNS = 10_000;

/**
 * Reads a generic-rDNS pattern file: one regular expression (JavaScript syntax, matched case-
 * insensitively against the lower-case PTR name) a line; empty lines and lines starting with
 * `#` are skipped. A file that cannot be read, is larger than DEFAULTS.genericPatternsMaxBytes
 * or has a bad expression throws PfgreyError E_BAD_OPTION naming the file (and FILE:LINE).
 */
export async function loadGenericPatterns(file: string, maxBytes: number = DEFAULTS.genericPatternsMaxBytes): Promise<RegExp[]> {
  const fail = (why: string, cause?: unknown) => new PfgreyError('E_BAD_OPTION', `generic rDNS pattern file ${file}: ${why}`, { cause });
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw fail(systemErrorText(err), err);
  }
  let text: string;
  try {
    // Read at most maxBytes + 1 bytes, so that a huge file (or a device) is refused unread.
    const buf = Buffer.alloc(maxBytes + 1);
    let total = 0;
    for (;;) {
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, total, buf.length - total, null));
      } catch (err) {
        throw fail(systemErrorText(err), err);
      }
      if (n === 0) break;
      total += n;
      if (total > maxBytes) throw fail(`larger than ${maxBytes} bytes`);
    }
    text = buf.subarray(0, total).toString('utf8');
  } finally {
    await fh.close();
  }
  const patterns: RegExp[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    if (patterns.length >= MAX_PATTERNS) throw fail(`more than ${MAX_PATTERNS} patterns`);
    try {
      patterns.push(new RegExp(line, 'i'));
    } catch (err) {
      throw new PfgreyError('E_BAD_OPTION', `${file}:${i + 1}: bad regular expression ${quote(line)}: ${(err as Error).message}`, { cause: err });
    }
  }
  return patterns;
}
