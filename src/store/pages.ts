// Reads greylist entries straight out of a damaged database's pages, without SQLite.
//
// salvageEntries (sqlite.ts) reads what it can through SQL, which needs page 1 (the header and
// sqlite_schema) and the root page of `entries`: when either is damaged SQLite cannot find the
// table at all and nothing is read, although every other page still holds its rows. The
// README promises that a bad page costs only the entries on it, so this module finds the rows
// the way SQLite's file format lays them out (https://www.sqlite.org/fileformat2.html):
//
// - `entries` is a WITHOUT ROWID table, stored as an index b-tree. Its leaf pages (type 0x0A)
//   and interior pages (type 0x02) both hold whole records (an index b-tree is a B-tree, not a
//   B+tree: each row lives in exactly one cell, interior or leaf). So every page is tried as an
//   index b-tree page, wherever it sits in the tree and whether or not anything still points
//   to it.
// - A cell counts only when it decodes as a record of exactly six columns: a non-empty TEXT
//   key and five integers, the shape of `entries`. sqlite_schema (a table b-tree), freelist
//   garbage and other programs' tables yield nothing.
// - A WAL file beside the database holds the newest version of the pages it names; its
//   committed frames (checksums and salts verified, up to the last commit) replace the main
//   file's copies, as SQLite itself would read them.
//
// Everything is bounded by the file: cells per page by the page size, varints by nine bytes,
// overflow chains by the payload size they must carry and a set of pages already visited,
// records by MAX_PAYLOAD. Garbage never throws: a page that does not parse is skipped. The main
// file is read a chunk at a time, never whole; what stays in memory is one chunk, the WAL's
// page index, and one entry per key found.

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Entry } from './types.js';

const MIN_PAGE = 512;
const MAX_PAGE = 65_536;

/** Bytes read from the main file per read call: 256 pages of 4 KiB. */
const CHUNK_BYTES = 1 << 20;

/**
 * Largest record accepted. A key is at most four SMTP arguments of 1,023 bytes each (every
 * 8-bit byte two in UTF-8), far below this; a larger payload size is garbage, and the cap
 * bounds the overflow chain followed for one cell.
 */
const MAX_PAYLOAD = 1 << 20;

/** Page size guessing reads at most this many windows of GUESS_WINDOW bytes, spread over the file. */
const GUESS_WINDOWS = 16;
const GUESS_WINDOW = 1 << 20;

const WAL_HEADER = 32;
const WAL_FRAME_HEADER = 24;
/** The WAL's magic number; its lowest bit says the checksums read words big-endian. */
const WAL_MAGIC = 0x377f0682;
const WAL_VERSION = 3_007_000;

const LEAF = 0x0a;
const INTERIOR = 0x02;

export type TextEncoding = 'utf8' | 'utf16le' | 'utf16be';

/** What a database header (the first 100 bytes of page 1) tells, when it is intact. */
export interface DbHeader {
  pageSize: number;
  /** Bytes at the end of each page that hold no b-tree data (an extension's, usually 0). */
  reserved: number;
  encoding: TextEncoding;
  userVersion: number;
}

export interface PageScan {
  /** One entry per key, chosen as `preferred` says. */
  entries: Entry[];
  /** The page size used; undefined when no size made any page parse. */
  pageSize: number | undefined;
  /** Where the page size came from. */
  pageSizeFrom: 'header' | 'wal' | 'guess' | 'none';
  /** PRAGMA user_version from an intact header; undefined when page 1 is damaged. */
  userVersion: number | undefined;
  /** Committed WAL frames whose pages replaced the main file's. */
  walPages: number;
}

// --- bytes ------------------------------------------------------------------------------------

/** Random access to a file's bytes; a short result means the end of the file. */
interface Bytes {
  readonly size: number;
  read(pos: number, len: number): Promise<Uint8Array>;
}

