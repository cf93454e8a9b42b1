// `pfgrey check`: reads the firewall's rules and the system, and prints one line per finding:
// `ok:`, `warning:` or `error:`, where, what, and how to fix it. Exit status 1 when any finding
// is an error, 0 otherwise; a usage error prints the usage line and exits 1. The firewall is pf
// (the loaded rules through pfctl, or a pf.conf with --pf-conf) on the BSDs and nftables (the
// loaded ruleset through nft, or a file with --nft-conf) on Linux; --firewall, or an option
// only one of them has, chooses otherwise.
//
// Choices:
// - nft is run with argument vectors, only to read: `-t -j list ruleset` (JSON, the sets'
//   elements left out) and `-t -s -a list ruleset` (to quote rules by handle). A file given with
//   --nft-conf is loaded by nft itself in a network namespace of its own (nft-scratch.ts, under
//   unshare(1); with --map-root-user when not root), which disappears when that process ends,
//   and judged from what it lists there. The file a reload loads (--nft-conf, or
//   /etc/nftables.conf for the loaded ruleset) is also read as text for the order of its
//   `flush ruleset`, includes and tables (nftconf.ts), which the loaded ruleset no longer shows.
// - pfctl is run with argument vectors (`-si`, `-sr`, `-sn`, `-vsT`, `-t NAME -T show`), never
//   through a shell, and only to read. `-sn` may fail (OpenBSD since 4.7 has no separate
//   translation rules); its failure counts as no translation rules.
// - The account is looked up as pfgrey run looks it up (lookupUser: the password file, which
//   the BSDs generate from master.passwd). Access to the database directory counts the
//   account's own group only: pfgrey run keeps no other. The database file is not judged:
//   pfgrey run, started as root, hands it (and its -wal and -shm) to the account.
// - fdescfs is looked up in `mount -p` output on FreeBSD (`--os freebsd`, the default there).
// - A taken tarpit port is connected to: a `220` greeting within a few seconds (pfgrey
//   stutters it one byte a second) means pfgrey or spamd runs there, a warning rather than an
//   error, and the config port being taken as well is then taken to be theirs too.
// - Hidden options, for tests and unusual systems: --passwd FILE, --services FILE and
//   --mounts FILE (output of `mount -p` or `mount`) replace /etc/passwd, /etc/services and
//   running `mount -p`; --nftables-conf FILE replaces /etc/nftables.conf.

import { existsSync, readdirSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkRules, checkSystem, exitStatus, formatFinding, tablesToShow, type CheckOptions, type CheckOs, type Finding } from '../check/checks.js';
import { fdescfsMounted, parseServices, type FileMode, type PortState, type SystemFacts } from '../check/facts.js';
import { analyseNftConf, checkNftConf, checkNftRules, type NftConfAnalysis } from '../check/nftchecks.js';
import { scanNftConf } from '../check/nftconf.js';
import { parseNftRuleset } from '../check/nftrules.js';
import { parsePfConf, parsePfctlRules, parsePfctlTables } from '../check/pfconf.js';
import { DEFAULTS } from '../config/defaults.js';
import { parseIntegerOption } from '../config/duration.js';
import { nftNameProblem, nftTableProblem } from '../firewall/nft.js';
import { pfTableNameProblem } from '../firewall/pf.js';
import { describe, isPfgreyError, PfgreyError, systemErrorText } from '../errors.js';
import { executableProblem, runProgram } from '../exec.js';
import { lookupUser } from '../privileges.js';
import { openDatabase, storeKind } from '../store/open.js';
import { redactUrl } from '../store/postgres.js';
import { databasePath, failure, type CliIO } from './io.js';
import { argumentProblem, helpText } from './args.js';

export const CHECK_USAGE =
  'usage: pfgrey check [--firewall pf|nft] [--pf-conf file] [--pfctl path] [--pf-device path]\n' +
  '           [--nft-conf file] [--nft path] [--nft-table \'family name\'] [--table name]\n' +
  '           [-l address] [-p port] [--config-port port] [--user name] [--db path]\n' +
  '           [--os openbsd|freebsd|linux]';

