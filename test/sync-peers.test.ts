// The sync door on real UDP sockets (loopback, ports chosen by the system): what this host's
// core changes goes to the peers as spamd's packets, one record each; what peers send reaches
// the core; packets from peers are never sent on; refused packets are counted and logged one
// line per reason; what cannot be sent or applied at once (a full send queue, a database that is
// behind) is dropped without waiting and counted; -y and -Y arguments are checked with clear
// messages, and a sync port is never shared.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import { DEFAULTS } from '../src/config/defaults.js';
import { isPfgreyError } from '../src/errors.js';
import { Activity } from '../src/http/activity.js';
import { CoreEvents, type GreyRequest, type SyncRequest, type Verdict } from '../src/grey/requests.js';
import { memoryLogger } from '../src/log.js';
import { checkSyncListens, parseSyncListen, parseSyncTarget, resolveSyncTargets, SyncPeers } from '../src/sync/peers.js';
import { freeUdpPort } from './helpers/ports.js';
import { addrTlv, END, packet, TEST_KEY } from './helpers/sync-packets.js';
import { eventually } from './helpers/wait.js';

const KEY = TEST_KEY;
const IFACES = {
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
  eth9: [{ address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 }],
} as const;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const ifaces = IFACES as any;

function fakeCore() {
  const requests: SyncRequest[] = [];
  const core = {
    events: new CoreEvents(),
    backlogged: false,
    handle: (req: GreyRequest): Promise<Verdict> => {
      if (req.kind === 'sync') requests.push(req);
      return Promise.resolve({ kind: 'refused', why: 'test' });
    },
  };
  return { core, requests };
}

async function peer(t: ExecutionContext, opts: { to?: number[]; refusedLogEvery?: number } = {}) {
  const { core, requests } = fakeCore();
  const log = memoryLogger();
  const peers = await SyncPeers.start({
    listen: [{ kind: 'address', address: '127.0.0.1' }],
    targets: { unicast: (opts.to ?? []).map((port) => ({ shown: `127.0.0.1:${port}`, address: '127.0.0.1', port })), multicast: [] },
    port: 0, key: KEY, core, whiteExpiry: 36 * 86_400_000, trapExpiry: 86_400_000, log, refusedLogEvery: opts.refusedLogEvery,
  });
  t.teardown(() => peers.close());
  return { peers, core, requests, log, port: peers.ports[0]! };
}

test('a local tuple, trap and whitelisting reach the peer as GREY, TRAPPED and WHITE records; its own records are not sent on', async (t) => {
  const b = await peer(t);
  const a = await peer(t, { to: [b.port] });
  a.core.events.emit({ kind: 'grey', entry: { key: '192.0.2.7\nmx.example\n<a@x>\n<b@y>', first: 1, pass: 2, expire: 3, bcount: 1, pcount: 0 } });
  a.core.events.emit({ kind: 'trap', ip: '192.0.2.8' });
  a.core.events.emit({ kind: 'white', ip: '192.0.2.9' });
  // What came from a peer, an IPv6 client and an expiry are not sent.
  a.core.events.emit({ kind: 'trap', ip: '192.0.2.10', origin: 'sync' });
  a.core.events.emit({ kind: 'grey', entry: { key: '192.0.2.11\nh\n<a@x>\n<b@y>', first: 1, pass: 2, expire: 3, bcount: 1, pcount: 0 }, origin: 'sync' });
  a.core.events.emit({ kind: 'trap', ip: '2001:db8::1' });
  a.core.events.emit({ kind: 'expire', key: '192.0.2.12' });
  await eventually(() => b.requests.length >= 3, 'three records at b');
  t.like(b.requests[0]!.record, { type: 'GREY', ip: '192.0.2.7', helo: 'mx.example', from: '<a@x>', to: '<b@y>' });
  t.like(b.requests[1]!.record, { type: 'TRAPPED', ip: '192.0.2.8' });
  t.like(b.requests[2]!.record, { type: 'WHITE', ip: '192.0.2.9' });
  const trap = b.requests[1]!.record as { time: number; expire: number };
  t.is(trap.expire - trap.time, 86_400_000);
  t.is(b.requests[0]!.peer, '127.0.0.1');
  t.deepEqual(a.peers.counts, { received: 0, refused: 0, sent: 3, dropped: 0 });
  // Nothing more arrives (what b received it does not send anywhere: it has no targets).
  a.core.events.emit({ kind: 'white', ip: '192.0.2.99' });
  await eventually(() => b.requests.length === 4, 'the marker record');
  t.is(b.requests[3]!.record.ip, '192.0.2.99');
});

