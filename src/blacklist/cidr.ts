// Address arithmetic for blacklists. IPv4 addresses are plain numbers (0 … 2³²−1), never
// int32s: JavaScript's bitwise operators would turn 128.0.0.0 and above negative, so this
// module does its arithmetic with + − × and Math.floor. IPv6 appears only in config-port
// lines and the daemon's lookup, as bigints.

import { isIPv6 } from 'node:net';

/** Inclusive range of IPv4 addresses. */
export interface Range {
  start: number;
  end: number;
}

/** An IPv4 CIDR block; `addr` may have host bits set until it is turned into a range. */
export interface Cidr {
  addr: number;
  bits: number;
}

/** Inclusive range of IPv6 addresses. */
export interface Range6 {
  start: bigint;
  end: bigint;
}

export const V4_MAX = 0xffffffff;
const V6_MAX = (1n << 128n) - 1n;

/**
 * A dotted quad as inet_pton(3) takes it: four decimal parts of at most three digits, no
 * leading zeros, each at most 255. Returns undefined for anything else.
 */
export function parseIPv4(s: string): number | undefined {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a final '.' closes the last part
    if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return undefined; // leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return undefined;
    } else if (c === 46) {
      if (digits === 0 || ++parts > 4) return undefined;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return undefined;
    }
  }
  return parts === 4 ? value : undefined;
}

export function formatIPv4(n: number): string {
  return `${Math.floor(n / 0x1000000)}.${Math.floor(n / 0x10000) % 256}.${Math.floor(n / 0x100) % 256}.${n % 256}`;
}

/**
 * The address part of an inet_net_pton(3) network: one to four decimal octets, the missing
 * ones zero, so `10` is 10.0.0.0 and `192.168` is 192.168.0.0. Leading zeros are decimal, as
 * inet_net_pton reads them. Its rare hexadecimal form (`0x0a`) is not accepted.
 */
export function parseNetV4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length > 4) return undefined;
  let value = 0;
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    let octet = 0;
    if (p !== undefined) {
      if (!/^[0-9]+$/.test(p)) return undefined;
      octet = Number(p);
      if (octet > 255) return undefined;
    }
    value = value * 256 + octet;
  }
  return value;
}

/** `a.b.c.d/nn` with a strict dotted quad and 0 ≤ nn ≤ 32; host bits may be set. */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIPv4(s.slice(0, slash));
  const bits = parseBits(s.slice(slash + 1), 32);
  return addr === undefined || bits === undefined ? undefined : { addr, bits };
}

function parseBits(s: string, max: number): number | undefined {
  if (!/^[0-9]{1,3}$/.test(s)) return undefined;
  const bits = Number(s);
  return bits <= max ? bits : undefined;
}

