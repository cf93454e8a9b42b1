import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultCaptureInterface } from '../src/logd/nflog.js';
import { parsePflogLine, whitelistTarget } from '../src/logd/pflog.js';
import { openStore } from '../src/store/sqlite.js';
import { CLI, runCli } from './helpers/cli.js';
import { tempDir } from './helpers/daemon.js';
import { writePflogPcap } from './helpers/pcap.js';
import { required } from './helpers/require.js';
import { eventually } from './helpers/smtp.js';
import { TEST_KEY, TEST_KEY_FILE } from './helpers/sync-packets.js';
import dgram from 'node:dgram';
import { decodePacket } from '../src/sync/wire.js';

// BSDs keep tcpdump in /usr/sbin, Debian in /usr/bin.
const TCPDUMP = ['/usr/sbin/tcpdump', '/usr/bin/tcpdump'].find((p) => spawnSync(p, ['--version'], { stdio: 'ignore' }).status === 0) ?? 'tcpdump';
const haveTcpdump = TCPDUMP !== 'tcpdump';
const withTcpdump = haveTcpdump || required ? test : test.skip;
if (!haveTcpdump && !required) console.log('# skipping logd capture tests: tcpdump is not installed');

const DAY = 86_400;

test('both tcpdump dialects of a pflog line are understood', (t) => {
  t.deepEqual(parsePflogLine(' 00:00:00.000000 rule 3/0(match): pass in on em0: 192.0.2.7.51234 > 198.51.100.1.25: Flags [S], seq 0, win 65535, length 0'),
    { action: 'pass', dir: 'in', ifname: 'em0', src: '192.0.2.7', sport: 51234, dst: '198.51.100.1', dport: 25 });
  t.deepEqual(parsePflogLine('Nov 22 05:40:01.123456 rule 2/(match) pass out on vio0: 198.51.100.1.40000 > 203.0.113.9.25: S 1:1(0) win 16384'),
    { action: 'pass', dir: 'out', ifname: 'vio0', src: '198.51.100.1', sport: 40000, dst: '203.0.113.9', dport: 25 });
  t.is(parsePflogLine('reading from file x.pcap, link-type PFLOG'), undefined);
});

test('FreeBSD\'s pflog lines, with [uid N] and [ridentifier N] after the reason, are understood', (t) => {
  t.deepEqual(parsePflogLine('00:00:00.000000 rule 3/0(match) [uid 0]: pass out on em0: 198.51.100.1.40000 > 203.0.113.9.25: Flags [S], seq 1, win 65535, length 0'),
    { action: 'pass', dir: 'out', ifname: 'em0', src: '198.51.100.1', sport: 40000, dst: '203.0.113.9', dport: 25 });
  t.deepEqual(parsePflogLine('00:00:00.000000 rule 3/0(match) [ridentifier 7] [uid 25]: pass in on em0: 192.0.2.7.51234 > 198.51.100.1.25: Flags [S]')?.src,
    '192.0.2.7');
});

test('an existing WHITE entry seen by logd counts the pass and gets a new expiry, keeping first and bcount', async (t) => {
  const { logdHit } = await import('../src/grey/rules.js');
  const white = { key: '192.0.2.7', first: 1000, pass: 2000, expire: 3000, bcount: 4, pcount: 3 };
  t.deepEqual(logdHit(white, '192.0.2.7', 10_000, 500), { ...white, pcount: 4, expire: 10_500 });
  t.deepEqual(logdHit(undefined, '192.0.2.8', 10_000, 500), { key: '192.0.2.8', first: 10_000, pass: 10_000, expire: 10_500, bcount: 1, pcount: 0 });
  t.is(logdHit({ ...white, pcount: -1 }, '192.0.2.7', 10_000, 500).pcount, 0, 'a TRAPPED entry turns WHITE');
});

test('a tcpdump that cannot even be spawned is retried, not a crash', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  await runCli(['db', '--db', db, '-a', '192.0.2.1']);
  // A path through a regular file: spawn throws ENOTDIR instead of reporting it as an event.
  const child = spawn(process.execPath, [CLI, 'logd', '-D', '--db', db, '--tcpdump', path.join(db, 'tcpdump')], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await eventually(() => /tcpdump cannot run .*tcpdump: .*; restarting in 1s/.test(err), 'retry line');
  child.kill('SIGTERM');
  t.is(await exited, 0, err);
  t.notRegex(err, /\n\s+at /);
});

test('logd waits for the database pfgrey run creates, and never creates one itself', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const child = spawn(process.execPath, [CLI, 'logd', '-D', '--db', db, '--tcpdump', '/bin/true'], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  await eventually(() => /no database at .*pfgrey\.db yet: waiting for pfgrey run to create it/.test(err), 'waiting line');
  // Absence takes waiting: a file wrongly created by the attempt that failed gets 300 ms to appear.
  await sleep(300);
  await t.throwsAsync(fs.access(db), undefined, 'nothing created');
  t.is((await runCli(['db', '--db', db, '-a', '192.0.2.1'])).code, 0);
  // pflog0 on the BSDs, pfgrey.nft's nflog groups on Linux.
  await eventually(() => err.includes(`Listening on ${defaultCaptureInterface()} `), 'started once the database is there', 30_000);
  child.kill('SIGTERM');
});

