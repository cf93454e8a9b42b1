// spamdb's text lines (spamdb(8)), printed and parsed by the same module so that whatever
// `pfgrey db` lists, `pfgrey db --import` reads back.
//
// Lines are byte strings like keys (one character per byte, latin1): the CLI decodes files and
// encodes output as latin1, so a HELO full of raw 8-bit bytes survives a dump and an import.
//
//   GREY|ip|helo|from|to|first|pass|expire|bcount|pcount
//   WHITE|ip|||first|pass|expire|bcount|pcount     (nine fields: one empty fewer than GREY)
//   TRAPPED|ip|expire
//   SPAMTRAP|address
//   POLICY|triplet|first|last|expire|requests|passes   (the policy door's; spamdb has no such line)
//   AWL|client|first|last|expire|count                 (ditto: a client's auto-whitelist count)
//   GOOD|domain|network|first|last|expire|passes       (weighted greylisting's known-good senders)
//
// POLICY's triplet is postgrey's key, `net/sender/recipient` (or its SHA-1 with --privacy), and
// its times are the first attempt and the last request; AWL's client is an address (or its
// SHA-1), with the first and last counted pass. GOOD is a sender domain and the client's /24
// (or /64) that passed greylisting, with its first and last pass and how many passes. Scripts
// that grep for spamdb's four types are not disturbed by these three.
//
// Times are whole seconds in the text and milliseconds in an Entry.
//
// Escapes: in the key fields (ip, helo, from, to, address) a control character (C0, DEL, C1 as
// described at controlEscaper in src/log.ts), a '|' and a backslash are written `\xHH`, '|' as
// `\x7c` and the backslash as `\\`, and --import reads them back (unescapeBytes), so any key
// lists on one line that neither drives the terminal nor splits into the wrong fields, and
// imports back to the same bytes. spamdb prints keys raw; its dumps still import (a raw '|'
// in helo, from or to is resolved by splitMiddle), unless a key holds a literal `\\` or `\xHH`.
//
// What a line does not show comes back as 0 on import: TRAPPED gets first = pass = bcount = 0,
// SPAMTRAP gets first = pass = expire = bcount = 0 (spamd reads none of these for those types).
// A legacy GREY key `ip\nfrom\nto` prints with an empty helo and imports as the four-part key
// `ip\n\nfrom\nto`.

import { isIP } from 'node:net';
import { PfgreyError } from '../errors.js';
import { controlEscaper, unescapeBytes } from '../log.js';
import {
  awlKey,
  AWL_PREFIX,
  goodKey,
  splitGoodKey,
  policyKey,
  POLICY_PREFIX,
  PCOUNT_SPAMTRAP,
  PCOUNT_TRAPPED,
  entryType,
  greyKey,
  keyProblem,
  splitGreyKey,
  type Entry,
  type EntryType,
} from './entry.js';

const sec = (ms: number): number => Math.floor(ms / 1000);

const utf8 = new TextDecoder('utf-8');

/**
 * JSON must be Unicode text, and what clients send is bytes: a byte string is read as UTF-8
 * (what nearly every client sends), with U+FFFD for bytes that are not. The text format is the
 * lossless one; JSON is for reading, not for round trips.
 */
function text(bytes: string): string {
  return utf8.decode(Buffer.from(bytes, 'latin1'));
}

/** One key field of a listing line: see the escapes above. */
const keyField = controlEscaper({ bytes: true, reversible: true, also: '|' });

/** A key (a byte string) as text for a message: escaped like the listing, UTF-8 read as such. */
export function keyText(bytes: string): string {
  return text(keyField(bytes));
}

/** A key or field in a message: keyText, quoted, cut short. */
export function showKey(bytes: string, max = 60): string {
  return `"${keyText(bytes.length > max ? `${bytes.slice(0, max - 3)}...` : bytes)}"`;
}

/**
 * spamdb's message for a GREY key with a single LF, which it cannot print (its listing stops
 * there). spamdb names the key up to the LF; we name the whole key, escaped, because that is
 * what an operator needs to find the row (a SPAMTRAP address with a line break looks like one).
 */
