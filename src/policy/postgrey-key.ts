// The greylisting triplet as postgrey 1.37 forms it, so that a database imported from postgrey
// keeps working: the same request gives the same key, byte for byte. What postgrey does was
// learnt from its source (/usr/sbin/postgrey on Debian) and checked against a running postgrey's
// Berkeley DB (test/policy-postgrey-key.test.ts does both again where postgrey is installed):
//
// - The triplet key is `lc "$net/$sender/$recipient"`: the client's network, the sender after
//   do_sender_substitutions, the recipient as Postfix sent it; with --privacy its SHA-1 in hex.
// - `lc` and every case-insensitive match in postgrey work on bytes and fold ASCII only: a
//   Latin-1 `É` in a sender stays `É` in the key (Perl without `use locale` or
//   `unicode_strings`). Values here are latin1 strings, one character per byte, as the policy
//   reader makes them, and are lower-cased the same way (asciiLower), never with toLowerCase.
// - The network is NetAddr::IP's text: a dotted quad for IPv4 (`192.0.2.0`), and for IPv6 all
//   eight groups in upper-case hex without leading zeros, never `::` (`2001:DB8:1:2:0:0:0:0`,
//   `2001:db8:1:2:0:0:0:0` once the key is lower-cased). With --lookup-by-host postgrey puts the
//   NetAddr::IP object itself into the key, whose text has the prefix length:
//   `192.0.2.77/32`, `2001:DB8:0:0:0:0:0:1/128`.
// - The auto-whitelist (postgrey_clients.db) key is NetAddr::IP's `addr()` of the client, not
//   Postfix's text: `192.0.2.77`, `2001:DB8:0:0:0:0:0:1` (upper case: it is not lower-cased),
//   and with --privacy the SHA-1 of that.
//
// Where pfgrey departs from postgrey, on purpose:
// - An IPv4-mapped client address (`::ffff:192.0.2.1`) is taken as the IPv4 address it maps.
//   Postfix itself never sends one (it reports such clients as plain IPv4), so no postgrey
//   database holds one; postgrey would treat it as IPv6 and, at the default /64, put every such
//   client into the one network `0:0:0:0:0:0:0:0`.
// - SRS senders are reduced to the original sender (normaliseSender, decodeSrs); postgrey 1.37
//   has no SRS handling. A triplet of an SRS sender imported from postgrey is therefore not
//   found again and is greylisted once more, once.
// - The X-Greylist date has a numeric zone (RFC 5322 §3.3); postgrey's strftime %Z writes a
//   zone name (`UTC`, `CET`), which RFC 5322 does not allow.

import { createHash } from 'node:crypto';
import { PfgreyError } from '../errors.js';
import { formatIPv4, parseIPv4, parseIPv6 } from '../blacklist/cidr.js';

// --- case ----------------------------------------------------------------------------------

/** Perl's `lc` on a byte string: A–Z become a–z, every other character (and byte) is kept. */
export function asciiLower(s: string): string {
  return /[A-Z]/.test(s) ? s.replace(/[A-Z]+/g, (m) => m.toLowerCase()) : s;
}

// --- sender --------------------------------------------------------------------------------

export interface SenderOptions {
  /**
   * Reduce SRS0/SRS1 addresses to the original sender before postgrey's substitutions
   * (default true). False gives exactly postgrey 1.37's sender.
   */
  srs?: boolean;
}

/** A BATV tag-val starts with ten of these (postgrey's test, case-sensitive as postgrey's is). */
const BATV_TAG = /^[0-9a-z]{10}/;

/**
 * The sender as postgrey 1.37's do_sender_substitutions leaves it, so that the mails of one
 * mailing list or one BATV-signing server make one triplet:
 * - no `@`: the address unchanged (the empty sender of a bounce stays empty);
 * - a local part `prvs=A=B` (BATV, lower-case `prvs=` only) becomes the part that is not the
 *   10-character tag: B if only A starts with ten [0-9a-z], A if only B does, and B (the
 *   standard order, prvs=tag-val=loc-core) when both or neither do. `prvs=` with other than
 *   three `=`-separated fields (Perl's split, which drops trailing empty fields) is kept;
 * - everything from the first `+` of the local part is dropped (extensions, VERP);
 * - every run of digits that is a word of its own (`\b\d+\b`, ASCII word characters, as Perl's
 *   on bytes and JavaScript's without the u flag both read \b) becomes `#`;
 * - the domain is kept as it is (the key is lower-cased as a whole).
 * Before all of that, unless `srs: false`, an SRS0 or SRS1 address becomes its original sender
 * (decodeSrs).
 */
