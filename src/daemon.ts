// Wires the rooms together: tarpit → greylister → store, scanner → firewall. `pfgrey run` builds
// a DaemonConfig from its flags and calls startDaemon; tests call it directly on port 0.

import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type Clock, systemClock } from './clock.js';
import { formatDuration } from './config/duration.js';
import { chooseFirewall } from './firewall/select.js';
import { WhitelistSync } from './firewall/sync.js';
import type { Firewall } from './firewall/types.js';
import { Greylister } from './grey/greylister.js';
import type { GreyTimes, ScanPlan } from './grey/rules.js';
import { Scanner } from './grey/scanner.js';
import type { Logger } from './log.js';
import { openStore } from './store/sqlite.js';
import type { Store } from './store/types.js';
import { Tarpit, type TarpitOptions } from './tarpit/server.js';

export interface DaemonConfig {
  tarpit: TarpitOptions;
  /** Blacklist-only mode (-b): no database, no greylisting, no firewall table. */
  blacklistOnly: boolean;
  dbPath: string;
  firewall: 'auto' | 'pf' | 'none';
  pfctl: string;
  pfDevice: string;
  table: string;
  firewallTimeout: number;
  firewallRetryMin: number;
  firewallRetryMax: number;
  times: GreyTimes;
  scanInterval: number;
  scanChunk: number;
  commitDelay: number;
}

export interface Daemon {
  address: AddressInfo;
  store?: Store;
  scanner?: Scanner;
  greylister?: Greylister;
  firewall?: Firewall;
  sync?: WhitelistSync;
  tarpit: Tarpit;
  /** The most recent scan's result. */
  lastScan?: ScanPlan;
  stop(): Promise<void>;
}

export async function startDaemon(cfg: DaemonConfig, log: Logger, clock: Clock = systemClock): Promise<Daemon> {
  if (cfg.blacklistOnly) {
    const tarpit = new Tarpit(cfg.tarpit, { log, clock, onTuple: () => {} });
    const address = await tarpit.listen();
    log.notice(`blacklist-only mode: no greylisting, no database`);
    log.warning(`listening for incoming connections on ${address.address}:${address.port}.`);
    return { address, tarpit, stop: () => tarpit.close() };
  }

  const store = await openStore(cfg.dbPath, { create: true, commitDelay: cfg.commitDelay, log });
  let tarpit: Tarpit | undefined;
  let deviceFd: number | undefined;
  try {
    const chosen = await chooseFirewall(cfg.firewall, {
      pfctl: cfg.pfctl, pfDevice: cfg.pfDevice, timeout: cfg.firewallTimeout, log,
    });
    const { firewall, reason } = chosen;
    deviceFd = chosen.deviceFd;
    const sync = new WhitelistSync({
      firewall, table: cfg.table, log, clock,
      retryMin: cfg.firewallRetryMin, retryMax: cfg.firewallRetryMax, refresh: cfg.scanInterval,
    });
    const greylister = new Greylister(store, cfg.times, log, clock);
    const daemon: Daemon = {
      address: undefined as unknown as AddressInfo,
      store, greylister, firewall, sync,
      tarpit: undefined as unknown as Tarpit,
      stop: async () => {},
    };
    const scanner = new Scanner({
      store, log, clock,
      interval: cfg.scanInterval,
      whiteExpiry: cfg.times.whiteExpiry,
      chunk: cfg.scanChunk,
      onResult: (plan) => {
        daemon.lastScan = plan;
        sync.update(plan.whitelist);
      },
    });
    daemon.scanner = scanner;
    tarpit = new Tarpit(cfg.tarpit, {
      log, clock,
      onTuple: (t) => void greylister.tuple(t),
    });
    daemon.tarpit = tarpit;
    daemon.address = await tarpit.listen();
    log.info(`database ${store.path}; firewall ${reason}, table <${cfg.table}>; ` +
      `passtime ${formatDuration(cfg.times.passTime)}, greyexp ${formatDuration(cfg.times.greyExpiry)}, ` +
      `whiteexp ${formatDuration(cfg.times.whiteExpiry)}, scan every ${formatDuration(cfg.scanInterval)}`);
    log.warning(`listening for incoming connections on ${daemon.address.address}:${daemon.address.port}.`);
    scanner.start();

    let stopping: Promise<void> | undefined;
    daemon.stop = () => (stopping ??= (async () => {
      await tarpit!.close();
      await greylister.settle();
      await scanner.stop();
      await sync.flush();
      sync.stop();
      if (deviceFd !== undefined) fs.closeSync(deviceFd);
      await store.close();
    })());
    return daemon;
  } catch (err) {
    await tarpit?.close();
    if (deviceFd !== undefined) fs.closeSync(deviceFd);
    await store.close();
    throw err;
  }
}
