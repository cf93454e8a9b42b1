// Wires the rooms together: tarpit → greylister → store, scanner → firewall, config port →
// blacklists → tarpit. `pfgrey run` builds a DaemonConfig from its flags and calls startDaemon;
// tests call it directly on port 0.

import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { ConfigPort } from './blacklist/config-port.js';
import { BlackLists } from './blacklist/lists.js';
import { type Clock, systemClock } from './clock.js';
import { DEFAULTS } from './config/defaults.js';
import { formatDuration } from './config/duration.js';
import { describe, PfgreyError } from './errors.js';
import { chooseFirewall, type FirewallKind } from './firewall/select.js';
import { WhitelistSync } from './firewall/sync.js';
import type { Firewall } from './firewall/types.js';
import { loadAllowedDomains } from './grey/allowed-domains.js';
import { Greylister } from './grey/greylister.js';
import type { GreyTimes, ScanPlan } from './grey/rules.js';
import { Scanner } from './grey/scanner.js';
import type { Logger } from './log.js';
import { mayBindReserved, unprivilegedPortStart } from './privileges.js';
import { openDaemonStore } from './store/daemon-store.js';
import { keepTableAsWhite } from './grey/keep-table.js';
import { replaceUnderneath } from './store/recover.js';
import { SwitchableStore } from './store/switchable.js';
import type { FileProblem, Store } from './store/types.js';
import { Tarpit, type TarpitOptions } from './tarpit/server.js';
import { type PolicyDoor, type PolicyListener, type PolicySettings, startPolicyDoor } from './policy/door.js';
import { Activity, statusLine } from './http/activity.js';
import { type SyncListen, SyncPeers, type SyncTarget } from './sync/peers.js';
import { type HttpAddress, startStatusPage } from './http/server.js';
import { startWeighting, type WeightedConfig } from './weighted/options.js';

export interface DaemonConfig {
  tarpit: TarpitOptions;
  /** Blacklist-only mode (-b): no database, no greylisting, no firewall table. */
  blacklistOnly: boolean;
  dbPath: string;
  firewall: FirewallKind;
  pfctl: string;
  pfDevice: string;
  /** nft, and the `FAMILY NAME` of the table holding the sets (--firewall nft). */
  nft: string;
  nftTable: string;
  table: string;
  firewallTimeout: number;
  firewallRetryMin: number;
  firewallRetryMax: number;
  times: GreyTimes;
  scanInterval: number;
  scanChunk: number;
  commitDelay: number;
  /** How long a stop retries the writes the database refuses before it gives them up (ms). */
  stopTimeout: number;
  /** The config port (spamd-cfg) on 127.0.0.1; 0 picks a free port. */
  configPort: number;
  allowedDomainsFile: string;
  /** -M: the low-priority MX address. */
  lowPriorityMx?: string;
  mxGrace: number;
  /**
   * --policy: the policy door (Postfix's check_policy_service, Exim's readsocket) on the same
   * core and store as the tarpit, with postgrey's options.
   */
  policy?: { settings: PolicySettings; listeners: PolicyListener[] };
  /** --weighted: score first attempts and greylist only those that look bad (src/weighted/). */
  weighted?: WeightedConfig;
  /** --http: the status page and /metrics, on a loopback address; `sampleEvery` is for tests (a minute). */
  http?: HttpAddress & { sampleEvery?: number };
  /** -y, -Y: spamd's sync protocol with the other MX hosts (src/sync/). */
  sync?: SyncConfig;
}

/** -y (where to receive), -Y (where to send), --sync-port, --sync-key. */
export interface SyncConfig {
  listen: SyncListen[];
  targets: SyncTarget[];
  port: number;
  keyFile: string;
}

export interface Daemon {
  address: AddressInfo;
  configAddress: AddressInfo;
  lists: BlackLists;
  store?: Store;
  scanner?: Scanner;
  greylister?: Greylister;
  firewall?: Firewall;
  sync?: WhitelistSync;
  tarpit: Tarpit;
  /** --policy's door, when asked for. */
  policy?: PolicyDoor;
  /** -y/-Y: the sync peers' door. */
  syncPeers?: SyncPeers;
  /** The most recent scan's result. */
  lastScan?: ScanPlan;
  /** What it is doing, in numbers (/metrics, the status page, SIGUSR1). */
  activity: Activity;
  /** Where --http listens. */
  httpAddress?: AddressInfo;
  /** SIGUSR1's one line: held connections, counts, the last push. */
  status(): string;
  /** SIGHUP: re-reads the allowed domains. */
  reload(): Promise<void>;
  /**
   * Stops. Resolves once every acknowledged tuple is in the database; rejects (E_DB_WRITE, one
   * line with the count) when the database refused some until the stop deadline passed.
   */
  stop(): Promise<void>;
  /**
   * A second SIGTERM: the stop gives up retrying as soon as the attempt under way returns, and
   * `stop()` then says what was lost.
   */
  stopNow(): void;
}