const OPTIONS = {
  firewall: { type: 'string' },
  'pf-conf': { type: 'string' },
  pfctl: { type: 'string' },
  'pf-device': { type: 'string' },
  'nft-conf': { type: 'string' },
  nft: { type: 'string' },
  'nft-table': { type: 'string' },
  'nftables-conf': { type: 'string' },
  table: { type: 'string' },
  l: { type: 'string', short: 'l' },
  p: { type: 'string', short: 'p' },
  'config-port': { type: 'string' },
  user: { type: 'string' },
  db: { type: 'string' },
  os: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  passwd: { type: 'string' },
  services: { type: 'string' },
  mounts: { type: 'string' },
} as const;

/** What tests may replace; the defaults are this process and patient timeouts. */
export interface CheckHooks {
  /** The effective uid the checks assume (root opens the pf device). */
  euid?: number;
  /** How long a taken tarpit port has to greet with 220 (ms). */
  bannerWait?: number;
  /** pfctl and mount are killed after this long (ms). */
  commandTimeout?: number;
}

interface Settings {
  opts: CheckOptions;
  pfConf?: string;
  nftConf?: string;
  /** The file a reload of nftables loads. */
  nftablesConf: string;
  passwd: string;
  services: string;
  mounts?: string;
  help: boolean;
}

export async function checkCommand(argv: string[], io: CliIO, hooks: CheckHooks = {}): Promise<number> {
  try {
    const s = parseCheckArgs(argv, io.env);
    if (s.help) {
      io.stdout.write(helpText('check', CHECK_USAGE));
      return 0;
    }
    const findings = await runChecks(s, hooks);
    for (const f of findings) io.stdout.write(`${formatFinding(f)}\n`);
    return exitStatus(findings);
  } catch (err) {
    const { message, status } = failure(err);
    io.stderr.write(`pfgrey check: ${message}\n`);
    return status;
  }
}

function defaultOs(): CheckOs {
  return process.platform === 'openbsd' || process.platform === 'freebsd' ? process.platform : 'linux';
}

export function parseCheckArgs(argv: string[], env: NodeJS.ProcessEnv): Settings {
  const usage = (why: string) => new PfgreyError('E_USAGE', `${why}\n${CHECK_USAGE}`);
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw usage(argumentProblem('check', err));
  }
  const v = parsed.values;
  if (parsed.positionals.length > 0) throw usage(`unexpected argument "${parsed.positionals[0]}"`);
  for (const name of ['pf-conf', 'pfctl', 'pf-device', 'nft-conf', 'nft', 'nftables-conf', 'db', 'user', 'passwd', 'services', 'mounts'] as const) {
    if (v[name] === '') throw usage(`--${name} needs a value`);
  }
  if (v.l !== undefined && net.isIP(v.l) === 0) throw usage(`-l ${v.l}: not an IP address`);
  if (v.user !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(v.user)) throw usage(`--user ${v.user}: not a user name`);
  if (v.os !== undefined && v.os !== 'openbsd' && v.os !== 'freebsd' && v.os !== 'linux') {
    throw usage(`--os ${v.os}: expected openbsd, freebsd or linux`);
  }
  if (v.firewall !== undefined && v.firewall !== 'pf' && v.firewall !== 'nft') throw usage(`--firewall ${v.firewall}: expected pf or nft`);
  const os = (v.os as CheckOs | undefined) ?? defaultOs();
  // An option only one firewall has chooses it; otherwise the system's own: nftables on Linux.
  const pfOnly = (['pf-conf', 'pfctl', 'pf-device'] as const).find((n) => v[n] !== undefined);
  const nftOnly = (['nft-conf', 'nft', 'nft-table', 'nftables-conf'] as const).find((n) => v[n] !== undefined);
  if (pfOnly !== undefined && nftOnly !== undefined) throw usage(`--${pfOnly} and --${nftOnly}: one is for pf, the other for nftables`);
  const firewall = (v.firewall as 'pf' | 'nft' | undefined) ?? (pfOnly ? 'pf' : nftOnly ? 'nft' : os === 'linux' ? 'nft' : 'pf');
  const clash = firewall === 'pf' ? nftOnly : pfOnly;
  if (clash !== undefined) throw usage(`--${clash} is not for --firewall ${firewall}`);
  const tableProblem = v.table === undefined ? undefined : firewall === 'nft' ? nftNameProblem(v.table) : pfTableNameProblem(v.table);
  if (tableProblem !== undefined) throw usage(`--table ${v.table}: ${tableProblem}`);
  const nftTable = v['nft-table'];
  const nftTableBad = nftTable === undefined ? undefined : nftTableProblem(nftTable);
  if (nftTableBad !== undefined) throw usage(`--nft-table ${nftTable}: ${nftTableBad}`);
  const port = (text: string | undefined, flag: string, dflt: number) => {
    if (text === undefined) return dflt;
    try {
      return parseIntegerOption(text, flag, 1, 65535);
    } catch (err) {
      throw usage(describe(err));
    }
  };
  return {
    opts: {
      table: v.table ?? DEFAULTS.table,
      blackTable: DEFAULTS.blackTable,
      listen: v.l ?? DEFAULTS.listenAddress,
      port: port(v.p, '-p', DEFAULTS.port),
      configPort: port(v['config-port'], '--config-port', DEFAULTS.configPort),
      user: v.user ?? DEFAULTS.user,
      dbPath: databasePath(v.db, env),
      os,
      pfctl: v.pfctl ?? DEFAULTS.pfctl,
      pfDevice: v['pf-device'] ?? DEFAULTS.pfDevice,
      firewall,
      nft: v.nft ?? DEFAULTS.nft,
      nftTable: nftTable ?? DEFAULTS.nftTable,
    },
    ...(v['pf-conf'] !== undefined ? { pfConf: v['pf-conf'] } : {}),
    ...(v['nft-conf'] !== undefined ? { nftConf: v['nft-conf'] } : {}),
    nftablesConf: v['nftables-conf'] ?? '/etc/nftables.conf',
    passwd: v.passwd ?? '/etc/passwd',
    services: v.services ?? '/etc/services',
    ...(v.mounts !== undefined ? { mounts: v.mounts } : {}),
    help: v.help === true,
  };
}

