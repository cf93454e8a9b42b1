// spamd's sync protocol on the network (spamd(8), SYNCHRONISATION; README.md, "Several MX
// hosts"): receivers hand what peers send to the greylist core like any other door, and a
// sender tells the peers what this host's doors and scan changed.
//
// -y LISTEN: an IPv4 address to receive unicast on, or an interface to receive spamd's
//   multicast group (224.0.1.240) on, as well as unicast to any address. Repeatable.
// -Y DEST: a host (its first IPv4 address) or host:port to send to, or an interface[:ttl] to
//   send to the multicast group through. Repeatable.
//
// As in spamd: one record per packet, a counter per process from 0, a datagram from this host's
// own multicast address ignored, no replay protection (the counter is not checked: spamd's is
// not either). Unlike spamd, -y with an interface and -Y with another may be combined, several
// of each may be given, and no packet longer than spamd can receive (1408 bytes) is sent.

import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import os from 'node:os';
import { type Clock, systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError, systemErrorText } from '../errors.js';
import { listenError } from '../listen-error.js';
import { splitGreyKey } from '../grey/entry.js';
import type { CoreEvent, CoreEvents, GreyRequest, SyncRecord, Verdict } from '../grey/requests.js';
import type { Logger } from '../log.js';
import { RepeatLog } from '../repeat-log.js';
import { CoarseTimer } from '../timers.js';
import { loadSyncKey } from './key.js';
import { decodePacket, encodePacket, packetSize, syncable } from './wire.js';

/** A -y argument: an address to bind, or an interface whose multicast to join. */
export type SyncListen = { kind: 'address'; address: string } | { kind: 'interface'; name: string };

/** A -Y argument: a host (name or address) and port, or an interface and multicast TTL. */
export type SyncTarget = { kind: 'host'; host: string; port?: number } | { kind: 'interface'; name: string; ttl: number };

type Interfaces = ReturnType<typeof os.networkInterfaces>;

/** The first IPv4 address of interface `name`, or undefined when there is no such interface. */
function interfaceAddress(name: string, interfaces: Interfaces): string | undefined {
  return interfaces[name]?.find((a) => a.family === 'IPv4')?.address;
}

function intIn(text: string, min: number, max: number): number | undefined {
  if (!/^\d{1,6}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

/**
 * Refuses a -y given twice: the same address bound twice would split the packets sent to it
 * between two sockets, and the same interface cannot join the group twice.
 */
export function checkSyncListens(listen: readonly SyncListen[]): void {
  const seen = new Set<string>();
  for (const l of listen) {
    const name = l.kind === 'address' ? l.address : l.name;
    if (seen.has(name)) throw new PfgreyError('E_BAD_OPTION', `-y ${name}: given twice; give each address or interface once`);
    seen.add(name);
  }
}

/** Parses -y: an IPv4 address, or the name of an interface that exists and has one. */
export function parseSyncListen(arg: string, interfaces: Interfaces = os.networkInterfaces()): SyncListen {
  if (net.isIPv4(arg)) return { kind: 'address', address: arg };
  if (net.isIPv6(arg)) throw new PfgreyError('E_BAD_ADDRESS', `-y ${arg}: spamd's sync protocol carries IPv4 only`);
  if (interfaces[arg] === undefined) throw new PfgreyError('E_BAD_ADDRESS', `-y ${arg}: neither an IPv4 address nor a network interface`);
  if (interfaceAddress(arg, interfaces) === undefined) throw new PfgreyError('E_BAD_ADDRESS', `-y ${arg}: the interface has no IPv4 address`);
  return { kind: 'interface', name: arg };
}

/**
 * Parses -Y. `NAME[:N]` where NAME is an interface is multicast with TTL N (1–255, default 1),
 * as spamd reads `em0:2`; anything else is a host with an optional port. A host name is looked
 * up at start (resolveSyncTargets), as spamd does.
 */
export function parseSyncTarget(arg: string, interfaces: Interfaces = os.networkInterfaces()): SyncTarget {
  const colon = arg.lastIndexOf(':');
  const [name, n] = colon > 0 && !net.isIPv6(arg) ? [arg.slice(0, colon), arg.slice(colon + 1)] : [arg, undefined];
  if (net.isIPv6(name) || name.startsWith('[')) throw new PfgreyError('E_BAD_ADDRESS', `-Y ${arg}: spamd's sync protocol carries IPv4 only`);
  if (name === '') throw new PfgreyError('E_BAD_ADDRESS', `-Y ${arg}: no host or interface`);
  if (!net.isIPv4(name) && interfaces[name] !== undefined) {
    const ttl = n === undefined ? DEFAULTS.syncTtl : intIn(n, 1, 255);
    if (ttl === undefined) throw new PfgreyError('E_BAD_OPTION', `-Y ${arg}: multicast TTL ${n} is not a number from 1 to 255`);
    if (interfaceAddress(name, interfaces) === undefined) throw new PfgreyError('E_BAD_ADDRESS', `-Y ${arg}: the interface has no IPv4 address`);
    return { kind: 'interface', name, ttl };
  }
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9.])?$/.test(name)) {
    throw new PfgreyError('E_BAD_ADDRESS', `-Y ${arg}: neither a host name, an IPv4 address nor a network interface`);
  }
  if (n === undefined) return { kind: 'host', host: name };
  const port = intIn(n, 1, 65535);
  if (port === undefined) throw new PfgreyError('E_BAD_OPTION', `-Y ${arg}: port ${n} is not a number from 1 to 65535`);
  return { kind: 'host', host: name, port };
}

