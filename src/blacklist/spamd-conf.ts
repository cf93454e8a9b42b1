// spamd.conf as spamd-setup reads it (spamd.conf(5)): a getcap(3) database, looked up with
// cgetent/cgetcap/cgetstr exactly as spamd-setup calls them.
//
// getcap, as implemented here:
// - A record is one logical line: a backslash right before a newline joins the next line,
//   whose leading whitespace is kept (it ends up in messages: the stock nixspam message has a
//   TAB after its `\n`). Logical lines that are empty or start with `#` are skipped — so a
//   comment line ending in a backslash swallows the next line, as in getcap.
// - A record is `names:cap:cap:…`; names are separated by `|`; the first record with the name
//   wins. `tc=name` splices in the capabilities of record `name` (nested up to 32 deep).
// - Capabilities are looked up in order, the first wins; `cap@` hides a later `cap`.
// - `:black:`/`:white:` are flags; `msg=`, `method=`, `file=` are strings with getcap's
//   escapes (\n \t \b \f \r \e \c, \ooo, \\ and any \x = x, ^X = control-X). spamd-setup first
//   turns every `:` between double quotes into `\C`, so a quoted message may hold colons.
//
// Where we differ from spamd-setup, and why:
// - Every list named in `all` is checked before anything is fetched, so a mistake late in
//   the file is reported before any list has been sent.
// - A record on a last line without a newline counts (getcap drops it silently).
// - spamd.conf.db (a cap_mkdb(1) database that getcap would prefer) is not consulted.

import { readFile } from 'node:fs/promises';
import { PfgreyError } from '../errors.js';

export type Method = 'file' | 'http' | 'https' | 'ftp' | 'exec';
const METHODS: readonly string[] = ['file', 'http', 'https', 'ftp', 'exec'];

/** getcap's MAX_RECURSION: deeper tc= chains are taken for a loop. */
const MAX_TC_DEPTH = 32;
/** No real record has more than a handful of capabilities; this bounds tc= fan-out. */
const MAX_FIELDS = 10_000;

export interface ListConfig {
  name: string;
  kind: 'black' | 'white';
  /** The message text of a blacklist whose msg= is quoted: quotes removed, escapes decoded. */
  message?: string;
  /** The file whose contents are the message, when msg= is not quoted. */
  messageFile?: string;
  method: Method;
  /** A path (file), `host/path` (http, https, ftp) or a command line (exec). */
  file: string;
  /** Line of spamd.conf where the list's record starts. */
  line: number;
}

interface CapRecord {
  text: string;
  line: number;
}

export async function readSpamdConf(path: string): Promise<ListConfig[]> {
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new PfgreyError('E_SPAMD_CONF', `cannot read ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.code ?? e.message}`, { cause: err });
  }
  return parseSpamdConf(text, path);
}

/**
 * The lists named by the `all` record, in its order. `text` is the file's bytes as latin1,
 * so that messages reach the config port byte for byte; `fileName` is for error messages.
 */
export function parseSpamdConf(text: string, fileName: string): ListConfig[] {
  const db: CapDb = new CapDb(text, fileName);
  const all = db.find('all');
  if (all === undefined) throw new PfgreyError('E_SPAMD_CONF', `${fileName}: Can't find "all" in spamd config`);
  const names = db.expand(all, 'all').split(/[: \t]/).slice(1).filter((n) => n !== '');
  return names.map((name) => {
    const rec = db.find(name);
    if (rec === undefined) db.fail(all, `Can't find "${name}" in spamd config`);
    return listConfig(db, name, rec);
  });
}

function listConfig(db: CapDb, name: string, rec: CapRecord): ListConfig {
  if (/[;\n]/.test(name)) db.fail(rec, `list name "${name}" holds ";", which a config-port line cannot carry`);
  const caps = fixQuotedColons(db.expand(rec, name));
  let kind: 'black' | 'white';
  if (cgetcap(caps, 'black', ':') !== undefined) kind = 'black';
  else if (cgetcap(caps, 'white', ':') !== undefined) kind = 'white';
  else db.fail(rec, `Must have "black" or "white" in ${name}`);

  const cfg: ListConfig = { name, kind, method: 'file', file: '', line: rec.line };
  if (kind === 'black') {
    const msg = cgetstr(caps, 'msg');
    if (msg === undefined || msg === '') db.fail(rec, `No msg for blacklist "${name}"`);
    if (msg.length >= 2 && msg.startsWith('"') && msg.endsWith('"')) cfg.message = msg.slice(1, -1);
    else cfg.messageFile = msg;
  }
  const method = cgetstr(caps, 'method') ?? 'file';
  if (!METHODS.includes(method)) {
    // Quoted only when escapes decoded into control characters: the message stays one line.
    const shown = /[\x00-\x1f\x7f]/.test(method) ? JSON.stringify(method) : method;
    db.fail(rec, `Unknown method ${shown} for list ${name} (use file, http, https, ftp or exec)`);
  }
  cfg.method = method as Method;
  const file = cgetstr(caps, 'file');
  if (file === undefined) db.fail(rec, `No file given for ${kind}list ${name}`);
  cfg.file = file;
  return cfg;
}

