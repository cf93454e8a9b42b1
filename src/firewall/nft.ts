import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import { runTool } from './tool.js';
import type { Firewall } from './types.js';

export interface NftFirewallOptions {
  /** The nft binary; DEFAULTS.nft. */
  nft?: string;
  /** `FAMILY NAME` of the table that holds the sets; DEFAULTS.nftTable (`inet pfgrey`). */
  table?: string;
  /** An nft still running after this many ms is killed; DEFAULTS.firewallTimeout. */
  timeout?: number;
  /**
   * Accept CIDR blocks as well as addresses, as `pfgrey setup -b` hands over its blacklists:
   * the sets must then be interval sets (`flags interval`), and the blocks must not overlap.
   */
  cidr?: boolean;
}

export interface NftTable {
  family: string;
  name: string;
}

const FAMILIES = ['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'];
/**
 * Names go into nft's language on stdin, so only what its scanner reads as one identifier is
 * let through: no blank, brace, quote, `;` or newline can start a second command. 254
 * characters leave room for the IPv6 set's `6` within the kernel's 255.
 */
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,253}$/;
/** Addresses per `add element` line: nft echoes a failing line to stderr, so lines stay short. */
const ELEMENTS_PER_LINE = 1000;
/**
 * Blocks per line for an interval set. nft (1.0.6) checks each `add element` command of an
 * interval set against the whole set, so short lines make a large list slow: 300,000 blocks
 * took 8–16 s at 1000 a line and about 3 s at 20,000 (nft's memory, some 440 MB, is the same
 * either way). Echoed lines are cut from error messages (nftStderr), so long ones cost nothing there.
 */
const INTERVAL_ELEMENTS_PER_LINE = 20_000;

/** Why `name` cannot name an nftables table or set, or undefined when it can. */
export function nftNameProblem(name: string): string | undefined {
  if (NAME.test(name)) return undefined;
  return 'not an nftables name (a letter or _, then up to 253 letters, digits, _ . -)';
}

/** Why `spec` is not `FAMILY NAME` (`inet pfgrey`), or undefined when it is. */
export function nftTableProblem(spec: string): string | undefined {
  const parts = spec.split(' ');
  if (parts.length !== 2 || !FAMILIES.includes(parts[0]!)) {
    return `expected FAMILY NAME, FAMILY one of ${FAMILIES.join(', ')}`;
  }
  return nftNameProblem(parts[1]!);
}

export function parseNftTable(spec: string): NftTable {
  const problem = nftTableProblem(spec);
  if (problem !== undefined) throw new PfgreyError('E_FIREWALL', `bad nftables table ${JSON.stringify(spec)}: ${problem}`);
  const [family, name] = spec.split(' ') as [string, string];
  return { family, name };
}

/**
 * IPv4 and IPv6 addresses apart, each once; anything that is not a plain address throws. With
 * `cidr`, blocks (`192.0.2.0/24`, `2001:db8::/32`) pass too, a host's own prefix (/32, /128)
 * dropped.
 */
export function splitAddresses(addrs: readonly string[], opts: { cidr?: boolean } = {}): { v4: string[]; v6: string[] } {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const a of addrs) {
    const slash = opts.cidr === true ? a.indexOf('/') : -1;
    const host = slash < 0 ? a : a.slice(0, slash);
    // isIP takes IPv6 zone ids (`fe80::1%eth0`), which nft does not.
    const family = /^[0-9A-Fa-f:.]+$/.test(host) ? isIP(host) : 0;
    const max = family === 4 ? 32 : 128;
    const bits = slash < 0 ? max : /^[0-9]{1,3}$/.test(a.slice(slash + 1)) ? Number(a.slice(slash + 1)) : -1;
    const text = bits === max ? host : `${host}/${bits}`;
    if (family === 4 && bits >= 0 && bits <= max) v4.add(text);
    else if (family === 6 && bits >= 0 && bits <= max) v6.add(text);
    else throw new PfgreyError('E_FIREWALL', `bad ${opts.cidr === true ? 'address or block' : 'address'} for an nftables set: ${JSON.stringify(a)}`);
  }
  return { v4: [...v4], v6: [...v6] };
}