/** A WHITE packet built from the layout, its HMAC computed here. */
const whitePacket = (ip: string, key = KEY) => packet([addrTlv(2, ip, 0xfffffff0), END], { key });

test('packets from the layout are taken; bad HMACs and cut packets are refused, counted, logged once per reason', async (t) => {
  const b = await peer(t);
  const raw = dgram.createSocket('udp4');
  t.teardown(() => raw.close());
  const send = (p: Buffer) => new Promise<void>((resolve) => raw.send(p, b.port, '127.0.0.1', () => resolve()));
  await send(whitePacket('198.51.100.1'));
  for (let i = 0; i < 5; i++) await send(whitePacket('198.51.100.2', Buffer.from('0'.repeat(40))));
  for (let i = 0; i < 3; i++) await send(whitePacket('198.51.100.3').subarray(0, 40));
  await send(Buffer.from('hello'));
  await send(whitePacket('198.51.100.4'));
  await eventually(() => b.requests.length === 2 && b.peers.counts.refused === 9, 'two records taken, nine packets refused');
  t.deepEqual(b.requests.map((r) => r.record.ip), ['198.51.100.1', '198.51.100.4']);
  t.like(b.requests[0]!.record, { type: 'WHITE', expire: 0xfffffff0 * 1000 });
  const refused = b.log.lines.filter((l) => l.includes('refused a packet'));
  t.is(refused.length, 3, refused.join('\n'));
  t.true(refused.some((l) => /^warning: sync: refused a packet from 127\.0\.0\.1: HMAC does not match/.test(l)));
  t.true(refused.some((l) => /40 bytes arrived of the 52/.test(l)));
  t.true(refused.some((l) => /5 bytes, fewer than the 32/.test(l)));
});

/** What /metrics says the door dropped. */
async function droppedMetric(peers: SyncPeers): Promise<string | undefined> {
  const text = await new Activity({ command: 'run', sync: () => peers.counts }).registry.metrics();
  return /^pfgrey_sync_dropped_records_total (\d+)$/m.exec(text)?.[1];
}

const warnings = (log: ReturnType<typeof memoryLogger>, pattern: RegExp) => log.lines.filter((l) => pattern.test(l));

test('past the send queue\'s bound, records are dropped at once and counted; the log says the first and then how many more', async (t) => {
  const sink = dgram.createSocket('udp4');
  t.teardown(() => sink.close());
  await new Promise<void>((resolve) => sink.bind(0, '127.0.0.1', () => resolve()));
  const a = await peer(t, { to: [sink.address().port], refusedLogEvery: 1000 });
  // One burst, in one turn of the event loop: no send can complete meanwhile, so the first
  // syncInFlight packets are handed to the socket, the next syncQueueMax wait, the rest go.
  const extra = 5;
  const total = DEFAULTS.syncInFlight + DEFAULTS.syncQueueMax + extra;
  for (let i = 0; i < total; i++) a.core.events.emit({ kind: 'white', ip: `192.0.2.${i % 250}` });
  t.is(a.peers.counts.dropped, extra);
  const full = /^warning: sync: send queue full/;
  const first = warnings(a.log, full);
  t.is(first.length, 1, first.join('\n'));
  t.regex(first[0]!, new RegExp(`^warning: sync: send queue full \\(${DEFAULTS.syncQueueMax} packets\\); ` +
    `dropped WHITE 192\\.0\\.2\\.${(total - extra) % 250} until \\d+$`));
  t.is(await droppedMetric(a.peers), String(extra));
  // The others were all sent: the queue drains by itself.
  await eventually(() => a.peers.counts.sent === total - extra, 'the queued packets sent');
  await eventually(() => warnings(a.log, /more like the above/).length > 0, 'the summary line');
  t.deepEqual(warnings(a.log, /more like the above/), [`warning: sync: ${extra - 1} more like the above (queue) in the last 1 s`]);
  t.is(warnings(a.log, full).length, 1);
});