test('logd -Y reads its sync key first: a missing key is said at once, not after the wait for the database', async (t) => {
  const dir = await tempDir(t);
  // No database yet, so logd would wait a minute for pfgrey run to create it (the test above).
  const r = await runCli(['logd', '--log', 'stderr', '--db', path.join(dir, 'pfgrey.db'), '--tcpdump', '/bin/true',
    '-Y', '127.0.0.1:9', '--sync-key', path.join(dir, 'spamd.key')]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /sync key .*spamd\.key: no such file; create one and copy it to every peer/);
  t.notRegex(r.stderr, /no database/);
});

test('logd reading a capture file does not wait: a missing database is one clear line', async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(['logd', '--log', 'stderr', '--db', path.join(dir, 'none.db'), '-r', path.join(dir, 'x.pcap')]);
  t.is(r.code, 1);
  t.regex(r.stderr, /no database at .*none\.db: pfgrey logd updates the database of pfgrey run, so start pfgrey run first, or give --db its path/);
});

test('inbound passes whitelist the client, outbound ones the server unless -I', (t) => {
  const e = { action: 'pass', dir: 'out' as const, ifname: 'em0', src: '198.51.100.1', sport: 1, dst: '203.0.113.9', dport: 25 };
  t.is(whitelistTarget(e, false), '203.0.113.9');
  t.is(whitelistTarget(e, true), undefined);
  t.is(whitelistTarget({ ...e, dir: 'in' }, true), '198.51.100.1');
  t.is(whitelistTarget({ ...e, dir: 'in', action: 'block' }, false), undefined);
});

withTcpdump('logd reads a pflog capture through tcpdump and whitelists what passed', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const pcap = path.join(dir, 'pflog.pcap');
  await writePflogPcap(pcap, [
    { dir: 'in', src: '192.0.2.7', dst: '198.51.100.1' },
    { dir: 'out', src: '198.51.100.1', dst: '203.0.113.9' },
    { dir: 'in', src: '192.0.2.8', dst: '198.51.100.1', flags: 0x12 }, // SYN-ACK: not a new connection
    { dir: 'in', src: '192.0.2.9', dst: '198.51.100.1', action: 1 }, // blocked
    { dir: 'in', src: '192.0.2.10', dst: '198.51.100.1', dport: 587 }, // not SMTP
  ]);
  // An existing TRAPPED entry turns WHITE; an existing WHITE one (pcount 1 after two -a) counts the pass.
  t.is((await runCli(['db', '--db', db, '-t', '-a', '192.0.2.7'])).code, 0);
  t.is((await runCli(['db', '--db', db, '-a', '203.0.113.9', '203.0.113.9'])).code, 0);
  const seeded = (await runCli(['db', '--db', db, '203.0.113.9'])).stdout.split('|');
  const before = Math.floor(Date.now() / 1000);
  const r = await runCli(['logd', '--log', 'stderr', '--db', db, '--tcpdump', TCPDUMP, '-r', pcap]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /Listening on .*pflog\.pcap for all interfaces\./);
  const listing = (await runCli(['db', '--db', db])).stdout.trim().split('\n').sort();
  t.is(listing.length, 2, listing.join('\n'));
  const [a, b] = listing.map((l) => l.split('|'));
  t.deepEqual([a![0], a![1], a![8]], ['WHITE', '192.0.2.7', '0']);
  t.true(Number(a![6]) >= before + 36 * DAY - 5, 'expire moved to now + 36 days');
  t.deepEqual([b![0], b![1], b![4], b![7], b![8]], ['WHITE', '203.0.113.9', seeded[4], '1', '2'], 'first and bcount kept, pcount 1 → 2');
  t.true(Number(b![6]) >= before + 36 * DAY - 5, 'expire moved to now + 36 days');
});