function memoryBytes(buf: Uint8Array): Bytes {
  return {
    size: buf.length,
    read: (pos, len) => Promise.resolve(buf.subarray(Math.min(pos, buf.length), Math.min(pos + len, buf.length))),
  };
}

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const u16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const u32 = (b: Uint8Array, at: number): number => ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;

// --- varints and records ----------------------------------------------------------------------

/**
 * The SQLite varint at `at` (one to nine bytes, big-endian; the first eight carry 7 bits each
 * with the high bit saying "more", the ninth all 8). Undefined when it runs past `end` or its
 * value is not a safe integer (a 64-bit value no size or serial type of ours can be).
 */
export function readVarint(b: Uint8Array, at: number, end = b.length): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    if (at + i >= end) return undefined;
    const byte = b[at + i]!;
    if (i === 8) {
      value = value * 256 + byte;
    } else {
      value = value * 128 + (byte & 0x7f);
      if ((byte & 0x80) === 0) return Number.isSafeInteger(value) ? { value, next: at + i + 1 } : undefined;
    }
  }
  return Number.isSafeInteger(value) ? { value, next: at + 9 } : undefined;
}

/** Bytes of a serial type's value, for the integer types `entries` uses; undefined for any other. */
function intSize(serialType: number): number | undefined {
  switch (serialType) {
    case 1: case 2: case 3: case 4: return serialType;
    case 5: return 6;
    case 6: return 8;
    case 8: case 9: return 0; // the constants 0 and 1 (file format 4)
    default: return undefined; // NULL, a float, a blob, text, or reserved
  }
}

function readInt(b: Uint8Array, at: number, serialType: number): number | undefined {
  switch (serialType) {
    case 8: return 0;
    case 9: return 1;
    case 6: {
      const v = view(b).getBigInt64(at);
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
    }
    default: {
      // 1 to 6 bytes, two's complement, big-endian.
      const n = intSize(serialType)!;
      let v = b[at]! & 0x80 ? -1 : 0;
      for (let i = 0; i < n; i++) v = v * 256 + b[at + i]!;
      return v;
    }
  }
}

function decodeText(b: Uint8Array, encoding: TextEncoding): string {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  // Buffer's UTF-8 decoding is V8's, the same that turns node-sqlite3's sqlite3_column_text
  // bytes into a string (invalid sequences become U+FFFD alike), so a key read here equals
  // the key SQL would have returned. pfgrey's keys are byte strings (see src/grey/entry.ts)
  // bound as UTF-8 text, so they always decode back exactly.
  if (encoding === 'utf8') return buf.toString('utf8');
  if (encoding === 'utf16le') return buf.toString('utf16le');
  const swapped = Buffer.from(buf.subarray(0, buf.length & ~1));
  return swapped.swap16().toString('utf16le');
}

/**
 * The entry a record holds, when the record is exactly the shape of `entries`: six columns, a
 * non-empty TEXT key, then first, pass, expire, bcount, pcount as integers (NOT NULL), with the
 * header and body sizes adding up to the payload exactly. Anything else is undefined.
 */
export function decodeEntry(payload: Uint8Array, encoding: TextEncoding = 'utf8'): Entry | undefined {
  const head = readVarint(payload, 0);
  if (!head || head.value > payload.length || head.value < head.next + 6) return undefined;
  const types: number[] = [];
  let at = head.next;
  while (at < head.value) {
    if (types.length === 6) return undefined;
    const t = readVarint(payload, at, head.value);
    if (!t) return undefined;
    types.push(t.value);
    at = t.next;
  }
  if (types.length !== 6) return undefined;
  const keyType = types[0]!;
  if (keyType < 13 || keyType % 2 === 0) return undefined;
  const keyLen = (keyType - 13) / 2;
  if (keyLen === 0) return undefined;
  let body = keyLen;
  for (let i = 1; i < 6; i++) {
    const n = intSize(types[i]!);
    if (n === undefined) return undefined;
    body += n;
  }
  if (head.value + body !== payload.length) return undefined;
  at = head.value;
  const key = decodeText(payload.subarray(at, at + keyLen), encoding);
  if (key === '') return undefined;
  at += keyLen;
  const nums: number[] = [];
  for (let i = 1; i < 6; i++) {
    const v = readInt(payload, at, types[i]!);
    if (v === undefined) return undefined;
    nums.push(v);
    at += intSize(types[i]!)!;
  }
  const [first, pass, expire, bcount, pcount] = nums as [number, number, number, number, number];
  return { key, first, pass, expire, bcount, pcount };
}