function hostPrefix(ip: string): string {
  return net.isIPv6(ip) ? `${ip}/128` : `${ip}/32`;
}

async function listenConfigPort(cfg: DaemonConfig, lists: BlackLists, log: Logger) {
  const requireReservedPort = mayBindReserved();
  const open = unprivilegedPortStart();
  if (requireReservedPort && open !== undefined) {
    log.warning(`any user may bind ports from ${open} up here (net.ipv4.ip_unprivileged_port_start), so a ` +
      'reserved source port does not prove that a config-port sender is privileged');
  }
  const configPort = new ConfigPort({
    host: DEFAULTS.listenAddress, port: cfg.configPort, lists, log, requireReservedPort,
  });
  return { configPort, configAddress: await configPort.listen() };
}

export interface DaemonHooks {
  /**
   * Called once everything privileged is done (/dev/pf open, ports bound, database open) and
   * before the first client is handled: `pfgrey run` drops root here.
   */
  afterBind?: (firewall: Firewall['name']) => void;
}

/** What greylisting adds to the tarpit: everything but blacklist-only mode (-b) has it. */
interface Greylisting {
  store: SwitchableStore;
  greylister: Greylister;
  scanner: Scanner;
  firewall: Firewall;
  sync: WhitelistSync;
  /** How the firewall backend was chosen, for the start-up line. */
  reason: string;
  lastScan(): ScanPlan | undefined;
  reload(): Promise<void>;
  /** Stops the greylister, the scan and the sync, and closes the store (see Daemon.stop). */
  stop(giveUp: AbortSignal): Promise<void>;
}

/** A failed start undoes what it did, last first. */
type Undo = Array<() => unknown>;

