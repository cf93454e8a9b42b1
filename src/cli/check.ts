// `pfgrey check`: reads the pf rules (the loaded ones through pfctl, or a pf.conf with
// --pf-conf) and the system, and prints one line per finding: `ok:`, `warning:` or `error:`,
// where, what, and how to fix it. Exit status 1 when any finding is an error, 0 otherwise;
// a usage error prints the usage line and exits 1.
//
// Choices:
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
//   running `mount -p`.

import { open, readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { checkRules, checkSystem, exitStatus, formatFinding, tablesToShow, type CheckOptions, type CheckOs, type Finding } from '../check/checks.js';
import { fdescfsMounted, parseServices, type FileMode, type PortState, type SystemFacts } from '../check/facts.js';
import { parsePfConf, parsePfctlRules, parsePfctlTables } from '../check/pfconf.js';
import { DEFAULTS } from '../config/defaults.js';
import { parseIntegerOption } from '../config/duration.js';
import { pfTableNameProblem } from '../firewall/pf.js';
import { describe, isPfgreyError, PfgreyError, systemErrorText } from '../errors.js';
import { executableProblem, runProgram } from '../exec.js';
import { lookupUser } from '../privileges.js';
import { databasePath, failure, type CliIO } from './io.js';

export const CHECK_USAGE =
  'usage: pfgrey check [--pf-conf file] [--pfctl path] [--pf-device path] [--table name]\n' +
  '           [-l address] [-p port] [--config-port port] [--user name] [--db path]\n' +
  '           [--os openbsd|freebsd|linux]';

const OPTIONS = {
  'pf-conf': { type: 'string' },
  pfctl: { type: 'string' },
  'pf-device': { type: 'string' },
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
  passwd: string;
  services: string;
  mounts?: string;
  help: boolean;
}

export async function checkCommand(argv: string[], io: CliIO, hooks: CheckHooks = {}): Promise<number> {
  try {
    const s = parseCheckArgs(argv, io.env);
    if (s.help) {
      io.stdout.write(`${CHECK_USAGE}\n`);
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
    throw usage((err as Error).message.split('\n')[0]!);
  }
  const v = parsed.values;
  if (parsed.positionals.length > 0) throw usage(`unexpected argument "${parsed.positionals[0]}"`);
  for (const name of ['pf-conf', 'pfctl', 'pf-device', 'db', 'user', 'passwd', 'services', 'mounts'] as const) {
    if (v[name] === '') throw usage(`--${name} needs a value`);
  }
  if (v.l !== undefined && net.isIP(v.l) === 0) throw usage(`-l ${v.l}: not an IP address`);
  if (v.user !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(v.user)) throw usage(`--user ${v.user}: not a user name`);
  const tableProblem = v.table === undefined ? undefined : pfTableNameProblem(v.table);
  if (tableProblem !== undefined) throw usage(`--table ${v.table}: ${tableProblem}`);
  if (v.os !== undefined && v.os !== 'openbsd' && v.os !== 'freebsd' && v.os !== 'linux') {
    throw usage(`--os ${v.os}: expected openbsd, freebsd or linux`);
  }
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
      os: (v.os as CheckOs | undefined) ?? defaultOs(),
      pfctl: v.pfctl ?? DEFAULTS.pfctl,
      pfDevice: v['pf-device'] ?? DEFAULTS.pfDevice,
    },
    ...(v['pf-conf'] !== undefined ? { pfConf: v['pf-conf'] } : {}),
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
  const pfctlProblem = await executableProblem(opts.pfctl);
  const pfDevice = euid !== 0 ? 'not-root' as const : await openReadWrite(opts.pfDevice);
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
    db: await dbFacts(opts.dbPath),
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

async function dbFacts(dbPath: string): Promise<SystemFacts['db']> {
  const file = path.resolve(dbPath);
  const dir = path.dirname(file);
  const ancestors: SystemFacts['db']['ancestors'] = [];
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
