// `pfgrey run`: spamd's flags with spamd's meanings, plus long options for what spamd fixes at
// compile time. Every bad value is one clear line and exit status 1.

import net from 'node:net';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULTS } from '../config/defaults.js';
import { parseDuration, parseIntegerOption } from '../config/duration.js';
import { startDaemon, type Daemon, type DaemonConfig, type SyncConfig } from '../daemon.js';
import { nftNameProblem, nftTableProblem } from '../firewall/nft.js';
import { pfTableNameProblem } from '../firewall/pf.js';
import { PfgreyError } from '../errors.js';
import { commandLogger, type Logger, type LogTarget, parseLogTarget } from '../log.js';
import { accountToBecome, becomeUser, isRoot } from '../privileges.js';
import { POLICY_OPTIONS, policyListener, policySettings, withOptionalValues } from '../policy/door.js';
import { parseHttpAddress } from '../http/server.js';
import { checkSyncListens, parseSyncListen, parseSyncTarget } from '../sync/peers.js';
import { databasePath, type CliIO } from './io.js';
import { helpText, usageError } from './args.js';
import { runService } from './service.js';
import { WEIGHTED_OPTIONS, weightedConfig } from '../weighted/options.js';

export const RUN_USAGE =
  'usage: pfgrey run [-45bdv] [-B maxblack] [-c maxcon] [-G passtime:greyexp:whiteexp]\n' +
  '           [-h hostname] [-l address] [-M address] [-n name] [-p port] [-S secs] [-s secs]\n' +
  '           [-w window] [--db path|url] [--firewall auto|pf|nft|none] [--pfctl path]\n' +
  '           [--pf-device path] [--nft path] [--nft-table \'family name\'] [--table name]\n' +
  '           [--passtime d] [--greyexp d] [--whiteexp d] [--scan-interval d]\n' +
  '           [--stutter d] [--grey-stutter d] [--idle-timeout d] [--firewall-timeout d]\n' +
  '           [--trapexp d] [--config-port port] [--alloweddomains file] [--user name]\n' +
  '           [--log auto|stderr|syslog] [--http host:port]\n' +
  '           [-y synclisten ...] [-Y synctarget ...] [--sync-port port] [--sync-key file]\n' +
  '           [--policy inet:[host:]port|unix:path ...] [pfgrey policy\'s postgrey options]\n' +
  '           [--weighted [--greylist-threshold n] [--trap-threshold n] [--dnsbl zone[=w][:codes] ...]\n' +
  '            [--dnswl zone[=w][:codes] ...] [--resolver host[:port] ...] [--generic-rdns file] [--no-spf]]';

const INT_MAX = 2 ** 31 - 1;

const STAY_ROOT_FOR_NFT = 'staying root: nft needs CAP_NET_ADMIN, which a Node process cannot keep as another ' +
  'user; to run unprivileged, start pfgrey as a user with only that capability (rc.d/linux/pfgrey.service does)';

const OPTIONS = {
  '4': { type: 'boolean', short: '4' },
  '5': { type: 'boolean', short: '5' },
  b: { type: 'boolean', short: 'b' },
  d: { type: 'boolean', short: 'd' },
  v: { type: 'boolean', short: 'v' },
  B: { type: 'string', short: 'B' },
  c: { type: 'string', short: 'c' },
  G: { type: 'string', short: 'G' },
  h: { type: 'string', short: 'h' },
  l: { type: 'string', short: 'l' },
  M: { type: 'string', short: 'M' },
  n: { type: 'string', short: 'n' },
  p: { type: 'string', short: 'p' },
  S: { type: 'string', short: 'S' },
  s: { type: 'string', short: 's' },
  w: { type: 'string', short: 'w' },
  // spamd options pfgrey does not offer yet; recognised so the message can say so.
  C: { type: 'string', short: 'C' },
  K: { type: 'string', short: 'K' },
  // spamd's sync protocol (src/sync/): where to receive, where to send; each repeatable.
  Y: { type: 'string', short: 'Y', multiple: true },
  y: { type: 'string', short: 'y', multiple: true },
  'sync-port': { type: 'string' },
  'sync-key': { type: 'string' },
  db: { type: 'string' },
  firewall: { type: 'string' },
  pfctl: { type: 'string' },
  'pf-device': { type: 'string' },
  nft: { type: 'string' },
  'nft-table': { type: 'string' },
  table: { type: 'string' },
  passtime: { type: 'string' },
  greyexp: { type: 'string' },
  whiteexp: { type: 'string' },
  trapexp: { type: 'string' },
  'config-port': { type: 'string' },
  alloweddomains: { type: 'string' },
  'scan-interval': { type: 'string' },
  stutter: { type: 'string' },
  'grey-stutter': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'firewall-timeout': { type: 'string' },
  user: { type: 'string' },
  log: { type: 'string' },
  http: { type: 'string' },
  help: { type: 'boolean' },
  // The policy door on the tarpit's core (src/policy/door.ts), with postgrey's options.
  policy: { type: 'string', multiple: true },
  ...POLICY_OPTIONS,
  // Weighted greylisting (src/weighted/options.ts), as pfgrey policy takes it.
  ...WEIGHTED_OPTIONS,
} as const;

