// `pfgrey policy`: a Postfix policy server (check_policy_service inet:… or unix:…, or a
// spawn(8) service on stdin/stdout with --stdio) answering from the greylist core, with
// postgrey's options (src/policy/door.ts). Its database may be the one `pfgrey run` uses: it
// does not take the daemon's lock, and writes each batch atomically (Store.update), as pfgrey
// db and logd do. Without a `pfgrey run` on the same database nobody else forgets expired
// entries, so it runs the same scan itself, hourly (postgrey's maintenance).

import os from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError } from '../errors.js';
import { Greylister } from '../grey/greylister.js';
import { Scanner } from '../grey/scanner.js';
import { commandLogger, parseLogTarget } from '../log.js';
import {
  inetListener, POLICY_OPTIONS, policySettings, POSTGREY_ONLY, startPolicyDoor, withOptionalValues,
  type PolicyDoor, type PolicyListener,
} from '../policy/door.js';
import { maintenanceElection, openServiceStore } from '../store/open.js';
import type { Store } from '../store/types.js';
import { Activity, statusLine } from '../http/activity.js';
import { parseHttpAddress, type StartedStatusPage, startStatusPage } from '../http/server.js';
import { type StartedWeighting, startWeighting, WEIGHTED_OPTIONS, weightedConfig } from '../weighted/options.js';
import { databasePath, type CliIO } from './io.js';
import { argumentProblem, helpText } from './args.js';
import { runService } from './service.js';

export const POLICY_USAGE =
  'usage: pfgrey policy [-i|--inet [host:]port] [-u|--unix path] [--socketmode mode] [--socket-owner user[:gid]]\n' +
  '           [--stdio] [--db path|url] [--delay d] [--max-age days] [--retry-window days|Nh]\n' +
  '           [--lookup-by-subnet | --lookup-by-host] [--ipv4cidr n] [--ipv6cidr n]\n' +
  '           [--auto-whitelist-clients[=n]] [--whitelist-clients file] [--whitelist-recipients file]\n' +
  '           [--exempt file] [--privacy] [--greylist-action action] [--greylist-text text]\n' +
  '           [--x-greylist-header[=text]] [--hostname name] [--no-reuse | --exim]\n' +
  '           [--log auto|stderr|syslog] [--http host:port] [-d]\n' +
  '           [--weighted [--greylist-threshold n] [--trap-threshold n] [--dnsbl zone[=w][:codes] ...]\n' +
  '            [--dnswl zone[=w][:codes] ...] [--resolver host[:port] ...] [--generic-rdns file] [--no-spf]]';