withTcpdump('logd -Y sends each host it whitelists to the sync peers as a WHITE record, as spamlogd does', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const pcap = path.join(dir, 'pflog.pcap');
  const keyFile = path.join(dir, 'spamd.key');
  await fs.writeFile(keyFile, TEST_KEY_FILE, { mode: 0o600 });
  await writePflogPcap(pcap, [
    { dir: 'in', src: '192.0.2.7', dst: '198.51.100.1' },
    { dir: 'out', src: '198.51.100.1', dst: '203.0.113.9' },
  ]);
  await openStore(db, { create: true }).then((st) => st.close());
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  const got: Buffer[] = [];
  peer.on('message', (m) => got.push(m));
  await new Promise<void>((resolve) => peer.bind(0, '127.0.0.1', () => resolve()));
  const before = Math.floor(Date.now() / 1000);
  const r = await runCli(['logd', '--log', 'stderr', '-D', '-W', '2', '--db', db, '--tcpdump', TCPDUMP, '-r', pcap,
    '-Y', `127.0.0.1:${peer.address().port}`, '--sync-key', keyFile]);
  t.is(r.code, 0, r.stderr);
  await eventually(() => got.length >= 2, 'two sync packets');
  const records = got.map((g) => decodePacket(g, TEST_KEY)).flatMap((d) => (d.ok ? d.packet.records : []));
  t.deepEqual(records.map((rec) => `${rec.type} ${rec.ip}`).sort(), ['WHITE 192.0.2.7', 'WHITE 203.0.113.9']);
  for (const rec of records) {
    const expire = 'expire' in rec ? rec.expire / 1000 : 0;
    t.true(Math.abs(expire - (before + 2 * 3600)) < 60, `expires after -W 2 (hours): ${expire - before} s`);
  }
  const flags = await runCli(['logd', '--sync-key', keyFile, '-r', pcap]);
  t.regex(flags.stderr, /--sync-key is an option of spamd sync: add -Y to send/);
});

withTcpdump('with -I only inbound connections count, and -i limits the interface', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const pcap = path.join(dir, 'pflog.pcap');
  await writePflogPcap(pcap, [
    { dir: 'in', src: '192.0.2.7', dst: '198.51.100.1', ifname: 'em0' },
    { dir: 'in', src: '192.0.2.11', dst: '198.51.100.1', ifname: 'em1' },
    { dir: 'out', src: '198.51.100.1', dst: '203.0.113.9', ifname: 'em0' },
  ]);
  await openStore(db, { create: true }).then((st) => st.close());
  const r = await runCli(['logd', '--log', 'stderr', '-I', '-i', 'em0', '-W', '2', '--db', db, '--tcpdump', TCPDUMP, '-r', pcap]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /for em0 Inbound direction only\./);
  const out = (await runCli(['db', '--db', db])).stdout;
  const m = /^WHITE\|192\.0\.2\.7\|\|\|(\d+)\|\d+\|(\d+)\|1\|0\n$/.exec(out);
  t.truthy(m, out);
  t.true(Number(m![2]) - Number(m![1]) === 2 * 3600, '-W sets the lifetime in hours');
});

test('a tcpdump that dies is restarted, and SIGTERM ends logd cleanly', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  // A stand-in: the first run fails at once; later runs print a pflog line and wait.
  const fake = path.join(dir, 'tcpdump');
  await fs.writeFile(fake, `#!/bin/sh
n=$(cat '${dir}/runs' 2>/dev/null || echo 0); echo $((n + 1)) > '${dir}/runs'
if [ "$n" = 0 ]; then echo "tcpdump: pflog0: No such device exists" >&2; exit 1; fi
echo " 00:00:00.000000 rule 3/0(match): pass in on em0: 192.0.2.44.1234 > 198.51.100.1.25: Flags [S], seq 0, win 65535, length 0"
exec sleep 60
`, { mode: 0o755 });
  await openStore(db, { create: true }).then((st) => st.close());
  // -l pflog0: the stand-in prints pflog lines, and Linux's default is nflog.
  const child = spawn(process.execPath, [CLI, 'logd', '-D', '-l', 'pflog0', '--db', db, '--tcpdump', fake], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await eventually(() => /tcpdump exited with status 1: tcpdump: pflog0: No such device exists; restarting in 1s/.test(err), 'restart line');
  await eventually(() => /inbound 192\.0\.2\.44/.test(err), 'the restarted tcpdump was read', 30_000);
  await eventually(async () => /^WHITE\|192\.0\.2\.44\|/m.test((await runCli(['db', '--db', db])).stdout), 'the WHITE entry committed');
  child.kill('SIGHUP');
  await eventually(() => /SIGHUP received: nothing to reload/.test(err), 'SIGHUP ignored');
  child.kill('SIGTERM');
  t.is(await exited, 0);
  t.regex(err, /exiting/);
  t.regex((await runCli(['db', '--db', db])).stdout, /^WHITE\|192\.0\.2\.44\|\|\|/);
});

test('bad logd flags are one clear line', async (t) => {
  for (const [args, re] of [[['-W', '0'], /-W 0: too small/], [['-W', '3000'], /-W 3000: too large/], [['-Y', '127.0.0.1:99999'], /-Y 127\.0\.0\.1:99999: port 99999 is not a number from 1 to 65535/], [['-Y', '127.0.0.1', '--sync-port', '0'], /--sync-port 0: too small/], [['-l', 'a b'], /-l a b: not an interface name/]] as const) {
    const r = await runCli(['logd', ...args]);
    t.is(r.code, 1);
    t.regex(r.stderr, re);
  }
});