/** Where packets go: unicast addresses with ports, multicast interfaces with their address and TTL. */
export interface ResolvedTargets {
  unicast: Array<{ shown: string; address: string; port: number }>;
  multicast: Array<{ name: string; address: string; ttl: number }>;
}

/** Looks up the -Y hosts (their first IPv4 address) and interfaces; throws E_SYNC naming one that fails. */
export async function resolveSyncTargets(
  targets: readonly SyncTarget[], port: number, interfaces: Interfaces = os.networkInterfaces(),
): Promise<ResolvedTargets> {
  const out: ResolvedTargets = { unicast: [], multicast: [] };
  for (const t of targets) {
    if (t.kind === 'interface') {
      const address = interfaceAddress(t.name, interfaces);
      if (address === undefined) throw new PfgreyError('E_SYNC', `-Y ${t.name}: the interface is gone or has no IPv4 address`);
      out.multicast.push({ name: t.name, address, ttl: t.ttl });
      continue;
    }
    let address = net.isIPv4(t.host) ? t.host : undefined;
    if (address === undefined) {
      try {
        address = (await lookup(t.host, { all: true })).find((a) => a.family === 4)?.address;
      } catch (err) {
        throw new PfgreyError('E_SYNC', `-Y ${t.host}: cannot look it up: ${describe(err)}`, { cause: err });
      }
      if (address === undefined) throw new PfgreyError('E_SYNC', `-Y ${t.host}: has no IPv4 address`);
    }
    const p = t.port ?? port;
    out.unicast.push({ shown: `${t.host}:${p}`, address, port: p });
  }
  return out;
}

export interface SyncPeersOptions {
  listen: readonly SyncListen[];
  targets: ResolvedTargets;
  /** --sync-port: where -y listens, and where -Y hosts without a port and the multicast group are sent to. */
  port: number;
  key: Buffer;
  /** The core records go to; its events are what is sent. */
  core: { handle(req: GreyRequest): Promise<Verdict>; readonly backlogged: boolean; readonly events: CoreEvents };
  /** The expiries sent with WHITE and TRAPPED records: now plus these (whiteexp, trapexp). */
  whiteExpiry: number;
  trapExpiry: number;
  log: Logger;
  clock?: Clock;
  interfaces?: Interfaces;
  /** DEFAULTS.syncRefusedLogEvery, unless a test says otherwise. */
  refusedLogEvery?: number;
}

/** What the sync door has done, for tests and the status line. */
export interface SyncCounts {
  received: number;
  refused: number;
  sent: number;
  dropped: number;
}

function bind(socket: dgram.Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port, address, exclusive: false }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