/** The elements of every set in `nft -j list set …` output, as addresses or CIDR blocks. */
export function parseNftSetJson(json: string): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    throw new PfgreyError('E_FIREWALL', `nft -j printed something that is not JSON: ${JSON.stringify(json.slice(0, 80))}`);
  }
  const out: string[] = [];
  for (const item of nftObjects(doc)) {
    const set = (item as { set?: { elem?: unknown[] } }).set;
    for (const e of set?.elem ?? []) out.push(elementText(e));
  }
  return out;
}

function nftObjects(doc: unknown): unknown[] {
  const list = (doc as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(list)) throw new PfgreyError('E_FIREWALL', 'nft -j printed JSON without an "nftables" list');
  return list;
}

function elementText(e: unknown): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  const o = e as { elem?: { val?: unknown }; prefix?: { addr?: unknown; len?: unknown }; range?: unknown[] };
  if (o.elem) return elementText(o.elem.val);
  if (o.prefix) {
    const addr = String(o.prefix.addr);
    const host = isIP(addr) === 6 ? 128 : 32;
    return o.prefix.len === host ? addr : `${addr}/${String(o.prefix.len)}`;
  }
  if (Array.isArray(o.range)) return o.range.map(elementText).join('-');
  return JSON.stringify(e);
}

const shipped = new Map<string, string>();

/**
 * Where this package's example ruleset `name` is (pfgrey.nft, or pfgrey-blacklist.nft for
 * blacklist-only mode), for hints; found from dist/ and from .build/src/.
 */
export function shippedRuleset(name = 'pfgrey.nft'): string {
  let found = shipped.get(name);
  if (found === undefined) {
    found = name;
    let dir = path.dirname(fileURLToPath(import.meta.url));
    for (let up = 0; up < 5; up++) {
      const candidate = path.join(dir, 'pf', 'linux', name);
      if (existsSync(candidate)) {
        found = candidate;
        break;
      }
      dir = path.dirname(dir);
    }
    shipped.set(name, found);
  }
  return found;
}

/** nft repeats the offending input line under its message, with a line of carets below it. */
function nftStderr(stderr: string): string {
  const lines = stderr.split('\n');
  return lines.filter((line, i) => {
    if (/^\s*[\^~]+\s*$/.test(line)) return false;
    if (/^\s*[\^~]+\s*$/.test(lines[i + 1] ?? '')) return false;
    // An echoed line of ours cut short by the stderr cap has no caret line after it.
    return !/^(?:add|delete|flush|list) /.test(line);
  }).join('\n');
}

interface SetInfo {
  /** `ipv4_addr`, or the JSON of a type that is not one word. */
  type: string;
  /** Declared with `flags interval`: it takes CIDR blocks. */
  interval: boolean;
}

type Probe = { sets: Map<string, SetInfo> } | { error: PfgreyError; absent: boolean };

interface Nft {
  nft: string;
  table: NftTable;
  spec: string;
  timeout: number;
  /** The shipped ruleset that declares the sets this firewall fills, for hints. */
  ruleset: string;
}

/** A failed nft run's message with what to do about it; a failure to start nft is left as it is. */
function withHint(err: unknown, n: Nft): unknown {
  if (!(err instanceof PfgreyError) || err.code !== 'E_FIREWALL' || err.cause !== undefined) return err;
  if (/Operation not permitted|Permission denied/.test(err.message)) {
    return new PfgreyError('E_FIREWALL', `${err.message}; pfgrey needs CAP_NET_ADMIN to change nftables ` +
      'sets: run it as root, or give it that capability (AmbientCapabilities=CAP_NET_ADMIN)');
  }
  if (/No such file or directory/.test(err.message)) {
    return new PfgreyError('E_FIREWALL', `${err.message}; table ${n.spec} or a set in it is missing: ${loadFirst(n)}`);
  }
  return err;
}

function loadFirst(n: { ruleset: string }): string {
  return `load the ruleset first: nft -f ${n.ruleset}`;
}