const UNSUPPORTED: Record<string, string> = {
  C: 'TLS (-C/-K)', K: 'TLS (-C/-K)',
};

export interface RunSettings {
  config: DaemonConfig;
  /** The unprivileged user to become when started as root; undefined: the default one. */
  user: string | undefined;
  log: LogTarget;
  debug: boolean;
  help: boolean;
}

/** Parses `pfgrey run`'s arguments; throws PfgreyError naming the bad one. */
export function parseRunArgs(argv: string[], env: NodeJS.ProcessEnv): RunSettings {
  let parsed;
  try {
    parsed = parseArgs({ args: withOptionalValues(argv), options: OPTIONS, strict: true, allowPositionals: false, tokens: true });
  } catch (err) {
    throw usageError('run', err, RUN_USAGE);
  }
  const cfg: DaemonConfig = {
    tarpit: {
      host: DEFAULTS.listenAddress,
      port: DEFAULTS.port,
      hostname: os.hostname(),
      bannerName: DEFAULTS.bannerName,
      greylist: true,
      stutter: DEFAULTS.stutter,
      greyStutter: DEFAULTS.greyStutter,
      idleTimeout: DEFAULTS.idleTimeout,
      maxCon: DEFAULTS.maxCon,
      maxBlack: DEFAULTS.maxCon,
      stutterOffMargin: DEFAULTS.stutterOffMargin,
      blackCode: DEFAULTS.blackCode,
      maxLine: DEFAULTS.maxLine,
      verbose: false,
    },
    blacklistOnly: false,
    dbPath: databasePath(undefined, env),
    firewall: 'auto',
    pfctl: DEFAULTS.pfctl,
    pfDevice: DEFAULTS.pfDevice,
    nft: DEFAULTS.nft,
    nftTable: DEFAULTS.nftTable,
    table: DEFAULTS.table,
    firewallTimeout: DEFAULTS.firewallTimeout,
    firewallRetryMin: DEFAULTS.firewallRetryMin,
    firewallRetryMax: DEFAULTS.firewallRetryMax,
    times: {
      passTime: DEFAULTS.passTime, greyExpiry: DEFAULTS.greyExpiry,
      whiteExpiry: DEFAULTS.whiteExpiry, trapExpiry: DEFAULTS.trapExpiry,
    },
    scanInterval: DEFAULTS.scanInterval,
    scanChunk: DEFAULTS.scanChunk,
    commitDelay: DEFAULTS.commitDelay,
    stopTimeout: DEFAULTS.stopTimeout,
    configPort: DEFAULTS.configPort,
    allowedDomainsFile: DEFAULTS.allowedDomainsFile,
    mxGrace: DEFAULTS.mxGrace,
  };
  const t = cfg.tarpit;
  let maxBlack: number | undefined;
  let debug = false;
  let help = false;
  let user: string | undefined;
  let log: LogTarget = 'auto';
  const sync: SyncConfig = { listen: [], targets: [], port: DEFAULTS.syncPort, keyFile: DEFAULTS.syncKey };

  for (const tok of parsed.tokens ?? []) {
    if (tok.kind !== 'option') continue;
    const v = tok.value ?? '';
    const flag = tok.rawName;
    switch (tok.name) {
      case '4': t.blackCode = 450; break;
      case '5': t.blackCode = 550; break;
      case 'b': cfg.blacklistOnly = true; t.greylist = false; break;
      case 'd': debug = true; break;
      case 'v': t.verbose = true; break;
      case 'B': maxBlack = parseIntegerOption(v, '-B', 0, INT_MAX); break;
      case 'c': t.maxCon = parseIntegerOption(v, '-c', 1, 1_000_000); break;
      case 'G': {
        const m = /^(\d+):(\d+):(\d+)$/.exec(v);
        if (!m) throw new PfgreyError('E_USAGE', `-G ${v}: expected passtime:greyexp:whiteexp (minutes:hours:hours)\n${RUN_USAGE}`);
        cfg.times = { ...cfg.times, passTime: Number(m[1]) * 60_000, greyExpiry: Number(m[2]) * 3_600_000, whiteExpiry: Number(m[3]) * 3_600_000 };
        break;
      }
      case 'h':
        if (Buffer.byteLength(v) > DEFAULTS.hostnameMax) throw new PfgreyError('E_BAD_OPTION', '-h arg too long');
        t.hostname = v;
        break;
      case 'l':
        if (net.isIP(v) === 0) throw new PfgreyError('E_BAD_ADDRESS', `-l ${v}: not an IP address`);
        t.host = v;
        break;
      case 'M':
        if (net.isIP(v) === 0) throw new PfgreyError('E_BAD_ADDRESS', `-M ${v}: not an IP address`);
        cfg.lowPriorityMx = v;
        break;
      case 'n': t.bannerName = v; break;
      // Port 0 (any free port) is allowed for tests; the start-up line names the port chosen.
      case 'p': t.port = parseIntegerOption(v, '-p', 0, 65535); break;
      case 'S': t.greyStutter = parseIntegerOption(v, '-S', 0, 90) * 1000; break;
      case 's': t.stutter = parseIntegerOption(v, '-s', 0, 10) * 1000; break;
      case 'w':
        parseIntegerOption(v, '-w', 1, INT_MAX);
        throw new PfgreyError('E_UNSUPPORTED', '-w (receive window) is not supported: Node.js cannot set SO_RCVBUF');
      case 'C': case 'K':
        throw new PfgreyError('E_UNSUPPORTED', `${UNSUPPORTED[tok.name]} is not supported yet`);
      case 'y': sync.listen.push(parseSyncListen(v)); break;
      case 'Y': sync.targets.push(parseSyncTarget(v)); break;
      case 'sync-port': sync.port = parseIntegerOption(v, flag, 1, 65535); break;
      case 'sync-key':
        if (v === '') throw new PfgreyError('E_BAD_OPTION', '--sync-key: empty path');
        sync.keyFile = v;
        break;
      case 'db':
        if (v === '') throw new PfgreyError('E_BAD_OPTION', '--db: empty path');
        cfg.dbPath = v;
        break;
      case 'firewall':
        if (v !== 'auto' && v !== 'pf' && v !== 'nft' && v !== 'none') {
          throw new PfgreyError('E_BAD_OPTION', `--firewall ${v}: expected auto, pf, nft or none`);
        }
        cfg.firewall = v;
        break;
      case 'pfctl': cfg.pfctl = v; break;
      case 'pf-device': cfg.pfDevice = v; break;
      case 'nft':
        if (v === '') throw new PfgreyError('E_BAD_OPTION', '--nft: empty path');
        cfg.nft = v;
        break;
      case 'nft-table': {
        const problem = nftTableProblem(v);
        if (problem !== undefined) throw new PfgreyError('E_BAD_OPTION', `--nft-table ${v}: ${problem}`);
        cfg.nftTable = v;
        break;
      }
      case 'table': cfg.table = v; break;
      case 'passtime': cfg.times.passTime = parseDuration(v, flag); break;
      case 'greyexp': cfg.times.greyExpiry = parseDuration(v, flag); break;
      case 'whiteexp': cfg.times.whiteExpiry = parseDuration(v, flag); break;
      case 'trapexp': cfg.times.trapExpiry = parseDuration(v, flag); break;
      case 'config-port': cfg.configPort = parseIntegerOption(v, flag, 0, 65535); break;
      case 'alloweddomains': cfg.allowedDomainsFile = v; break;
      case 'scan-interval': cfg.scanInterval = positive(parseDuration(v, flag), flag, v); break;
      case 'stutter': t.stutter = parseDuration(v, flag); break;
      case 'grey-stutter': t.greyStutter = parseDuration(v, flag); break;
      case 'idle-timeout': t.idleTimeout = positive(parseDuration(v, flag), flag, v); break;
      case 'firewall-timeout': cfg.firewallTimeout = positive(parseDuration(v, flag), flag, v); break;
      case 'user':
        if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(v)) throw new PfgreyError('E_BAD_OPTION', `--user ${v}: not a user name`);
        user = v;
        break;
      case 'log': {
        const target = parseLogTarget(v);
        if (!target) throw new PfgreyError('E_BAD_OPTION', `--log ${v}: expected auto, stderr or syslog`);
        log = target;
        break;
      }
      // The status page and /metrics (src/http/server.ts): loopback addresses only.
      case 'http': cfg.http = parseHttpAddress(v, flag); break;
      case 'help': help = true; break;
    }
  }

  // Checked here so a bad name stops the start, not every push: with --firewall nft it names
  // an nftables set, otherwise a pf table (auto may pick pf, and none refuses what pf would).
  const tableProblem = cfg.firewall === 'nft' ? nftNameProblem(cfg.table) : pfTableNameProblem(cfg.table);
  if (tableProblem !== undefined) throw new PfgreyError('E_BAD_OPTION', `--table ${cfg.table}: ${tableProblem}`);

  // spamd refuses `-c 500` unless -B ≤ 500 is also given (README.md's "Where pfgrey differs from spamd"); pfgrey derives maxblack
  // from maxcon instead, and refuses only an explicit -B larger than -c.
  if (cfg.blacklistOnly) {
    t.maxBlack = t.maxCon;
  } else {
    if (maxBlack !== undefined && maxBlack > t.maxCon) {
      throw new PfgreyError('E_BAD_OPTION', `-B ${maxBlack}: larger than maxcon (-c ${t.maxCon})`);
    }
    t.maxBlack = maxBlack ?? t.maxCon;
    if (t.maxBlack >= t.maxCon) t.maxBlack = Math.max(0, t.maxCon - DEFAULTS.maxBlackMargin);
  }
  const policy = parsed.values.policy ?? [];
  if (policy.length > 0) {
    cfg.policy = { settings: policySettings(parsed.values), listeners: policy.map(policyListener) };
  } else {
    const stray = Object.keys(POLICY_OPTIONS).find((name) => Object.hasOwn(parsed.values, name));
    if (stray) throw new PfgreyError('E_USAGE', `--${stray} is an option of the policy door: add --policy inet:[host:]port or --policy unix:path`);
  }
  if (sync.listen.length > 0 || sync.targets.length > 0) {
    if (cfg.blacklistOnly) throw new PfgreyError('E_USAGE', '-y and -Y need the greylisting database, which blacklist-only mode (-b) has not');
    checkSyncListens(sync.listen);
    cfg.sync = sync;
  } else {
    const stray = ['sync-port', 'sync-key'].find((name) => Object.hasOwn(parsed.values, name));
    if (stray) throw new PfgreyError('E_USAGE', `--${stray} is an option of spamd sync: add -y to receive or -Y to send`);
  }
  cfg.weighted = weightedConfig(parsed.values, [t.hostname, os.hostname()]);
  if (cfg.weighted && cfg.blacklistOnly) throw new PfgreyError('E_USAGE', '--weighted and -b: blacklist-only mode does not greylist');
  return { config: cfg, user, log, debug, help };
}

