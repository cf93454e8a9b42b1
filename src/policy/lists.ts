// The policy door's whitelists, read as postgrey 1.37 reads its own (--whitelist-clients,
// --whitelist-recipients; their facts come from postgrey's source), and pfgrey's --exempt file.
// Each file is read once per load (startup, SIGHUP); a request is then matched without a loop
// over the list wherever postgrey's entry is a plain name or address: names sit in sets looked
// up once per label of the client name, networks in sorted merged ranges searched by bisection,
// and only /regex/ entries are tried one after another.
//
// Client file (matched against Postfix's client_name and client_address), one entry a line:
//   everything from `#` on is a comment; blank lines are skipped; the rest is trimmed;
//   /regex/        a regular expression (no white space in it), case-insensitive, on the name;
//   a.b.c.d[/nn]   an IPv4 address or network (host bits may be set: 192.0.2.7/24 is 192.0.2.0/24);
//   a.b.c          a partial IPv4 address: a.b.c.0/24;
//   a.b            a.b.0.0/16. postgrey reads this as a /24 (a.b.0.0/24: its code passes 24 for
//                  both partial forms, against its own comment and man page); pfgrey reads the
//                  /16 the documentation promises;
//   x:y::z[/nn]    an IPv6 address or network (a line with two colons is taken as one);
//   name           the host `name` and every host under it (`(^|\.)name$`, case-insensitive).
// Recipient file (matched against Postfix's recipient), postfix access(5) style:
//   user@domain    that address, and user+extension@domain;
//   user@          user and user+extension at any domain;
//   domain         any address at the domain or under it (`(@|\.)domain$`);
//   /regex/        a regular expression on the whole address, case-insensitive.
// Case-insensitive means ASCII only, as postgrey's Perl matches bytes: names, domains and users
// are compared after asciiLower. A request is whitelisted by the client list first (names and
// regexes, then addresses), then by the recipient list, as postgrey checks them.
//
// Exempt file (pfgrey's own, --exempt): Postfix's greylist.pl (examples/smtpd-policy, from
// 2004 to postfix-3.12) has no exempt file, only an auto-whitelist, so the format is ours:
//   one regular expression a line, `/regex/` or bare (the whole trimmed line); a line whose
//   first non-blank character is `#` is a comment, and blank lines are skipped; a `#` elsewhere
//   belongs to the regex. Each is matched case-insensitively against the client name, the
//   client address, the sender and the recipient, each on its own: a match on any exempts the
//   request. The sender of a bounce is empty, so `^$` exempts bounces.
//
// Where pfgrey is stricter than postgrey: postgrey drops some lines without a word (an address
// NetAddr::IP cannot read, such as 1.2.3.4/33 or 300.1.2.3) and keeps others that can never
// match (a name with `/`, `*` or `@`, which no client name holds; `.example.com`, which only a
// name with `..` would match; `@domain` in the recipients, which only an empty local part
// would); pfgrey reports all of them, with file and line, and skips them: what matches is the
// same, the mistake is no longer silent. An address with a leading zero (`010.1.2.3`) is
// reported and skipped too: postgrey reads 010 as octal 8. A regex that JavaScript cannot
// compile, or that uses Perl syntax JavaScript would read differently (see compilePerlRegex),
// is reported and skipped, where postgrey would die at startup on one Perl cannot compile.
// pfgrey's IPv4 entries match IPv4 clients and its IPv6 entries IPv6 clients: NetAddr::IP holds
// IPv4 as `::a.b.c.d`, so in postgrey `::/0` also whitelists every IPv4 client, and the IPv6
// client `::102:304` is within 1.2.3.0/24. A client written IPv4-mapped (`::ffff:192.0.2.1`,
// which Postfix itself never sends) is matched as the IPv4 address and as itself.

import { open } from 'node:fs/promises';
import { PfgreyError, systemErrorText } from '../errors.js';
import {
  cidrToRange, inRanges, mergeRanges, parseCidr, parseCidr6, parseIPv6, parseNetV4, type Range, type Range6,
} from '../blacklist/cidr.js';
import { asciiLower, parseClientAddress } from './postgrey-key.js';

