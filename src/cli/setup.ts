// `pfgrey setup`: spamd-setup(8). Reads spamd.conf(5), fetches the lists named by `all`
// in order, subtracts each whitelist from the blacklist before it, and sends every blacklist
// to the daemon's config port: one connection, one line, close. With -b the blocks of all
// blacklists also replace pf's table <spamd>, or on Linux the nftables set spamd (the packet
// filter chosen as `pfgrey run` chooses it: --firewall auto|pf|nft|none).
//
// Choices where spamd-setup gives no answer or ours differs:
// - The whole of spamd.conf (and every msg file) is checked before anything is fetched.
// - A list that cannot be fetched is not sent, so the daemon keeps its previous contents for
//   that tag; a line on stderr says so, the other lists are still sent, and the exit status
//   is 1. A blacklist that yields no address at all counts as such a failure (spamd-setup
//   skips it quietly). So does a failed whitelist: its blacklist is not sent rather than
//   sent with the addresses it was meant to spare.
// - Under -b, after such a failure, <spamd> is left as it was rather than replaced without
//   that list's addresses.
// - A blacklist that its whitelists empty completely is sent as a clear line (`tag;`);
//   spamd-setup sends `inet;0`, which spamd refuses, so the old addresses would stay.
// - A blacklist covering all of IPv4 (0.0.0.0/0) is refused; spamd would refuse mask 0.
//   A block at 0.0.0.0 is sent; spamd-setup stops the list there (its terminator value).
// - -n also prints the lines that would be sent, on stdout; -D checks spamd.conf first, so
//   its errors are seen, then runs the rest detached, its messages to syslog, retrying a
//   refused config port for 30 s (--wait-for-daemon), since rc.d starts it with the daemon.
// - The source port is a reserved one (1023 down to 600), as rresvport gives spamd-setup,
//   because spamd and a pfgrey daemon that may bind reserved ports refuse others. When this
//   process may not bind one (neither root nor CAP_NET_BIND_SERVICE) any port is used: a
//   pfgrey daemon that may not either accepts that (it could not prove more).
// - Under -b the nftables set gets the union of all blacklists, overlaps merged: an interval
//   set refuses overlapping blocks in one transaction, where pf's table takes them.
// - With -b and --firewall auto, finding neither pf nor pfgrey's nftables table is an error
//   (the lists are still sent); --firewall none sends the lists and loads no table.
// - On a terminal each list shows one line with the bytes received so far; through a pipe
//   only errors and -d lines are written.
// - Relative paths in spamd.conf (file=, msg=, exec commands) are taken from the directory of
//   spamd.conf; spamd-setup takes them from /.

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { closeSync } from 'node:fs';
import { formatCidr, mergeRanges, rangesToCidrs, subtractRanges, type Range } from '../blacklist/cidr.js';
import { formatClearLine, formatConfigLine } from '../blacklist/config-line.js';
import { fetchList, parseList, sourceUrl, type ParsedList } from '../blacklist/fetch.js';
import { readSpamdConf, type ListConfig } from '../blacklist/spamd-conf.js';
import { Backoff } from '../backoff.js';
import { DEFAULTS } from '../config/defaults.js';
import { parseIntegerOption } from '../config/duration.js';
import { describe, PfgreyError, systemErrorText } from '../errors.js';
import { nftTableProblem } from '../firewall/nft.js';
import { chooseFirewall, type FirewallKind } from '../firewall/select.js';
import type { Logger } from '../log.js';
import { failure, type CliIO } from './io.js';
import { argumentProblem, helpText } from './args.js';

export const SETUP_USAGE = 'usage: pfgrey setup [-bDdn] [--config file] [--config-port port] [--firewall auto|pf|nft|none]\n' +
  '           [--pfctl path] [--nft path] [--nft-table \'family name\'] [--wait-for-daemon secs]';

