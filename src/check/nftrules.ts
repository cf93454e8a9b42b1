// The part of an nftables ruleset that decides whether mail reaches pfgrey and, once
// whitelisted, the MTA, read from what `nft -j list ruleset` prints (the JSON schema of
// libnftables-json(5)), and a walk of one TCP connection through its base chains.
//
// JSON rather than nft's text: every version since 0.9 prints it, it is the same whatever the
// file's layout, and it needs no grammar of nft's own. The text of `nft -s -a list ruleset`
// is read only to quote a rule in a finding (by its handle).
//
// The walk: for a hook (prerouting, input), the base chains of the tables of the packet's family
// (ip, ip6, inet) in priority order; in each, the rules in order, `jump` and `goto` followed,
// until a verdict. `accept` ends that base chain and the next one runs; `drop` and `reject` end
// the walk; `dnat` and `redirect` rewrite the destination and end the chain, and later nat
// chains at the same hook no longer translate (the kernel sets up one translation per
// connection). What the walk does not model is taken to match: `tcp flags`, marks, limits,
// meters. Of the source address, only named sets decide: the sender is in exactly the sets the
// caller names, and in no address, prefix or anonymous set written out (so `ip saddr
// 192.0.2.0/24` does not match, `ip saddr != 192.0.2.0/24` does). The destination is an address
// of this host, so every `ip daddr` test and `fib daddr type local` match.

import { PfgreyError } from '../errors.js';

export interface NftSet {
  family: string;
  table: string;
  name: string;
  /** `ipv4_addr`, `ipv6_addr`, or a concatenation's types joined with ` . `. */
  type: string;
  flags: string[];
}

export interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  expr: unknown[];
  /** The rule as `nft -s -a list ruleset` prints it, when that was read. */
  text?: string;
}

export interface NftChain {
  family: string;
  table: string;
  name: string;
  /** Base chains only. */
  type?: string;
  hook?: string;
  prio?: number;
  policy?: 'accept' | 'drop';
  rules: NftRule[];
}

export interface NftRuleset {
  tables: Array<{ family: string; name: string }>;
  sets: NftSet[];
  chains: NftChain[];
}

const chainKey = (family: string, table: string, name: string) => `${family} ${table} ${name}`;

/**
 * Reads `nft -j list ruleset` (`json`), and quotes rules from `nft -s -a list ruleset` (`text`)
 * when given. Throws E_FIREWALL on output that is not nft's JSON.
 */
export function parseNftRuleset(json: string, text?: string): NftRuleset {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    throw new PfgreyError('E_FIREWALL', `nft -j printed something that is not JSON: ${JSON.stringify(json.slice(0, 80))}`);
  }
  const list = (doc as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(list)) throw new PfgreyError('E_FIREWALL', 'nft -j printed JSON without an "nftables" list');
  const quotes = text === undefined ? new Map<string, string>() : ruleTexts(text);
  const out: NftRuleset = { tables: [], sets: [], chains: [] };
  const chains = new Map<string, NftChain>();
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  for (const item of list) {
    const o = item as Record<string, Record<string, unknown> | undefined>;
    if (o.table) {
      out.tables.push({ family: str(o.table.family), name: str(o.table.name) });
    } else if (o.set) {
      const s = o.set;
      const type = Array.isArray(s.type) ? s.type.map(String).join(' . ') : str(s.type);
      const flags = Array.isArray(s.flags) ? s.flags.map(String) : typeof s.flags === 'string' ? [s.flags] : [];
      out.sets.push({ family: str(s.family), table: str(s.table), name: str(s.name), type, flags });
    } else if (o.chain) {
      const c = o.chain;
      const chain: NftChain = {
        family: str(c.family), table: str(c.table), name: str(c.name), rules: [],
        ...(typeof c.type === 'string' ? { type: c.type } : {}),
        ...(typeof c.hook === 'string' ? { hook: c.hook } : {}),
        ...(typeof c.prio === 'number' ? { prio: c.prio } : {}),
        ...(c.policy === 'accept' || c.policy === 'drop' ? { policy: c.policy } : {}),
      };
      chains.set(chainKey(chain.family, chain.table, chain.name), chain);
      out.chains.push(chain);
    } else if (o.rule) {
      const r = o.rule;
      const rule: NftRule = {
        family: str(r.family), table: str(r.table), chain: str(r.chain),
        handle: typeof r.handle === 'number' ? r.handle : -1,
        expr: Array.isArray(r.expr) ? r.expr : [],
      };
      const quote = quotes.get(`${chainKey(rule.family, rule.table, rule.chain)} ${rule.handle}`);
      if (quote !== undefined) rule.text = quote;
      chains.get(chainKey(rule.family, rule.table, rule.chain))?.rules.push(rule);
    }
  }
  return out;
}