// --- b-tree pages -----------------------------------------------------------------------------

/**
 * Bytes of an index b-tree payload of `size` bytes stored on the page itself, for usable page
 * size `usable`; the rest goes to overflow pages. The formula of "B-tree Pages" in the file
 * format page: X = ((U-12)*64/255)-23, M = ((U-12)*32/255)-23, K = M+((P-M)%(U-4)).
 */
export function localPayloadSize(size: number, usable: number): number {
  const x = Math.floor(((usable - 12) * 64) / 255) - 23;
  if (size <= x) return size;
  const m = Math.floor(((usable - 12) * 32) / 255) - 23;
  const k = m + ((size - m) % (usable - 4));
  return k <= x ? k : m;
}

export interface IndexCell {
  /** The whole payload's size. */
  size: number;
  /** The part stored on the page. */
  local: Uint8Array;
  /** The first overflow page; 0 when the payload is all local. */
  overflow: number;
}

/**
 * The cells of `page` read as an index b-tree page (leaf 0x0A or interior 0x02, header at
 * offset 0: page 1, whose header follows the file header, holds sqlite_schema and is never
 * one), or undefined when the page header, the cell pointer array or any cell is out of place.
 */
export function indexPageCells(page: Uint8Array, usable: number): IndexCell[] | undefined {
  if (page.length < usable || usable < 480) return undefined;
  const type = page[0];
  if (type !== LEAF && type !== INTERIOR) return undefined;
  const headerSize = type === LEAF ? 8 : 12;
  const count = u16(page, 3);
  const contentStart = u16(page, 5) || 65_536;
  const firstFree = u16(page, 1);
  // SQLite's own bound on cells per page (MX_CELL in btreeInt.h): a cell takes at least 6 bytes.
  if (count > Math.floor((usable - 8) / 6)) return undefined;
  const pointersEnd = headerSize + 2 * count;
  if (pointersEnd > usable || (count > 0 && (contentStart < pointersEnd || contentStart > usable))) return undefined;
  if (firstFree !== 0 && (firstFree < pointersEnd || firstFree > usable - 4)) return undefined;
  if (type === INTERIOR && u32(page, 8) < 2) return undefined;
  const cells: IndexCell[] = [];
  for (let i = 0; i < count; i++) {
    const at = u16(page, headerSize + 2 * i);
    if (at < contentStart || at >= usable) return undefined;
    let p = at;
    if (type === INTERIOR) {
      if (p + 4 > usable || u32(page, p) < 2) return undefined;
      p += 4;
    }
    const size = readVarint(page, p, usable);
    if (!size || size.value < 8 || size.value > MAX_PAYLOAD) return undefined;
    const local = localPayloadSize(size.value, usable);
    const end = size.next + local;
    const overflow = local < size.value ? (end + 4 <= usable ? u32(page, end) : -1) : 0;
    if (end > usable || overflow < 0 || (local < size.value && overflow < 2)) return undefined;
    cells.push({ size: size.value, local: page.subarray(size.next, end), overflow });
  }
  return cells;
}

// --- the WAL ----------------------------------------------------------------------------------

interface Wal {
  pageSize: number;
  /** Page number → byte offset of its newest committed frame's page data, and that frame's number. */
  pages: Map<number, { at: number; frame: number }>;
  /** The database's size in pages after the last commit. */
  dbPages: number;
}