test('while the database is behind, received records are dropped, not handed to the core, and counted; one line, then a count', async (t) => {
  const b = await peer(t, { refusedLogEvery: 1000 });
  b.core.backlogged = true;
  // Six datagrams as the socket hands them over, in one turn of the event loop.
  for (let i = 1; i <= 6; i++) b.peers.onPacket(whitePacket(`198.51.100.${i}`), '192.0.2.20');
  t.is(b.peers.counts.dropped, 6);
  t.is(await droppedMetric(b.peers), '6');
  const busy = warnings(b.log, /the database is behind/);
  t.deepEqual(busy, ['warning: sync: dropped 1 record(s) from 192.0.2.20: the database is behind']);
  await eventually(() => warnings(b.log, /more like the above/).length > 0, 'the summary line');
  t.deepEqual(warnings(b.log, /more like the above/), ['warning: sync: 5 more like the above (busy) in the last 1 s']);
  // Once it has caught up, records are applied again.
  b.core.backlogged = false;
  b.peers.onPacket(whitePacket('198.51.100.7'), '192.0.2.20');
  await eventually(() => b.requests.length === 1, 'the record handed to the core');
  t.is(b.requests[0]!.record.ip, '198.51.100.7');
  t.is(b.peers.counts.dropped, 6);
});