export function normaliseSender(addr: string, options: SenderOptions = {}): string {
  if (options.srs !== false) {
    // A forwarder that rewrites an already rewritten address without SRS1 nests SRS0s; a few
    // levels are undone, and the loop is bounded whatever the address.
    for (let i = 0; i < 8; i++) {
      const orig = decodeSrs(addr);
      if (orig === undefined) break;
      addr = orig;
    }
  }
  return postgreySenderSubstitutions(addr);
}

function postgreySenderSubstitutions(addr: string): string {
  const at = addr.indexOf('@');
  if (at < 0) return addr;
  let user = addr.slice(0, at);
  const domain = addr.slice(at + 1);
  if (user.startsWith('prvs=')) {
    const a = perlSplit(user, '=');
    if (a.length === 3) {
      const tagged1 = BATV_TAG.test(a[1]!);
      const tagged2 = BATV_TAG.test(a[2]!);
      user = tagged2 && !tagged1 ? a[1]! : a[2]!;
    }
  }
  // Perl's `.` stops at a line feed only; `[^\n]` says the same in JavaScript.
  user = user.replace(/\+[^\n]*/, '');
  user = user.replace(/\b\d+\b/g, '#');
  return `${user}@${domain}`;
}

/** Perl's split(/=/, $s): like String#split, but trailing empty fields are dropped. */
function perlSplit(s: string, sep: string): string[] {
  const a = s.split(sep);
  while (a.length > 0 && a[a.length - 1] === '') a.pop();
  return a;
}

// SRS (the Sender Rewriting Scheme of libsrs2, Mail::SRS, postsrsd) rewrites the sender of a
// forwarded mail so that SPF passes at the next hop:
//   SRS0=HHHH=TT=orig-domain=orig-local@forwarder
//   SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@second-forwarder
// HHHH is a base64 hash, TT a base32 day stamp; the separator after SRS0/SRS1 may be `=`, `+`
// or `-`, and SRS1 keeps the SRS0 separator after its `=`. The hash and the stamp change from
// day to day (and between forwarders), so a retry after midnight, or through another forwarder
// of the same chain, would make a new triplet and be greylisted again. The key takes the
// original sender instead: the client network already says which forwarder sent the mail, so
// the forwarder's domain adds nothing, and SRS1 chains of one original sender meet in one key.
// Nothing is given away: a spammer who writes an SRS address gets the triplet of the sender he
// names, which he could have written plainly; he still has to come back after the delay.
const SRS0 = /^srs0[=+-]([A-Za-z0-9+/]+)=([A-Za-z0-9]{2})=([^=@]+)=([^@]+)$/i;
const SRS1 = /^srs1[=+-]([A-Za-z0-9+/]+)=([^=@]+)=([=+-][^@]+)$/i;

/**
 * The original sender of an SRS0 or SRS1 address, one level undone (`orig-local@orig-domain`;
 * for SRS1, the SRS0 address it holds), or undefined when `addr` is not SRS.
 */
export function decodeSrs(addr: string): string | undefined {
  const at = addr.lastIndexOf('@');
  if (at <= 0 || at === addr.length - 1) return undefined;
  const local = addr.slice(0, at);
  const zero = SRS0.exec(local);
  if (zero) return `${zero[4]}@${zero[3]}`;
  const one = SRS1.exec(local);
  if (one) return `SRS0${one[3]}@${one[2]}`;
  return undefined;
}

// --- client --------------------------------------------------------------------------------

/** A client address: IPv4 (a plain one or an IPv4-mapped IPv6 one), or IPv6. */
export type ClientAddress =
  | { family: 4; v4: number; mapped?: bigint }
  | { family: 6; v6: bigint };

const MAPPED_PREFIX = 0xffffn;

/**
 * Postfix's client_address: a dotted quad, or an IPv6 literal without zone. An IPv4-mapped
 * address is IPv4, with its IPv6 value kept in `mapped`. Undefined for anything else.
 */
export function parseClientAddress(s: string): ClientAddress | undefined {
  const v4 = parseIPv4(s);
  if (v4 !== undefined) return { family: 4, v4 };
  const v6 = parseIPv6(s);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === MAPPED_PREFIX) return { family: 4, v4: Number(v6 & 0xffffffffn), mapped: v6 };
  return { family: 6, v6 };
}