/** rresvport's search: the first free port from 1023 down. */
const RESERVED_FIRST = 1023;
const RESERVED_LAST = 600;
/** Malformed list lines shown per list; the rest are counted in one line. */
const BAD_LINES_SHOWN = 5;
/** Least time between two redraws of a progress line (ms). */
const PROGRESS_REDRAW = 100;
/** This module's sibling entry point, run again for -D. */
const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

const OPTIONS = {
  b: { type: 'boolean', short: 'b' },
  D: { type: 'boolean', short: 'D' },
  d: { type: 'boolean', short: 'd' },
  n: { type: 'boolean', short: 'n' },
  config: { type: 'string' },
  'config-port': { type: 'string' },
  firewall: { type: 'string' },
  pfctl: { type: 'string' },
  nft: { type: 'string' },
  'nft-table': { type: 'string' },
  'wait-for-daemon': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface Settings {
  /** How long a refused connection to the config port is retried (ms): a daemon starting. */
  waitForDaemon: number;
  pfTable: boolean;
  daemonize: boolean;
  debug: boolean;
  dryRun: boolean;
  config: string;
  port: number;
  /** Where -b loads the blocks: pf's <spamd> or the nftables set spamd. */
  firewall: FirewallKind;
  pfctl: string;
  nft: string;
  nftTable: string;
}

/** A blacklist whose whitelists are still being gathered. */
interface Pending {
  name: string;
  message: string;
  black: Range[];
  white: Range[];
}

export async function setupCommand(argv: string[], io: CliIO): Promise<number> {
  const out = new Output(io);
  try {
    const settings = parseSettings(argv, io, out);
    if (typeof settings === 'number') return settings;
    const lists = await readSpamdConf(settings.config);
    const baseDir = path.dirname(path.resolve(settings.config));
    const messages = await readMessages(lists, baseDir, settings.config);
    if (settings.daemonize) return await daemonize(settings, io);
    return await new Setup(settings, io, out, baseDir, messages).run(lists);
  } catch (err) {
    const { message, status } = failure(err);
    out.error(message);
    return status;
  }
}

function parseSettings(argv: string[], io: CliIO, out: Output): Settings | number {
  const usage = (why: string): number => {
    out.error(why);
    io.stderr.write(`${SETUP_USAGE}\n`);
    return 1;
  };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    return usage(argumentProblem('setup', err));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(helpText('setup', SETUP_USAGE));
    return 0;
  }
  if (positionals.length > 0) return usage(`unexpected argument "${positionals[0]}"`);
  if (values.config === '') return usage('--config needs a path');
  if (values.pfctl === '') return usage('--pfctl needs a path');
  if (values.nft === '') return usage('--nft needs a path');
  const firewall = values.firewall ?? 'auto';
  if (firewall !== 'auto' && firewall !== 'pf' && firewall !== 'nft' && firewall !== 'none') {
    return usage(`--firewall ${firewall}: expected auto, pf, nft or none`);
  }
  const tableProblem = values['nft-table'] === undefined ? undefined : nftTableProblem(values['nft-table']);
  if (tableProblem !== undefined) return usage(`--nft-table ${values['nft-table']}: ${tableProblem}`);
  const port = values['config-port'] === undefined ? DEFAULTS.configPort
    : parseIntegerOption(values['config-port'], '--config-port', 1, 65535);
  const wait = values['wait-for-daemon'] === undefined ? (values.D === true ? DEFAULTS.setupWaitForDaemon : 0)
    : parseIntegerOption(values['wait-for-daemon'], '--wait-for-daemon', 0, 3600) * 1000;
  return {
    pfTable: values.b === true,
    daemonize: values.D === true,
    debug: values.d === true,
    dryRun: values.n === true,
    config: values.config ?? DEFAULTS.spamdConf,
    port,
    firewall,
    pfctl: values.pfctl ?? DEFAULTS.pfctl,
    nft: values.nft ?? DEFAULTS.nft,
    nftTable: values['nft-table'] ?? DEFAULTS.nftTable,
    waitForDaemon: wait,
  };
}

