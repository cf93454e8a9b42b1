// What postgrey learnt, read from `db_dump -p` output of its two Berkeley DB btrees and made
// pfgrey entries, so that a postgrey site keeps its triplets and its auto-whitelisted clients
// (`pfgrey db --import-postgrey`).
//
// postgrey (postgrey(8); the Perl source, smtpd_access_policy and do_maintenance) keeps:
//   postgrey.db          `net/sender/recipient` → `first,last` (older versions: `first,last,host`)
//   postgrey_clients.db  client address        → `count,last`
// with times in seconds since the epoch. The triplet's net is the client's network address
// without its length (`192.0.2.0`, IPv6 as NetAddr::IP writes it, `2001:db8:0:0:0:0:0:0`), or
// the address with --lookup-by-host; the whole key is lower-cased. A client key is the address
// as NetAddr::IP writes it (IPv6 upper-case and uncompressed: `2001:DB8:0:0:0:0:0:1`). With
// --privacy both keys are the SHA-1 of that text in hex. Keys are kept exactly as postgrey wrote
// them: the policy door forms its keys the same way (src/policy/postgrey-key.ts).
//
// db_dump's text (db_dump(1) and db_load(1), "print" and "bytevalue" formats): a header from
// `VERSION=3` to `HEADER=END` (`format=print|bytevalue`, `type=btree`, an optional
// `database=NAME`…), then one line per key and one per value, each starting with one space,
// then `DATA=END`. In the print format a printable byte stands for itself, a backslash is `\\`
// and any other byte `\hh` (two hex digits); bytevalue writes every byte as two hex digits.
// Several dumps may follow one another (`cat postgrey.dump clients.dump`).
//
// What does not fit is of two kinds. Text that is not such a dump, or a dump that is neither of
// postgrey's files, is refused as a whole (PfgreyError E_POSTGREY_DUMP, naming the line), and
// nothing of it is imported. A bad record (a bad escape, a value that is not numbers, a key
// with control characters or too long for keyProblem, a key cut off by the end of a truncated
// dump) is a DumpProblem naming its line: that record is left out whole, the rest is imported.

import { isIP, SocketAddress } from 'node:net';
import { plainAddress } from '../address.js';
import { PfgreyError } from '../errors.js';
import { controlEscaper } from '../log.js';
import { awlKey, AWL_PREFIX, entryType, keyProblem, PCOUNT_SPAMTRAP, policyKey, type Entry, type EntryType } from './entry.js';
import type { PolicyTimes } from './rules.js';

/** Which of postgrey's files a dump is. */
export type PostgreyFile = 'postgrey.db' | 'postgrey_clients.db';

/** A record left out, and why; `line` is the line of the dump it is on. */
export interface DumpProblem {
  line: number;
  what: string;
}

/** One key and its value, decoded to bytes (one character a byte); `line` is the key's line. */
export interface DumpRecord {
  line: number;
  key: string;
  value: string;
}

export interface DumpSection {
  /** The line of its `VERSION=3`. */
  line: number;
  /** The header's `database=` name, when there is one (a file holding several databases). */
  database?: string;
  records: DumpRecord[];
}

export interface ParsedDump {
  sections: DumpSection[];
  problems: DumpProblem[];
}

const escapeControls = controlEscaper({ bytes: true });
const utf8 = new TextDecoder('utf-8');

/**
 * Dump text or a key for a message: quoted, cut short, control bytes as `\xHH` and UTF-8 read as
 * such. Unlike the listing's showKey, '|' and '\' stay as they are: a dump has no fields.
 */
function shown(bytes: string, max = 60): string {
  const cut = bytes.length > max ? `${bytes.slice(0, max - 3)}...` : bytes;
  return `"${utf8.decode(Buffer.from(escapeControls(cut), 'latin1'))}"`;
}

const refuse = (line: number, what: string) => new PfgreyError('E_POSTGREY_DUMP', `line ${line}: ${what}`);

type Decoded = { bytes: string } | { bad: string };

/** One item of the print format: `\\` a backslash, `\hh` a byte, anything else itself. */
function decodePrint(s: string): Decoded {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
    } else if (s[i + 1] === '\\') {
      out += '\\';
      i++;
    } else if (/^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      return { bad: `has a bad escape ${shown(s.slice(i, i + 3))} (db_dump -p writes a backslash as \\\\ and other bytes as \\ and two hex digits)` };
    }
  }
  return { bytes: out };
}

/** One item of the bytevalue format (db_dump without -p): every byte as two hex digits. */
function decodeBytevalue(s: string): Decoded {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(s)) return { bad: 'is not pairs of hex digits (db_dump without -p writes every byte so)' };
  return { bytes: Buffer.from(s, 'hex').toString('latin1') };
}

