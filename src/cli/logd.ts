// `pfgrey logd`: spamlogd(8)'s flags with spamlogd's meanings. Keeps the WHITE entries of
// hosts that really exchange mail with us fresh, from pf's log of passed SMTP connections, or
// on Linux from the nflog groups pf/linux/pfgrey.nft logs them to. -l keeps spamlogd's meaning,
// the interface tcpdump reads, and so also takes libpcap's name for nflog groups: nflog:IN,OUT.

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Backoff } from '../backoff.js';
import { DEFAULTS } from '../config/defaults.js';
import { parseIntegerOption } from '../config/duration.js';
import { isPfgreyError, PfgreyError } from '../errors.js';
import { commandLogger, parseLogTarget, type Logger } from '../log.js';
import { type Capture, captureFileKind, defaultCaptureInterface, parseCaptureInterface } from '../logd/nflog.js';
import { PflogWatcher } from '../logd/watcher.js';
import { openDatabase } from '../store/open.js';
import { parseSyncTarget, SyncPeers, type SyncTarget } from '../sync/peers.js';
import type { Store } from '../store/types.js';
import { databasePath, type CliIO } from './io.js';
import { helpText, usageError } from './args.js';
import { runService } from './service.js';

export const LOGD_USAGE =
  'usage: pfgrey logd [-DI] [-i interface] [-l pflog_interface | nflog:IN[,OUT]] [-W whiteexp]\n' +
  '           [-Y synctarget ...] [--sync-port port] [--sync-key file]\n' +
  '           [--db path|url] [--tcpdump path] [-r capture-file] [--log auto|stderr|syslog]';

const OPTIONS = {
  D: { type: 'boolean', short: 'D' },
  I: { type: 'boolean', short: 'I' },
  i: { type: 'string', short: 'i' },
  l: { type: 'string', short: 'l' },
  W: { type: 'string', short: 'W' },
  Y: { type: 'string', short: 'Y', multiple: true },
  'sync-port': { type: 'string' },
  'sync-key': { type: 'string' },
  r: { type: 'string', short: 'r' },
  db: { type: 'string' },
  tcpdump: { type: 'string' },
  log: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function findTcpdump(): string {
  return DEFAULTS.tcpdump.find((p) => fs.existsSync(p)) ?? DEFAULTS.tcpdump[0]!;
}

/** spamlogd accepts -W from 1 hour to 90 days. */
const MAX_W_HOURS = 2160;

export async function logdCommand(argv: string[], io: CliIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw usageError('logd', err, LOGD_USAGE);
  }
  if (values.help) {
    io.stdout.write(helpText('logd', LOGD_USAGE));
    return 0;
  }
  // spamlogd's -Y: every host seen passing is sent to the sync peers as a WHITE record.
  const targets: SyncTarget[] = (values.Y ?? []).map((v) => parseSyncTarget(v));
  const syncPort = values['sync-port'] === undefined ? DEFAULTS.syncPort : parseIntegerOption(values['sync-port'], '--sync-port', 1, 65535);
  if (values['sync-key'] === '') throw new PfgreyError('E_BAD_OPTION', '--sync-key: empty path');
  if (targets.length === 0) {
    const stray = ['sync-port', 'sync-key'].find((name) => values[name as 'sync-port' | 'sync-key'] !== undefined);
    if (stray) throw new PfgreyError('E_USAGE', `--${stray} is an option of spamd sync: add -Y to send`);
  }
  const whiteExpiry = values.W === undefined ? DEFAULTS.whiteExpiry
    : parseIntegerOption(values.W, '-W', 1, MAX_W_HOURS) * 3_600_000;
  let capture = parseCaptureInterface(values.l ?? defaultCaptureInterface());
  if (values.i !== undefined && !/^[\w.]{1,15}$/.test(values.i)) {
    throw new PfgreyError('E_BAD_OPTION', `-i ${values.i}: not an interface name`);
  }
  // A capture file says itself what it holds, whatever -l's default on this system.
  if (values.r !== undefined) capture = asFileHolds(capture, await captureFileKind(values.r));
  if (values.i !== undefined && capture.kind === 'nflog') {
    throw new PfgreyError('E_UNSUPPORTED', `-i ${values.i}: nflog packets, as tcpdump prints them, do not name their ` +
      `interface; limit pfgrey.nft's log rules to it instead (iifname "${values.i}" on the inbound one)`);
  }
  const target = parseLogTarget(values.log ?? 'auto');
  if (!target) throw new PfgreyError('E_BAD_OPTION', `--log ${values.log}: expected auto, stderr or syslog`);
  const log = commandLogger({ target, debug: values.D ?? false, ident: 'pfgrey-logd', stderr: io.stderr });
  const dbPath = databasePath(values.db, io.env);
  let store: Store | undefined;
  let watcher: PflogWatcher | undefined;
  let peers: SyncPeers | undefined;
  const code = await runService({
    start: async (abort) => {
      // The key is read and the -Y hosts looked up first, as root, like pfgrey run's: a missing
      // or unsafe key is said at once, not after a minute's wait for the database.
      const sync = targets.length === 0 ? undefined : await SyncPeers.prepare(values['sync-key'] ?? DEFAULTS.syncKey, targets, syncPort, log);
      store = await openWhenCreated(dbPath, log, values.r === undefined ? DEFAULTS.logdDbWait : 0, abort);
      watcher = new PflogWatcher({
        store, log,
        tcpdump: values.tcpdump ?? findTcpdump(),
        capture,
        file: values.r,
        onInterface: values.i,
        inboundOnly: values.I ?? false,
        whiteExpiry,
        retryMin: DEFAULTS.logdRetryMin,
        retryMax: DEFAULTS.logdRetryMax,
      });
      if (sync) {
        // logd only sends (spamlogd never receives).
        peers = await SyncPeers.start({
          listen: [], ...sync, port: syncPort, core: watcher.core, log, whiteExpiry, trapExpiry: DEFAULTS.trapExpiry,
        });
        for (const d of peers.destinations) log.info(`sending sync packets to ${d}`);
      }
      log.info(`Listening on ${values.r ?? capture.ifname} for ${values.i ?? 'all interfaces.'}${values.I ? ' Inbound direction only.' : ''}`);
      watcher.start();
    },
    // The queued whitelist updates are committed before the database closes.
    stop: async () => {
      await watcher!.stop();
      await peers?.drain(DEFAULTS.syncDrain);
      peers?.close();
      await store!.close();
    },
    finished: () => watcher!.finished,
    // No reload: Node's default for SIGHUP is to exit, and a HUP from a closing terminal or an
    // old rc.subr must not end the watcher; the lifecycle logs it and goes on.
  }, { log, stopSignals: ['SIGTERM', 'SIGINT', 'SIGQUIT'] });
  if (code === 0 && values.r) log.info(`${watcher!.seen} connections read from ${values.r}`);
  return code;
}

