import { isIP, isIPv4, isIPv6 } from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import { runTool } from './tool.js';
import type { Firewall } from './types.js';

export interface PfFirewallOptions {
  /** pfctl binary; DEFAULTS.pfctl. */
  pfctl?: string;
  /**
   * An open, read-write /dev/pf descriptor in this process. spamd opens /dev/pf as root and
   * hands the descriptor to pfctl (`-p /dev/fd/N`), so a daemon that has dropped root can
   * still change tables. Without it pfctl opens /dev/pf itself.
   */
  deviceFd?: number;
  /** A pfctl still running after this many ms is killed; DEFAULTS.firewallTimeout. */
  timeout?: number;
  /** Accept CIDR blocks as well as addresses (spamd-setup -b fills `<spamd>` with blocks). */
  cidr?: boolean;
}

/**
 * The descriptor number the device gets inside pfctl. It is always 3, the first slot after
 * stdio, whatever number it has here: /dev/fd only reaches 0..63, and a fixed slot keeps
 * the child's descriptor table small.
 */
export const PF_CHILD_FD = 3;

/** pf's PF_TABLE_NAME_SIZE is 32 bytes with the terminating NUL. */
const TABLE_NAME_MAX = 31;

/**
 * Why `name` cannot be the pf table pfgrey fills, or undefined when it can. pfgrey hands the
 * name to `pfctl -t`, and the rules refer to it as `<name>` (pf.conf(5), TABLES), so it has to
 * be a name both take:
 * - at most 31 bytes (PF_TABLE_NAME_SIZE), which pfctl and pf.conf's parser both enforce;
 * - one word to pf.conf's parser when written without quotes (yylex() in OpenBSD's
 *   sbin/pfctl/parse.y): it starts with an ASCII letter, a digit, ':' or '_', and goes on with
 *   letters, digits and ASCII punctuation except ( ) { } < > ! = / # , — which end a word in
 *   pf.conf. Anything else (a space, a non-ASCII letter, a control character) is refused.
 * pf.conf takes any name in double quotes (`<"a b">`); such names are refused all the same,
 * since `pfctl -vsT` output and pfgrey check's reading of the rules cannot tell where they end.
 * A name spelled like a pf.conf keyword (`all`, `any`, `table`) passes here but has to be quoted
 * in pf.conf.
 */
export function pfTableNameProblem(name: string): string | undefined {
  const why = (text: string) => `not a pf table name (${text})`;
  if (name === '') return why('it is empty');
  const bad = /[^A-Za-z0-9"$%&'*+\-.:;?@[\\\]^_`|~]/u.exec(name);
  if (bad) return why(`${JSON.stringify(bad[0])} cannot be in it; use letters, digits, and punctuation other than , ( ) < > { } ! = / #`);
  if (!/^[A-Za-z0-9:_]/.test(name)) return why('it must start with a letter, a digit, \':\' or \'_\'');
  if (name.length > TABLE_NAME_MAX) return why(`it is ${name.length} characters long; pf allows ${TABLE_NAME_MAX}`);
  return undefined;
}

/** Throws E_FIREWALL for a name pfTableNameProblem refuses, so it never reaches pfctl. */
export function checkTableName(table: string): void {
  const problem = pfTableNameProblem(table);
  if (problem !== undefined) throw new PfgreyError('E_FIREWALL', `${JSON.stringify(table)}: ${problem}`);
}

/**
 * `addrs` as the lines pfctl reads with `-f -`: `a.b.c.d/32`, `x::y/128`; with `cidr`, a
 * block (`a.b.c.d/nn`, `x::y/nn`) passes as it is. Anything else is refused before pfctl
 * runs, so one bad string can neither smuggle a second line in nor be half-applied.
 */
export function tableLines(addrs: readonly string[], opts: { cidr?: boolean } = {}): string {
  const out: string[] = [];
  for (const addr of addrs) {
    const slash = addr.indexOf('/');
    const host = slash < 0 ? addr : addr.slice(0, slash);
    const family = isIP(host);
    const max = family === 4 ? 32 : 128;
    const bits = slash < 0 ? '' : addr.slice(slash + 1);
    if (family === 0 || (slash >= 0 && !(opts.cidr && /^[0-9]{1,3}$/.test(bits) && Number(bits) <= max))) {
      throw new PfgreyError('E_FIREWALL', `bad address for a pf table: ${JSON.stringify(addr)}`);
    }
    out.push(slash < 0 ? `${addr}/${max}\n` : `${addr}\n`);
  }
  return out.join('');
}

/**
 * Parses `pfctl -T show`: one entry per line, indented. A host's prefix is dropped (/32 of an
 * IPv4 address, /128 of an IPv6 one); a network keeps its own, so 2001:db8::/32 is not
 * mistaken for the host 2001:db8::.
 */
export function parseShow(output: string): string[] {
  const addrs: string[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const m = /^(.*)\/(32|128)$/.exec(line);
    const host = m && ((m[2] === '32' && isIPv4(m[1]!)) || (m[2] === '128' && isIPv6(m[1]!)));
    addrs.push(host ? m[1]! : line);
  }
  return addrs;
}

type Op = 'replace' | 'add' | 'delete' | 'show';

export function pfFirewall(opts: PfFirewallOptions = {}): Firewall {
  const pfctl = opts.pfctl ?? DEFAULTS.pfctl;
  const timeout = opts.timeout ?? DEFAULTS.firewallTimeout;
  const deviceFd = opts.deviceFd;
  const lines = (addrs: readonly string[]) => tableLines(addrs, { cidr: opts.cidr });
  if (deviceFd !== undefined && !(Number.isInteger(deviceFd) && deviceFd >= 0)) {
    throw new PfgreyError('E_FIREWALL', `bad pf device descriptor ${deviceFd}`);
  }
  if (!(timeout > 0)) throw new PfgreyError('E_FIREWALL', `bad pfctl timeout ${timeout}`);

  const run = (op: Op, table: string, input: string | undefined): Promise<string> => {
    checkTableName(table);
    const args: string[] = [];
    if (deviceFd !== undefined) args.push('-p', `/dev/fd/${PF_CHILD_FD}`);
    args.push('-q', '-t', table, '-T', op);
    if (input !== undefined) args.push('-f', '-');
    return runTool({ file: pfctl, args, input, timeout, what: `${pfctl} -t ${table} -T ${op}`, fd3: deviceFd });
  };

  return {
    name: 'pf',
    async replace(table, addrs) {
      await run('replace', table, lines(addrs));
    },
    async add(table, addrs) {
      await run('add', table, lines(addrs));
    },
    async delete(table, addrs) {
      await run('delete', table, lines(addrs));
    },
    async show(table) {
      return parseShow(await run('show', table, undefined));
    },
  };
}