/**
 * Splits db_dump output (a byte string, one character a byte) into its dumps and their records.
 * Throws E_POSTGREY_DUMP for text that is not db_dump output; returns the records it could not
 * read as problems. A dump that stops before its `DATA=END` is truncated: the records before
 * the cut are kept, a key left without its value and a line cut short (no line end) are
 * problems, and so is the missing end itself when nothing else shows the cut.
 */
export function parseDbDump(text: string): ParsedDump {
  const lines = text.split('\n');
  // db_dump ends every line: a last line without its line end was cut short.
  const cutLast = !text.endsWith('\n');
  if (!cutLast) lines.pop();
  const at = (i: number) => lines[i]!.replace(/\r$/, '');
  const sections: DumpSection[] = [];
  const problems: DumpProblem[] = [];
  let i = 0;
  while (i < lines.length) {
    const first = at(i);
    if (first.trim() === '') {
      i++;
      continue;
    }
    if (!first.startsWith('VERSION=')) {
      throw refuse(i + 1, `not db_dump output: expected its first line, VERSION=3, and found ${shown(first)} (make the dump with db_dump -p postgrey.db)`);
    }
    if (first !== 'VERSION=3') throw refuse(i + 1, `${shown(first)}: only the VERSION=3 format of db_dump 3 and later is read`);
    const section: DumpSection = { line: i + 1, records: [] };
    let decode: ((s: string) => Decoded) | undefined;
    let type: string | undefined;
    for (i++; ; i++) {
      if (i >= lines.length || (cutLast && i === lines.length - 1)) {
        throw refuse(Math.min(i + 1, lines.length), 'the dump ends inside its header: it is truncated');
      }
      const h = at(i);
      if (h === 'HEADER=END') break;
      const eq = h.indexOf('=');
      if (eq <= 0) throw refuse(i + 1, `header line ${shown(h)} is not name=value`);
      const name = h.slice(0, eq);
      const value = h.slice(eq + 1);
      if (name === 'format') {
        if (value === 'print') decode = decodePrint;
        else if (value === 'bytevalue') decode = decodeBytevalue;
        else throw refuse(i + 1, `format ${shown(value)} is neither print nor bytevalue`);
      } else if (name === 'type') {
        type = value;
        if (value !== 'btree' && value !== 'hash') throw refuse(i + 1, `type ${shown(value)}: postgrey's databases are btrees, keyed by text`);
      } else if (name === 'database') {
        // db_dump prints the name as a print-format item, whatever the format of the data.
        const d = decodePrint(value);
        section.database = 'bytes' in d ? d.bytes : value;
      } else if (name === 'keys' && value === '1') {
        throw refuse(i + 1, 'keys=1: record-number keys; postgrey\'s keys are text');
      }
      // db_pagesize, duplicates, chksum and the like say how to rebuild the file, not what is in it.
    }
    if (!decode) throw refuse(i + 1, 'the header has no format= line');
    if (!type) throw refuse(i + 1, 'the header has no type= line');
    i++;
    let key: { line: number; item: Decoded } | undefined;
    let ended = false;
    for (; i < lines.length; i++) {
      const lineNo = i + 1;
      const d = at(i);
      // A dump cut inside its last line, DATA=END, has all its records.
      if (d === 'DATA=END' || (cutLast && i === lines.length - 1 && 'DATA=END'.startsWith(d))) {
        ended = true;
        i++;
        break;
      }
      if (!d.startsWith(' ')) throw refuse(lineNo, `expected a key or value line (a space, then the item) or DATA=END, and found ${shown(d)}`);
      const cut = cutLast && i === lines.length - 1;
      const item: Decoded = cut ? { bad: 'is cut short (no line end): the dump is truncated' } : decode(d.slice(1));
      // That problem says the dump is truncated; the missing DATA=END need not say it again.
      if (cut) ended = true;
      if (!key) {
        key = { line: lineNo, item };
        continue;
      }
      if ('bad' in key.item) problems.push({ line: key.line, what: `key ${key.item.bad}` });
      else if ('bad' in item) problems.push({ line: lineNo, what: `value of key ${shown(key.item.bytes)} ${item.bad}` });
      else section.records.push({ line: key.line, key: key.item.bytes, value: item.bytes });
      key = undefined;
    }
    if (key) {
      const what = 'bad' in key.item ? `key ${key.item.bad}`
        : `key ${shown(key.item.bytes)} has no value${ended ? ' before DATA=END' : ': the dump is truncated'}`;
      problems.push({ line: key.line, what });
    } else if (!ended) {
      problems.push({ line: lines.length, what: 'the dump ends without DATA=END: it is truncated, and what followed is missing' });
    }
    sections.push(section);
  }
  if (sections.length === 0) throw refuse(1, 'no db_dump output here: it is empty (make the dump with db_dump -p postgrey.db)');
  return { sections, problems };
}