class CapDb {
  private readonly records: CapRecord[] = [];

  constructor(text: string, private readonly fileName: string) {
    const lines = text.split('\n');
    let pending: string | undefined;
    let start = 0;
    for (let i = 0; i < lines.length; i++) {
      const joined: string = pending === undefined ? lines[i]! : pending + lines[i]!;
      if (pending === undefined) start = i + 1;
      const last = i === lines.length - 1;
      if (joined.endsWith('\\') && !last) {
        pending = joined.slice(0, -1);
        continue;
      }
      pending = undefined;
      if (joined !== '' && !joined.startsWith('#')) this.records.push({ text: joined, line: start });
    }
  }

  fail(rec: CapRecord, msg: string): never {
    throw new PfgreyError('E_SPAMD_CONF', `${this.fileName}:${rec.line}: ${msg}`);
  }

  /** cgetmatch over the records: the first whose name field lists `name`. */
  find(name: string): CapRecord | undefined {
    if (name === '') return undefined;
    return this.records.find((r) => {
      const colon = r.text.indexOf(':');
      return (colon < 0 ? r.text : r.text.slice(0, colon)).split('|').includes(name);
    });
  }

  /** The record with its tc= references replaced by the capabilities they name. */
  expand(rec: CapRecord, name: string, depth = 0, top = rec): string {
    if (depth > MAX_TC_DEPTH) this.fail(top, `tc= references nest deeper than ${MAX_TC_DEPTH} from "${name}": a loop?`);
    const fields = rec.text.split(':');
    // Built into a new array (a spread of a huge expansion would overflow the stack), and
    // bounded: tc= fan-out doubles at every level, so a few lines can name millions of fields.
    const out: string[] = [fields[0]!];
    let i = 1;
    for (; i < fields.length; i++) {
      const f = fields[i]!;
      // cgetcap stops at `tc@` or `tc=@`, and so does getent's expansion.
      if (f.startsWith('tc@') || f.startsWith('tc=@')) break;
      if (!f.startsWith('tc=')) {
        out.push(f);
      } else {
        const target = f.slice(3);
        const ref = this.find(target);
        if (ref === undefined) this.fail(rec, `Can't find "${target}" in spamd config (named by tc= in ${recordName(rec)})`);
        const inserted = this.expand(ref, name, depth + 1, top).split(':');
        for (let k = 1; k < inserted.length; k++) out.push(inserted[k]!);
      }
      if (out.length > MAX_FIELDS) this.fail(top, `record "${name}" grows past ${MAX_FIELDS} capabilities through tc=: a loop?`);
    }
    for (; i < fields.length; i++) out.push(fields[i]!);
    return out.join(':');
  }
}

function recordName(rec: CapRecord): string {
  return rec.text.split(/[|:]/, 1)[0]!;
}

/** spamd-setup's fix_quoted_colons: `:` between double quotes becomes getcap's `\C`. */
function fixQuotedColons(buf: string): string {
  let out = '';
  let inQuotes = false;
  let last = '';
  for (const c of buf) {
    if (c === ':' && inQuotes) out += '\\C';
    else {
      if (c === '"' && last !== '\\') inQuotes = !inQuotes;
      out += c;
    }
    last = c;
  }
  return out;
}

/**
 * getcap's cgetcap: the raw value of `cap` (type '=') or '' for a flag (type ':'), undefined
 * when absent or cancelled by `cap@`.
 */
function cgetcap(buf: string, cap: string, type: ':' | '='): string | undefined {
  const fields = buf.split(':');
  for (let i = 1; i < fields.length; i++) {
    const f = fields[i]!;
    if (!f.startsWith(cap)) continue;
    const rest = f.slice(cap.length);
    if (rest.startsWith('@')) return undefined;
    if (type === ':') {
      if (rest === '') return '';
      continue;
    }
    if (!rest.startsWith('=')) continue;
    return rest.startsWith('=@') ? undefined : rest.slice(1);
  }
  return undefined;
}

const ESCAPES: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', e: '\x1b', c: ':' };

/** getcap's cgetstr: the value of string capability `cap`, escapes decoded. */
function cgetstr(buf: string, cap: string): string | undefined {
  const raw = cgetcap(buf, cap, '=');
  if (raw === undefined) return undefined;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '^') {
      // An unfinished escape at the end of the value is dropped.
      if (++i >= raw.length) break;
      out += String.fromCharCode(raw.charCodeAt(i) & 0x1f);
    } else if (c === '\\') {
      if (++i >= raw.length) break;
      const d = raw[i]!;
      if (d >= '0' && d <= '7') {
        let n = 0;
        let digits = 0;
        while (digits < 3 && i < raw.length && raw[i]! >= '0' && raw[i]! <= '7') {
          n = n * 8 + Number(raw[i]);
          i++;
          digits++;
        }
        i--;
        out += String.fromCharCode(n & 0xff);
      } else {
        out += ESCAPES[d.toLowerCase()] ?? d;
      }
    } else {
      out += c;
    }
  }
  return out;
}
