// The daemon's blacklists: tag → message and address set, in creation order, as spamd keeps
// them. Each set is stored merged and sorted in typed arrays (an IPv4 address is one 32-bit
// word, an IPv6 address four) so a lookup is one binary search per list, however many ranges
// it has, and a list built in a worker thread moves to the main thread without being copied
// (bigints would be copied one by one, on the main thread: 1.5 s for 30 MB of IPv6 blocks).
//
// Lookup returns every list that holds the address, in creation order — spamd 1.19 and the
// man page; current spamd stops at the first.

import { checkInet, checkInet6, type ConfigLine } from './config-line.js';
import { cidrToRange, mergeRanges, parseIPv4, parseIPv6, type Range6 } from './cidr.js';

interface V4Set {
  starts: Uint32Array;
  ends: Uint32Array;
}

/** Range i is words 4i … 4i+3 of each array, most significant word first. */
interface V6Set {
  starts: Uint32Array;
  ends: Uint32Array;
}

/** A list ready to install: what a worker thread builds and hands back (see list-worker.ts). */
export interface List {
  tag: string;
  /** As received, with its quotes; undefined once the list is cleared. */
  message: string | undefined;
  v4: V4Set;
  v6: V6Set;
  /** Address blocks the list was given. */
  count: number;
}

const NO_V4: V4Set = { starts: new Uint32Array(0), ends: new Uint32Array(0) };
const NO_V6: V6Set = { starts: new Uint32Array(0), ends: new Uint32Array(0) };

/** The lists that hold an address, in creation order, each tag with its message (as stored: quoted). */
export interface BlackMatch {
  tags: string[];
  messages: string[];
}

export class BlackLists {
  private lists: List[] = [];

  /** A list line replaces the list of that tag (keeping its place) or appends one; a clear line empties it. */
  apply(line: ConfigLine): void {
    if (line.kind === 'clear') {
      const i = this.indexOf(line.tag);
      // spamd's sdl_del: an unknown tag stays unknown.
      if (i >= 0) this.lists[i] = { tag: line.tag, message: undefined, v4: NO_V4, v6: NO_V6, count: 0 };
      return;
    }
    this.install(build(line.tag, line.message, line.v4, line.v6));
  }

  /**
   * Sets list `tag` to `cidrs` (`a.b.c.d/nn` and `x::y/nn`). `message` is stored as the config
   * port carries it: quoted, with escapes. Throws PfgreyError E_CONFIG_LINE on a bad block and
   * then changes nothing.
   */
  replace(tag: string, message: string, cidrs: readonly string[]): void {
    const v4: string[] = [];
    const v6: string[] = [];
    for (const c of cidrs) (c.includes(':') ? v6 : v4).push(c);
    this.install(build(tag, message, v4, v6));
  }

  remove(tag: string): void {
    const i = this.indexOf(tag);
    if (i >= 0) this.lists.splice(i, 1);
  }

  lookup(ip: string): BlackMatch | undefined {
    let v4 = parseIPv4(ip);
    let v6: bigint | undefined;
    if (v4 === undefined) {
      v6 = parseIPv6(ip);
      if (v6 === undefined) return undefined;
      // An IPv4-mapped address (::ffff:a.b.c.d, how a dual-stack socket names IPv4 peers).
      if (v6 >> 32n === 0xffffn) {
        v4 = Number(v6 & 0xffffffffn);
        v6 = undefined;
      }
    }
    const words6 = v6 === undefined ? undefined : toWords([v6]);
    let match: BlackMatch | undefined;
    for (const l of this.lists) {
      const hit = v4 !== undefined ? covers(l.v4.starts, l.v4.ends, v4) : covers6(l.v6, words6!);
      if (!hit) continue;
      match ??= { tags: [], messages: [] };
      match.tags.push(l.tag);
      match.messages.push(l.message!);
    }
    return match;
  }

  tags(): string[] {
    return this.lists.map((l) => l.tag);
  }

  /** The number of address blocks list `tag` was given; 0 when cleared or unknown. */
  count(tag: string): number {
    const i = this.indexOf(tag);
    return i >= 0 ? this.lists[i]!.count : 0;
  }

  private indexOf(tag: string): number {
    return this.lists.findIndex((l) => l.tag === tag);
  }

  /** The new list is complete before it replaces the old one, so a lookup sees one or the other. */
  install(list: List): void {
    const i = this.indexOf(list.tag);
    if (i >= 0) this.lists[i] = list;
    else this.lists.push(list);
  }
}

export function build(tag: string, message: string, v4: readonly string[], v6: readonly string[]): List {
  const merged = mergeRanges(v4.map((t) => cidrToRange(checkInet(t))));
  const set4: V4Set = { starts: new Uint32Array(merged.length), ends: new Uint32Array(merged.length) };
  merged.forEach((r, i) => {
    set4.starts[i] = r.start;
    set4.ends[i] = r.end;
  });
  const merged6 = mergeRanges6(v6.map(checkInet6));
  return {
    tag, message, v4: set4,
    v6: { starts: toWords(merged6.map((r) => r.start)), ends: toWords(merged6.map((r) => r.end)) },
    count: v4.length + v6.length,
  };
}

function mergeRanges6(ranges: Range6[]): Range6[] {
  const sorted = ranges.slice().sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Range6[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last !== undefined && r.start <= last.end + 1n) {
      if (r.end > last.end) last.end = r.end;
    } else {
      out.push({ start: r.start, end: r.end });
    }
  }
  return out;
}

/** 128-bit numbers as four 32-bit words each, most significant first. */
function toWords(values: readonly bigint[]): Uint32Array {
  const out = new Uint32Array(values.length * 4);
  values.forEach((v, i) => {
    out[4 * i] = Number(v >> 96n);
    out[4 * i + 1] = Number(BigInt.asUintN(32, v >> 64n));
    out[4 * i + 2] = Number(BigInt.asUintN(32, v >> 32n));
    out[4 * i + 3] = Number(BigInt.asUintN(32, v));
  });
  return out;
}

/** Compares the address at words `at` … `at`+3 of `a` with the one in `ip` (four words). */
function compare6(a: Uint32Array, at: number, ip: Uint32Array): number {
  for (let k = 0; k < 4; k++) {
    const d = a[at + k]! - ip[k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** covers() for a set of IPv6 ranges. */
function covers6(set: V6Set, ip: Uint32Array): boolean {
  let lo = 0;
  let hi = set.starts.length / 4 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (compare6(set.starts, 4 * mid, ip) <= 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return hi >= 0 && compare6(set.ends, 4 * hi, ip) >= 0;
}

/** Whether the last range starting at or below `ip` reaches it. */
function covers(starts: Uint32Array, ends: Uint32Array, ip: number): boolean {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= ip) lo = mid + 1;
    else hi = mid - 1;
  }
  return hi >= 0 && ends[hi]! >= ip;
}