/** postgrey's --privacy keys: sha1_hex, 40 lower-case hex digits. */
const SHA1_HEX = /^[0-9a-f]{40}$/;

/**
 * Seconds that only a time can reach: a hashed key's value starts with a time (postgrey.db's
 * first) or a count (postgrey_clients.db's). postgrey appeared in 2004, well after this
 * (2001-09-09); a count grows by one an hour at most and would take 114,000 years to get here.
 */
const TIME_FLOOR = 1e9;

const TRIPLET_VALUE = /^(\d+),(\d+)(,[^]*)?$/;
const CLIENT_VALUE = /^(\d+),(\d+)$/;

const isTripletKey = (key: string) => key.split('/').length >= 3;

/** Which file a record looks like it came from, or undefined when it fits neither. */
function recordFile(r: DumpRecord): PostgreyFile | undefined {
  const v = TRIPLET_VALUE.exec(r.value);
  if (!v) return undefined;
  const hashed = SHA1_HEX.test(r.key);
  if (v[3] !== undefined) return isTripletKey(r.key) || hashed ? 'postgrey.db' : undefined;
  if (isTripletKey(r.key)) return 'postgrey.db';
  if (isIP(r.key) !== 0) return 'postgrey_clients.db';
  if (hashed) return Number(v[1]) >= TIME_FLOOR ? 'postgrey.db' : 'postgrey_clients.db';
  return undefined;
}

/**
 * Which of postgrey's files a dump is: its `database=` name when it names one of them, else the
 * shape of its records, which must all point the same way (records that fit neither are bad
 * records, found later). Undefined for a dump with no records; throws for a dump that is neither
 * or both.
 */