/** The table's sets (name → element type), or why they cannot be listed. */
async function probe(n: Nft): Promise<Probe> {
  const args = ['-t', '-j', 'list', 'sets', 'table', n.table.family, n.table.name];
  let out: string;
  try {
    out = await runTool({ file: n.nft, args, timeout: n.timeout, what: `${n.nft} ${args.join(' ')}`, stderrText: nftStderr });
  } catch (err) {
    const e = err instanceof PfgreyError ? err : new PfgreyError('E_FIREWALL', String(err));
    // This command names nothing but the table, so "no such file" can only mean the table.
    if (e.cause === undefined && /No such file or directory/.test(e.message)) {
      return {
        error: new PfgreyError('E_FIREWALL', `${e.message}; table ${n.spec} is not loaded: ${loadFirst(n)}`),
        absent: true,
      };
    }
    return { error: withHint(e, n) as PfgreyError, absent: false };
  }
  const sets = new Map<string, SetInfo>();
  try {
    for (const item of nftObjects(JSON.parse(out))) {
      const set = (item as { set?: { name?: unknown; type?: unknown; flags?: unknown } }).set;
      if (set && typeof set.name === 'string') {
        sets.set(set.name, {
          type: typeof set.type === 'string' ? set.type : JSON.stringify(set.type),
          interval: Array.isArray(set.flags) && set.flags.includes('interval'),
        });
      }
    }
  } catch (err) {
    return { error: err instanceof PfgreyError ? err : new PfgreyError('E_FIREWALL', `${n.nft}: cannot read its JSON`), absent: false };
  }
  return { sets };
}

/**
 * Why pfgrey cannot use the nftables table `spec` through `nft` (not loaded, no permission, …),
 * or undefined when it can.
 */
export async function nftTableLoadProblem(opts: NftFirewallOptions = {}): Promise<string | undefined> {
  const spec = opts.table ?? DEFAULTS.nftTable;
  const p = await probe({
    nft: opts.nft ?? DEFAULTS.nft, table: parseNftTable(spec), spec, timeout: opts.timeout ?? DEFAULTS.firewallTimeout,
    ruleset: shippedRuleset(opts.cidr === true ? 'pfgrey-blacklist.nft' : 'pfgrey.nft'),
  });
  if (!('error' in p)) return undefined;
  return p.absent ? `nftables table ${spec} is not loaded` : p.error.message;
}

/**
 * pfgrey's whitelist in nftables sets: IPv4 addresses in the set named like the table pfgrey is
 * given (`spamd-white`), IPv6 addresses in the same name with a 6 (`spamd-white6`), both in one
 * nftables table (`inet pfgrey`) that the ruleset declares. Each change is one `nft -f -`
 * transaction, so the firewall never sees a half-written set. With `cidr` the same for
 * blacklists' blocks (`pfgrey setup -b`: set `spamd`, an interval set).
 */
