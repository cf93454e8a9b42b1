// The policy door's settings and start, shared by `pfgrey policy` and `pfgrey run --policy`:
// postgrey's options with postgrey's meanings and defaults (postgrey(8)), read once here so
// both commands take them the same way, and the door built from them on a greylist core.

import { hostname } from 'node:os';
import { DEFAULTS } from '../config/defaults.js';
import { parseIntegerOption } from '../config/duration.js';
import { postgreyTimes } from '../config/postgrey-options.js';
import { describe, PfgreyError } from '../errors.js';
import type { Greylister } from '../grey/greylister.js';
import type { PolicyTimes } from '../grey/rules.js';
import type { Logger } from '../log.js';
import { lookupUser } from '../privileges.js';
import { POSTGREY_CLIENT_FILES, POSTGREY_RECIPIENT_FILES, PolicyLists, postgreyIgnoresMissing } from './lists.js';
import { awlClientKey, tripletKey, weightedHeader, xGreylistHeader } from './postgrey-key.js';
import type { PolicyQuery } from './protocol.js';
import { type AnswerOutcome, PolicyServer, type UnixListener } from './server.js';
import { VERSION } from '../version.js';


/** postgrey's options, as parseArgs takes them (both commands add their own). */
export const POLICY_OPTIONS = {
  delay: { type: 'string' },
  'max-age': { type: 'string' },
  'retry-window': { type: 'string' },
  'lookup-by-subnet': { type: 'boolean' },
  'lookup-by-host': { type: 'boolean' },
  ipv4cidr: { type: 'string' },
  ipv6cidr: { type: 'string' },
  'auto-whitelist-clients': { type: 'string' },
  'whitelist-clients': { type: 'string', multiple: true },
  'whitelist-recipients': { type: 'string', multiple: true },
  exempt: { type: 'string', multiple: true },
  privacy: { type: 'boolean' },
  'greylist-action': { type: 'string' },
  'greylist-text': { type: 'string' },
  'x-greylist-header': { type: 'string' },
  hostname: { type: 'string' },
  'no-reuse': { type: 'boolean' },
  exim: { type: 'boolean' },
  socketmode: { type: 'string' },
  'socket-owner': { type: 'string' },
} as const;

/** The values parseArgs gives for POLICY_OPTIONS. */
export interface PolicyOptionValues {
  delay?: string;
  'max-age'?: string;
  'retry-window'?: string;
  'lookup-by-subnet'?: boolean;
  'lookup-by-host'?: boolean;
  ipv4cidr?: string;
  ipv6cidr?: string;
  'auto-whitelist-clients'?: string;
  'whitelist-clients'?: string[];
  'whitelist-recipients'?: string[];
  exempt?: string[];
  privacy?: boolean;
  'greylist-action'?: string;
  'greylist-text'?: string;
  'x-greylist-header'?: string;
  hostname?: string;
  'no-reuse'?: boolean;
  exim?: boolean;
  socketmode?: string;
  'socket-owner'?: string;
}

/**
 * postgrey's options whose value is optional (Getopt's `:s`): a bare `--auto-whitelist-clients`
 * means 5 and a bare `--x-greylist-header` the default header. parseArgs has no optional
 * values, so a bare one is given its default here; a value follows with `=` or as the next
 * argument when that does not start with '-', as Getopt takes it.
 */
const OPTIONAL_VALUES: Record<string, string> = {
  '--auto-whitelist-clients': String(DEFAULTS.policyAwlClients),
  '--x-greylist-header': DEFAULTS.policyHeader,
};

export function withOptionalValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const fallback = OPTIONAL_VALUES[a];
    if (fallback === undefined) {
      out.push(a);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('-')) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(`${a}=${fallback}`);
    }
  }
  return out;
}

/** postgrey's options that pfgrey does not take, and what to do instead. */
const AS_USER = 'run pfgrey policy as the user you want (its rc.d script and systemd unit do)';
const FACILITY = 'pfgrey policy logs to the mail facility';
const NO_DRY_RUN = 'pfgrey policy has no dry run: --greylist-action DUNNO answers everything with DUNNO while it learns';