/** The reasons postgrey logs for a whitelisted request, and pfgrey's for --exempt. */
export type ListReason = 'client whitelist' | 'recipient whitelist' | 'exempt';

/** A list file bigger than this is refused: postgrey's ships at 11 KB, and big local ones are some 100 KB. */
export const LIST_FILE_MAX_BYTES = 8 * 1024 * 1024;
/** Problems reported for one load; more are counted in a last line. */
export const LIST_MAX_PROBLEMS = 20;
/** How much of a bad line a problem quotes. */
const QUOTE_MAX = 80;

/** postgrey's default list files (a missing `.local` file is not an error there). */
export const POSTGREY_CLIENT_FILES: readonly string[] = ['/etc/postgrey/whitelist_clients', '/etc/postgrey/whitelist_clients.local'];
export const POSTGREY_RECIPIENT_FILES: readonly string[] = ['/etc/postgrey/whitelist_recipients', '/etc/postgrey/whitelist_recipients.local'];

/** postgrey's rule for a file that is not there: a `*.local` one is skipped without a word. */
export function postgreyIgnoresMissing(file: string): boolean {
  return file.endsWith('.local');
}

export interface PolicyListFiles {
  /** --whitelist-clients files, in order. */
  clients?: readonly string[];
  /** --whitelist-recipients files, in order. */
  recipients?: readonly string[];
  /** --exempt file(s). */
  exempt?: string | readonly string[];
  /** A file for which this is true and that does not exist (ENOENT) is skipped silently. */
  ignoreMissing?: (file: string) => boolean;
  /** Problems reported before the rest are only counted (default LIST_MAX_PROBLEMS). */
  maxProblems?: number;
  /** Larger files are refused (default LIST_FILE_MAX_BYTES). */
  maxFileBytes?: number;
}

/** A file's name (for messages) and its bytes as latin1 text. */
export interface ListText {
  file: string;
  text: string;
}

export interface PolicyListTexts {
  clients?: readonly ListText[];
  recipients?: readonly ListText[];
  exempt?: readonly ListText[];
  maxProblems?: number;
}

export interface PolicyListsLoad {
  lists: PolicyLists;
  /**
   * What is wrong in the files, one line each, `file:line: what`, ready to log; at most
   * maxProblems of them, then one line saying how many more there were. Empty if all is well.
   */
  problems: string[];
}

/** The attributes of a request that the lists look at (Postfix's names in camel case). */
export interface PolicyMatchInput {
  clientName?: string;
  clientAddress?: string;
  sender?: string;
  recipient?: string;
}

/** How many entries of each kind a load holds, for a log line. */
export interface PolicyListCounts {
  clientNames: number;
  clientRegexes: number;
  clientNetworks: number;
  recipientAddresses: number;
  recipientUsers: number;
  recipientDomains: number;
  recipientRegexes: number;
  exempt: number;
}

/** Problems of one load: the first `max` kept, the rest counted. */
class Problems {
  readonly shown: string[] = [];
  private more = 0;

  constructor(private readonly max: number) {}

  add(file: string, line: number, raw: string, what: string): void {
    if (this.shown.length >= this.max) {
      this.more++;
      return;
    }
    this.shown.push(`${file}:${line}: ${quote(raw)}: ${what}`);
  }

  result(): string[] {
    if (this.more === 0) return this.shown;
    return [...this.shown, `… and ${this.more} more problem${this.more === 1 ? '' : 's'} in the whitelists, not shown`];
  }
}

/** A line as a problem shows it: in double quotes, control characters escaped, cut at QUOTE_MAX. */
function quote(s: string): string {
  const cut = s.length > QUOTE_MAX ? `${s.slice(0, QUOTE_MAX)}…` : s;
  return JSON.stringify(cut);
}

// Perl's \s on a byte string (no locale, no unicode_strings): space, \t, \n, \v, \f, \r. Not
// \xa0, which JavaScript's \s and trim() take.
const PERL_SPACE = '[ \\t\\n\\v\\f\\r]';
const TRIM = new RegExp(`^${PERL_SPACE}+|${PERL_SPACE}+$`, 'g');
const HAS_SPACE = new RegExp(PERL_SPACE);