/** The capture as a file of `kind` holds it: -l's groups for nflog if -l named some. */
function asFileHolds(capture: Capture, kind: Capture['kind'] | undefined): Capture {
  if (kind === undefined || kind === capture.kind) return capture;
  return kind === 'nflog' ? parseCaptureInterface('nflog') : { kind: 'pflog', ifname: DEFAULTS.pflog };
}

/**
 * Opens the database `pfgrey run` keeps, waiting up to `wait` ms for it to appear: rc.d starts
 * logd right after the daemon, which may not have created it yet. logd never creates it, as
 * spamlogd never does: run as root, it would make a file the unprivileged daemon cannot open,
 * and a mistyped --db would collect entries nobody reads. A stop signal ends the wait at once
 * (rejecting with `abort.reason`).
 */
async function openWhenCreated(path: string, log: Logger, wait: number, abort: AbortSignal): Promise<Store> {
  const deadline = Date.now() + wait;
  const poll = new Backoff({ min: DEFAULTS.logdDbPoll, max: DEFAULTS.logdDbPoll });
  for (;;) {
    try {
      return await openDatabase(path, { log });
    } catch (err) {
      const missing = isPfgreyError(err) && err.code === 'E_DB_OPEN' &&
        (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      if (!missing) throw err;
      if (Date.now() >= deadline) {
        throw new PfgreyError('E_DB_OPEN', `no database at ${path}: pfgrey logd updates the database of pfgrey run, ` +
          'so start pfgrey run first, or give --db its path');
      }
      if (poll.attempts === 0) log.warning(`no database at ${path} yet: waiting for pfgrey run to create it`);
      if (!(await poll.wait(abort))) throw abort.reason;
    }
  }
}