export class SyncPeers {
  readonly counts: SyncCounts = { received: 0, refused: 0, sent: 0, dropped: 0 };
  private readonly sockets: dgram.Socket[] = [];
  private unicast: dgram.Socket | undefined;
  private readonly multicast: Array<{ socket: dgram.Socket; port: number }> = [];
  /** Addresses of this host's multicast interfaces: a datagram from one is our own. */
  private readonly own = new Set<string>();
  private readonly queue: Buffer[] = [];
  private inFlight = 0;
  private counter = 0;
  private readonly timer: CoarseTimer;
  private readonly clock: Clock;
  private readonly repeats = new Map<string, RepeatLog>();
  private unsubscribe: (() => void) | undefined;
  private closed = false;
  /** Where the receivers listen, for the start-up line. */
  readonly bound: string[] = [];
  /** Where packets go, for the start-up line. */
  get destinations(): string[] {
    const { unicast, multicast } = this.opts.targets;
    return [...multicast.map((m) => `${DEFAULTS.syncGroup}:${this.opts.port} on ${m.name} (ttl ${m.ttl})`), ...unicast.map((u) => u.shown)];
  }

  /** The ports the -y addresses were bound to (tests bind port 0). */
  readonly ports: number[] = [];

  private constructor(private readonly opts: SyncPeersOptions) {
    this.clock = opts.clock ?? systemClock;
    this.timer = new CoarseTimer(1000, this.clock);
  }

  /**
   * What `pfgrey run -y/-Y` and `pfgrey logd -Y` start with, as root, before privileges go:
   * reads the key file and looks up the -Y hosts. Throws E_SYNC_KEY or E_SYNC naming what failed.
   */
  static async prepare(keyFile: string, targets: readonly SyncTarget[], port: number, log: Logger): Promise<Pick<SyncPeersOptions, 'key' | 'targets'>> {
    const key = await loadSyncKey(keyFile, log);
    return { key, targets: await resolveSyncTargets(targets, port) };
  }

  /** prepare, then start. */
  static async open(opts: Omit<SyncPeersOptions, 'key' | 'targets'> & { keyFile: string; targets: readonly SyncTarget[] }): Promise<SyncPeers> {
    const { keyFile, targets, ...rest } = opts;
    return SyncPeers.start({ ...rest, ...await SyncPeers.prepare(keyFile, targets, opts.port, opts.log) });
  }

  /**
   * Binds the receivers and the senders; throws E_LISTEN naming a port it cannot bind, E_SYNC
   * naming anything else that failed (and leaves nothing open).
   */
  static async start(opts: SyncPeersOptions): Promise<SyncPeers> {
    checkSyncListens(opts.listen);
    const peers = new SyncPeers(opts);
    try {
      await peers.open();
    } catch (err) {
      peers.close();
      throw err instanceof PfgreyError ? err : new PfgreyError('E_SYNC', `sync: ${systemErrorText(err)}`, { cause: err });
    }
    peers.unsubscribe = opts.core.events.on((e) => peers.onEvent(e));
    return peers;
  }