/** SQLite's WAL checksum ("Checksum Algorithm" in the file format page), over 8-byte steps. */
function walChecksum(b: Uint8Array, start: number, end: number, bigEndian: boolean, s: [number, number]): [number, number] {
  const v = view(b);
  let [s0, s1] = s;
  for (let i = start; i + 8 <= end; i += 8) {
    s0 = (s0 + v.getUint32(i, !bigEndian) + s1) >>> 0;
    s1 = (s1 + v.getUint32(i + 4, !bigEndian) + s0) >>> 0;
  }
  return [s0, s1];
}

/**
 * The committed frames of a WAL, as SQLite recovers them: frames are read while their salts
 * match the header's and their running checksum holds; the pages of frames up to the last
 * commit frame count (a later frame for a page wins), anything after it was never committed.
 */
async function readWal(bytes: Bytes): Promise<Wal | undefined> {
  const header = await bytes.read(0, WAL_HEADER);
  if (header.length < WAL_HEADER) return undefined;
  const magic = u32(header, 0);
  if ((magic & ~1) !== WAL_MAGIC || u32(header, 4) !== WAL_VERSION) return undefined;
  const bigEndian = (magic & 1) === 1;
  const pageSize = u32(header, 8) === 1 ? MAX_PAGE : u32(header, 8);
  if (!validPageSize(pageSize)) return undefined;
  let sum = walChecksum(header, 0, 24, bigEndian, [0, 0]);
  if (sum[0] !== u32(header, 24) || sum[1] !== u32(header, 28)) return undefined;
  const salt1 = u32(header, 16);
  const salt2 = u32(header, 20);
  const frameSize = WAL_FRAME_HEADER + pageSize;
  const perRead = Math.max(1, Math.floor(CHUNK_BYTES / frameSize));
  const pages = new Map<number, { at: number; frame: number }>();
  const uncommitted = new Map<number, { at: number; frame: number }>();
  let dbPages = 0;
  let frame = 0;
  for (let pos = WAL_HEADER; pos + frameSize <= bytes.size; pos += perRead * frameSize) {
    const chunk = await bytes.read(pos, perRead * frameSize);
    for (let off = 0; off + frameSize <= chunk.length; off += frameSize) {
      const pgno = u32(chunk, off);
      if (pgno === 0 || u32(chunk, off + 8) !== salt1 || u32(chunk, off + 12) !== salt2) return done();
      sum = walChecksum(chunk, off, off + 8, bigEndian, sum);
      sum = walChecksum(chunk, off + WAL_FRAME_HEADER, off + frameSize, bigEndian, sum);
      if (sum[0] !== u32(chunk, off + 16) || sum[1] !== u32(chunk, off + 20)) return done();
      frame += 1;
      uncommitted.set(pgno, { at: pos + off + WAL_FRAME_HEADER, frame });
      const commitSize = u32(chunk, off + 4);
      if (commitSize !== 0) {
        for (const [n, f] of uncommitted) pages.set(n, f);
        uncommitted.clear();
        dbPages = commitSize;
      }
    }
    if (chunk.length < perRead * frameSize) break;
  }
  return done();

  function done(): Wal | undefined {
    if (dbPages === 0) return undefined;
    // Pages past the committed size were cut off by that commit.
    for (const n of [...pages.keys()]) if (n > dbPages) pages.delete(n);
    return { pageSize, pages, dbPages };
  }
}

// --- the database header and the page size ----------------------------------------------------

function validPageSize(n: number): boolean {
  return n >= MIN_PAGE && n <= MAX_PAGE && (n & (n - 1)) === 0;
}