/** The file's lines as postgrey cleans them: comment cut from the first `#`, then trimmed. */
function* postgreyLines(text: string): Generator<{ n: number; raw: string; line: string }> {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const hash = raw.indexOf('#');
    const line = (hash < 0 ? raw : raw.slice(0, hash)).replace(TRIM, '');
    if (line !== '') yield { n: i + 1, raw: raw.replace(TRIM, ''), line };
  }
}

/** `/…/` with no white space inside, as postgrey's `^\/(\S+)\/$` takes a regex line. */
function regexLine(line: string): string | undefined {
  if (line.length < 3 || !line.startsWith('/') || !line.endsWith('/')) return undefined;
  const body = line.slice(1, -1);
  return HAS_SPACE.test(body) ? undefined : body;
}

// --- Perl regular expressions --------------------------------------------------------------

/** Escapes that mean the same in Perl and in JavaScript (without the u flag). */
const SAME_ESCAPES = new Set(['d', 'D', 'w', 'W', 's', 'S', 'b', 'B', 'n', 'r', 't', 'f']);

/**
 * A regex of postgrey's lists (Perl syntax, compiled `qr{…}i`) as a JavaScript RegExp with the
 * same meaning on latin1 strings, or why it cannot be one. Flags `is`: case-insensitive, and `.`
 * matching any character (Perl's `.` stops only at \n, which no value holds; JavaScript's would
 * also stop at \r). Translated: \A to ^, \z and \Z to $ (no value ends in a newline), and a `]`
 * first in a class (`[]a]`, `[^]a]`), a literal in Perl and an empty class in JavaScript.
 * Refused: Perl escapes JavaScript would read as something else (\h \v \R \K \Q \E \x{…} \p{…}
 * \e …), POSIX classes ([[:alpha:]], which JavaScript reads as a set of letters), `{,n}` (Perl
 * 5.34's {0,n}, a literal in JavaScript), and whatever JavaScript cannot compile (inline
 * modifiers such as (?i), possessive quantifiers, (?#…), (*VERB)).
 * Left as they are, as differences too small to refuse: \s also matches byte 0xA0 in
 * JavaScript, and /i also folds Latin-1 letters (é and É), which Perl does not on bytes.
 */
export function compilePerlRegex(src: string): { re: RegExp } | { error: string } {
  let out = '';
  let inClass = false;
  let classStart = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') {
      const n = src[i + 1];
      if (n === undefined) return { error: 'ends with a lone backslash' };
      i++;
      classStart = false;
      if (/[A-Za-z]/.test(n)) {
        if (!inClass && n === 'A') { out += '^'; continue; }
        if (!inClass && (n === 'z' || n === 'Z')) { out += '$'; continue; }
        if (SAME_ESCAPES.has(n)) { out += `\\${n}`; continue; }
        if (n === 'x' && /^[0-9A-Fa-f]{2}/.test(src.slice(i + 1))) { out += '\\x'; continue; }
        if (n === 'c' && /^[A-Za-z]/.test(src.slice(i + 1))) { out += '\\c'; continue; }
        if (n === 'k' && !inClass && src[i + 1] === '<') { out += '\\k'; continue; }
        return { error: `\\${n}${n === 'x' ? ' without two hex digits' : ''} means something else in Perl than here (pfgrey's regexes are JavaScript's)` };
      }
      out += `\\${n}`;
      continue;
    }
    if (c === '[' && /^\[:\^?[A-Za-z]+:\]/.test(src.slice(i))) {
      return { error: 'POSIX classes such as [:alpha:] are not supported; write the characters (for example [A-Za-z])' };
    }
    if (inClass) {
      if (classStart && c === ']') { out += '\\]'; classStart = false; continue; }
      classStart = false;
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      classStart = true;
      out += c;
      if (src[i + 1] === '^') { out += '^'; i++; }
      continue;
    }
    if (c === '{' && /^\{,\d+\}/.test(src.slice(i))) {
      return { error: '{,n} is not supported; write {0,n}' };
    }
    out += c;
  }
  try {
    return { re: new RegExp(out, 'is') };
  } catch (err) {
    return { error: `does not compile: ${(err as Error).message}` };
  }
}

// --- addresses -----------------------------------------------------------------------------

