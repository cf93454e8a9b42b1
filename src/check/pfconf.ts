// The part of pf's rule language that decides whether mail reaches pfgrey and, once whitelisted,
// the MTA: tables, filter rules (pass/block/match with divert-to and rdr-to) and translation
// rules (rdr, rdr pass, no rdr). One statement parser reads both a pf.conf file (after macros,
// comments and continuation lines are dealt with) and the normalised lines `pfctl -sr` and
// `pfctl -sn` print for the loaded ruleset. Everything else in pf.conf (options, scrub, nat,
// queues, anchors) is skipped: `pfgrey check` is not a pf.conf validator, `pfctl -nf` is.

/** `25`, `smtp`, `= 25`, `1024:65535`, `20 >< 30`, … as written; names are resolved by the checks. */
export interface PortItem {
  op: '=' | '!=' | '<' | '<=' | '>' | '>=' | '<>' | '><' | ':';
  a: string;
  b?: string;
}

/** One element of a host list: `any`, `<table>`, `! <table>`, `self`, `192.0.2.0/24`, `(em0)`, … */
export interface AddressItem {
  negated: boolean;
  any?: boolean;
  table?: string;
  text: string;
}

/** The `from …` or `to …` part of a rule; no items means any host. */
export interface Endpoint {
  hosts: AddressItem[];
  ports: PortItem[];
}

export interface Redirect {
  kind: 'divert-to' | 'rdr-to' | 'rdr';
  address: string;
  /** As written (`8025`, `spamd`, `8025:*`); absent when the port is left as it was. */
  port?: string;
}

export interface PfRule {
  action: 'pass' | 'block' | 'match' | 'rdr' | 'no-rdr';
  /** `rdr pass`: the translated packet skips the filter rules. */
  pass: boolean;
  direction?: 'in' | 'out';
  quick: boolean;
  /** `log`: what pf passes under it reaches pflog0, where pfgrey logd reads it. */
  log: boolean;
  /** `on em0`, `on { em0 em1 }`, `on ! lo0`; a leading `!` marks a negated one. */
  interfaces: string[];
  family?: 'inet' | 'inet6';
  protos: string[];
  from: Endpoint;
  to: Endpoint;
  redirect?: Redirect;
  /** The statement as written, on one line (for loaded rules: pfctl's line). */
  text: string;
  /** First line of the statement in its file; absent for loaded rules. */
  line?: number;
}

export interface PfTable {
  name: string;
  persist: boolean;
  const: boolean;
  /** `file "…"` arguments. */
  files: string[];
  /** `{ … }` lists at least one address. */
  hasAddresses: boolean;
  line?: number;
}

/** A statement pfgrey check could not follow: an undefined macro, an include. */
export interface PfProblem {
  kind: 'undefined-macro' | 'include';
  line: number;
  name: string;
}

export interface PfRuleset {
  rules: PfRule[];
  tables: Map<string, PfTable>;
  problems: PfProblem[];
}

/** A line of `pfctl -vsT`: the flag columns (`cpairhC`) and the table name. */
export interface PfctlTable {
  name: string;
  flags: string;
  persist: boolean;
  const: boolean;
}

const MACRO_DEPTH = 16;

/** Parses a pf.conf text. Line numbers are those of the first line of each statement. */
export function parsePfConf(text: string): PfRuleset {
  const macros = new Map<string, string>();
  const rules: PfRule[] = [];
  const tables = new Map<string, PfTable>();
  const problems: PfProblem[] = [];

  for (const { line, text: raw } of logicalLines(text)) {
    const stmt = stripComment(raw).trim();
    if (stmt === '') continue;
    const undefinedMacro = (name: string) => problems.push({ kind: 'undefined-macro', line, name });
    const def = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(stmt);
    if (def) {
      // pf concatenates the strings of a definition with a space and keeps `$x` inside quotes
      // as text, expanded where the macro is used.
      const value = tokenize(expandMacros(def[2]!, macros, undefinedMacro))
        .map((t) => (t.startsWith('"') ? t.slice(1, -1) : t)).join(' ');
      macros.set(def[1]!, value);
      continue;
    }
    const expanded = expandMacros(stmt, macros, undefinedMacro);
    const tokens = tokenize(expanded);
    if (tokens[0] === 'include') {
      problems.push({ kind: 'include', line, name: unquote(tokens[1] ?? '') });
      continue;
    }
    if (tokens[0] === 'table') {
      const table = parseTable(tokens, line);
      if (table) tables.set(table.name, table);
      continue;
    }
    const rule = parseRule(tokens, collapse(expanded), line);
    if (rule) rules.push(rule);
  }
  return { rules, tables, problems };
}