async function runChecks(s: Settings, hooks: CheckHooks): Promise<Finding[]> {
  const facts = await gatherFacts(s, hooks);
  return [...await ruleFindings(s, facts, hooks), ...checkSystem(facts, s.opts)];
}

async function ruleFindings(s: Settings, facts: SystemFacts, hooks: CheckHooks): Promise<Finding[]> {
  const { opts } = s;
  if (opts.firewall === 'nft') return nftFindings(s, facts, hooks);
  const services = parseServices(await readFile(s.services, 'utf8').catch(() => ''));
  if (s.pfConf !== undefined) {
    let text: string;
    try {
      text = await readFile(s.pfConf, 'utf8');
    } catch (err) {
      return [{ severity: 'error', where: s.pfConf, text: `cannot read it (${systemErrorText(err)})` }];
    }
    return checkRules({ kind: 'file', file: s.pfConf, ruleset: parsePfConf(text) }, opts, services);
  }
  if (facts.pfctlProblem !== undefined) {
    return [{ severity: 'error', text: `the loaded rules cannot be read without ${opts.pfctl}; check a file instead: --pf-conf /etc/pf.conf` }];
  }
  const timeout = hooks.commandTimeout ?? DEFAULTS.firewallTimeout;
  const pfctl = (...args: string[]) => runProgram({ file: opts.pfctl, args, timeout });
  try {
    const status = await pfctl('-si');
    const sr = await pfctl('-sr');
    const sn = await pfctl('-sn').catch(() => '');
    const tables = parsePfctlTables(await pfctl('-vsT'));
    const rules = parsePfctlRules(sn, sr);
    const counts = new Map<string, number>();
    for (const name of tablesToShow(rules, tables, opts)) {
      const shown = await pfctl('-t', name, '-T', 'show');
      counts.set(name, shown.split('\n').filter((l) => l.trim() !== '').length);
    }
    const disabled = /^Status: Disabled/m.test(status);
    return checkRules({ kind: 'loaded', rules, tables, counts, disabled }, opts, services);
  } catch (err) {
    const asRoot = facts.euid === 0 ? '' : 'run check as root, or ';
    return [{ severity: 'error', text: `cannot read the loaded rules: ${describe(err)}; ${asRoot}check a file instead: --pf-conf /etc/pf.conf` }];
  }
}