test('-y takes an IPv4 address or an interface with one; anything else is refused with the reason', (t) => {
  t.deepEqual(parseSyncListen('192.0.2.1', ifaces), { kind: 'address', address: '192.0.2.1' });
  t.deepEqual(parseSyncListen('lo', ifaces), { kind: 'interface', name: 'lo' });
  const bad = (arg: string, pattern: RegExp) => {
    const err = t.throws(() => parseSyncListen(arg, ifaces));
    t.true(isPfgreyError(err) && err.code === 'E_BAD_ADDRESS');
    t.regex(err!.message, pattern);
  };
  bad('2001:db8::1', /-y 2001:db8::1: spamd's sync protocol carries IPv4 only/);
  bad('em0', /-y em0: neither an IPv4 address nor a network interface/);
  bad('eth9', /-y eth9: the interface has no IPv4 address/);
});

test('-Y takes host, host:port, address, interface and interface:ttl; bad ports, TTLs and IPv6 are refused', async (t) => {
  t.deepEqual(parseSyncTarget('mx2.example', ifaces), { kind: 'host', host: 'mx2.example' });
  t.deepEqual(parseSyncTarget('192.0.2.2:9025', ifaces), { kind: 'host', host: '192.0.2.2', port: 9025 });
  t.deepEqual(parseSyncTarget('lo', ifaces), { kind: 'interface', name: 'lo', ttl: 1 });
  t.deepEqual(parseSyncTarget('lo:2', ifaces), { kind: 'interface', name: 'lo', ttl: 2 });
  for (const [arg, code, pattern] of [
    ['lo:0', 'E_BAD_OPTION', /multicast TTL 0 is not a number from 1 to 255/],
    ['lo:256', 'E_BAD_OPTION', /TTL 256/],
    ['mx2.example:0', 'E_BAD_OPTION', /port 0 is not a number from 1 to 65535/],
    ['mx2.example:http', 'E_BAD_OPTION', /port http/],
    ['2001:db8::2', 'E_BAD_ADDRESS', /IPv4 only/],
    ['[2001:db8::2]:8025', 'E_BAD_ADDRESS', /IPv4 only/],
    [':8025', 'E_BAD_ADDRESS', /neither a host name/],
    ['bad host', 'E_BAD_ADDRESS', /neither a host name/],
    ['eth9', 'E_BAD_ADDRESS', /the interface has no IPv4 address/],
  ] as const) {
    const err = t.throws(() => parseSyncTarget(arg, ifaces), undefined, arg);
    t.true(isPfgreyError(err) && err.code === code, `${arg}: ${err?.message}`);
    t.regex(err!.message, pattern);
  }
  const resolved = await resolveSyncTargets([{ kind: 'host', host: '192.0.2.2' }, { kind: 'host', host: 'localhost', port: 9 },
    { kind: 'interface', name: 'lo', ttl: 3 }], 8025, ifaces);
  t.deepEqual(resolved, {
    unicast: [{ shown: '192.0.2.2:8025', address: '192.0.2.2', port: 8025 }, { shown: 'localhost:9', address: '127.0.0.1', port: 9 }],
    multicast: [{ name: 'lo', address: '127.0.0.1', ttl: 3 }],
  });
  const err = await t.throwsAsync(resolveSyncTargets([{ kind: 'host', host: 'no-such-host.invalid' }], 8025, ifaces));
  t.true(isPfgreyError(err) && err.code === 'E_SYNC' && /-Y no-such-host\.invalid: cannot look it up/.test(err.message), err?.message);
});

const noCore = () => fakeCore().core;
const listenOn = (port: number, ...addresses: string[]) => SyncPeers.start({
  listen: addresses.map((address) => ({ kind: 'address' as const, address })), targets: { unicast: [], multicast: [] },
  port, key: KEY, core: noCore(), whiteExpiry: 1, trapExpiry: 1, log: memoryLogger(),
});

test('a sync port another daemon holds is refused with the bind-failure message, even when the holder allows reuse', async (t) => {
  // Two daemons with the same -y and --sync-port: the second must not start and split the packets.
  const b = await peer(t);
  const refused = async (port: number) => {
    const err = await t.throwsAsync(listenOn(port, '127.0.0.1'));
    t.true(isPfgreyError(err) && err.code === 'E_LISTEN', err?.message);
    t.regex(err!.message, new RegExp(`^cannot listen for sync packets on 127\\.0\\.0\\.1:${port}: .*: another program holds it; ` +
      `find it with ss -lunp \\| grep ':${port}'$`));
  };
  await refused(b.port);
  // A program that asked for SO_REUSEADDR (Linux then lets a second socket that asks too share
  // the port, splitting what arrives) holds it as well.
  const holder = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', () => resolve()));
  t.teardown(() => holder.close());
  await refused(holder.address().port);
  // Every packet still reaches the first daemon.
  const raw = dgram.createSocket('udp4');
  t.teardown(() => raw.close());
  raw.send(whitePacket('198.51.100.5'), b.port, '127.0.0.1');
  await eventually(() => b.requests.length === 1, 'the packet at the first daemon');
});

test('-y with the same address twice is refused naming it, not bound twice', async (t) => {
  const err = await t.throwsAsync(listenOn(0, '127.0.0.1', '127.0.0.1'));
  t.true(isPfgreyError(err) && err.code === 'E_BAD_OPTION', err?.message);
  t.is(err!.message, '-y 127.0.0.1: given twice; give each address or interface once');
  t.throws(() => checkSyncListens([{ kind: 'interface', name: 'lo' }, { kind: 'address', address: '127.0.0.1' }, { kind: 'interface', name: 'lo' }]),
    { message: /^-y lo: given twice/ });
});

test('-y with an interface and with an address together: the group\'s socket and the address\'s share the port', async (t) => {
  const port = await freeUdpPort();
  const both = await SyncPeers.start({
    listen: [{ kind: 'interface', name: 'lo' }, { kind: 'address', address: '127.0.0.1' }], targets: { unicast: [], multicast: [] },
    port, key: KEY, core: noCore(), whiteExpiry: 1, trapExpiry: 1, log: memoryLogger(), interfaces: ifaces,
  });
  t.teardown(() => both.close());
  t.deepEqual(both.bound, [`224.0.1.240:${port} on lo (127.0.0.1)`, `127.0.0.1:${port}`]);
});