/**
 * Parses what `pfctl -sn` and `pfctl -sr` print: one rule a line, macros expanded, ports as
 * `= 25` or `= smtp`. Translation rules (`-sn`) go first, as pf evaluates them first.
 */
export function parsePfctlRules(...outputs: string[]): PfRule[] {
  const rules: PfRule[] = [];
  for (const output of outputs) {
    for (const raw of output.split('\n')) {
      // -vv prefixes a rule number; -v adds indented counter lines.
      const line = raw.replace(/^@\d+\s+/, '').trim();
      if (line === '' || line.startsWith('[')) continue;
      const rule = parseRule(tokenize(line), collapse(line), undefined);
      if (rule) rules.push(rule);
    }
  }
  return rules;
}

/** Parses `pfctl -vsT`: `-pa-r--<TAB>spamd-white`; tables of anchors are left out. */
export function parsePfctlTables(output: string): PfctlTable[] {
  const out: PfctlTable[] = [];
  for (const line of output.split('\n')) {
    const m = /^([-cpairhC]{5,7})\t(\S+)(.*)$/.exec(line);
    if (!m || m[2]!.includes('@') || m[3]!.trim() !== '') continue;
    const flags = m[1]!;
    out.push({ name: m[2]!, flags, persist: flags[1] === 'p', const: flags[0] === 'c' });
  }
  return out;
}

/** Joins `\`-continued lines; each logical line keeps the number of its first line. */
function logicalLines(text: string): Array<{ line: number; text: string }> {
  const out: Array<{ line: number; text: string }> = [];
  const lines = text.split(/\r?\n/);
  let acc: string | undefined;
  let start = 0;
  lines.forEach((l, i) => {
    if (acc === undefined) {
      acc = '';
      start = i + 1;
    }
    if (l.endsWith('\\')) {
      acc += `${l.slice(0, -1)} `;
      return;
    }
    out.push({ line: start, text: acc + l });
    acc = undefined;
  });
  if (acc !== undefined && acc !== '') out.push({ line: start, text: acc });
  return out;
}

function stripComment(s: string): string {
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '"') quoted = !quoted;
    else if (s[i] === '#' && !quoted) return s.slice(0, i);
  }
  return s;
}

/** Replaces `$name` outside quotes, again in what it expands to, as pfctl's lexer does. */
function expandMacros(s: string, macros: Map<string, string>, onUndefined: (name: string) => void, depth = 0): string {
  let out = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') quoted = !quoted;
    const m = !quoted && c === '$' ? /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1)) : null;
    if (!m) {
      out += c;
      continue;
    }
    const value = macros.get(m[0]);
    if (value === undefined) {
      onUndefined(m[0]);
      out += `$${m[0]}`;
    } else {
      out += depth < MACRO_DEPTH ? expandMacros(value, macros, onUndefined, depth + 1) : value;
    }
    i += m[0].length;
  }
  return out;
}

function collapse(s: string): string {
  return s.trim().replace(/\s+/g, ' ');
}

function unquote(t: string): string {
  return t.startsWith('"') && t.endsWith('"') && t.length >= 2 ? t.slice(1, -1) : t;
}

const SINGLE = new Set(['{', '}', '(', ')', ',', '=']);
const WORD_END = /[\s{}(),!"<>=]/;

/** Splits a statement into words, quoted strings, `<table>`s and pf's operators. */
export function tokenize(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    const two = s.slice(i, i + 2);
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      const end = s.indexOf('"', i + 1);
      const stop = end < 0 ? s.length : end + 1;
      out.push(end < 0 ? `${s.slice(i)}"` : s.slice(i, stop));
      i = stop;
    } else if (c === '<' && /^<[^\s<>=]+>/.test(s.slice(i))) {
      const end = s.indexOf('>', i);
      out.push(s.slice(i, end + 1));
      i = end + 1;
    } else if (['!=', '<=', '>=', '<>', '><', '->'].includes(two)) {
      out.push(two);
      i += 2;
    } else if (SINGLE.has(c) || c === '!' || c === '<' || c === '>') {
      out.push(c);
      i++;
    } else {
      let j = i + 1;
      while (j < s.length && !WORD_END.test(s[j]!) && s.slice(j, j + 2) !== '->') j++;
      out.push(s.slice(i, j));
      i = j;
    }
  }
  return out;
}