/** The header fields this reader needs, when the first 100 bytes look like an intact header. */
export function readHeader(b: Uint8Array): DbHeader | undefined {
  if (b.length < 100 || Buffer.from(b.buffer, b.byteOffset, 16).toString('latin1') !== 'SQLite format 3\0') return undefined;
  const pageSize = u16(b, 16) === 1 ? MAX_PAGE : u16(b, 16);
  const reserved = b[20]!;
  // Write and read versions 1 (rollback) or 2 (WAL); the payload fractions are fixed at 64, 32, 32.
  if (!validPageSize(pageSize) || pageSize - reserved < 480) return undefined;
  if (![1, 2].includes(b[18]!) || ![1, 2].includes(b[19]!) || b[21] !== 64 || b[22] !== 32 || b[23] !== 32) return undefined;
  const enc = u32(b, 56);
  if (enc > 3) return undefined;
  const encoding: TextEncoding = enc === 2 ? 'utf16le' : enc === 3 ? 'utf16be' : 'utf8';
  return { pageSize, reserved, encoding, userVersion: view(b).getInt32(60) };
}

/** Pages under `pageSize` in `window` (which starts at file offset `pos`) that hold at least one whole entry. */
function pagesParsing(window: Uint8Array, pos: number, pageSize: number): number {
  let n = 0;
  for (let off = 0; off + pageSize <= window.length; off += pageSize) {
    if (pos + off === 0) continue; // page 1
    const cells = indexPageCells(window.subarray(off, off + pageSize), pageSize);
    if (cells?.some((c) => c.overflow === 0 && decodeEntry(c.local) !== undefined)) n++;
  }
  return n;
}

/**
 * The page size under which the most pages parse, for a file whose header is gone. A wrong
 * size loses: a smaller one cuts pages so their cell pointers point past the end, a larger one
 * parses only every second (fourth…) page. A sample of windows spread over the file decides.
 */
async function guessPageSize(bytes: Bytes): Promise<number | undefined> {
  const windows = Math.min(GUESS_WINDOWS, Math.ceil(bytes.size / GUESS_WINDOW));
  const scores = new Map<number, number>();
  for (let w = 0; w < windows; w++) {
    // Window starts are multiples of the largest page size, so they are page starts under every size.
    const pos = Math.floor((w * bytes.size) / windows / MAX_PAGE) * MAX_PAGE;
    const window = await bytes.read(pos, GUESS_WINDOW).catch(() => new Uint8Array(0));
    for (let size = MIN_PAGE; size <= MAX_PAGE; size *= 2) scores.set(size, (scores.get(size) ?? 0) + pagesParsing(window, pos, size));
  }
  let best: number | undefined;
  for (const [size, score] of scores) if (score > 0 && (best === undefined || score > scores.get(best)!)) best = size;
  return best;
}

// --- the scan ---------------------------------------------------------------------------------

interface Found {
  entry: Entry;
  /** The WAL frame the row's page came from; 0 for the main file. */
  frame: number;
}

/**
 * Whether `a` is the copy of a key to keep over `b`. Pages that were freed keep their old
 * rows (secure_delete is off), in the main file as in the WAL, so a key can turn up more than
 * once. The copy from the newest WAL frame is what the database said last. Between copies of
 * equal standing, the larger expire is taken as the later write: the daemon's updates never
 * move an expiry back (src/grey/rules.ts; only `pfgrey db -a` making an entry TRAPPED or a
 * SPAMTRAP does, and then the older copy may come back). Then the larger first (a key deleted
 * and seen again starts over later); a GREY hit leaves both and only moves pass and bcount
 * forward, so those come next. Comparing every field also makes the choice independent of the
 * order the pages were read in.
 */
function preferred(a: Found, b: Found): boolean {
  if (a.frame !== b.frame) return a.frame > b.frame;
  const x = a.entry;
  const y = b.entry;
  for (const k of ['expire', 'first', 'pass', 'bcount', 'pcount'] as const) if (x[k] !== y[k]) return x[k] > y[k];
  return false;
}