  /**
   * A UDP socket; `reuse` asks for SO_REUSEADDR. spamd sets it on its sync socket, where on the
   * BSDs it lets several programs receive a multicast group but no two bind one unicast port.
   * On Linux it also lets a second socket bind an address and port already held, when both ask
   * for it, and the two then split what arrives, so only the sockets that must share ask: the
   * group's, and those bound beside it (Linux refuses an address's port next to the wildcard's
   * otherwise).
   */
  private socket(what: string, reuse = false): dgram.Socket {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: reuse });
    // A send or receive error is the network's (a peer's port unreachable, an interface down):
    // said once a minute, never a crash.
    s.on('error', (err) => this.repeat('socket', `sync: ${what}: ${systemErrorText(err)}`));
    return s;
  }

  private async open(): Promise<void> {
    const { port, interfaces = os.networkInterfaces() } = this.opts;
    const groups = this.opts.listen.filter((l) => l.kind === 'interface');
    if (groups.length > 0) {
      // One socket on the wildcard address for every interface's membership: it also takes
      // unicast to any address, as spamd's -y ifname does.
      const s = this.socket(`receiving on port ${port}`, true);
      await this.bindOrSay(s, port, '0.0.0.0');
      for (const g of groups) {
        const address = interfaceAddress(g.name, interfaces);
        if (address === undefined) throw new PfgreyError('E_SYNC', `-y ${g.name}: the interface is gone or has no IPv4 address`);
        try {
          s.addMembership(DEFAULTS.syncGroup, address);
        } catch (err) {
          throw new PfgreyError('E_SYNC', `-y ${g.name}: cannot join ${DEFAULTS.syncGroup} on ${address}: ${systemErrorText(err)}`, { cause: err });
        }
        this.own.add(address);
        this.bound.push(`${DEFAULTS.syncGroup}:${s.address().port} on ${g.name} (${address})`);
      }
      this.receive(s);
    }
    for (const l of this.opts.listen) {
      if (l.kind !== 'address') continue;
      const s = this.socket(`receiving on ${l.address}:${port}`, groups.length > 0);
      await this.bindOrSay(s, port, l.address);
      this.bound.push(`${l.address}:${s.address().port}`);
      this.ports.push(s.address().port);
      this.receive(s);
    }
    const { unicast, multicast } = this.opts.targets;
    if (unicast.length > 0) {
      this.unicast = this.socket('sending');
      await this.bindOrSay(this.unicast, 0, '0.0.0.0');
    }
    for (const m of multicast) {
      const s = this.socket(`sending to ${DEFAULTS.syncGroup} on ${m.name}`);
      await this.bindOrSay(s, 0, m.address);
      try {
        s.setMulticastInterface(m.address);
        s.setMulticastTTL(m.ttl);
        // Our own packets are not for us; spamd drops them by their source address instead.
        s.setMulticastLoopback(false);
      } catch (err) {
        throw new PfgreyError('E_SYNC', `-Y ${m.name}: cannot send multicast through ${m.address}: ${systemErrorText(err)}`, { cause: err });
      }
      this.own.add(m.address);
      this.multicast.push({ socket: s, port });
    }
  }

  /** Binds a receiver (-y) to `port`, or a sender to a port of the system's choice (port 0). */
  private async bindOrSay(s: dgram.Socket, port: number, address: string): Promise<void> {
    try {
      await bind(s, port, address);
    } catch (err) {
      s.close();
      if (port !== 0) throw listenError('sync packets', address, port, err as NodeJS.ErrnoException, { udp: true, flag: '-y' });
      throw new PfgreyError('E_SYNC', `sync: cannot send from ${address}: ${systemErrorText(err)}`, { cause: err });
    }
    this.sockets.push(s);
  }

  /** One RepeatLog per reason: a flood of one kind costs a line a minute, and hides no other kind. */
  private repeat(reason: string, line: string): void {
    let r = this.repeats.get(reason);
    if (!r) {
      r = new RepeatLog(this.opts.log, this.timer, this.opts.refusedLogEvery ?? DEFAULTS.syncRefusedLogEvery, this.clock,
        (n, s) => `sync: ${n} more like the above (${reason}) in the last ${s} s`, 'warning');
      this.repeats.set(reason, r);
    }
    r.report(line);
  }

  private receive(s: dgram.Socket): void {
    s.on('message', (msg, rinfo) => this.onPacket(msg, rinfo.address));
  }

  /** One datagram from `peer`: refused (and counted, and logged by reason) or handed to the core. */
  onPacket(msg: Buffer, peer: string): void {
    if (this.closed || this.own.has(peer)) return;
    const d = decodePacket(msg, this.opts.key);
    if (!d.ok) {
      this.counts.refused++;
      this.repeat(d.reason, `sync: refused a packet from ${peer}: ${d.detail}`);
      return;
    }
    this.counts.received++;
    if (this.opts.core.backlogged) {
      // The database is behind: what peers say now is dropped, as a lost datagram would be.
      this.counts.dropped += d.packet.records.length;
      this.repeat('busy', `sync: dropped ${d.packet.records.length} record(s) from ${peer}: the database is behind`);
      return;
    }
    for (const record of d.packet.records) {
      this.opts.log.debug(`sync: received ${describeRecord(record)} from ${peer}`);
      void this.opts.core.handle({ kind: 'sync', peer, record }).then((v) => {
        if (v.kind === 'refused' || v.kind === 'dropped') this.opts.log.debug(`sync: ${describeRecord(record)} from ${peer} not applied: ${v.why}`);
      });
    }
  }

  /** The core's events: this host's own GREY tuple updates, traps and whitelistings go to the peers. */
  private onEvent(e: CoreEvent): void {
    if (e.kind === 'expire' || e.kind === 'weighed' || e.origin === 'sync') return;
    const now = this.clock.now();
    let record: SyncRecord;
    if (e.kind === 'grey') {
      const parts = splitGreyKey(e.entry.key);
      if (!parts) return;
      record = { type: 'GREY', time: now, ...parts };
    } else if (e.kind === 'trap') {
      record = { type: 'TRAPPED', time: now, expire: now + this.opts.trapExpiry, ip: e.ip };
    } else {
      record = { type: 'WHITE', time: now, expire: now + this.opts.whiteExpiry, ip: e.ip };
    }
    this.send(record);
  }

  /** Queues one record for every peer; never waits. Not sendable (IPv6, too long): said at debug. */
  send(record: SyncRecord): void {
    if (this.closed || (this.unicast === undefined && this.multicast.length === 0)) return;
    if (!syncable(record.ip)) return;
    if (packetSize(record) > DEFAULTS.syncMaxPacket) {
      this.opts.log.debug(`sync: not sending ${describeRecord(record)}: ${packetSize(record)} bytes, more than spamd receives`);
      return;
    }
    if (this.queue.length >= DEFAULTS.syncQueueMax) {
      this.counts.dropped++;
      this.repeat('queue', `sync: send queue full (${DEFAULTS.syncQueueMax} packets); dropped ${describeRecord(record)}`);
      return;
    }
    let packet: Buffer;
    try {
      packet = encodePacket([record], this.counter, this.opts.key);
    } catch (err) {
      this.opts.log.debug(`sync: not sending ${describeRecord(record)}: ${describe(err)}`);
      return;
    }
    this.counter = (this.counter + 1) >>> 0;
    this.queue.push(packet);
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < DEFAULTS.syncInFlight && this.queue.length > 0 && !this.closed) {
      const packet = this.queue.shift()!;
      const sends: Array<[dgram.Socket, number, string]> = [
        ...this.multicast.map((m): [dgram.Socket, number, string] => [m.socket, m.port, DEFAULTS.syncGroup]),
        ...this.opts.targets.unicast.map((u): [dgram.Socket, number, string] => [this.unicast!, u.port, u.address]),
      ];
      for (const [socket, port, address] of sends) {
        this.inFlight++;
        // Errors (no route, a port unreachable) are ignored, as spamd ignores them; the socket's
        // error handler says them once a minute.
        socket.send(packet, port, address, (err) => {
          this.inFlight--;
          if (err) this.repeat('send', `sync: cannot send to ${address}:${port}: ${systemErrorText(err)}`);
          else this.counts.sent++;
          this.pump();
        });
      }
    }
  }

  /**
   * Resolves once every packet queued so far has been handed to the network, or after `ms`:
   * a logd that reads a capture file and exits sends what it learnt first.
   */
  async drain(ms: number): Promise<void> {
    const deadline = this.clock.now() + ms;
    while (!this.closed && (this.queue.length > 0 || this.inFlight > 0) && this.clock.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Stops receiving and sending; packets still queued are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    this.timer.stop();
    for (const s of this.sockets) {
      try {
        s.close();
      } catch {
        // Already closed.
      }
    }
  }
}

function describeRecord(r: SyncRecord): string {
  if (r.type === 'GREY') return `GREY ${r.ip} ${JSON.stringify(r.helo)} ${JSON.stringify(r.from)} ${JSON.stringify(r.to)}`;
  return `${r.type} ${r.ip} until ${Math.floor(r.expire / 1000)}`;
}