export function postgreyFile(section: DumpSection): PostgreyFile | undefined {
  const name = section.database?.replace(/^.*\//, '');
  if (name === 'postgrey.db' || name === 'postgrey_clients.db') return name;
  const seen = new Map<PostgreyFile, DumpRecord>();
  for (const r of section.records) {
    const file = recordFile(r);
    if (file && !seen.has(file)) seen.set(file, r);
  }
  const triplet = seen.get('postgrey.db');
  const client = seen.get('postgrey_clients.db');
  if (triplet && client) {
    throw refuse(section.line, `this dump mixes postgrey.db's triplets (line ${triplet.line}, ${shown(triplet.key)}) ` +
      `and postgrey_clients.db's clients (line ${client.line}, ${shown(client.key)}); dump each file by itself`);
  }
  if (triplet) return 'postgrey.db';
  if (client) return 'postgrey_clients.db';
  const r = section.records[0];
  if (!r) return undefined;
  throw refuse(r.line, `neither postgrey.db (net/sender/recipient → first,last) nor postgrey_clients.db (address → count,last): ` +
    `key ${shown(r.key)}, value ${shown(r.value)}`);
}

/** Seconds in a dump → milliseconds, or undefined past what a time can be. */
function ms(seconds: string): number | undefined {
  const n = Number(seconds) * 1000;
  return Number.isSafeInteger(n) ? n : undefined;
}

const INT32_MAX = 2 ** 31 - 1;

/**
 * A postgrey.db record as a POLICY entry: first = first attempt, pass = last seen, and the
 * expiry postgrey's maintenance would give it (policyHit's rule): maxAge after `last` for a
 * triplet that has passed (last − first ≥ delay), min(maxAge, retryWindow) after it for one that
 * has not. postgrey keeps no counts: a passed triplet counts as two requests and one pass, one
 * that has not as one request.
 */
function tripletEntry(r: DumpRecord, t: PolicyTimes): Entry | DumpProblem {
  if (!isTripletKey(r.key) && !SHA1_HEX.test(r.key)) {
    return { line: r.line, what: `key ${shown(r.key)} is not postgrey's net/sender/recipient, nor its SHA-1 (--privacy)` };
  }
  const v = TRIPLET_VALUE.exec(r.value);
  const first = v && ms(v[1]!);
  const last = v && ms(v[2]!);
  if (first == null || last == null) {
    return { line: r.line + 1, what: `value ${shown(r.value)} of key ${shown(r.key)} is not first,last (seconds since the epoch)` };
  }
  const passed = last - first >= t.delay;
  return {
    key: policyKey(r.key),
    first,
    pass: last,
    expire: last + (passed ? t.maxAge : Math.min(t.maxAge, t.retryWindow)),
    bcount: passed ? 2 : 1,
    pcount: passed ? 1 : 0,
  };
}

/**
 * A client's address as the doors see it (Postfix's client_address, the tarpit's peer): IPv6
 * compressed and lower-case, an IPv4-mapped address as IPv4. postgrey's client keys are
 * NetAddr::IP's text (`2001:DB8:0:0:0:0:0:1`), which no lookup of a WHITE entry would find.
 */
function doorAddress(addr: string): string {
  return isIP(addr) === 6 ? plainAddress(new SocketAddress({ address: addr, family: 'ipv6' }).address) : addr;
}

/**
 * A postgrey_clients.db record: a client whose count has reached the auto-whitelist becomes a
 * WHITE entry of its address, as the policy door makes it (first = pass = last, expire maxAge
 * after it, bcount = the count), so the next scan puts it in <spamd-white>; a --privacy client
 * (a hash, no address to whitelist) and a client still counting stay AWL entries under
 * postgrey's key. postgrey keeps no first count: first = last.
 */
function clientEntry(r: DumpRecord, t: PolicyTimes): Entry | DumpProblem {
  const hashed = SHA1_HEX.test(r.key);
  if (!hashed && isIP(r.key) === 0) {
    return { line: r.line, what: `key ${shown(r.key)} is not a client address, nor its SHA-1 (--privacy)` };
  }
  const v = CLIENT_VALUE.exec(r.value);
  const last = v && ms(v[2]!);
  const count = v ? Number(v[1]) : NaN;
  if (last == null || !(count <= INT32_MAX)) {
    return { line: r.line + 1, what: `value ${shown(r.value)} of key ${shown(r.key)} is not count,last (a count, then seconds since the epoch)` };
  }
  const white = t.awlClients > 0 && count >= t.awlClients && !hashed;
  return { key: white ? doorAddress(r.key) : awlKey(r.key), first: last, pass: last, expire: last + t.maxAge, bcount: count, pcount: 0 };
}

export interface PostgreyImport {
  /** The entries to write, one per key (the later `last` of two records that meet). */
  entries: Entry[];
  /** Records that had already expired at `now`, left out. */
  expired: number;
  /** Records left out as bad, in line order, the dump's own problems included. */
  problems: DumpProblem[];
}

/**
 * The entries a parsed dump makes at `now` with the given times (postgrey's options: --delay
 * decides which triplets have passed, --max-age and --retry-window their expiry,
 * --auto-whitelist-clients which clients are WHITE). Throws E_POSTGREY_DUMP for a dump that is
 * neither of postgrey's files.
 */
export function postgreyEntries(dump: ParsedDump, t: PolicyTimes, now: number): PostgreyImport {
  const problems = [...dump.problems];
  const byKey = new Map<string, Entry>();
  let expired = 0;
  for (const section of dump.sections) {
    const file = postgreyFile(section);
    for (const r of section.records) {
      const made = file === 'postgrey.db' ? tripletEntry(r, t) : clientEntry(r, t);
      if ('what' in made) {
        problems.push(made);
        continue;
      }
      // From the file, not from the key: a triplet with a line break in it is not a GREY key.
      const type: EntryType = file === 'postgrey.db' ? 'POLICY' : made.key.startsWith(AWL_PREFIX) ? 'AWL' : 'WHITE';
      const problem = keyProblem(made.key, type);
      if (problem) {
        problems.push({ line: r.line, what: `key ${shown(r.key)} ${problem}` });
        continue;
      }
      if (made.expire <= now) {
        expired++;
        continue;
      }
      const met = byKey.get(made.key);
      if (!met || made.pass > met.pass) byKey.set(made.key, made);
    }
  }
  problems.sort((a, b) => a.line - b.line);
  return { entries: [...byKey.values()], expired, problems };
}

/**
 * The merge rule of an import: whether the entry already in the database stays rather than
 * being replaced by `incoming`. The later `last` (pass) wins, and a tie keeps what is there.
 * An entry of another type under the same key (a TRAPPED address that postgrey whitelisted,
 * a spamtrap) is our own decision and stays; an expired one does not count.
 */
export function keepsExisting(existing: Entry | undefined, incoming: Entry, now: number): boolean {
  if (!existing) return false;
  if (existing.pcount !== PCOUNT_SPAMTRAP && existing.expire <= now) return false;
  if (entryType(existing) !== entryType(incoming)) return true;
  return existing.pass >= incoming.pass;
}