/** The block's first and last address; host bits of `addr` are masked off, as spamd does. */
export function cidrToRange(c: Cidr): Range {
  const size = 2 ** (32 - c.bits);
  const start = c.addr - (c.addr % size);
  return { start, end: start + size - 1 };
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.addr)}/${c.bits}`;
}

/** Sorted, non-overlapping ranges; overlapping and adjacent ranges become one. */
export function mergeRanges<R extends Range | Range6>(ranges: readonly R[]): R[] {
  // Lists usually arrive sorted (spamd-setup sends them so); sorting those again is wasted.
  let inOrder = true;
  for (let i = 1; i < ranges.length && inOrder; i++) inOrder = ranges[i - 1]!.start <= ranges[i]!.start;
  const sorted = inOrder ? ranges : ranges.slice().sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: R[] = [];
  let cur: R | undefined;
  for (const r of sorted) {
    if (r.end < r.start) continue;
    // The address after cur's end, in cur's own type (number or bigint).
    if (cur !== undefined && r.start <= (typeof cur.end === 'bigint' ? cur.end + 1n : cur.end + 1)) {
      if (r.end > cur.end) cur.end = r.end;
    } else {
      cur = { start: r.start, end: r.end } as R;
      out.push(cur);
    }
  }
  return out;
}

/** Whether `ip` lies in one of `ranges` (sorted and merged, as mergeRanges leaves them): a bisection. */
export function inRanges<R extends Range | Range6>(ranges: readonly R[], ip: R['start']): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (ip < r.start) hi = mid - 1;
    else if (ip > r.end) lo = mid + 1;
    else return true;
  }
  return false;
}

/** The addresses in `black` and not in `white`, merged. */
export function subtractRanges(black: readonly Range[], white: readonly Range[]): Range[] {
  const b = mergeRanges(black);
  const w = mergeRanges(white);
  const out: Range[] = [];
  let j = 0;
  for (const r of b) {
    let start = r.start;
    while (j < w.length && w[j]!.end < start) j++;
    // Whitelist ranges that overlap r cut it; the last one may also overlap the next r.
    let k = j;
    while (k < w.length && w[k]!.start <= r.end) {
      const cut = w[k]!;
      if (cut.start > start) out.push({ start, end: cut.start - 1 });
      start = cut.end + 1;
      if (cut.end >= r.end) break;
      k++;
    }
    if (start <= r.end) out.push({ start, end: r.end });
  }
  return out;
}

/**
 * The fewest CIDR blocks that cover exactly these addresses, in ascending order: each range
 * is cut greedily into the largest aligned block that starts where the range does.
 */
export function rangesToCidrs(ranges: readonly Range[]): Cidr[] {
  const out: Cidr[] = [];
  for (const r of mergeRanges(ranges)) {
    let start = r.start;
    while (start <= r.end) {
      const align = start === 0 ? 32 : lowBit(start);
      const fit = log2Floor(r.end - start + 1);
      const k = Math.min(align, fit);
      out.push({ addr: start, bits: 32 - k });
      start += 2 ** k;
    }
  }
  return out;
}

/** Index of the lowest set bit of a non-zero uint32. */
function lowBit(n: number): number {
  return 31 - Math.clz32(n & -n);
}

/** ⌊log₂ n⌋ for 1 ≤ n ≤ 2³². */
function log2Floor(n: number): number {
  return n > V4_MAX ? 32 : 31 - Math.clz32(n);
}

// --- IPv6 ------------------------------------------------------------------------------------

/** An IPv6 literal (no zone index) as a 128-bit number. */
export function parseIPv6(s: string): bigint | undefined {
  if (s.includes('%') || !isIPv6(s)) return undefined;
  let groups: string[];
  const dbl = s.indexOf('::');
  const split = (part: string) => (part === '' ? [] : part.split(':'));
  let head = split(dbl < 0 ? s : s.slice(0, dbl));
  let tail = dbl < 0 ? [] : split(s.slice(dbl + 2));
  const last = (tail.length > 0 ? tail : head).at(-1);
  if (last !== undefined && last.includes('.')) {
    const v4 = parseIPv4(last);
    if (v4 === undefined) return undefined;
    const pair = [Math.floor(v4 / 0x10000).toString(16), (v4 % 0x10000).toString(16)];
    if (tail.length > 0) tail = [...tail.slice(0, -1), ...pair];
    else head = [...head.slice(0, -1), ...pair];
  }
  if (dbl < 0) groups = head;
  else groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  if (groups.length !== 8) return undefined;
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(parseInt(g, 16));
  return value;
}

/** `addr/nn` with an IPv6 literal and 0 ≤ nn ≤ 128, as an address range (host bits masked). */
export function parseCidr6(s: string): { range: Range6; bits: number } | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIPv6(s.slice(0, slash));
  const bits = parseBits(s.slice(slash + 1), 128);
  if (addr === undefined || bits === undefined) return undefined;
  const hostMask = (1n << BigInt(128 - bits)) - 1n;
  const start = addr & (V6_MAX ^ hostMask);
  return { range: { start, end: start | hostMask }, bits };
}