function noFromPart(key: string): PfgreyError {
  return new PfgreyError('E_DB_ROW', `No from part in grey key ${showKey(key, 200)}`);
}

/**
 * The spamdb line for an entry, without the newline. Throws E_DB_ROW (noFromPart) for a
 * GREY key with a single LF.
 */
export function formatEntry(e: Entry): string {
  switch (entryType(e)) {
    case 'TRAPPED':
      return `TRAPPED|${keyField(e.key)}|${sec(e.expire)}`;
    case 'SPAMTRAP':
      return `SPAMTRAP|${keyField(e.key)}`;
    case 'WHITE':
      return `WHITE|${keyField(e.key)}|||${sec(e.first)}|${sec(e.pass)}|${sec(e.expire)}|${e.bcount}|${e.pcount}`;
    case 'POLICY':
      return `POLICY|${keyField(e.key.slice(POLICY_PREFIX.length))}|${sec(e.first)}|${sec(e.pass)}|${sec(e.expire)}|${e.bcount}|${e.pcount}`;
    case 'AWL':
      return `AWL|${keyField(e.key.slice(AWL_PREFIX.length))}|${sec(e.first)}|${sec(e.pass)}|${sec(e.expire)}|${e.bcount}`;
    case 'GOOD': {
      const g = splitGoodKey(e.key);
      return `GOOD|${keyField(g.domain)}|${keyField(g.network)}|${sec(e.first)}|${sec(e.pass)}|${sec(e.expire)}|${e.bcount}`;
    }
    case 'GREY': {
      const g = splitGreyKey(e.key);
      if (!g) throw noFromPart(e.key);
      return `GREY|${keyField(g.ip)}|${keyField(g.helo)}|${keyField(g.from)}|${keyField(g.to)}|${sec(e.first)}|${sec(e.pass)}|${sec(e.expire)}|${e.bcount}|${e.pcount}`;
    }
  }
}

/** The JSON form of one listing line. */
export type EntryJson =
  | { type: 'GREY'; ip: string; helo: string; from: string; to: string; first: number; pass: number; expire: number; bcount: number; pcount: number }
  | { type: 'WHITE'; ip: string; first: number; pass: number; expire: number; bcount: number; pcount: number }
  | { type: 'TRAPPED'; ip: string; expire: number }
  | { type: 'SPAMTRAP'; address: string }
  | { type: 'POLICY'; triplet: string; first: number; last: number; expire: number; requests: number; passes: number }
  | { type: 'AWL'; client: string; first: number; last: number; expire: number; count: number }
  | { type: 'GOOD'; domain: string; network: string; first: number; last: number; expire: number; passes: number };

/**
 * One entry as JSON. Each type carries exactly the fields its spamdb line shows, under their
 * names, with times in seconds: GREY all ten, WHITE no helo/from/to, TRAPPED only the expiry,
 * SPAMTRAP only the address. Fields that do not apply are omitted, never null.
 */
export function entryToJson(e: Entry): EntryJson {
  switch (entryType(e)) {
    case 'TRAPPED':
      return { type: 'TRAPPED', ip: text(e.key), expire: sec(e.expire) };
    case 'SPAMTRAP':
      return { type: 'SPAMTRAP', address: text(e.key) };
    case 'POLICY':
      return {
        type: 'POLICY', triplet: text(e.key.slice(POLICY_PREFIX.length)),
        first: sec(e.first), last: sec(e.pass), expire: sec(e.expire), requests: e.bcount, passes: e.pcount,
      };
    case 'AWL':
      return { type: 'AWL', client: text(e.key.slice(AWL_PREFIX.length)), first: sec(e.first), last: sec(e.pass), expire: sec(e.expire), count: e.bcount };
    case 'GOOD': {
      const g = splitGoodKey(e.key);
      return { type: 'GOOD', domain: text(g.domain), network: g.network, first: sec(e.first), last: sec(e.pass), expire: sec(e.expire), passes: e.bcount };
    }
    case 'WHITE':
      return {
        type: 'WHITE',
        ip: text(e.key),
        first: sec(e.first),
        pass: sec(e.pass),
        expire: sec(e.expire),
        bcount: e.bcount,
        pcount: e.pcount,
      };
    case 'GREY': {
      const g = splitGreyKey(e.key);
      if (!g) throw noFromPart(e.key);
      return {
        type: 'GREY',
        ip: text(g.ip),
        helo: text(g.helo),
        from: text(g.from),
        to: text(g.to),
        first: sec(e.first),
        pass: sec(e.pass),
        expire: sec(e.expire),
        bcount: e.bcount,
        pcount: e.pcount,
      };
    }
  }
}