/** Each blacklist's message text; msg files are read now so their errors come first. */
async function readMessages(lists: ListConfig[], baseDir: string, confName: string): Promise<Map<string, string>> {
  const messages = new Map<string, string>();
  for (const l of lists) {
    if (l.kind !== 'black') continue;
    let text = l.message;
    if (text === undefined) {
      const file = path.resolve(baseDir, l.messageFile!);
      try {
        text = await readFile(file, 'latin1');
      } catch (err) {
        throw new PfgreyError('E_SPAMD_CONF', `${confName}:${l.line}: Can't open message from ${l.messageFile}: ${systemErrorText(err)}`);
      }
    }
    // Refuses, now, a message the config port could not carry (one ending in a backslash).
    formatConfigLine(l.name, text, []);
    messages.set(l.name, text);
  }
  return messages;
}

/** Runs the same command again, detached and without -D, and returns at once. */
async function daemonize(s: Settings, io: CliIO): Promise<number> {
  const args = ['setup', '--config', path.resolve(s.config), '--config-port', String(s.port), '--firewall', s.firewall,
    '--pfctl', s.pfctl, '--nft', s.nft, '--nft-table', s.nftTable, '--wait-for-daemon', String(s.waitForDaemon / 1000)];
  if (s.pfTable) args.push('-b');
  if (s.debug) args.push('-d');
  if (s.dryRun) args.push('-n');
  // What the background run has to say goes to syslog through logger(1), as the daemon's log
  // does: nobody reads the terminal it was started from. Without -d it says only what failed,
  // hence the err priority. The command reaches sh as arguments, never as script text.
  const child = spawn('/bin/sh', ['-c', '"$@" 2>&1 | logger -t pfgrey-setup -p daemon.err', 'sh', process.execPath, MAIN, ...args],
    { detached: true, stdio: 'ignore', env: io.env });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new PfgreyError('E_COMMAND', `cannot start in the background: ${systemErrorText(err)}`)));
  });
  child.unref();
  return 0;
}

class Setup {
  private status = 0;
  /** Blocks for <spamd>, from every blacklist handled so far. */
  private readonly table: string[] = [];
  /** The same addresses as ranges, for the nftables set, which takes no overlapping blocks. */
  private readonly tableRanges: Range[] = [];
  /** False once a blacklist was not sent: <spamd> would then lose its addresses. */
  private tableComplete = true;

  constructor(private readonly s: Settings, private readonly io: CliIO, private readonly out: Output,
    private readonly baseDir: string, private readonly messages: Map<string, string>) {}

  async run(lists: ListConfig[]): Promise<number> {
    // A closed pipe (`pfgrey setup -n | head`) must not crash us with an unhandled 'error'.
    if (this.s.dryRun) this.io.stdout.on('error', () => {});
    // The blacklist being assembled; 'failed' while the whitelists of a failed one go by.
    let current: Pending | 'failed' | undefined;
    for (const l of lists) {
      if (l.kind === 'black') {
        if (current !== undefined && current !== 'failed') await this.finish(current);
        const parsed = await this.load(l, 'blacklist', 'not sent, spamd keeps its previous list');
        current = 'failed';
        if (parsed === undefined) continue;
        if (parsed.entries === 0) {
          this.fail(`list ${l.name}: no addresses in it; not sent, spamd keeps its previous list`);
          continue;
        }
        current = { name: l.name, message: this.messages.get(l.name)!, black: parsed.ranges, white: [] };
      } else if (current === undefined) {
        this.out.error(`whitelist ${l.name} comes before any blacklist in "all", so it applies to none; ignored`);
      } else if (current === 'failed') {
        this.debug(`whitelist ${l.name} skipped: its blacklist was not loaded`);
      } else {
        const parsed = await this.load(l, 'whitelist', `blacklist ${current.name} not sent, spamd keeps its previous list`);
        if (parsed === undefined) {
          current = 'failed';
          continue;
        }
        for (const r of parsed.ranges) current.white.push(r);
      }
    }
    if (current !== undefined && current !== 'failed') await this.finish(current);
    if (this.s.pfTable && !this.s.dryRun) await this.loadTable();
    return this.status;
  }