async function startGreylisting(
  cfg: DaemonConfig, log: Logger, clock: Clock, lists: BlackLists, undo: Undo, activity: Activity,
): Promise<Greylisting> {
  const onCommit = (seconds: number, ok: boolean) => activity.commit(seconds, ok);
  // First, so that a bad --generic-rdns file stops the start before a database is made.
  const weighting = cfg.weighted ? await startWeighting(cfg.weighted) : undefined;
  if (weighting) undo.push(() => weighting.close());
  // A corrupt database is moved aside and replaced, so a bad file never becomes a crash loop.
  const db = await openDaemonStore(cfg.dbPath, { commitDelay: cfg.commitDelay, log, onCommit }, log);
  undo.push(() => db.abandon());
  // The greylister, the scan and the tarpit hold this handle: a database truncated or damaged
  // underneath the daemon is swapped for a recovered one behind it.
  const store = new SwitchableStore(db.store);
  undo.push(() => store.close().catch(() => undefined));
  const { firewall, reason, deviceFd } = await chooseFirewall(cfg.firewall, {
    pfctl: cfg.pfctl, pfDevice: cfg.pfDevice, nft: cfg.nft, nftTable: cfg.nftTable, timeout: cfg.firewallTimeout, log,
  });
  const closeDevice = () => {
    if (deviceFd !== undefined) fs.closeSync(deviceFd);
  };
  undo.push(closeDevice);
  if (db.movedTo) await keepTableAsWhite(firewall, cfg.table, store, clock.now(), cfg.times.whiteExpiry, log);
  const sync = new WhitelistSync({
    firewall, table: cfg.table, log, clock,
    retryMin: cfg.firewallRetryMin, retryMax: cfg.firewallRetryMax, refresh: cfg.scanInterval,
    onPush: (push) => activity.push(cfg.table, push), verbose: cfg.tarpit.verbose,
  });
  let allowed = await loadAllowedDomains(cfg.allowedDomainsFile, log);

  // Trapped hosts are tarpitted as the list spamd-greytrap. Each scan rebuilds it from the
  // TRAPPED entries; a new trap is added at once instead of waiting for the next scan.
  let traps = new Set<string>();
  const publishTraps = () => {
    if (traps.size === 0) lists.apply({ kind: 'clear', tag: DEFAULTS.greytrapTag });
    else lists.replace(DEFAULTS.greytrapTag, DEFAULTS.greytrapMessage, [...traps].map(hostPrefix));
  };

  const greylister = new Greylister({
    store, times: cfg.times, log, clock,
    weighted: weighting?.core(cfg.tarpit.verbose),
    allowedDomains: () => allowed,
    lowPriorityMx: cfg.lowPriorityMx,
    mxGrace: cfg.mxGrace,
    whiteExpiry: cfg.times.whiteExpiry,
    policy: cfg.policy?.settings.times,
    // Daemons sharing a database (PostgreSQL) write the same tuples: each batch is read and
    // written in one atomic update, so that two MX hosts never lose each other's updates.
    atomic: db.maintains !== undefined,
  });
  // Recovered as at start: the file moved aside, what can be read of it copied into a fresh
  // one, the firewall table's hosts kept WHITE, and the writes still queued replayed.
  const recover = (problem: FileProblem) => store.swap(async (old, keep) => {
    const fresh = await replaceUnderneath(store.path, old, problem, keep, { commitDelay: cfg.commitDelay, log, onCommit }, log);
    // A file put in its place is the database now, as at a start; otherwise entries may be
    // lost, and the table's hosts stay whitelisted as after a move at start.
    if (problem.kind !== 'replaced') {
      await keepTableAsWhite(firewall, cfg.table, fresh, clock.now(), cfg.times.whiteExpiry, log).catch((err: unknown) => {
        log.warning(`cannot keep the addresses of <${cfg.table}> in the recovered database: ${describe(err)}`);
      });
    }
    return fresh;
  });
  let lastScan: ScanPlan | undefined;
  // The scan's two halves: maintenance (expire, promote) writes the store, publishing hands
  // the whitelist to this host's firewall and the traps to the tarpit.
  const scanner = new Scanner({
    store, log, clock, events: greylister.events,
    interval: cfg.scanInterval,
    whiteExpiry: cfg.times.whiteExpiry,
    chunk: cfg.scanChunk,
    isBlacklisted: (ip) => lists.lookup(ip) !== undefined,
    maintain: db.maintains,
    onResult: (plan, changes) => {
      lastScan = plan;
      activity.scanned(plan);
      if (changes) sync.change(changes.add, changes.del);
      else sync.update(plan.whitelist);
      traps = new Set(plan.traps);
      publishTraps();
    },
    beforeScan: async () => {
      const problem = await store.fileProblem();
      // A failed recovery is said here; the scan then fails on the missing store, and the
      // next one tries again.
      if (problem) await recover(problem).catch((err: unknown) => log.error(`cannot recover ${store.path}: ${describe(err)}`));
    },
    onCorrupt: (err) => recover({ kind: 'damaged', reason: err.detail }),
  });
  activity.follow(greylister.events);
  greylister.events.on((event) => {
    if (event.kind !== 'trap') return;
    scanner.noteTrap(event.ip);
    if (traps.has(event.ip)) return;
    traps.add(event.ip);
    publishTraps();
  });
  return {
    store, greylister, scanner, firewall, sync, reason,
    lastScan: () => lastScan,
    reload: async () => {
      allowed = await loadAllowedDomains(cfg.allowedDomainsFile, log);
      log.notice(`reloaded ${cfg.allowedDomainsFile}: ${allowed.length ? `${allowed.length} allowed domains` : 'no restriction'}`);
    },
    stop: async (giveUp) => {
      try {
        const dropped = await greylister.stop(giveUp);
        weighting?.close();
        await scanner.stop();
        await sync.flush();
        sync.stop();
        closeDevice();
        let failure: unknown;
        await store.close({ retryUntil: giveUp }).catch((err: unknown) => {
          failure = err;
        });
        // One line for everything the stop lost: the store's queued writes, and the tuples that
        // never reached it.
        if (dropped) {
          const tuples = `${dropped.tuples} acknowledged tuple${dropped.tuples === 1 ? '' : 's'}`;
          const what = failure ? `${describe(failure)}; and ${tuples} never reached it` : `${store.path}: ${tuples} lost, never recorded`;
          throw new PfgreyError('E_DB_WRITE', `${what} (${dropped.reason})`, { cause: failure });
        }
        if (failure) throw failure;
      } finally {
        await db.unlock();
      }
    },
  };
}

/**
 * -y/-Y: the key is read here, as root, before privileges are dropped, and -Y's host names are
 * looked up once, as spamd does.
 */
function startSync(cfg: DaemonConfig, sync: SyncConfig, core: Greylister, log: Logger): Promise<SyncPeers> {
  return SyncPeers.open({
    listen: sync.listen, targets: sync.targets, keyFile: sync.keyFile, port: sync.port, core, log,
    whiteExpiry: cfg.times.whiteExpiry, trapExpiry: cfg.times.trapExpiry,
  });
}