export function nftFirewall(opts: NftFirewallOptions = {}): Firewall {
  const spec = opts.table ?? DEFAULTS.nftTable;
  const cidr = opts.cidr === true;
  const n: Nft = {
    nft: opts.nft ?? DEFAULTS.nft, table: parseNftTable(spec), spec, timeout: opts.timeout ?? DEFAULTS.firewallTimeout,
    ruleset: shippedRuleset(cidr ? 'pfgrey-blacklist.nft' : 'pfgrey.nft'),
  };
  if (!(n.timeout > 0)) throw new PfgreyError('E_FIREWALL', `bad nft timeout ${n.timeout}`);
  const where = `${n.table.family} ${n.table.name}`;
  const perLine = cidr ? INTERVAL_ELEMENTS_PER_LINE : ELEMENTS_PER_LINE;
  const split = (addrs: readonly string[]) => splitAddresses(addrs, { cidr });
  /** The table's sets as last listed; forgotten on any failure, since the ruleset may have been reloaded. */
  let known: Map<string, SetInfo> | undefined;

  const sets = async (): Promise<Map<string, SetInfo>> => {
    if (known === undefined) {
      const p = await probe(n);
      if ('error' in p) throw p.error;
      known = p.sets;
    }
    return known;
  };

  /** Checks the IPv4 set; says whether the IPv6 set exists. */
  const checkSets = async (set: string): Promise<boolean> => {
    const problem = nftNameProblem(set);
    if (problem !== undefined) throw new PfgreyError('E_FIREWALL', `bad nftables set name ${JSON.stringify(set)}: ${problem}`);
    const s = await sets();
    const info = s.get(set);
    if (info === undefined) {
      known = undefined;
      throw new PfgreyError('E_FIREWALL', `table ${spec} has no set ${set}: ${loadFirst(n)}`);
    }
    const info6 = s.get(`${set}6`);
    for (const [name, got, want] of [[set, info, 'ipv4_addr'], [`${set}6`, info6, 'ipv6_addr']] as const) {
      if (got === undefined) continue;
      if (got.type !== want) {
        known = undefined;
        throw new PfgreyError('E_FIREWALL', `set ${name} in table ${spec} holds ${got.type}; pfgrey needs ${want}`);
      }
      // nft would refuse the first block with a message that does not name the set.
      if (cidr && !got.interval) {
        known = undefined;
        throw new PfgreyError('E_FIREWALL', `set ${name} in table ${spec} takes no CIDR blocks: declare it as ` +
          `\`set ${name} { type ${want}; flags interval; }\` (see ${n.ruleset})`);
      }
    }
    return info6 !== undefined;
  };

  const elements = (verb: 'add' | 'delete', set: string, addrs: readonly string[]): string[] => {
    const lines: string[] = [];
    for (let i = 0; i < addrs.length; i += perLine) {
      lines.push(`${verb} element ${where} ${set} { ${addrs.slice(i, i + perLine).join(', ')} }`);
    }
    return lines;
  };

  const apply = async (op: string, set: string, lines: string[]): Promise<void> => {
    if (lines.length === 0) return;
    try {
      await runTool({
        file: n.nft, args: ['-f', '-'], input: `${lines.join('\n')}\n`, timeout: n.timeout,
        what: `${n.nft} -f - (${op} set ${set} in table ${spec})`, stderrText: nftStderr,
      });
    } catch (err) {
      known = undefined;
      // nft names only a line of our script; when the table or the set is gone, the probe says so.
      await checkSets(set);
      throw withHint(err, n);
    }
  };

  /** IPv6 addresses with nowhere to go fail the call, so they are reported and retried, not lost. */
  const noSet6 = (set: string, v6: readonly string[]): PfgreyError => {
    known = undefined;
    return new PfgreyError('E_FIREWALL',
      `table ${spec} has no set ${set}6 for IPv6: ${v6.length} address${v6.length === 1 ? '' : 'es'} left out ` +
      `(${v6.slice(0, 3).join(', ')}${v6.length > 3 ? ', …' : ''}); declare it as ` +
      `\`set ${set}6 { type ipv6_addr;${cidr ? ' flags interval;' : ''} }\` (see ${n.ruleset})`);
  };

  return {
    name: 'nft',
    async replace(set, addrs) {
      const { v4, v6 } = split(addrs);
      const has6 = await checkSets(set);
      const lines = [`flush set ${where} ${set}`, ...elements('add', set, v4)];
      if (has6) lines.push(`flush set ${where} ${set}6`, ...elements('add', `${set}6`, v6));
      await apply('replace', set, lines);
      if (!has6 && v6.length > 0) throw noSet6(set, v6);
    },
    async add(set, addrs) {
      const { v4, v6 } = split(addrs);
      const has6 = await checkSets(set);
      await apply('add to', set, [...elements('add', set, v4), ...(has6 ? elements('add', `${set}6`, v6) : [])]);
      if (!has6 && v6.length > 0) throw noSet6(set, v6);
    },
    async delete(set, addrs) {
      const { v4, v6 } = split(addrs);
      const has6 = await checkSets(set);
      // Adding first makes deleting an absent address a no-op, as it is for pfctl -T delete,
      // instead of failing the whole transaction.
      const lines = [...elements('add', set, v4), ...elements('delete', set, v4)];
      if (has6) lines.push(...elements('add', `${set}6`, v6), ...elements('delete', `${set}6`, v6));
      await apply('delete from', set, lines);
    },
    async show(set) {
      const has6 = await checkSets(set);
      const list = async (name: string): Promise<string[]> => {
        const args = ['-j', 'list', 'set', n.table.family, n.table.name, name];
        try {
          return parseNftSetJson(await runTool({ file: n.nft, args, timeout: n.timeout, what: `${n.nft} ${args.join(' ')}`, stderrText: nftStderr }));
        } catch (err) {
          known = undefined;
          throw withHint(err, n);
        }
      };
      return [...await list(set), ...(has6 ? await list(`${set}6`) : [])];
    },
  };
}