function positive(ms: number, flag: string, text: string): number {
  if (ms <= 0) throw new PfgreyError('E_BAD_DURATION', `${flag}: "${text}" must be more than zero`);
  return ms;
}

/** Runs the daemon until SIGTERM or SIGINT; resolves with the exit status. */
export async function runCommand(argv: string[], io: CliIO): Promise<number> {
  const settings = parseRunArgs(argv, io.env);
  if (settings.help) {
    io.stdout.write(helpText('run', RUN_USAGE));
    return 0;
  }
  const log: Logger = commandLogger({ target: settings.log, debug: settings.debug, ident: 'pfgrey', stderr: io.stderr });
  const cfg = settings.config;
  // An explicit nft backend keeps root (see below), so it needs no user to become; blacklist-only
  // mode drives no firewall (pfgrey setup -b fills the set spamd), so it drops root all the same.
  const keepRootForNft = cfg.firewall === 'nft' && !cfg.blacklistOnly && isRoot();
  const account = keepRootForNft ? undefined : accountToBecome(settings.user ?? DEFAULTS.user, log, settings.user !== undefined);
  if (keepRootForNft) log.notice(STAY_ROOT_FOR_NFT);
  const dbFiles = cfg.blacklistOnly ? [] : [cfg.dbPath, `${cfg.dbPath}-wal`, `${cfg.dbPath}-shm`];
  const afterBind = account ? (firewall: string) => {
    // pf is driven through the /dev/pf descriptor, which survives the drop; nft needs
    // CAP_NET_ADMIN, which a Node process cannot keep once it is no longer root.
    if (firewall === 'nft') {
      log.notice(STAY_ROOT_FOR_NFT);
      return;
    }
    becomeUser(account, dbFiles, log);
  } : undefined;
  let daemon: Daemon | undefined;
  return runService({
    start: async () => {
      daemon = await startDaemon(cfg, log, undefined, { afterBind });
    },
    stop: () => daemon!.stop(),
    stopNow: () => daemon!.stopNow(),
    // spamd reads its allowed domains once; pfgrey re-reads them on SIGHUP.
    reload: () => daemon!.reload(),
    status: () => daemon!.status(),
  }, { log });
}