function tableName(tok: string | undefined): string | undefined {
  return tok !== undefined && /^<[^>]+>$/.test(tok) ? tok.slice(1, -1) : undefined;
}

function parseTable(tokens: string[], line: number): PfTable | undefined {
  const name = tableName(tokens[1]);
  if (name === undefined) return undefined;
  const table: PfTable = { name, persist: false, const: false, files: [], hasAddresses: false, line };
  for (let i = 2; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === 'persist') table.persist = true;
    else if (t === 'const') table.const = true;
    else if (t === 'file' && tokens[i + 1] !== undefined) table.files.push(unquote(tokens[++i]!));
    else if (t !== '{' && t !== '}' && t !== ',' && t !== 'counters' && t !== '!') table.hasAddresses = true;
  }
  return table;
}

const PORT_OPS = new Set(['=', '!=', '<', '<=', '>', '>=']);
/** Words that end a host list or a port list. */
const KEYWORDS = new Set([
  'from', 'to', 'port', 'all', 'os', 'user', 'group', 'flags', 'icmp-type', 'icmp6-type', 'tos',
  'keep', 'modulate', 'synproxy', 'no', 'label', 'tag', 'tagged', 'queue', 'divert-to', 'rdr-to',
  'nat-to', 'route-to', 'reply-to', 'dup-to', 'af-to', 'binat-to', 'divert-reply', 'divert-packet',
  'max-pkt-rate', 'probability', 'rtable', 'set', 'once', 'scrub', 'allow-opts', '->', 'received-on',
]);

/** Reads `{ a, b }` or one element, a leading `!` kept on each; returns the elements and the next index. */
function readGroup(tokens: string[], i: number): [string[], number] {
  return readList(tokens, i, (j): [string | undefined, number] => {
    if (tokens[j] === '!' && tokens[j + 1] !== undefined) return [`!${tokens[j + 1]}`, j + 2];
    return tokens[j] === undefined ? [undefined, j] : [tokens[j]!, j + 1];
  });
}

function parseHosts(tokens: string[], i: number): [AddressItem[], number] {
  const item = (t: string, negated: boolean): AddressItem => {
    const table = tableName(t);
    return { negated, text: t, ...(t === 'any' ? { any: true } : {}), ...(table !== undefined ? { table } : {}) };
  };
  const one = (j: number): [AddressItem | undefined, number] => {
    let negated = false;
    while (tokens[j] === '!') {
      negated = !negated;
      j++;
    }
    const t = tokens[j];
    if (t === undefined || (KEYWORDS.has(t) && t !== 'no')) return [undefined, j];
    if (t === '(') {
      const end = tokens.indexOf(')', j);
      const stop = end < 0 ? tokens.length : end + 1;
      return [item(tokens.slice(j, stop).join(''), negated), stop];
    }
    if (t === 'no' && tokens[j + 1] === 'route') return [item('no-route', negated), j + 2];
    if (t === 'route' && tokens[j + 1] !== undefined) return [item(`route ${tokens[j + 1]}`, negated), j + 2];
    // `192.0.2.1 - 192.0.2.9`: a range is one element.
    if (tokens[j + 1] === '-' && tokens[j + 2] !== undefined) return [item(`${t} - ${tokens[j + 2]}`, negated), j + 3];
    return [item(t, negated), j + 1];
  };
  return readList(tokens, i, one);
}

/** `{ a, b … }` (commas optional) or a single element, each read by `one`; returns the next index. */
function readList<T>(tokens: string[], i: number, one: (j: number) => [T | undefined, number]): [T[], number] {
  if (tokens[i] !== '{') {
    const [it, next] = one(i);
    return [it === undefined ? [] : [it], next];
  }
  const items: T[] = [];
  let j = i + 1;
  while (j < tokens.length && tokens[j] !== '}') {
    if (tokens[j] === ',') {
      j++;
      continue;
    }
    const [it, next] = one(j);
    if (it !== undefined) items.push(it);
    j = next > j ? next : j + 1;
  }
  return [items, j + 1];
}