export const POSTGREY_ONLY: Record<string, string> = {
  dbdir: 'pfgrey keeps one database file: use --db FILE (and pfgrey db --import-postgrey to bring postgrey\'s entries)',
  pidfile: 'pfgrey policy runs in the foreground; its rc.d script or systemd unit keeps the pid',
  daemonize: 'pfgrey policy runs in the foreground under its rc.d script or systemd unit',
  user: AS_USER,
  group: AS_USER,
  // postgrey takes all three spellings (Getopt's syslogfacility|syslog-facility|facility).
  'syslog-facility': FACILITY,
  syslogfacility: FACILITY,
  facility: FACILITY,
  verbose: 'pfgrey policy logs every decision, as postgrey --verbose does; -d adds debug lines',
  quiet: 'pfgrey policy logs one line a decision; keep them out of a log file with syslog.conf',
  noaction: NO_DRY_RUN,
  'no-action': NO_DRY_RUN,
  man: 'see pfgrey(8)',
  'listen-queue-size': 'pfgrey uses the system\'s backlog',
};

/** What the policy door is set to do. */
export interface PolicySettings {
  times: PolicyTimes;
  byHost: boolean;
  ipv4cidr: number;
  ipv6cidr: number;
  privacy: boolean;
  clients: string[];
  recipients: string[];
  /**
   * The lists were not named, so postgrey's own files are read where postgrey keeps them
   * (/etc/postgrey/whitelist_clients, …_recipients and their .local twins), each only if it is
   * there: a site moving from postgrey keeps its lists, and a host without them has none.
   * These are the default files in use, which may be missing.
   */
  optionalLists: string[];
  exempt: string[];
  greylistAction: string;
  greylistText: string;
  /** The X-Greylist template, or undefined for none. */
  header?: string;
  hostname: string;
  noReuse: boolean;
  socketMode: number;
  socketOwner?: { uid: number; gid: number };
}

/** Reads postgrey's options; throws E_BAD_OPTION naming the option for a bad value. */
export function policySettings(v: PolicyOptionValues): PolicySettings {
  if (v['lookup-by-host'] && v['lookup-by-subnet']) {
    throw new PfgreyError('E_BAD_OPTION', '--lookup-by-host and --lookup-by-subnet contradict each other: give one');
  }
  const mode = v.socketmode ?? DEFAULTS.policySocketMode.toString(8);
  if (!/^[0-7]{3,4}$/.test(mode)) throw new PfgreyError('E_BAD_OPTION', `--socketmode ${mode}: expected an octal mode such as 0660`);
  let socketOwner: PolicySettings['socketOwner'];
  if (v['socket-owner'] !== undefined) {
    const [user, group] = v['socket-owner'].split(':');
    const account = lookupUser(user ?? '');
    if (!account) throw new PfgreyError('E_BAD_OPTION', `--socket-owner ${v['socket-owner']}: no user ${JSON.stringify(user)} in /etc/passwd`);
    const gid = group === undefined || group === '' ? account.gid : /^\d+$/.test(group) ? Number(group) : undefined;
    if (gid === undefined) throw new PfgreyError('E_BAD_OPTION', `--socket-owner ${v['socket-owner']}: give the group as a number`);
    socketOwner = { uid: account.uid, gid };
  }
  return {
    times: postgreyTimes({ delay: v.delay, maxAge: v['max-age'], retryWindow: v['retry-window'], awlClients: v['auto-whitelist-clients'] }),
    byHost: v['lookup-by-host'] ?? false,
    // postgrey reads 0 as "not given" (`$opt{ipv4cidr} || 24`): a command line carried over
    // must mean what it meant there, not one network for the whole Internet.
    ipv4cidr: parseIntegerOption(v.ipv4cidr ?? '0', '--ipv4cidr', 0, 32) || DEFAULTS.policyIpv4Cidr,
    ipv6cidr: parseIntegerOption(v.ipv6cidr ?? '0', '--ipv6cidr', 0, 128) || DEFAULTS.policyIpv6Cidr,
    privacy: v.privacy ?? false,
    clients: v['whitelist-clients'] ?? [...POSTGREY_CLIENT_FILES],
    recipients: v['whitelist-recipients'] ?? [...POSTGREY_RECIPIENT_FILES],
    optionalLists: [
      ...(v['whitelist-clients'] === undefined ? POSTGREY_CLIENT_FILES : []),
      ...(v['whitelist-recipients'] === undefined ? POSTGREY_RECIPIENT_FILES : []),
    ],
    exempt: v.exempt ?? [],
    greylistAction: v['greylist-action'] ?? DEFAULTS.policyGreylistAction,
    greylistText: v['greylist-text'] ?? DEFAULTS.policyGreylistText,
    header: v['x-greylist-header'],
    hostname: v.hostname ?? hostname(),
    noReuse: (v['no-reuse'] ?? false) || (v.exim ?? false),
    socketMode: parseInt(mode, 8),
    socketOwner,
  };
}

