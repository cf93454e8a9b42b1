// The config-port line (spamd(8)'s configuration port, 8026; spamd.c's parse_configline), both
// ways: `pfgrey setup` formats it exactly as spamd-setup does, and the daemon parses it,
// rejecting what spamd rejects, with a reason.
//
//   tag;"message";inet;count;a.b.c.d/nn;…[;inet6;count;x::y/nn;…]      (a list)
//   tag;                                                               (clear that list)
//
// Where we differ from spamd:
// - The message ends at the first `"` after an even number of backslashes. spamd's scanner
//   loses count after `\"` and would take the next `"` as escaped too, so it rejects
//   messages that end in a quote, or hold `""` — both of which spamd-setup sends.
// - An empty address token inside a group (`inet;2;a/32;;`) is rejected; spamd counts it and
//   then reads an uninitialised pointer. An empty tag is rejected too.
// - A bad line changes nothing here (the caller keeps the old list); spamd deletes the list.

import { PfgreyError } from '../errors.js';
import { parseCidr, parseCidr6, type Cidr, type Range6 } from './cidr.js';

export type ConfigLine =
  | { kind: 'clear'; tag: string }
  | {
    kind: 'list';
    tag: string;
    /** As received, still with its surrounding quotes and escapes; rendered at reply time. */
    message: string;
    /** `a.b.c.d/nn` tokens as received. */
    v4: string[];
    /** `x::y/nn` tokens as received. */
    v6: string[];
  };

const UINT_MAX = 0xffffffff;

function reject(reason: string): never {
  throw new PfgreyError('E_CONFIG_LINE', reason);
}

/** Parses one line (without its LF); throws PfgreyError E_CONFIG_LINE saying what is wrong. */
export function parseConfigLine(line: string): ConfigLine {
  const semi = line.indexOf(';');
  if (semi < 0) reject('no ";" after the tag');
  const tag = line.slice(0, semi);
  if (tag === '') reject('empty tag');
  if (semi + 1 === line.length) return { kind: 'clear', tag };

  const open = semi + 1;
  if (line[open] !== '"') reject('the message must start with \'"\'');
  const close = closingQuote(line, open + 1);
  if (close < 0) reject('the message has no closing quote');
  if (line[close + 1] !== ';') reject('the message\'s closing quote must be followed by ";"');
  const message = line.slice(open, close + 1);

  const tokens = line.slice(close + 2).split(';');
  let v4: string[] | undefined;
  let v6: string[] | undefined;
  for (let k = 0; k < tokens.length;) {
    const family = tokens[k++]!;
    if (family === '') continue;
    if (family !== 'inet' && family !== 'inet6') {
      if (!looksLikeAddress(family)) reject(`unknown address family "${clip(family)}"`);
      if (v4 === undefined && v6 === undefined) {
        reject('this is the old (before 2015) line format, without "inet;count": ' +
          'expected tag;"message";inet;count;a.b.c.d/nn;…');
      }
      reject(`more addresses than announced: "${clip(family)}" follows the last counted one`);
    }
    if (k >= tokens.length) reject(`no address count after "${family}"`);
    const countText = tokens[k++]!;
    if (!/^[0-9]{1,10}$/.test(countText) || Number(countText) > UINT_MAX) {
      reject(`bad address count "${clip(countText)}" after "${family}"`);
    }
    const count = Number(countText);
    if (tokens.length - k < count) {
      reject(`"${family};${count}" announces ${count} addresses but only ${tokens.length - k} follow`);
    }
    const addrs = tokens.slice(k, k + count);
    k += count;
    addrs.forEach((a, i) => {
      if (a === '') reject(`address ${i + 1} of "${family}" is empty`);
      if (family === 'inet') checkInet(a);
      else checkInet6(a);
    });
    if (family === 'inet') {
      if (v4 !== undefined) reject('"inet" appears twice');
      v4 = addrs;
    } else {
      if (v6 !== undefined) reject('"inet6" appears twice');
      v6 = addrs;
    }
  }
  v4 ??= [];
  v6 ??= [];
  if (v4.length + v6.length === 0) reject('no addresses');
  return { kind: 'list', tag, message, v4, v6 };
}

/**
 * Index of the quote that ends a message opened just before `from`: the first `"` not
 * escaped by a backslash (a backslash escapes whatever follows it). -1 when there is none.
 */
function closingQuote(s: string, from: number): number {
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92) i++;
    else if (c === 34) return i;
  }
  return -1;
}

function looksLikeAddress(token: string): boolean {
  return /^[0-9A-Fa-f:.]+\/[0-9]+$/.test(token);
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/**
 * One `addr/nn` token of a list, as spamd accepts it: an address literal of the family and
 * 1 ≤ nn ≤ 32 (128). Mask 0 is refused: it would list the whole Internet.
 */
export function checkInet(token: string): Cidr {
  return checked(token, 'inet', parseCidr(token));
}

export function checkInet6(token: string): Range6 {
  return checked(token, 'inet6', parseCidr6(token)).range;
}

function checked<T extends { bits: number }>(token: string, family: string, v: T | undefined): T {
  if (v === undefined) {
    reject(token.includes('/') ? `bad ${family} address "${clip(token)}"` : `"${clip(token)}" has no /mask`);
  }
  if (v.bits === 0) reject(`mask 0 in "${clip(token)}" would list every address`);
  return v;
}

/**
 * spamd-setup's line for a list, LF included. `message` is the raw text (real newlines and
 * quotes): a newline is sent as the two characters `\n`, `"` as `\"`, everything else as it
 * is, so `%A` and backslash escapes reach spamd's renderer untouched. IPv6 blocks, which
 * spamd-setup never sends, follow in an `inet6` group.
 */
export function formatConfigLine(tag: string, message: string, cidrs: readonly string[]): string {
  checkTag(tag);
  const escaped = message.replace(/[\n"]/g, (c) => (c === '\n' ? '\\n' : '\\"'));
  // A backslash that ends the text would escape our closing quote: the line would not parse.
  if (closingQuote(escaped + '"', 0) !== escaped.length) {
    reject(`the message of list ${tag} ends in an unpaired backslash, which would escape its closing quote`);
  }
  const v4: string[] = [];
  const v6: string[] = [];
  for (const c of cidrs) (c.includes(':') ? v6 : v4).push(c);
  const parts = [`${tag};"${escaped}";inet;${v4.length}`, ...v4];
  if (v6.length > 0) parts.push(`inet6;${v6.length}`, ...v6);
  return `${parts.join(';')}\n`;
}

/** The line that empties a list in spamd (its tag stays known). */
export function formatClearLine(tag: string): string {
  checkTag(tag);
  return `${tag};\n`;
}

function checkTag(tag: string): void {
  if (tag === '' || /[;\n]/.test(tag)) reject(`list name ${JSON.stringify(tag)} cannot be sent: it is empty or holds ";" or a newline`);
}
