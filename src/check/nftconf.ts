// The order of an nftables file's top-level statements that a reload (`nft -f FILE`, which is
// what `systemctl reload nftables` runs on /etc/nftables.conf) depends on: `flush ruleset`,
// the tables it declares, deletes or flushes, and the files it includes, followed as nft
// follows them: an absolute path as it is, `./x` and `../x` from the current directory, any
// other relative name from /etc (nft's default include path); wildcards in the last component
// match in name order, and matching nothing is no error.
//
// This reads the text itself because what a reload does to the sets pfgrey fills is decided by
// the order of statements across files, which the loaded ruleset no longer shows. It is a
// scanner of statements, not a parser of nft's grammar: what is inside a table's braces is
// skipped, and nft itself (loading the file) is what says whether the file is valid.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { systemErrorText } from '../errors.js';

export type NftConfEvent =
  /** `flush ruleset`, or `flush ruleset FAMILY`. */
  | { kind: 'flush-ruleset'; family?: string; file: string; line: number }
  /** `table F N { … }`, `table F N`, `add table`, `create table`. */
  | { kind: 'table'; family: string; name: string; file: string; line: number }
  /** `delete table`, `destroy table`, `flush table`: the table's sets lose their elements. */
  | { kind: 'delete-table' | 'flush-table'; family: string; name: string; file: string; line: number }
  /** An include that names no readable file. */
  | { kind: 'unreadable'; name: string; why: string; file: string; line: number };

export interface NftConfScan {
  events: NftConfEvent[];
}

/** How deep includes may nest: nft's own limit is 16. */
const MAX_INCLUDE_DEPTH = 16;
const FAMILIES = new Set(['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev']);

/** Reads `file` and the files it includes; a file that cannot be read is an `unreadable` event. */
export function scanNftConf(file: string, read: (f: string) => string = (f) => readFileSync(f, 'utf8')): NftConfScan {
  const events: NftConfEvent[] = [];
  const visit = (f: string, depth: number) => {
    const text = read(f);
    for (const st of statements(text)) {
      const [w0, w1, w2, w3] = st.words;
      const at = { file: f, line: st.line };
      if (w0 === 'include' && w1 !== undefined) {
        const name = unquote(w1);
        for (const target of includeTargets(name)) {
          if ('why' in target) {
            events.push({ kind: 'unreadable', name, why: target.why, ...at });
            continue;
          }
          if (depth >= MAX_INCLUDE_DEPTH) continue;
          try {
            visit(target.path, depth + 1);
          } catch (err) {
            events.push({ kind: 'unreadable', name: target.path, why: systemErrorText(err), ...at });
          }
        }
      } else if (w0 === 'flush' && w1 === 'ruleset') {
        events.push({ kind: 'flush-ruleset', ...(w2 !== undefined && FAMILIES.has(w2) ? { family: w2 } : {}), ...at });
      } else {
        const verb = w0 === 'add' || w0 === 'create' ? 'table'
          : w0 === 'delete' || w0 === 'destroy' ? 'delete-table' : w0 === 'flush' ? 'flush-table' : w0 === 'table' ? 'table' : undefined;
        const rest = w0 === 'table' ? st.words.slice(1) : w1 === 'table' ? st.words.slice(2) : undefined;
        if (verb === undefined || rest === undefined || rest.length === 0) continue;
        // The family may be left out: it is then ip.
        const [family, name] = FAMILIES.has(rest[0]!) && rest[1] !== undefined && rest[1] !== '{' ? [rest[0]!, rest[1]] : ['ip', rest[0]!];
        if (name === '{' || name === 'handle') continue;
        events.push({ kind: verb, family, name: unquote(name), ...at });
      }
      void w3;
    }
  };
  visit(file, 0);
  return { events };
}

function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

/** The files an include names, in the order nft reads them. */
function includeTargets(name: string): Array<{ path: string } | { why: string }> {
  const candidates = path.isAbsolute(name) ? [name]
    : /^\.\.?\//.test(name) ? [path.resolve(name)] : [path.join('/etc', name)];
  for (const c of candidates) {
    const base = path.basename(c);
    if (/[*?[]/.test(base)) {
      let names: string[];
      try {
        names = readdirSync(path.dirname(c));
      } catch {
        continue;
      }
      const re = globRegExp(base);
      // A wildcard that matches nothing is no error for nft.
      return names.filter((n) => re.test(n) && !n.startsWith('.')).sort()
        .map((n) => path.join(path.dirname(c), n))
        .filter((p) => isFile(p))
        .map((p) => ({ path: p }));
    }
    if (isFile(c)) return [{ path: c }];
  }
  return [{ why: 'no such file' }];
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

interface Statement {
  line: number;
  words: string[];
}

/**
 * The top-level statements of an nft file: words outside braces, split at newlines and `;`,
 * comments (`#` outside quotes) dropped, `\` continuing a line. Inside braces only the opening
 * statement (`table inet x {`) is kept.
 */
function statements(text: string): Statement[] {
  const out: Statement[] = [];
  let depth = 0;
  let words: string[] = [];
  let word = '';
  let line = 1;
  let start = 1;
  const endWord = () => {
    if (word !== '') {
      if (words.length === 0) start = line;
      if (depth === 0) words.push(word);
      word = '';
    }
  };
  const endStatement = () => {
    endWord();
    if (words.length > 0 && depth === 0) out.push({ line: start, words });
    words = [];
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      const end = text.indexOf('"', i + 1);
      const stop = end < 0 ? text.length : end;
      if (word === '' && words.length === 0) start = line;
      word += text.slice(i, stop + 1);
      line += (text.slice(i, stop).match(/\n/g) ?? []).length;
      i = stop;
    } else if (c === '#') {
      const end = text.indexOf('\n', i);
      i = (end < 0 ? text.length : end) - 1;
    } else if (c === '\\' && text[i + 1] === '\n') {
      endWord();
      line++;
      i++;
    } else if (c === '\n' || c === ';') {
      endStatement();
      if (c === '\n') line++;
    } else if (c === '{') {
      endWord();
      if (depth === 0) {
        words.push('{');
        out.push({ line: start, words });
        words = [];
      }
      depth++;
    } else if (c === '}') {
      endWord();
      depth = Math.max(0, depth - 1);
      words = [];
    } else if (/\s/.test(c)) {
      endWord();
    } else {
      if (word === '' && words.length === 0 && depth === 0) start = line;
      word += c;
    }
  }
  endStatement();
  return out;
}