/** postgrey's keys of a request: the triplet and the client, hashed with --privacy. */
export function policyKeys(s: Pick<PolicySettings, 'byHost' | 'ipv4cidr' | 'ipv6cidr' | 'privacy'>) {
  const options = { byHost: s.byHost, ipv4cidr: s.ipv4cidr, ipv6cidr: s.ipv6cidr, privacy: s.privacy };
  return (q: PolicyQuery): { triplet: string; client: string } => ({
    triplet: tripletKey({ clientAddress: q.ip, sender: q.sender, recipient: q.recipient }, options),
    client: awlClientKey(q.ip, options),
  });
}

/** A listener of `--policy inet:[HOST:]PORT` / `unix:PATH` (pfgrey run), or --inet / --unix. */
export type PolicyListener = { host: string; port: number } | UnixListener;

/** `[host:]port` (postgrey's --inet); a bare port listens on 127.0.0.1, as postgrey's on localhost. */
export function inetListener(v: string, what: string): { host: string; port: number } {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new PfgreyError('E_BAD_ADDRESS', `${what} ${v}: expected [host:]port`);
  return { host: (m[1] ?? DEFAULTS.policyHost).replace(/^\[|\]$/g, ''), port };
}

/** `inet:[HOST:]PORT` or `unix:PATH`, as Postfix names the same service in check_policy_service. */
export function policyListener(v: string): PolicyListener {
  if (v.startsWith('inet:')) return inetListener(v.slice(5), '--policy');
  if (v.startsWith('unix:') && v.length > 5) return { path: v.slice(5) };
  throw new PfgreyError('E_BAD_OPTION', `--policy ${v}: expected inet:[host:]port or unix:path`);
}

/** A running policy door: its server, and the reload of its lists (SIGHUP). */
export interface PolicyDoor {
  server: PolicyServer;
  /** What each listener bound, for the log line ("127.0.0.1:10023", or the socket path). */
  bound: string[];
  reload(): Promise<void>;
  close(): Promise<void>;
}

/** Loads the lists, logging what is wrong in them (postgrey warns and goes on). */
async function loadLists(s: PolicySettings, log: Logger): Promise<PolicyLists> {
  // postgrey skips a missing .local file without a word; a missing default file is no error
  // either (no postgrey was ever installed). A file named on the command line must be there.
  const defaults = new Set(s.optionalLists);
  const { lists, problems } = await PolicyLists.load({
    clients: s.clients, recipients: s.recipients, exempt: s.exempt,
    ignoreMissing: (file) => postgreyIgnoresMissing(file) || defaults.has(file),
  });
  for (const p of problems) log.warning(p);
  return lists;
}

/** Builds the door on `core` and listens where asked. A failure closes what was opened. */
export async function startPolicyDoor(
  s: PolicySettings, core: Greylister, log: Logger, listeners: readonly PolicyListener[], onAnswer?: (outcome: AnswerOutcome) => void,
): Promise<PolicyDoor> {
  let lists = await loadLists(s, log);
  const header = s.header;
  const server = new PolicyServer({
    core, log, onAnswer,
    greylistAction: s.greylistAction,
    greylistText: s.greylistText,
    noReuse: s.noReuse,
    keys: policyKeys(s),
    privacy: s.privacy,
    exempt: (q) => lists.match({ clientName: q.name, clientAddress: q.ip, sender: q.sender, recipient: q.recipient }),
    header: header === undefined ? undefined
      : (waited) => xGreylistHeader(header, { delaySeconds: waited, version: VERSION, hostname: s.hostname, date: new Date() }),
    weightedHeader: header === undefined ? undefined
      : (pass) => weightedHeader(header, pass, { version: VERSION, hostname: s.hostname, date: new Date() }),
  });
  const bound: string[] = [];
  try {
    for (const where of listeners) {
      const a = await server.listen('path' in where ? { ...where, mode: where.mode ?? s.socketMode, owner: where.owner ?? s.socketOwner } : where);
      bound.push(typeof a === 'string' ? a : a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
    }
  } catch (err) {
    await server.close();
    throw err;
  }
  return {
    server,
    bound,
    reload: async () => {
      try {
        lists = await loadLists(s, log);
        log.notice('policy: whitelists reloaded');
      } catch (err) {
        log.error(`policy: whitelists not reloaded, the old ones stay: ${describe(err)}`);
      }
    },
    close: () => server.close(),
  };
}