  private fail(msg: string): void {
    this.out.error(msg);
    this.status = 1;
    this.tableComplete = false;
  }

  private debug(line: string): void {
    if (this.s.debug) this.out.line(line);
  }

  /** Fetches and parses one list; undefined (reported, with `consequence`) when it fails. */
  private async load(l: ListConfig, kind: string, consequence: string): Promise<ParsedList | undefined> {
    if (l.method === 'http' || l.method === 'https' || l.method === 'ftp') this.debug(`Getting ${sourceUrl(l)}`);
    let bytes = 0;
    this.out.progress(l.name, 0);
    let data: Buffer;
    try {
      data = await fetchList(l, {
        cwd: this.baseDir,
        onProgress: (n) => {
          bytes = n;
          this.out.progress(l.name, n);
        },
      });
    } catch (err) {
      this.out.endProgress();
      this.fail(`${describe(err)}; ${consequence}`);
      return undefined;
    }
    this.out.progress(l.name, bytes, true);
    let bad = 0;
    const parsed = parseList(data, l.name, (b) => {
      if (++bad <= BAD_LINES_SHOWN) this.out.error(`list ${b.list} line ${b.line}: skipped "${b.text}": ${b.reason}`);
    });
    if (bad > BAD_LINES_SHOWN) this.out.error(`list ${l.name}: ${bad - BAD_LINES_SHOWN} more malformed lines skipped`);
    this.debug(`${kind} ${l.name} ${parsed.entries} entries`);
    return parsed;
  }

  /** Sends (or with -n prints) a blacklist with its whitelists applied. */
  private async finish(p: Pending): Promise<void> {
    const ranges = subtractRanges(p.black, p.white);
    const cidrs = rangesToCidrs(ranges);
    if (cidrs.some((c) => c.bits === 0)) {
      this.fail(`list ${p.name}: covers every IPv4 address (0.0.0.0/0), which spamd refuses; not sent`);
      return;
    }
    const blocks = cidrs.map(formatCidr);
    const line = blocks.length === 0 ? formatClearLine(p.name) : formatConfigLine(p.name, p.message, blocks);
    if (this.s.dryRun) this.io.stdout.write(Buffer.from(line, 'latin1'));
    else await sendLine(this.s.port, line, this.s.waitForDaemon);
    for (const b of blocks) this.table.push(b);
    for (const r of ranges) this.tableRanges.push(r);
  }

  /** -b: replaces <spamd> (pf) or the set spamd (nft) with the blocks of every blacklist. */
  private async loadTable(): Promise<void> {
    const debug = (msg: string) => this.debug(msg);
    // pfgrey run's choice, its warnings (a pf device pfctl will open itself) as -d lines.
    const log: Logger = { error: debug, warning: debug, notice: debug, info: debug, debug };
    const chosen = await chooseFirewall(this.s.firewall, {
      pfctl: this.s.pfctl, nft: this.s.nft, nftTable: this.s.nftTable, cidr: true, timeout: DEFAULTS.setupFirewallTimeout, log,
    });
    try {
      const { firewall, reason } = chosen;
      this.debug(`firewall ${reason}`);
      if (firewall.name === 'none') {
        if (this.s.firewall === 'none') return;
        this.out.error(`-b: no packet filter to load ${DEFAULTS.blackTable} into: ${reason}`);
        this.status = 1;
        return;
      }
      const what = firewall.name === 'pf' ? `pf table <${DEFAULTS.blackTable}>`
        : `nftables set ${DEFAULTS.blackTable} in table ${this.s.nftTable}`;
      if (!this.tableComplete) {
        this.out.error(`${what} left as it was: not every blacklist could be loaded`);
        return;
      }
      // pf takes spamd-setup's concatenation as it is; an interval set needs the union.
      const blocks = firewall.name === 'pf' ? this.table : rangesToCidrs(mergeRanges(this.tableRanges)).map(formatCidr);
      try {
        await firewall.replace(DEFAULTS.blackTable, blocks);
        this.debug(`${what}: ${blocks.length} blocks`);
      } catch (err) {
        this.out.error(`${firewall.name === 'pf' ? 'pfctl' : 'nft'} failed: ${describe(err)}`);
        this.status = 1;
      }
    } finally {
      if (chosen.deviceFd !== undefined) closeSync(chosen.deviceFd);
    }
  }
}