/** `FAMILY TABLE CHAIN HANDLE` → the rule's line in `nft -a list ruleset`, without `# handle N`. */
function ruleTexts(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let table: string | undefined;
  let chain: string | undefined;
  let depth = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const opens = /\{\s*(?:#.*)?$/.test(line);
    if (depth === 0) {
      const m = /^table (\S+) (\S+) \{/.exec(line);
      if (m) table = `${m[1]} ${m[2]}`;
    } else if (depth === 1) {
      const m = /^chain (\S+) \{/.exec(line);
      chain = m ? m[1] : undefined;
    } else if (depth === 2 && chain !== undefined && table !== undefined) {
      const m = /^(.*?)\s+# handle (\d+)$/.exec(line);
      if (m) out.set(`${table} ${chain} ${m[2]}`, m[1]!);
    }
    if (opens) depth++;
    else if (line === '}') depth = Math.max(0, depth - 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The walk

/** A new TCP connection, as the rules see it. */
export interface Packet {
  family: 4 | 6;
  /** The destination port now (after a dnat, the new one). */
  dport: number;
  /** It arrives on the loopback interface. */
  loopback: boolean;
  /** The named sets that hold the source: `FAMILY TABLE SET`. */
  sourceSets: ReadonlySet<string>;
  /** Set when it was translated: the destination port it had (`ct original proto-dst`). */
  dnatFrom?: number;
}

export const setKey = (family: string, table: string, name: string) => `${family} ${table} ${name}`;

/** Where a translation sends the connection. */
export interface NatTarget {
  kind: 'dnat' | 'redirect';
  /** A written address; `daddr`: the one it was sent to; `interface`: the incoming interface's. */
  address: { literal: string } | { daddr: true } | { interface: true } | { unknown: true };
  /** undefined: left as it was. */
  port?: number;
}

export type Verdict =
  | { kind: 'accept' }
  | { kind: 'drop'; rule?: NftRule; chain: NftChain }
  | { kind: 'nat'; rule: NftRule; target: NatTarget };

/** What happened to a packet at one hook: the translation (if any) and the final verdict. */
export interface HookResult {
  nat?: { rule: NftRule; target: NatTarget };
  verdict: { kind: 'accept' } | { kind: 'drop'; rule?: NftRule; chain: NftChain };
  /** The rules that ended a base chain with `return` or `accept` for this packet, in order. */
  passedBy: NftRule[];
}

const FAMILIES: Record<4 | 6, ReadonlySet<string>> = { 4: new Set(['ip', 'inet']), 6: new Set(['ip6', 'inet']) };

/** The base chains at `hook` that see packets of `family`, in the order the kernel runs them. */
export function baseChains(rs: NftRuleset, hook: string, family: 4 | 6): NftChain[] {
  return rs.chains
    .filter((c) => c.hook === hook && FAMILIES[family].has(c.family))
    .map((c, i) => ({ c, i }))
    .sort((a, b) => (a.c.prio ?? 0) - (b.c.prio ?? 0) || a.i - b.i)
    .map(({ c }) => c);
}

/** Runs `packet` through the base chains at `hook`; a translation changes `packet.dport`. */
export function walkHook(rs: NftRuleset, hook: string, packet: Packet): HookResult {
  const chains = new Map(rs.chains.map((c) => [chainKey(c.family, c.table, c.name), c]));
  let p = packet;
  let nat: HookResult['nat'];
  const passedBy: NftRule[] = [];
  for (const base of baseChains(rs, hook, p.family)) {
    if (nat && base.type === 'nat') continue;
    const r = runChain(base, p, chains, 0, passedBy);
    if (r.kind === 'nat') {
      nat = { rule: r.rule, target: r.target };
      if (r.target.port !== undefined) p = { ...p, dport: r.target.port };
      continue;
    }
    if (r.kind === 'drop') return { ...(nat ? { nat } : {}), verdict: r, passedBy };
    if (r.kind === 'end' && base.policy === 'drop') return { ...(nat ? { nat } : {}), verdict: { kind: 'drop', chain: base }, passedBy };
  }
  return { ...(nat ? { nat } : {}), verdict: { kind: 'accept' }, passedBy };
}

type ChainResult = Verdict | { kind: 'end' };

const MAX_DEPTH = 16;

function runChain(chain: NftChain, p: Packet, chains: Map<string, NftChain>, depth: number, passedBy: NftRule[]): ChainResult {
  if (depth > MAX_DEPTH) return { kind: 'end' };
  for (const rule of chain.rules) {
    const r = runRule(rule, chain, p, chains, depth, passedBy);
    if (r === undefined) continue;
    if (r.kind === 'return') {
      if (depth === 0) passedBy.push(rule);
      return { kind: 'end' };
    }
    if (r.kind === 'accept' && depth === 0) passedBy.push(rule);
    return r;
  }
  return { kind: 'end' };
}

type RuleResult = ChainResult | { kind: 'return' } | undefined;

/** undefined: the rule does not match, or matches without a verdict. */
function runRule(rule: NftRule, chain: NftChain, p: Packet, chains: Map<string, NftChain>, depth: number, passedBy: NftRule[]): RuleResult {
  const enter = (target: unknown, isGoto: boolean): RuleResult => {
    const next = chains.get(chainKey(rule.family, rule.table, String(target)));
    if (!next) return undefined;
    const r = runChain(next, p, chains, depth + 1, passedBy);
    if (r.kind === 'end') return isGoto ? { kind: 'return' } : undefined;
    return r;
  };
  const verdict = (v: Record<string, unknown>): RuleResult => {
    if ('accept' in v) return { kind: 'accept' };
    if ('drop' in v || 'reject' in v) return { kind: 'drop', rule, chain };
    if ('return' in v) return { kind: 'return' };
    if ('jump' in v) return enter((v.jump as { target?: unknown } | null)?.target, false);
    if ('goto' in v) return enter((v.goto as { target?: unknown } | null)?.target, true);
    return undefined;
  };
  for (const e of rule.expr) {
    if (typeof e !== 'object' || e === null) continue;
    const o = e as Record<string, unknown>;
    if ('match' in o) {
      if (!matches(o.match as Match, rule, p)) return undefined;
      continue;
    }
    if ('dnat' in o || 'redirect' in o) {
      const kind = 'dnat' in o ? 'dnat' : 'redirect';
      return { kind: 'nat', rule, target: natTarget(kind, (o[kind] ?? {}) as Record<string, unknown>) };
    }
    if ('vmap' in o) {
      const v = o.vmap as { key?: unknown; data?: unknown };
      const hit = mapLookup(v.key, v.data, rule, p);
      if (hit !== undefined) {
        const r = verdict(hit as Record<string, unknown>);
        if (r !== undefined) return r;
      }
      continue;
    }
    const r = verdict(o);
    if (r !== undefined) return r;
    if ('accept' in o || 'drop' in o || 'reject' in o || 'return' in o || 'jump' in o || 'goto' in o) return undefined;
  }
  return undefined;
}

function natTarget(kind: 'dnat' | 'redirect', o: Record<string, unknown>): NatTarget {
  const port = typeof o.port === 'number' ? o.port : undefined;
  if (kind === 'redirect') return { kind, address: { interface: true }, ...(port !== undefined ? { port } : {}) };
  const addr = o.addr;
  const field = (addr as { payload?: { field?: unknown } } | null)?.payload?.field;
  const address: NatTarget['address'] = typeof addr === 'string' ? { literal: addr }
    : field === 'daddr' ? { daddr: true } : { unknown: true };
  return { kind, address, ...(port !== undefined ? { port } : {}) };
}

interface Match {
  op?: string;
  left?: unknown;
  right?: unknown;
}

/**
 * What the packet has for an expression: a number (ports), a string (protocols, interface
 * kinds, fib type), a list of flags (ct state and status), `source`, or undefined when the walk
 * does not model it; `absent` when the expression cannot apply to this packet at all (`udp
 * dport` of a TCP packet, `ip saddr` of an IPv6 one).
 */
type Value = number | string | { flags: string[] } | { source: string } | { iface: 'lo' | 'outside' } | 'absent' | undefined;

function valueOf(left: unknown, rule: NftRule, p: Packet): Value {
  const o = left as Record<string, Record<string, unknown> | undefined> | null;
  if (o === null || typeof o !== 'object') return undefined;
  if (o.payload) {
    const { protocol, field } = o.payload;
    if (protocol === 'tcp' || protocol === 'th') return field === 'dport' ? p.dport : undefined;
    if (protocol === 'udp' || protocol === 'udplite' || protocol === 'sctp' || protocol === 'dccp' || protocol === 'icmp' || protocol === 'icmpv6') return 'absent';
    if (protocol === 'ip' || protocol === 'ip6') {
      if ((protocol === 'ip') !== (p.family === 4)) return 'absent';
      if (field === 'saddr') return { source: `${rule.family} ${rule.table}` };
      if (field === 'protocol' || field === 'nexthdr') return 'tcp';
      return undefined;
    }
    return undefined;
  }
  if (o.meta) {
    switch (o.meta.key) {
      case 'l4proto': return 'tcp';
      case 'nfproto': return p.family === 4 ? 'ipv4' : 'ipv6';
      case 'protocol': return p.family === 4 ? 'ip' : 'ip6';
      case 'iif': case 'iifname': return { iface: p.loopback ? 'lo' : 'outside' };
      case 'iiftype': return p.loopback ? 'loopback' : 'ether';
      default: return undefined;
    }
  }
  if (o.ct) {
    switch (o.ct.key) {
      case 'state': return { flags: ['new'] };
      case 'status': return { flags: p.dnatFrom !== undefined ? ['dnat'] : [] };
      case 'proto-dst': return o.ct.dir === 'reply' ? undefined : p.dnatFrom ?? p.dport;
      case 'l3proto': return p.family === 4 ? 'ipv4' : 'ipv6';
      case 'protocol': return 'tcp';
      default: return undefined;
    }
  }
  if (o.fib) {
    const flags = Array.isArray(o.fib.flags) ? o.fib.flags : [o.fib.flags];
    if (o.fib.result === 'type' && flags.includes('daddr')) return 'local';
    if (o.fib.result === 'oif' || o.fib.result === 'oifname') return 'exists';
    return undefined;
  }
  return undefined;
}

const PROTO_NUMBERS: Record<string, string> = { 6: 'tcp', 2: 'ipv4', 10: 'ipv6' };

/** Whether `right` (one element: a value, a range, a prefix, a named set) holds `v`; undefined: unknown. */
function holds(right: unknown, v: Exclude<Value, 'absent' | undefined>, p: Packet): boolean | undefined {
  if (typeof right === 'object' && right !== null && !Array.isArray(right)) {
    const r = right as Record<string, unknown>;
    if (Array.isArray(r.set)) return anyOf(r.set, v, p);
    if (Array.isArray(r.range) && typeof v === 'number') {
      const [a, b] = r.range as unknown[];
      return typeof a === 'number' && typeof b === 'number' ? v >= a && v <= b : undefined;
    }
    if (r.prefix !== undefined || r.range !== undefined) return typeof v === 'object' && 'source' in v ? false : undefined;
    if (r.elem !== undefined) return holds((r.elem as { val?: unknown }).val, v, p);
    return undefined;
  }
  if (Array.isArray(right)) {
    // A list of flags (`ct state { established, related }` may print as one).
    return anyOf(right, v, p);
  }
  if (typeof right === 'string' && right.startsWith('@')) {
    if (typeof v === 'object' && 'source' in v) return p.sourceSets.has(`${v.source} ${right.slice(1)}`);
    return undefined;
  }
  if (typeof v === 'object' && 'source' in v) return false;
  if (typeof v === 'object' && 'iface' in v) {
    if (right === 'lo') return v.iface === 'lo';
    return v.iface === 'outside';
  }
  if (typeof v === 'object' && 'flags' in v) return v.flags.includes(String(right));
  if (typeof v === 'number') return typeof right === 'number' ? v === right : right === 'smtp' ? v === 25 : undefined;
  return v === right || PROTO_NUMBERS[String(right)] === v;
}

function anyOf(items: unknown[], v: Exclude<Value, 'absent' | undefined>, p: Packet): boolean | undefined {
  let unknown = false;
  for (const item of items) {
    const h = holds(item, v, p);
    if (h === true) return true;
    if (h === undefined) unknown = true;
  }
  return unknown ? undefined : false;
}

function matches(m: Match, rule: NftRule, p: Packet): boolean {
  const v = valueOf(m.left, rule, p);
  if (v === 'absent') return false;
  if (v === undefined) return true;
  const h = holds(m.right, v, p);
  if (h === undefined) return true;
  const op = m.op ?? '==';
  if (op === '!=') {
    // `iifname != "eth1"`: some outside interface is not eth1.
    if (typeof v === 'object' && 'iface' in v && v.iface === 'outside' && m.right !== 'lo') return true;
    return !h;
  }
  if (op === '==' || op === 'in') return h;
  if (typeof v === 'number' && typeof m.right === 'number') {
    switch (op) {
      case '<': return v < m.right;
      case '<=': return v <= m.right;
      case '>': return v > m.right;
      case '>=': return v >= m.right;
    }
  }
  return true;
}

/** The data of the first element of a verdict map whose key holds the packet's value. */
function mapLookup(key: unknown, data: unknown, rule: NftRule, p: Packet): unknown {
  const v = valueOf(key, rule, p);
  const entries = (data as { set?: unknown[] } | null)?.set;
  if (v === 'absent' || v === undefined || !Array.isArray(entries)) return undefined;
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2) continue;
    if (holds(entry[0], v, p) === true) return entry[1];
  }
  return undefined;
}