const OPTIONS = {
  ...POLICY_OPTIONS,
  ...WEIGHTED_OPTIONS,
  // -i and -u are postgrey's short forms of these two.
  inet: { type: 'string', multiple: true, short: 'i' },
  unix: { type: 'string', multiple: true, short: 'u' },
  stdio: { type: 'boolean' },
  db: { type: 'string' },
  log: { type: 'string' },
  http: { type: 'string' },
  d: { type: 'boolean', short: 'd' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** postgrey's short options that pfgrey policy does not take (its -d is pfgrey's debug). */
const POSTGREY_SHORT: Record<string, string> = { v: 'verbose', q: 'quiet', n: 'noaction' };

/** A usage error; a postgrey option pfgrey does not take says what to do instead. */
function policyUsageError(err: unknown): PfgreyError {
  const first = describe(err).split('\n')[0]!;
  const m = /ption '(?:--([a-z-]+)|-([a-z]))/.exec(first);
  const name = m?.[1] ?? (m?.[2] !== undefined ? POSTGREY_SHORT[m[2]] : undefined);
  const hint = name !== undefined ? POSTGREY_ONLY[name] : undefined;
  return new PfgreyError('E_USAGE', hint ? `--${name} is postgrey's: ${hint}` : `${argumentProblem('policy', err)}\n${POLICY_USAGE}`);
}

export async function policyCommand(argv: string[], io: CliIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: withOptionalValues(argv), options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw policyUsageError(err);
  }
  if (values.help) {
    io.stdout.write(helpText('policy', POLICY_USAGE));
    return 0;
  }
  const target = parseLogTarget(values.log ?? (values.stdio ? 'syslog' : 'auto'));
  if (!target) throw new PfgreyError('E_BAD_OPTION', `--log ${values.log}: expected auto, stderr or syslog`);
  const settings = policySettings(values);
  const weighted = weightedConfig(values, [os.hostname(), settings.hostname]);
  const listeners: PolicyListener[] = [
    ...(values.inet ?? []).map((v) => inetListener(v, '--inet')),
    ...(values.unix ?? []).map((path) => ({ path })),
  ];
  if (!values.stdio && listeners.length === 0) listeners.push({ host: DEFAULTS.policyHost, port: DEFAULTS.policyPort });
  // Under spawn(8) stdout is the answer channel, and stderr goes to the same socket: nothing
  // else may be written there, so with --stdio the log is syslog's (the default) or nothing.
  const log = commandLogger({
    target, debug: values.d ?? false, ident: 'pfgrey-policy', stderr: io.stderr, facility: 'mail',
    fallback: values.stdio ? () => undefined : undefined,
  });
  const http = values.http === undefined ? undefined : parseHttpAddress(values.http);
  // Under spawn(8) every connection is a process of its own: they cannot all hold one port.
  if (http && values.stdio) throw new PfgreyError('E_USAGE', '--http and --stdio: spawn(8) starts a process per connection, and only one could listen; serve --inet or --unix for the status page');
  const dbPath = databasePath(values.db, io.env);
  // Several policy servers (or daemons) sharing one PostgreSQL database: one of them expires.
  const election = maintenanceElection(dbPath, log);
  let store: Store | undefined;
  let core: Greylister | undefined;
  let door: PolicyDoor | undefined;
  let scanner: Scanner | undefined;
  let status: StartedStatusPage | undefined;
  let weighting: StartedWeighting | undefined;
  const activity = new Activity({
    command: 'policy',
    backlog: () => (core?.queued ?? 0) + (store?.pendingWrites ?? 0),
    policy: true,
    weighted: weighted !== undefined,
  });
  let ended: () => void = () => {};
  const finished = new Promise<void>((resolve) => (ended = resolve));
  return runService({
    start: async () => {
      // First, so that a bad --generic-rdns file stops the start before a database is made.
      if (weighted) weighting = await startWeighting(weighted);
      // A database SQLite cannot use is moved aside and a fresh one opened: the policy
      // service keeps answering (greylist.pl's way with its Berkeley DB).
      const opened = await openServiceStore(dbPath, { log, onCommit: (seconds, ok) => activity.commit(seconds, ok) }, log);
      store = opened.store;
      // The policy door logs every decision (postgrey --verbose): the weighed ones with their score.
      core = new Greylister({ store, log, atomic: true, policy: settings.times, weighted: weighting?.core(true) });
      activity.follow(core.events);
      door = await startPolicyDoor(settings, core, log, listeners, (o) => activity.policyAnswer(o));
      if (http) {
        status = await startStatusPage(http, activity, log);
        log.warning(`listening for status requests on ${status.bound}.`);
        status.samples.start();
      }
      for (const b of door.bound) log.warning(`listening for policy requests on ${b}.`);
      scanner = new Scanner({
        store, log, interval: DEFAULTS.policyMaintenance, whiteExpiry: DEFAULTS.whiteExpiry, chunk: DEFAULTS.scanChunk,
        events: core.events,
        maintain: election && (() => election.turn()),
        onResult: (plan) => {
          activity.scanned(plan);
          if (plan.counts.expired > 0) log.info(`policy maintenance: ${plan.counts.expired} expired entries forgotten`);
        },
      });
      scanner.startLater(values.stdio ? DEFAULTS.policyFirstMaintenanceStdio : DEFAULTS.policyFirstMaintenance);
      // spawn(8): one request stream on stdin/stdout; EOF ends the process.
      if (values.stdio) door.server.serve(io.stdin, io.stdout, () => ended());
    },
    stop: async () => {
      await status?.close();
      await scanner?.stop();
      await door?.close();
      await core?.stop();
      weighting?.close();
      await store?.close();
      await election?.close();
    },
    reload: async () => door?.reload(),
    status: () => statusLine(activity.status()),
    finished: values.stdio ? () => finished : undefined,
  }, { log });
}