/**
 * One line to the config port on its own connection, as spamd-setup sends it. Throws
 * PfgreyError E_CONFIG_PORT when the daemon cannot be reached.
 */
async function sendLine(port: number, line: string, wait: number): Promise<void> {
  const data = Buffer.from(line, 'latin1');
  // Undefined once binding a reserved port was refused: this process may not (see the top).
  let local: number | undefined = RESERVED_FIRST;
  const deadline = Date.now() + wait;
  // A fixed poll, not a doubling one: the port opens moments after the daemon starts, and a
  // grown delay would only make setup late.
  const refused = new Backoff({ min: DEFAULTS.setupRetryDelay, max: DEFAULTS.setupRetryDelay });
  for (;;) {
    try {
      return await sendOnce(port, data, local);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Started right after the daemon (rc.d runs setup -D so), we may be early: the daemon
      // opens its config port once its database is open.
      if (code === 'ECONNREFUSED' && Date.now() < deadline) {
        await refused.wait();
        continue;
      }
      if (local !== undefined && code === 'EACCES') {
        local = undefined;
        continue;
      }
      // Ports still in TIME_WAIT from the previous list are busy: take the next one down.
      if (local !== undefined && local > RESERVED_LAST && (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL')) {
        local--;
        continue;
      }
      // A daemon that may bind reserved ports resets a sender that did not use one.
      const hint = local === undefined && (code === 'ECONNRESET' || code === 'EPIPE')
        ? ' (pfgrey run takes lists only from a reserved source port when it runs as root or with CAP_NET_BIND_SERVICE: ' +
          'run pfgrey setup as root or with CAP_NET_BIND_SERVICE)'
        : '';
      throw new PfgreyError('E_CONFIG_PORT', `Can't connect to spamd on port ${port}: ${systemErrorText(err)}${hint}`, { cause: err });
    }
  }
}

function sendOnce(port: number, data: Buffer, localPort: number | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({
      host: '127.0.0.1', port,
      ...(localPort === undefined ? {} : { localAddress: '127.0.0.1', localPort }),
    });
    const timer = setTimeout(() => {
      s.destroy(Object.assign(new Error(`no answer after ${DEFAULTS.setupSendTimeout / 1000} s`), { code: 'ETIMEDOUT' }));
    }, DEFAULTS.setupSendTimeout);
    s.on('connect', () => s.end(data));
    // Nothing comes back, but reading lets the daemon's close end ours: the daemon has then
    // taken this list before the next connection starts.
    s.resume();
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('close', (hadError) => {
      clearTimeout(timer);
      if (!hadError) resolve();
    });
  });
}

/** stderr, with at most one progress line that later lines replace. */
class Output {
  private readonly tty: boolean;
  private showing = false;
  private drawn = 0;

  constructor(private readonly io: CliIO) {
    this.tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  }

  line(text: string): void {
    this.endProgress();
    this.io.stderr.write(`${text}\n`);
  }

  error(text: string): void {
    this.line(`pfgrey setup: ${text}`);
  }

  /** Redraws `name: N bytes`; `last` leaves it on screen as the list's line. */
  progress(name: string, bytes: number, last = false): void {
    if (!this.tty) return;
    const now = Date.now();
    if (!last && this.showing && now - this.drawn < PROGRESS_REDRAW) return;
    this.drawn = now;
    this.io.stderr.write(`\r\x1b[K${name}: ${bytes} bytes${last ? '\n' : ''}`);
    this.showing = !last;
  }

  endProgress(): void {
    if (!this.showing) return;
    this.io.stderr.write('\r\x1b[K');
    this.showing = false;
  }
}