class Scanner {
  private readonly usable: number;
  private readonly found = new Map<string, Found>();
  /**
   * Overflow pages the scan may still read. A sound file has each overflow page in one chain,
   * read once (twice where the WAL has a newer copy of its cell); a hostile one can point
   * thousands of cells at one long chain, and without this bound the scan would read it once
   * per cell, for hours, while the daemon waits.
   */
  private overflowBudget: number;

  constructor(
    private readonly main: Bytes,
    private readonly wal: Bytes | undefined,
    private readonly walIndex: Wal | undefined,
    private readonly pageSize: number,
    reserved: number,
    private readonly encoding: TextEncoding,
    private readonly pageCount: number,
  ) {
    this.usable = pageSize - reserved;
    this.overflowBudget = 2 * (pageCount + (walIndex?.pages.size ?? 0));
  }

  /** Page `pgno` as the database holds it now: the WAL's committed copy, else the main file's. */
  private async page(pgno: number): Promise<Uint8Array | undefined> {
    if (pgno < 1 || pgno > this.pageCount) return undefined;
    const w = this.walIndex?.pages.get(pgno);
    const got = w ? await this.wal!.read(w.at, this.pageSize) : await this.main.read((pgno - 1) * this.pageSize, this.pageSize);
    return got.length === this.pageSize ? got : undefined;
  }

  /** A cell's whole payload, following its overflow chain; undefined when the chain is broken. */
  private async payload(cell: IndexCell): Promise<Uint8Array | undefined> {
    if (cell.overflow === 0) return cell.local;
    const out = new Uint8Array(cell.size);
    out.set(cell.local, 0);
    let filled = cell.local.length;
    const seen = new Set<number>();
    let next = cell.overflow;
    // Each overflow page carries usable − 4 bytes, so the chain has exactly this many pages.
    while (filled < cell.size) {
      if (next < 2 || seen.has(next) || seen.size * (this.usable - 4) >= cell.size) return undefined;
      if (this.overflowBudget-- <= 0) return undefined;
      seen.add(next);
      const page = await this.page(next).catch(() => undefined);
      if (!page) return undefined;
      const n = Math.min(cell.size - filled, this.usable - 4);
      out.set(page.subarray(4, 4 + n), filled);
      filled += n;
      next = u32(page, 0);
    }
    return out;
  }

  private async take(page: Uint8Array, frame: number): Promise<void> {
    const cells = indexPageCells(page, this.usable);
    if (!cells) return;
    for (const cell of cells) {
      const payload = await this.payload(cell);
      const entry = payload && decodeEntry(payload, this.encoding);
      if (!entry) continue;
      const candidate = { entry, frame };
      const had = this.found.get(entry.key);
      if (!had || preferred(candidate, had)) this.found.set(entry.key, candidate);
    }
  }

  async run(): Promise<Entry[]> {
    const perRead = Math.max(1, Math.floor(CHUNK_BYTES / this.pageSize));
    const mainPages = Math.min(this.pageCount, Math.floor(this.main.size / this.pageSize));
    for (let first = 1; first <= mainPages; first += perRead) {
      const n = Math.min(perRead, mainPages - first + 1);
      // A read error (a bad sector) costs the pages it covers, not the scan: retry page by page.
      const chunk = await this.main.read((first - 1) * this.pageSize, n * this.pageSize).catch(() => undefined);
      for (let i = 0; i < n; i++) {
        const pgno = first + i;
        if (pgno === 1) continue; // the header and sqlite_schema, never an index page
        const w = this.walIndex?.pages.get(pgno);
        if (w) {
          const page = await this.page(pgno).catch(() => undefined);
          if (page) await this.take(page, w.frame);
          continue;
        }
        const page = chunk && chunk.length >= (i + 1) * this.pageSize
          ? chunk.subarray(i * this.pageSize, (i + 1) * this.pageSize)
          : await this.page(pgno).catch(() => undefined);
        if (page) await this.take(page, 0);
      }
    }
    // Pages the WAL added beyond the end of the main file.
    for (const [pgno, w] of this.walIndex?.pages ?? []) {
      if (pgno <= mainPages || pgno === 1) continue;
      const page = await this.page(pgno).catch(() => undefined);
      if (page) await this.take(page, w.frame);
    }
    return [...this.found.values()].map((f) => f.entry);
  }
}