function parsePortItem(tokens: string[], i: number): [PortItem | undefined, number] {
  const t = tokens[i];
  if (t === undefined) return [undefined, i];
  if (PORT_OPS.has(t)) {
    const v = tokens[i + 1];
    return v === undefined ? [undefined, i + 1] : [{ op: t as PortItem['op'], a: v }, i + 2];
  }
  const next = tokens[i + 1];
  if ((next === '<>' || next === '><') && tokens[i + 2] !== undefined) {
    return [{ op: next, a: t, b: tokens[i + 2]! }, i + 3];
  }
  const colon = t.indexOf(':');
  if (colon > 0) return [{ op: ':', a: t.slice(0, colon), b: t.slice(colon + 1) }, i + 1];
  return [{ op: '=', a: t }, i + 1];
}

function parsePorts(tokens: string[], i: number): [PortItem[], number] {
  return readList(tokens, i, (j) => parsePortItem(tokens, j));
}

function parseEndpoint(tokens: string[], i: number): [Endpoint, number] {
  let hosts: AddressItem[] = [];
  let j = i;
  if (tokens[j] !== 'port') [hosts, j] = parseHosts(tokens, j);
  let ports: PortItem[] = [];
  if (tokens[j] === 'port') [ports, j] = parsePorts(tokens, j + 1);
  return [{ hosts, ports }, j];
}

/** A redirect target: `127.0.0.1 port 8025`, `127.0.0.1`, `<pool> port 25`. */
function parseTarget(tokens: string[], i: number, kind: Redirect['kind']): [Redirect, number] {
  const [addrs, j] = readGroup(tokens, i);
  const redirect: Redirect = { kind, address: addrs.join(' ') };
  if (tokens[j] === 'port' && tokens[j + 1] !== undefined) {
    redirect.port = tokens[j + 1]!;
    return [redirect, j + 2];
  }
  return [redirect, j];
}

/** A pass/block/match/rdr/no rdr statement; undefined for any other kind. */
function parseRule(tokens: string[], text: string, line: number | undefined): PfRule | undefined {
  let action: PfRule['action'];
  let i = 1;
  if (tokens[0] === 'pass' || tokens[0] === 'block' || tokens[0] === 'match' || tokens[0] === 'rdr') {
    action = tokens[0];
  } else if (tokens[0] === 'no' && tokens[1] === 'rdr') {
    action = 'no-rdr';
    i = 2;
  } else {
    return undefined;
  }
  const rule: PfRule = {
    action, pass: false, quick: false, log: false, interfaces: [], protos: [],
    from: { hosts: [], ports: [] }, to: { hosts: [], ports: [] }, text,
    ...(line !== undefined ? { line } : {}),
  };
  if (action === 'rdr' && tokens[1] === 'pass') {
    rule.pass = true;
    i = 2;
  }
  while (i < tokens.length) {
    const t = tokens[i]!;
    switch (t) {
      case 'in': case 'out':
        rule.direction = t;
        i++;
        break;
      case 'quick':
        rule.quick = true;
        i++;
        break;
      case 'inet': case 'inet6':
        rule.family = t;
        i++;
        break;
      case 'log':
        rule.log = true;
        i++;
        if (tokens[i] === '(') i = closing(tokens, i) + 1;
        break;
      case 'on': {
        let g: string[];
        [g, i] = readGroup(tokens, i + 1);
        rule.interfaces.push(...g);
        break;
      }
      case 'proto': {
        let g: string[];
        [g, i] = readGroup(tokens, i + 1);
        rule.protos.push(...g);
        break;
      }
      case 'all':
        i++;
        break;
      case 'from':
        [rule.from, i] = parseEndpoint(tokens, i + 1);
        break;
      case 'to':
        [rule.to, i] = parseEndpoint(tokens, i + 1);
        break;
      case 'divert-to':
      case 'rdr-to':
        [rule.redirect, i] = parseTarget(tokens, i + 1, t);
        break;
      case '->':
        if (action === 'rdr') [rule.redirect, i] = parseTarget(tokens, i + 1, 'rdr');
        else i++;
        break;
      case '(':
        i = closing(tokens, i) + 1;
        break;
      case 'label': case 'tag': case 'tagged': case 'queue': case 'flags': case 'user': case 'group':
      case 'rtable': case 'probability': case 'os':
        i += 2;
        break;
      default:
        i++;
    }
  }
  return rule;
}

function closing(tokens: string[], open: number): number {
  const end = tokens.indexOf(')', open);
  return end < 0 ? tokens.length : end;
}