async function gatherFacts(s: Settings, hooks: CheckHooks): Promise<SystemFacts> {
  const { opts } = s;
  const euid = hooks.euid ?? process.geteuid?.() ?? -1;
  const pf = opts.firewall !== 'nft';
  const pfctlProblem = pf ? await executableProblem(opts.pfctl) : undefined;
  const pfDevice = euid !== 0 || !pf ? 'not-root' as const : await openReadWrite(opts.pfDevice);
  const fdescfs = opts.os === 'freebsd' ? await mountTable(s, hooks) : undefined;

  const user = lookupUser(opts.user, s.passwd);

  const tarpitPort = await probePort(opts.listen, opts.port, hooks.bannerWait ?? DEFAULTS.checkBannerWait);
  const configPort = await probePort(DEFAULTS.listenAddress, opts.configPort, undefined);
  return {
    euid,
    ...(pfctlProblem !== undefined ? { pfctlProblem } : {}),
    pfDevice,
    ...(fdescfs !== undefined ? { fdescfs } : {}),
    ...(user !== undefined ? { user } : {}),
    passwdFile: s.passwd,
    db: storeKind(opts.dbPath) === 'postgres' ? await postgresFacts(opts.dbPath) : await dbFacts(opts.dbPath),
    tarpitPort,
    configPort,
  };
}

async function openReadWrite(file: string): Promise<SystemFacts['pfDevice']> {
  try {
    await (await open(file, 'r+')).close();
    return 'ok';
  } catch (err) {
    return { error: systemErrorText(err) };
  }
}

async function mountTable(s: Settings, hooks: CheckHooks): Promise<NonNullable<SystemFacts['fdescfs']>> {
  try {
    const text = s.mounts !== undefined
      ? await readFile(s.mounts, 'utf8')
      : await runProgram({ file: '/sbin/mount', args: ['-p'], timeout: hooks.commandTimeout ?? DEFAULTS.firewallTimeout });
    return { mounted: fdescfsMounted(text) };
  } catch (err) {
    return { error: isPfgreyError(err) ? err.message : systemErrorText(err) };
  }
}

async function modeOf(file: string): Promise<FileMode | undefined> {
  try {
    const st = await stat(file);
    return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
  } catch {
    return undefined;
  }
}

/** Whether the PostgreSQL database answers (opened for reading, as pfgrey db opens it). */
async function postgresFacts(url: string): Promise<SystemFacts['db']> {
  const shown = redactUrl(url);
  try {
    const store = await openDatabase(url, { readonly: true });
    await store.close();
    return { postgres: shown };
  } catch (err) {
    return { postgres: shown, problem: describe(err) };
  }
}

async function dbFacts(dbPath: string): Promise<SystemFacts['db']> {
  const file = path.resolve(dbPath);
  const dir = path.dirname(file);
  const ancestors: Array<{ path: string; mode: FileMode }> = [];
  const chain: string[] = [];
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    chain.unshift(d);
    if (d === path.dirname(d)) break;
  }
  if (dir !== path.dirname(dir)) {
    for (const d of chain) {
      const mode = await modeOf(d);
      if (mode === undefined) break;
      ancestors.push({ path: d, mode });
    }
  }
  const dirMode = await modeOf(dir);
  return { dir, ancestors, ...(dirMode ? { dirMode } : {}) };
}

/** Tries to listen where pfgrey run will; a taken port is greeted for `bannerWait` ms if given. */
async function probePort(host: string, port: number, bannerWait: number | undefined): Promise<PortState> {
  const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const server = net.createServer();
    server.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
  if (err === undefined) return { state: 'free' };
  if (err.code !== 'EADDRINUSE') return { state: 'failed', code: err.code ?? '', message: systemErrorText(err) };
  const smtp = bannerWait !== undefined && await greets220(host === '0.0.0.0' ? '127.0.0.1' : host, port, bannerWait);
  return { state: 'taken', smtp };
}

/** Whether a server at host:port starts its greeting with `220` within `wait` ms. */
function greets220(host: string, port: number, wait: number): Promise<boolean> {
  return new Promise((resolve) => {
    let text = '';
    const socket = net.connect({ host, port });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text.startsWith('220'));
    };
    const timer = setTimeout(done, wait);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      text += d;
      if (text.length >= 3) done();
    });
    socket.on('error', done);
    socket.on('close', done);
  });
}

// ---------------------------------------------------------------------------------------------
// nftables

const UNSHARE = ['/usr/bin/unshare', '/bin/unshare'];
/** Interfaces copied into the scratch namespace as dummies; a host with more is unusual. */
const MAX_INTERFACES = 256;