const V4_FULL = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:\/\d{1,2})?$/;
const V4_PARTIAL = /^\d{1,3}(?:\.\d{1,3}){1,2}$/;
// postgrey takes a line with two colons anywhere for IPv6.
const V6_LIKE = /:.*:/;

/** Characters no client name holds (Postfix sends verified host names, or `unknown`): a glob, a regex gone wrong, an address. */
const NOT_IN_NAMES = /[/*@?\\[\]()|^$:]/;

/** A line that looks numeric (digits, dots, a slash) but is not one of the address forms. */
const NUMERIC_LIKE = /^[\d./]+$/;

const hasLeadingZero = (s: string) => /(?:^|[./])0\d/.test(s.replace(/\/.*/, ''));

/** The local parts a recipient's local part `l` stands for: itself, and l up to each `+` that has something after it. */
function* userForms(l: string): Generator<string> {
  yield l;
  for (let p = l.indexOf('+'); p >= 0; p = l.indexOf('+', p + 1)) {
    if (p < l.length - 1) yield l.slice(0, p);
  }
}

// --- the lists -----------------------------------------------------------------------------

export class PolicyLists {
  /** Client names, asciiLower'd: a client matches one if its name is it or ends in `.` and it. */
  private readonly clientNames = new Set<string>();
  private readonly clientRegexes: RegExp[] = [];
  private v4: Range[] = [];
  private v6: Range6[] = [];
  private clientNetworks = 0;
  /** `user@domain` entries, asciiLower'd. */
  private readonly rcptAddresses = new Set<string>();
  /** `user@` entries: the users. */
  private readonly rcptUsers = new Set<string>();
  /** `domain` entries. */
  private readonly rcptDomains = new Set<string>();
  private readonly rcptRegexes: RegExp[] = [];
  private readonly exemptRegexes: RegExp[] = [];

  private constructor() {}

  /** No entries: matches nothing. */
  static empty(): PolicyLists {
    return new PolicyLists();
  }

  /**
   * Reads the files, in order, and parses them. Problems in lines are returned, not thrown.
   * A file that cannot be read (missing, unreadable, a directory, over maxFileBytes) throws
   * PfgreyError E_POLICY_LIST naming it, unless it is missing and `ignoreMissing` says so.
   */
  static async load(files: PolicyListFiles): Promise<PolicyListsLoad> {
    const max = files.maxFileBytes ?? LIST_FILE_MAX_BYTES;
    const read = async (list: readonly string[] | string | undefined, what: string): Promise<ListText[]> => {
      const names = list === undefined ? [] : typeof list === 'string' ? [list] : list;
      const out: ListText[] = [];
      for (const file of names) {
        const text = await readListFile(file, what, max, files.ignoreMissing);
        if (text !== undefined) out.push({ file, text });
      }
      return out;
    };
    return PolicyLists.parse({
      clients: await read(files.clients, 'client whitelist'),
      recipients: await read(files.recipients, 'recipient whitelist'),
      exempt: await read(files.exempt, 'exempt file'),
      maxProblems: files.maxProblems,
    });
  }

  /** Parses file texts (latin1) already read; `file` is only for the problems' text. */
  static parse(texts: PolicyListTexts): PolicyListsLoad {
    const lists = new PolicyLists();
    const problems = new Problems(texts.maxProblems ?? LIST_MAX_PROBLEMS);
    const v4: Range[] = [];
    const v6: Range6[] = [];
    for (const { file, text } of texts.clients ?? []) lists.parseClients(file, text, problems, v4, v6);
    for (const { file, text } of texts.recipients ?? []) lists.parseRecipients(file, text, problems);
    for (const { file, text } of texts.exempt ?? []) lists.parseExempt(file, text, problems);
    lists.clientNetworks = v4.length + v6.length;
    lists.v4 = mergeRanges(v4);
    lists.v6 = mergeRanges(v6);
    return { lists, problems: problems.result() };
  }

  private parseClients(file: string, text: string, problems: Problems, v4: Range[], v6: Range6[]): void {
    for (const { n, raw, line } of postgreyLines(text)) {
      const bad = (what: string) => problems.add(file, n, raw, what);
      const re = regexLine(line);
      if (re !== undefined) {
        const c = compilePerlRegex(re);
        if ('re' in c) this.clientRegexes.push(c.re);
        else bad(`regex ${c.error}`);
      } else if (V4_FULL.test(line) || V4_PARTIAL.test(line)) {
        if (hasLeadingZero(line)) {
          bad('a number with a leading zero, which postgrey reads as octal; write it without');
          continue;
        }
        let range: Range | undefined;
        if (V4_FULL.test(line)) {
          const c = parseCidr(line.includes('/') ? line : `${line}/32`);
          range = c === undefined ? undefined : cidrToRange(c);
        } else {
          // a.b.c is a.b.c.0/24, a.b is a.b.0.0/16 (postgrey: a.b.0.0/24, see the top).
          const addr = parseNetV4(line);
          range = addr === undefined ? undefined : cidrToRange({ addr, bits: line.split('.').length === 3 ? 24 : 16 });
        }
        if (range === undefined) bad('not an IPv4 address or network (each number 0 to 255, a prefix length 0 to 32)');
        else v4.push(range);
      } else if (V6_LIKE.test(line)) {
        if (HAS_SPACE.test(line)) {
          bad('not an IPv6 address or network: it holds white space');
          continue;
        }
        if (line.includes('/')) {
          const c = parseCidr6(line);
          if (c === undefined) bad('not an IPv6 network (an IPv6 address, `/`, a prefix length 0 to 128)');
          else v6.push(c.range);
        } else {
          const a = parseIPv6(line);
          if (a === undefined) bad('not an IPv6 address');
          else v6.push({ start: a, end: a });
        }
      } else if (HAS_SPACE.test(line)) {
        bad("doesn't look like a host name: it holds white space");
      } else if (NUMERIC_LIKE.test(line)) {
        bad('not an IPv4 address or network (a.b.c.d, a.b.c.d/nn, or the partial a.b.c and a.b)');
      } else if (NOT_IN_NAMES.test(line)) {
        bad(`not a host name: no client name holds "${NOT_IN_NAMES.exec(line)![0]}" (a /regex/ starts and ends with /; a name already matches the hosts under it)`);
      } else if (line.startsWith('.')) {
        bad(`starts with a dot, which no client name matches; write ${JSON.stringify(line.replace(/^\.+/, ''))}, which also matches the hosts under it`);
      } else {
        this.clientNames.add(asciiLower(line));
      }
    }
  }

  private parseRecipients(file: string, text: string, problems: Problems): void {
    for (const { n, raw, line } of postgreyLines(text)) {
      const bad = (what: string) => problems.add(file, n, raw, what);
      const re = regexLine(line);
      if (re !== undefined) {
        const c = compilePerlRegex(re);
        if ('re' in c) this.rcptRegexes.push(c.re);
        else bad(`regex ${c.error}`);
        continue;
      }
      if (HAS_SPACE.test(line)) {
        bad("doesn't look like an address: it holds white space");
        continue;
      }
      const at = line.indexOf('@');
      const lower = asciiLower(line);
      if (at < 0) {
        if (line.startsWith('.')) bad(`starts with a dot, which no recipient matches; write ${JSON.stringify(line.replace(/^\.+/, ''))}, which also matches the domains under it`);
        else if (line.startsWith('/') || line.endsWith('/')) bad('not a domain (a /regex/ must start and end with /, without white space)');
        else this.rcptDomains.add(lower);
      } else if (at === 0) {
        bad(`an empty user, which no recipient has (postgrey reads "@domain" so); write ${JSON.stringify(line.slice(1) || 'domain')} for the domain and the domains under it`);
      } else if (at === line.length - 1) {
        this.rcptUsers.add(lower.slice(0, -1));
      } else {
        this.rcptAddresses.add(lower);
      }
    }
  }

  private parseExempt(file: string, text: string, problems: Problems): void {
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.replace(TRIM, '');
      if (line === '' || line.startsWith('#')) continue;
      const body = line.length >= 2 && line.startsWith('/') && line.endsWith('/') ? line.slice(1, -1) : line;
      if (body === '') {
        problems.add(file, i + 1, line, 'an empty regex, which would exempt every request');
        continue;
      }
      const c = compilePerlRegex(body);
      if ('re' in c) this.exemptRegexes.push(c.re);
      else problems.add(file, i + 1, line, `regex ${c.error}`);
    }
  }

  /**
   * Why a request is not to be greylisted, or undefined: the client list (its names and
   * regexes against client_name, then its networks against client_address), then the
   * recipient list, then the exempt regexes, as postgrey's order is. A missing attribute
   * matches nothing.
   */
  match(req: PolicyMatchInput): ListReason | undefined {
    if (req.clientName !== undefined && this.clientNameListed(req.clientName)) return 'client whitelist';
    if (req.clientAddress !== undefined && this.clientAddressListed(req.clientAddress)) return 'client whitelist';
    if (req.recipient !== undefined && this.recipientListed(req.recipient)) return 'recipient whitelist';
    if (this.exemptRegexes.length > 0) {
      for (const v of [req.clientName, req.clientAddress, req.sender, req.recipient]) {
        if (v !== undefined && this.exemptRegexes.some((re) => re.test(v))) return 'exempt';
      }
    }
    return undefined;
  }

  private clientNameListed(name: string): boolean {
    if (this.clientNames.size > 0) {
      const lower = asciiLower(name);
      if (this.clientNames.has(lower)) return true;
      for (let p = lower.indexOf('.'); p >= 0; p = lower.indexOf('.', p + 1)) {
        if (this.clientNames.has(lower.slice(p + 1))) return true;
      }
    }
    return this.clientRegexes.some((re) => re.test(name));
  }

  private clientAddressListed(ip: string): boolean {
    if (this.v4.length === 0 && this.v6.length === 0) return false;
    const a = parseClientAddress(ip);
    if (a === undefined) return false;
    if (a.family === 4) return inRanges(this.v4, a.v4) || (a.mapped !== undefined && inRanges(this.v6, a.mapped));
    return inRanges(this.v6, a.v6);
  }

  private recipientListed(recipient: string): boolean {
    const lower = asciiLower(recipient);
    const at = lower.indexOf('@');
    if (at >= 0 && (this.rcptAddresses.size > 0 || this.rcptUsers.size > 0)) {
      const domain = lower.slice(at + 1);
      for (const user of userForms(lower.slice(0, at))) {
        if (this.rcptUsers.has(user) || this.rcptAddresses.has(`${user}@${domain}`)) return true;
      }
    }
    if (this.rcptDomains.size > 0) {
      for (let p = 0; p < lower.length; p++) {
        const c = lower.charCodeAt(p);
        if ((c === 0x40 || c === 0x2e) && this.rcptDomains.has(lower.slice(p + 1))) return true;
      }
    }
    return this.rcptRegexes.some((re) => re.test(recipient));
  }

  get counts(): PolicyListCounts {
    return {
      clientNames: this.clientNames.size,
      clientRegexes: this.clientRegexes.length,
      clientNetworks: this.clientNetworks,
      recipientAddresses: this.rcptAddresses.size,
      recipientUsers: this.rcptUsers.size,
      recipientDomains: this.rcptDomains.size,
      recipientRegexes: this.rcptRegexes.length,
      exempt: this.exemptRegexes.length,
    };
  }
}

/**
 * A list file's bytes as latin1 (one character a byte, as postgrey reads them and as the
 * policy reader reads requests), read at most `max` + 1 bytes far so that a huge file (or a
 * device that never ends) is refused without being read. undefined for a missing file that
 * `ignoreMissing` lets go.
 */
async function readListFile(file: string, what: string, max: number, ignoreMissing?: (file: string) => boolean): Promise<string | undefined> {
  const fail = (why: string, cause?: unknown) =>
    new PfgreyError('E_POLICY_LIST', `cannot read ${what} ${file}: ${why}`, { cause, detail: `cannot read ${what}: ${why}` });
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && ignoreMissing?.(file)) return undefined;
    throw fail(systemErrorText(err), err);
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.alloc(Math.min(64 * 1024, max + 1 - total));
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, buf.length, null));
      } catch (err) {
        throw fail(systemErrorText(err), err);
      }
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
      if (total > max) throw fail(`larger than ${max} bytes; a list this big is not read`);
    }
    return Buffer.concat(chunks).toString('latin1');
  } finally {
    await fh.close();
  }
}