// --- parsing --------------------------------------------------------------------------------

const FIELDS: Record<EntryType, number> = { GREY: 10, WHITE: 9, TRAPPED: 3, SPAMTRAP: 2, POLICY: 7, AWL: 6, GOOD: 7 };
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function bad(lineNo: number, what: string): PfgreyError {
  return new PfgreyError('E_IMPORT', `line ${lineNo}: ${what}`);
}

/** spamdb prints 64-bit times; anything we store is a safe integer of milliseconds. */
function time(lineNo: number, name: string, field: string): number {
  if (!/^-?[0-9]+$/.test(field)) throw bad(lineNo, `${name} time ${showKey(field)} is not a number`);
  const ms = Number(field) * 1000;
  if (!Number.isSafeInteger(ms)) throw bad(lineNo, `${name} time ${showKey(field)} is out of range`);
  return ms;
}

/** The counts are C ints in spamd's record. */
function count(lineNo: number, name: string, field: string): number {
  if (!/^-?[0-9]+$/.test(field)) throw bad(lineNo, `${name} ${showKey(field)} is not a number`);
  const n = Number(field);
  if (n < INT32_MIN || n > INT32_MAX) throw bad(lineNo, `${name} ${showKey(field)} is out of range`);
  return n;
}

/** `192.0.2.0/24`, `2001:db8::/64`: an address and a prefix length that fits it. */
function isNetwork(f: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(f);
  if (!m) return false;
  const family = isIP(m[1]!);
  return family !== 0 && Number(m[2]) <= (family === 4 ? 32 : 128);
}

function ip(lineNo: number, f: string): string {
  const addr = unescapeBytes(f);
  if (isIP(addr) === 0) throw bad(lineNo, `invalid ip address ${showKey(addr)}`);
  return addr;
}

/**
 * GREY's helo, from and to are whatever the client sent and may contain '|'. With exactly three
 * middle fields there is nothing to decide; with more, the split is accepted only if exactly one
 * places from and to on `<…>` fields, which is how clients send them.
 */
function splitMiddle(lineNo: number, mid: string[]): [string, string, string] {
  if (mid.length === 3) return [mid[0]!, mid[1]!, mid[2]!];
  const angled = (s: string) => s.startsWith('<') && s.endsWith('>');
  const found: Array<[string, string, string]> = [];
  for (let i = 1; i < mid.length - 1; i++) {
    for (let j = i + 1; j < mid.length; j++) {
      const from = mid.slice(i, j).join('|');
      const to = mid.slice(j).join('|');
      if (angled(from) && angled(to)) found.push([mid.slice(0, i).join('|'), from, to]);
    }
  }
  if (found.length === 1) return found[0]!;
  // A listing of ours never gets here: it writes a '|' inside these fields as \x7c.
  throw bad(lineNo, `cannot tell helo, from and to apart: one of them contains '|'`);
}

/**
 * Parses one spamdb line (a byte string, no newline) into an entry. Throws E_IMPORT naming the
 * line number and what is wrong with it, including a key that breaks keyProblem's rule (raw or
 * escaped: `SPAMTRAP|a@x\x0ab@y` is refused like the key it stands for).
 */