/** NetAddr::IP's text of an IPv6 address: eight upper-case hex groups, no `::`. */
export function netAddrIPv6(v6: bigint): string {
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((v6 >> shift) & 0xffffn).toString(16).toUpperCase());
  return groups.join(':');
}

export interface ClientNetOptions {
  /** --lookup-by-host: the whole address, as postgrey writes it (`192.0.2.77/32`). */
  byHost?: boolean;
  /** --ipv4cidr (default 24). */
  ipv4cidr?: number;
  /** --ipv6cidr (default 64). */
  ipv6cidr?: number;
}

function clientOf(ip: string): ClientAddress {
  const a = parseClientAddress(ip);
  if (a === undefined) throw new PfgreyError('E_BAD_ADDRESS', `client address ${JSON.stringify(ip.slice(0, 64))} is not an IP address`);
  return a;
}

function checkPrefix(bits: number, max: number, name: string): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new PfgreyError('E_BAD_OPTION', `--${name} ${bits}: expected 0 to ${max}`);
}

/**
 * postgrey's do_client_substitutions: the client's network at --ipv4cidr/--ipv6cidr, without
 * the prefix length (`192.0.2.0`, `2001:DB8:1:2:0:0:0:0`), or with --lookup-by-host the
 * address with its full prefix length (`192.0.2.77/32`, `2001:DB8:0:0:0:0:0:1/128`), as
 * postgrey's key holds them (postgreyKey lower-cases). Throws PfgreyError E_BAD_ADDRESS for
 * what is not an IP address, and E_BAD_OPTION for a prefix length out of range.
 */
export function clientNet(ip: string, options: ClientNetOptions = {}): string {
  const a = clientOf(ip);
  const v4bits = options.ipv4cidr ?? 24;
  const v6bits = options.ipv6cidr ?? 64;
  checkPrefix(v4bits, 32, 'ipv4cidr');
  checkPrefix(v6bits, 128, 'ipv6cidr');
  if (a.family === 4) {
    if (options.byHost) return `${formatIPv4(a.v4)}/32`;
    const size = 2 ** (32 - v4bits);
    return formatIPv4(a.v4 - (a.v4 % size));
  }
  if (options.byHost) return `${netAddrIPv6(a.v6)}/128`;
  const host = (1n << BigInt(128 - v6bits)) - 1n;
  return netAddrIPv6(a.v6 & ~host);
}

/**
 * The key of the client in postgrey's auto-whitelist (postgrey_clients.db): NetAddr::IP's text
 * of the address (`192.0.2.77`, `2001:DB8:0:0:0:0:0:1`), or its SHA-1 with `privacy`.
 * Throws PfgreyError E_BAD_ADDRESS for what is not an IP address.
 */
export function awlClientKey(ip: string, options: { privacy?: boolean } = {}): string {
  const a = clientOf(ip);
  const text = a.family === 4 ? formatIPv4(a.v4) : netAddrIPv6(a.v6);
  return options.privacy ? privateKey(text) : text;
}

// --- keys ----------------------------------------------------------------------------------

/**
 * postgrey's triplet key: `net/sender/recipient`, lower-cased as Perl's lc does (ASCII only).
 * `net` is clientNet's, `sender` normaliseSender's, `recipient` as Postfix sent it.
 */
export function postgreyKey(net: string, sender: string, recipient: string): string {
  return asciiLower(`${net}/${sender}/${recipient}`);
}

/**
 * --privacy: the SHA-1 in lower-case hex of the text's bytes (latin1, one byte per character),
 * as postgrey's Digest::SHA::sha1_hex of its byte string.
 */
export function privateKey(text: string): string {
  return createHash('sha1').update(text, 'latin1').digest('hex');
}

export interface TripletOptions extends ClientNetOptions, SenderOptions {
  /** --privacy: the key's SHA-1 instead of the key. */
  privacy?: boolean;
}

/**
 * The whole triplet key of a request, as postgrey looks it up: clientNet, normaliseSender,
 * postgreyKey and, with `privacy`, privateKey. Throws as clientNet does.
 */
export function tripletKey(req: { clientAddress: string; sender: string; recipient: string }, options: TripletOptions = {}): string {
  const key = postgreyKey(clientNet(req.clientAddress, options), normaliseSender(req.sender, options), req.recipient);
  return options.privacy ? privateKey(key) : key;
}

// --- X-Greylist header ---------------------------------------------------------------------

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number) => String(n).padStart(2, '0');

