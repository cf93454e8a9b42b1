// The greylist database's logical model, identical to spamd's (spamdb(8) lists its fields): a key and five
// numbers. The key says what kind of entry it is; pcount −1 and −2 mark TRAPPED and SPAMTRAP.
//
// Keys and strings are byte strings: each character is one byte of what the client sent
// (latin1 decoding), so nothing a client sends is altered on its way to the database and back
// out of `pfgrey db`. Times are milliseconds since the epoch; spamdb's text shows seconds.

import { DEFAULTS } from '../config/defaults.js';
import { controlEscaper } from '../log.js';
import type { Entry } from '../store/types.js';

export type { Entry } from '../store/types.js';

export const PCOUNT_TRAPPED = -1;
export const PCOUNT_SPAMTRAP = -2;

/**
 * spamd's four types, and three of pfgrey's, which spamd has no line for: POLICY, a postgrey
 * triplet (client network, sender, recipient); AWL, a client counting its way to postgrey's
 * auto-whitelist; GOOD, weighted greylisting's known-good-sender memory (a sender domain and a
 * client network that passed greylisting). Their keys start with a word and a space
 * (POLICY_PREFIX, AWL_PREFIX, GOOD_PREFIX), which neither an address (WHITE, TRAPPED) nor a
 * GREY key (ip first) can.
 */
export type EntryType = 'GREY' | 'WHITE' | 'TRAPPED' | 'SPAMTRAP' | 'POLICY' | 'AWL' | 'GOOD';

/** A POLICY key is this and postgrey's own key: `net/sender/recipient`, or its SHA-1 with --privacy. */
export const POLICY_PREFIX = 'policy ';
/** An AWL key is this and the client's address, or its SHA-1 with --privacy. */
export const AWL_PREFIX = 'awl ';
/** A GOOD key is this, the sender domain, a space and the client network: `good example.org 192.0.2.0/24`. */
export const GOOD_PREFIX = 'good ';

export function entryType(e: Pick<Entry, 'key' | 'pcount'>): EntryType {
  if (e.key.includes('\n')) return 'GREY';
  if (e.pcount === PCOUNT_TRAPPED) return 'TRAPPED';
  if (e.pcount === PCOUNT_SPAMTRAP) return 'SPAMTRAP';
  if (e.key.startsWith(POLICY_PREFIX)) return 'POLICY';
  if (e.key.startsWith(AWL_PREFIX)) return 'AWL';
  if (e.key.startsWith(GOOD_PREFIX)) return 'GOOD';
  return 'WHITE';
}

/** The store key of a policy triplet (postgrey's key, see src/policy/postgrey-key.ts). */
export function policyKey(triplet: string): string {
  return POLICY_PREFIX + triplet;
}

/** The store key of a client's auto-whitelist count. */
export function awlKey(client: string): string {
  return AWL_PREFIX + client;
}

/** The store key of a known-good sender domain (lower case) and client network (`192.0.2.0/24`). */
export function goodKey(domain: string, network: string): string {
  return `${GOOD_PREFIX}${domain} ${network}`;
}

/** The sender domain and network of a GOOD key. */
export function splitGoodKey(key: string): { domain: string; network: string } {
  const rest = key.slice(GOOD_PREFIX.length);
  const sp = rest.lastIndexOf(' ');
  return sp < 0 ? { domain: rest, network: '' } : { domain: rest.slice(0, sp), network: rest.slice(sp + 1) };
}

/** spamd's GREY key: `ip\nhelo\nfrom\nto`, each part exactly as the client sent it. */
export function greyKey(ip: string, helo: string, from: string, to: string): string {
  return `${ip}\n${helo}\n${from}\n${to}`;
}

/** The IP part of any key (the whole key for WHITE and TRAPPED entries). */
export function keyIp(key: string): string {
  const nl = key.indexOf('\n');
  return nl < 0 ? key : key.slice(0, nl);
}

export interface GreyParts {
  ip: string;
  helo: string;
  from: string;
  to: string;
}

/**
 * Splits a GREY key. Legacy three-part keys (`ip\nfrom\nto`, spamd before HELO was recorded)
 * have an empty helo. Returns undefined for a key with a single LF, which spamdb reports as
 * `No from part in grey key`.
 */
export function splitGreyKey(key: string): GreyParts | undefined {
  const parts = key.split('\n');
  if (parts.length === 3) return { ip: parts[0]!, helo: '', from: parts[1]!, to: parts[2]! };
  if (parts.length >= 4) {
    return { ip: parts[0]!, helo: parts[1]!, from: parts[2]!, to: parts.slice(3).join('\n') };
  }
  return undefined;
}

const escapeByte = controlEscaper({ bytes: true });

/**
 * What is wrong with a key of the given type, or undefined for a good one: the rule every way
 * in (`pfgrey db -a`, --import, the tarpit) keeps, so that every stored key lists on one line
 * and imports back. No key holds a control character (C0 or DEL) other than the line breaks
 * that join a GREY key's four parts: a SPAMTRAP address with a line break in it would read as a
 * broken GREY key and stop spamdb's listing. Bytes 0x80 and above are data (UTF-8 or not) and
 * are allowed; the listing escapes those a terminal would obey. Lengths: DEFAULTS.maxKey, and
 * DEFAULTS.maxSpamtrapKey for a SPAMTRAP address.
 */
export function keyProblem(key: string, type: EntryType): string | undefined {
  const max = type === 'SPAMTRAP' ? DEFAULTS.maxSpamtrapKey : DEFAULTS.maxKey;
  if (key.length > max) return `is ${key.length} bytes long; ${type === 'SPAMTRAP' ? 'a spamtrap address' : 'a key'} may have at most ${max}`;
  const parts = type === 'GREY' ? key.split('\n') : [key];
  if (type === 'GREY' && parts.length !== 4) return `has ${parts.length} parts; a GREY key has four (ip, helo, from, to), none with a line break`;
  for (const part of parts) {
    // eslint-disable-next-line no-control-regex
    const c = /[\x00-\x1f\x7f]/.exec(part)?.[0];
    if (c === undefined) continue;
    const code = escapeByte(c);
    return c === '\n' ? `contains a line break (${code}): one key per argument or line` : `contains the control character ${code}`;
  }
  return undefined;
}

/** Converts what arrives as UTF-8 text (argv, files) to the byte-string form keys use. */
export function toByteString(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}