export async function startDaemon(
  cfg: DaemonConfig, log: Logger, clock: Clock = systemClock, hooks: DaemonHooks = {},
): Promise<Daemon> {
  const lists = new BlackLists();
  const undo: Undo = [];
  // Filled in as the rooms start; the activity reads them only when asked.
  const rooms: { grey?: Greylisting; tarpit?: Tarpit; peers?: SyncPeers } = {};
  const activity = new Activity({
    command: 'run',
    held: () => rooms.tarpit?.held() ?? { grey: 0, black: 0, trapped: 0 },
    backlog: cfg.blacklistOnly ? undefined : () => (rooms.grey ? rooms.grey.greylister.queued + rooms.grey.store.pendingWrites : 0),
    lists: () => lists.tags().map((tag) => ({ tag, blocks: lists.count(tag) })),
    firewall: () => rooms.grey && { name: rooms.grey.firewall.name, table: cfg.table },
    policy: cfg.policy !== undefined,
    weighted: cfg.weighted !== undefined,
    sync: cfg.sync ? () => rooms.peers?.counts : undefined,
  }, clock);
  try {
    if (cfg.blacklistOnly && cfg.policy) throw new PfgreyError('E_USAGE', '--policy needs the greylisting database, which blacklist-only mode (-b) has not');
    const grey = cfg.blacklistOnly ? undefined : await startGreylisting(cfg, log, clock, lists, undo, activity);
    rooms.grey = grey;
    const core = grey?.greylister;
    const tarpit = new Tarpit(cfg.tarpit, {
      log, clock,
      lookup: (ip) => lists.lookup(ip),
      onTuple: core ? (t) => {
        activity.tuple();
        void core.tuple(t);
      } : () => {},
      backlogged: grey ? () => grey.greylister.backlogged : undefined,
    });
    rooms.tarpit = tarpit;
    undo.push(() => tarpit.close());
    const { configPort, configAddress } = await listenConfigPort(cfg, lists, log);
    undo.push(() => configPort.close());
    const address = await tarpit.listen();
    // Bound as root too: a Unix socket in Postfix's private/ directory needs it.
    const policy = grey && cfg.policy
      ? await startPolicyDoor(cfg.policy.settings, grey.greylister, log, cfg.policy.listeners, (o) => activity.policyAnswer(o))
      : undefined;
    if (policy) undo.push(() => policy.close());
    const peers = grey && cfg.sync ? await startSync(cfg, cfg.sync, grey.greylister, log) : undefined;
    if (peers) undo.push(() => peers.close());
    rooms.peers = peers;
    const http = cfg.http && await startStatusPage(cfg.http, activity, log, cfg.http.sampleEvery);
    if (http) undo.push(() => http.close());
    // Synchronously after the last bind, so no client is handled before it (privilege drop).
    // spamd keeps root in blacklist-only mode; pfgrey drops it there too.
    hooks.afterBind?.(grey?.firewall.name ?? 'none');
    if (grey) {
      log.info(`database ${grey.store.path}; firewall ${grey.reason}, table <${cfg.table}>; ` +
        `passtime ${formatDuration(cfg.times.passTime)}, greyexp ${formatDuration(cfg.times.greyExpiry)}, ` +
        `whiteexp ${formatDuration(cfg.times.whiteExpiry)}, scan every ${formatDuration(cfg.scanInterval)}; ` +
        `config port ${configAddress.port}`);
    } else {
      log.notice(`blacklist-only mode: no greylisting, no database; lists from the config port ${configAddress.port}`);
    }
    if (http) log.warning(`listening for status requests on ${http.bound}.`);
    log.warning(`listening for incoming connections on ${address.address}:${address.port}.`);
    for (const b of policy?.bound ?? []) log.warning(`listening for policy requests on ${b}.`);
    for (const b of peers?.bound ?? []) log.warning(`listening for sync packets on ${b}.`);
    for (const d of peers?.destinations ?? []) log.info(`sending sync packets to ${d}`);
    grey?.scanner.start();
    http?.samples.start();

    // One deadline for the whole stop: the greylister and the store retry what the database
    // refuses (another process holding its write lock, say) until it passes, then give it up.
    const giveUp = new AbortController();
    let stopping: Promise<void> | undefined;
    return {
      address, configAddress, lists, tarpit, policy, activity, syncPeers: peers,
      httpAddress: http?.address,
      store: grey?.store, greylister: grey?.greylister, scanner: grey?.scanner, firewall: grey?.firewall, sync: grey?.sync,
      get lastScan() {
        return grey?.lastScan();
      },
      status: () => statusLine(activity.status()),
      reload: async () => {
        await grey?.reload();
        await policy?.reload();
      },
      stopNow: () => giveUp.abort(),
      stop: () => (stopping ??= (async () => {
        const deadline = setTimeout(() => giveUp.abort(), cfg.stopTimeout);
        try {
          await http?.close();
          await configPort.close();
          await tarpit.close();
          await policy?.close();
          peers?.close();
          await grey?.stop(giveUp.signal);
        } finally {
          clearTimeout(deadline);
        }
      })()),
    };
  } catch (err) {
    for (const step of undo.reverse()) await step();
    throw err;
  }
}