/** The loaded ruleset, or --nft-conf's file, judged; nft's own trouble is one finding. */
async function nftFindings(s: Settings, facts: SystemFacts, hooks: CheckHooks): Promise<Finding[]> {
  const { opts } = s;
  const nft = opts.nft ?? DEFAULTS.nft;
  const problem = await executableProblem(nft);
  if (problem !== undefined) {
    return [{ severity: 'error', text: `${problem}, so pfgrey can neither read the ruleset nor fill its sets; install nftables (apt-get install nftables), or give its path with --nft` }];
  }
  const timeout = hooks.commandTimeout ?? DEFAULTS.firewallTimeout;
  if (s.nftConf !== undefined) return nftFileFindings(s.nftConf, s, facts, timeout);

  const list = (args: string[]) => runProgram({ file: nft, args, timeout, code: 'E_FIREWALL' });
  let ruleset;
  try {
    ruleset = parseNftRuleset(await list(['-t', '-j', 'list', 'ruleset']), await list(['-t', '-s', '-a', 'list', 'ruleset']));
  } catch (err) {
    const msg = describe(err);
    const denied = /Operation not permitted|Permission denied/.test(msg);
    const why = denied ? `; nft needs CAP_NET_ADMIN to read it: ${facts.euid === 0 ? 'give check that capability' : 'run check as root'}, or` : ';';
    return [{ severity: 'error', text: `cannot read the loaded ruleset: ${msg}${why} check a file instead: --nft-conf /etc/nftables.conf` }];
  }
  const out = checkNftRules({ kind: 'loaded', ruleset }, opts);
  let analysis: NftConfAnalysis | undefined;
  try {
    analysis = analyseNftConf(scanNftConf(s.nftablesConf), opts);
  } catch (err) {
    // No file: nftables is then set up some other way, which check cannot follow.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      out.push({ severity: 'warning', where: s.nftablesConf, text: `cannot read it (${systemErrorText(err)}), so what a reload does to table ${opts.nftTable} is unknown` });
    }
  }
  if (analysis) out.push(...checkNftConf(s.nftablesConf, analysis, opts, 'boot'));
  return out;
}

async function nftFileFindings(file: string, s: Settings, facts: SystemFacts, timeout: number): Promise<Finding[]> {
  const { opts } = s;
  let analysis: NftConfAnalysis;
  try {
    analysis = analyseNftConf(scanNftConf(file), opts);
  } catch (err) {
    return [{ severity: 'error', where: file, text: `cannot read it (${systemErrorText(err)})` }];
  }
  const unshare = UNSHARE.find((p) => existsSync(p));
  if (unshare === undefined) {
    return [{ severity: 'error', where: file, text: 'cannot load it where it changes nothing: unshare(1) is missing (apt-get install util-linux)' }];
  }
  let interfaces: string[] = [];
  try {
    interfaces = readdirSync('/sys/class/net').filter((n) => n !== 'lo').slice(0, MAX_INTERFACES);
  } catch {
    // No sysfs: rules naming interfaces with iif may then fail to load in the namespace.
  }
  const helper = fileURLToPath(new URL('../check/nft-scratch.js', import.meta.url));
  const args = ['--net', ...(facts.euid === 0 ? [] : ['--map-root-user']), '--', process.execPath, helper, opts.nft ?? DEFAULTS.nft, path.resolve(file), ...interfaces];
  let result: { json?: string; text?: string; load?: string; error?: string };
  try {
    result = JSON.parse(await runProgram({ file: unshare, args, timeout, what: `${unshare} --net … nft -f ${file}` })) as typeof result;
  } catch (err) {
    result = { error: describe(err) };
  }
  if (result.load !== undefined) {
    return [{ severity: 'error', where: file, text: `nft does not load it: ${result.load}; a reload would fail the same way` }];
  }
  if (result.error !== undefined || result.json === undefined) {
    const asRoot = facts.euid === 0 ? '' : '; run check as root';
    return [{ severity: 'error', where: file, text: `cannot load it in a network namespace of its own to check it: ${result.error ?? 'no output'}${asRoot}` }];
  }
  let ruleset;
  try {
    ruleset = parseNftRuleset(result.json, result.text);
  } catch (err) {
    return [{ severity: 'error', where: file, text: describe(err) }];
  }
  return [...checkNftRules({ kind: 'file', file, ruleset }, opts, analysis), ...checkNftConf(file, analysis, opts, 'file')];
}