/**
 * An RFC 5322 date-time, `Thu, 03 Dec 2026 01:52:38 +0000`, in the zone `offsetMinutes` east
 * of UTC (default: this process's local zone at that instant, as postgrey uses localtime). The
 * day has two digits, as postgrey's strftime `%d` writes it; the zone is numeric, where
 * postgrey's `%Z` writes a name RFC 5322 does not allow.
 */
export function rfc5322Date(date: Date, offsetMinutes: number = -date.getTimezoneOffset()): string {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('rfc5322Date: invalid date');
  const off = Math.trunc(offsetMinutes);
  const t = new Date(ms + off * 60_000);
  const abs = Math.abs(off);
  const zone = `${off < 0 ? '-' : '+'}${pad2(Math.floor(abs / 60))}${pad2(abs % 60)}`;
  return `${DAYS[t.getUTCDay()]}, ${pad2(t.getUTCDate())} ${MONTHS[t.getUTCMonth()]} ${t.getUTCFullYear()} `
    + `${pad2(t.getUTCHours())}:${pad2(t.getUTCMinutes())}:${pad2(t.getUTCSeconds())} ${zone}`;
}

export interface HeaderValues {
  /** Seconds the triplet waited (%t); a fraction is dropped. */
  delaySeconds: number;
  /** %v. */
  version: string;
  /** %h. */
  hostname: string;
  /** %d, as rfc5322Date writes it. */
  date: Date;
  /** The zone of %d, minutes east of UTC; default the local zone. */
  zoneOffsetMinutes?: number;
}

/**
 * postgrey's --x-greylist-header text with its placeholders filled as postgrey fills them: the
 * first `%t`, then the first `%v`, the first `%d` and the first `%h`, each once (s/// without
 * /g), in that order, a later one also seeing what an earlier one put in. The values go in
 * as they are: `$&` or `$1` in a host name is not a replacement pattern here, as in Perl.
 */
export function xGreylistHeader(template: string, v: HeaderValues): string {
  const delay = String(Math.max(0, Math.floor(v.delaySeconds)));
  return template
    .replace('%t', () => delay)
    .replace('%v', () => v.version)
    .replace('%d', () => rfc5322Date(v.date, v.zoneOffsetMinutes))
    .replace('%h', () => v.hostname);
}

/**
 * The header for a first attempt that weighted greylisting let by without a delay (README,
 * "Weighted greylisting"): the --x-greylist-header template's field name (X-Greylist by
 * default), then why: `X-Greylist: not delayed by pfgrey-0.1.0 at mx.example.org, weighted
 * score 0 (nothing suspicious); Thu, 03 Dec 2026 01:52:38 +0000`. The reasons are check names,
 * list zones and verdict words: printable ASCII, cut to keep the header on one short line.
 */
export function weightedHeader(template: string, pass: { score: number; reasons: string }, v: Omit<HeaderValues, 'delaySeconds'>): string {
  const name = /^([!-9;-~]+):/.exec(template)?.[1] ?? 'X-Greylist';
  // eslint-disable-next-line no-control-regex
  const why = pass.reasons.replace(/[^\x20-\x7e]/g, '?');
  const cut = why.length > 200 ? `${why.slice(0, 200)}...` : why;
  return `${name}: not delayed by pfgrey-${v.version} at ${v.hostname}, weighted score ${pass.score} (${cut}); ${rfc5322Date(v.date, v.zoneOffsetMinutes)}`;
}

// --- one header per message ----------------------------------------------------------------

/**
 * postgrey's is_new_instance: the `instance` attribute (one value per message) of the last few
 * messages that got an X-Greylist header, so that a message with several recipients gets one.
 * postgrey keeps 10 (its comment says 20; its array has ten elements), the newest first, and a
 * value already there does not move. A request without `instance` (Exim) is always new.
 * postgrey fills its list with ten `0`s at the start, so an instance `0` is never new there;
 * Postfix's instances are never `0`, and this list starts empty. postgrey is one process: keep
 * one of these per server, not per connection.
 */
export class RecentInstances {
  private readonly seen: string[] = [];

  constructor(private readonly size = 10) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('RecentInstances: size must be a positive integer');
  }

  /** Whether this instance has not been seen among the last `size`; a new one is remembered. */
  isNew(instance: string | undefined): boolean {
    if (instance === undefined) return true;
    if (this.seen.includes(instance)) return false;
    this.seen.unshift(instance);
    if (this.seen.length > this.size) this.seen.pop();
    return true;
  }
}