export function parseLine(line: string, lineNo: number): Entry {
  const f = line.split('|');
  const type = f[0]!;
  if (!Object.hasOwn(FIELDS, type)) throw bad(lineNo, `unknown type ${showKey(type)} (expected GREY, WHITE, TRAPPED, SPAMTRAP, POLICY, AWL or GOOD)`);
  const t = type as EntryType;
  const want = FIELDS[t];
  // GREY's middle fields, a SPAMTRAP address and a POLICY triplet may hold a raw '|'.
  const fieldCountOk = t === 'GREY' || t === 'SPAMTRAP' || t === 'POLICY' ? f.length >= want : f.length === want;
  if (!fieldCountOk) throw bad(lineNo, `${t} needs ${want} fields, found ${f.length}`);

  let entry: Entry;
  switch (t) {
    case 'SPAMTRAP': {
      // The address is the rest of the line: a local part may legally contain '|'.
      const address = unescapeBytes(f.slice(1).join('|'));
      if (!address.includes('@')) throw bad(lineNo, `not an email address: ${showKey(address)}`);
      entry = { key: address, first: 0, pass: 0, expire: 0, bcount: 0, pcount: PCOUNT_SPAMTRAP };
      break;
    }
    case 'TRAPPED':
      entry = { key: ip(lineNo, f[1]!), first: 0, pass: 0, expire: time(lineNo, 'expire', f[2]!), bcount: 0, pcount: PCOUNT_TRAPPED };
      break;
    case 'WHITE': {
      // spamdb prints `WHITE|ip|||first…`: two empty fields, one fewer than GREY's helo/from/to.
      if (f[2] !== '' || f[3] !== '') throw bad(lineNo, 'WHITE has text between the ip and the times; those fields must be empty');
      entry = numbers(lineNo, ip(lineNo, f[1]!), f.slice(4));
      break;
    }
    case 'POLICY': {
      const triplet = unescapeBytes(f.slice(1, f.length - 5).join('|'));
      if (triplet === '') throw bad(lineNo, 'POLICY has an empty triplet');
      entry = numbers(lineNo, policyKey(triplet), f.slice(f.length - 5));
      break;
    }
    case 'AWL': {
      const client = unescapeBytes(f[1]!);
      if (client === '') throw bad(lineNo, 'AWL has an empty client');
      entry = numbers(lineNo, awlKey(client), [...f.slice(2), '0']);
      break;
    }
    case 'GOOD': {
      const domain = unescapeBytes(f[1]!);
      if (!/^[^\s@]+\.[^\s@]+$/.test(domain)) throw bad(lineNo, `GOOD has a bad sender domain ${showKey(domain)}`);
      if (!isNetwork(f[2]!)) throw bad(lineNo, `GOOD has a bad network ${showKey(f[2]!)} (expected an address/prefix such as 192.0.2.0/24)`);
      entry = numbers(lineNo, goodKey(domain, f[2]!), [...f.slice(3), '0']);
      break;
    }
    case 'GREY': {
      const [helo, from, to] = splitMiddle(lineNo, f.slice(2, f.length - 5)).map(unescapeBytes) as [string, string, string];
      entry = numbers(lineNo, greyKey(ip(lineNo, f[1]!), helo, from, to), f.slice(f.length - 5));
      break;
    }
  }
  const problem = keyProblem(entry.key, t);
  if (problem) throw bad(lineNo, `${t === 'SPAMTRAP' ? 'address' : 'key'} ${showKey(entry.key)} ${problem}`);
  // pcount decides the type of an IP key: a WHITE line with pcount -1 would come back TRAPPED.
  const actual = entryType(entry);
  if (actual !== t) throw bad(lineNo, `pcount ${entry.pcount} makes this a ${actual} entry, not ${t}`);
  return entry;
}

function numbers(lineNo: number, key: string, n: string[]): Entry {
  return {
    key,
    first: time(lineNo, 'first', n[0]!),
    pass: time(lineNo, 'pass', n[1]!),
    expire: time(lineNo, 'expire', n[2]!),
    bcount: count(lineNo, 'bcount', n[3]!),
    pcount: count(lineNo, 'pcount', n[4]!),
  };
}