async function scan(main: Bytes, walBytes: Bytes | undefined): Promise<PageScan> {
  const walIndex = walBytes ? await readWal(walBytes).catch(() => undefined) : undefined;
  // The header as the database holds it now: the WAL's copy of page 1, else the main file's.
  const walPage1 = walIndex?.pages.get(1);
  const fromWal = walPage1 ? readHeader(await walBytes!.read(walPage1.at, 100).catch(() => new Uint8Array(0))) : undefined;
  let header = fromWal ?? readHeader(await main.read(0, 100).catch(() => new Uint8Array(0)));
  let wal = walIndex;
  // A WAL written under another page size is not this database's.
  if (header && wal && wal.pageSize !== header.pageSize) {
    wal = undefined;
    header = readHeader(await main.read(0, 100).catch(() => new Uint8Array(0)));
  }
  let pageSize: number | undefined;
  let pageSizeFrom: PageScan['pageSizeFrom'];
  if (header) (pageSize = header.pageSize, pageSizeFrom = 'header');
  else if (wal) (pageSize = wal.pageSize, pageSizeFrom = 'wal');
  else (pageSize = await guessPageSize(main), pageSizeFrom = pageSize === undefined ? 'none' : 'guess');
  const result = { pageSize, pageSizeFrom, userVersion: header?.userVersion, walPages: wal?.pages.size ?? 0 };
  if (pageSize === undefined) return { entries: [], ...result };
  const pageCount = wal ? wal.dbPages : Math.floor(main.size / pageSize);
  const scanner = new Scanner(main, walBytes, wal, pageSize, header?.reserved ?? 0, header?.encoding ?? 'utf8', pageCount);
  return { entries: await scanner.run(), ...result };
}

/** Scans a database held in memory (and its WAL's bytes, if any). Never throws. */
export function scanPagesOf(main: Uint8Array, wal?: Uint8Array): Promise<PageScan> {
  return scan(memoryBytes(main), wal ? memoryBytes(wal) : undefined);
}

/**
 * Scans the database file at `path` and `${path}-wal` when there is one, reading the file a
 * chunk at a time. A file that cannot be opened scans as empty; unreadable regions are skipped.
 */
export async function scanPagesFile(path: string): Promise<PageScan> {
  // This runs as root on files in the unprivileged user's directory: no link is followed, and
  // anything but a plain file (a FIFO would block the read for ever) scans as absent.
  const openPlain = async (p: string) => {
    const fh = await open(p, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
    if (fh && !(await fh.stat()).isFile()) {
      await fh.close();
      return undefined;
    }
    return fh;
  };
  const handles = await Promise.all([path, `${path}-wal`].map(openPlain));
  try {
    const [main, wal] = await Promise.all(handles.map(async (fh) => {
      if (!fh) return undefined;
      const size = (await fh.stat()).size;
      return {
        size,
        read: async (pos: number, len: number) => {
          const want = Math.max(0, Math.min(len, size - pos));
          const buf = Buffer.alloc(want);
          const { bytesRead } = want > 0 ? await fh.read(buf, 0, want, pos) : { bytesRead: 0 };
          return buf.subarray(0, bytesRead);
        },
      } satisfies Bytes;
    }));
    if (!main) return { entries: [], pageSize: undefined, pageSizeFrom: 'none', userVersion: undefined, walPages: 0 };
    return await scan(main, wal);
  } finally {
    await Promise.all(handles.map((fh) => fh?.close().catch(() => undefined)));
  }
}
