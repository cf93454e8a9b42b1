// pfgrey logd on Linux: reading the nflog groups pf/linux/pfgrey.nft logs passed SMTP to. The
// lines below are what tcpdump 4.99.3 (Debian 12) printed for nftables' `log group 25/26` in a
// network namespace; test/e2e/logd-nflog.test.ts captures them afresh and feeds them through
// the same parser.

import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { DEFAULTS } from '../src/config/defaults.js';
import { captureFileKind, defaultCaptureInterface, parseCaptureInterface, parseNflogLine } from '../src/logd/nflog.js';
import { whitelistTarget } from '../src/logd/pflog.js';
import { openStore } from '../src/store/sqlite.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/daemon.js';
import { type NflogPacket, writeNflogPcap, writePflogPcap } from './helpers/pcap.js';
import { required } from './helpers/require.js';

const TCPDUMP = ['/usr/sbin/tcpdump', '/usr/bin/tcpdump'].find((p) => spawnSync(p, ['--version'], { stdio: 'ignore' }).status === 0) ?? 'tcpdump';
const haveTcpdump = TCPDUMP !== 'tcpdump';
const withTcpdump = haveTcpdump || required ? test : test.skip;
if (!haveTcpdump && !required) console.log('# skipping the nflog capture-file tests: tcpdump is not installed');

const GROUPS = { in: 25, out: 26 };

const INBOUND_V4 = ' 00:00:00.000000 version 0, resource ID 25, family IPv4 (2), length 172: 192.0.2.2.57230 > 192.0.2.1.25: Flags [S], seq 1471536248, win 64240, options [mss 1460,sackOK,TS val 944116322 ecr 0,nop,wscale 10], length 0';
const INBOUND_V6 = ' 00:00:00.000465 version 0, resource ID 25, family IPv6 (10), length 192: 2001:db8::2.40954 > 2001:db8::1.25: Flags [S], seq 791653774, win 64800, options [mss 1440,sackOK,TS val 950555028 ecr 0,nop,wscale 10], length 0';
const OUTBOUND_V4 = ' 00:00:00.000000 version 0, resource ID 26, family IPv4 (2), length 108: 192.0.2.1.35030 > 192.0.2.2.25: Flags [S], seq 3733456797, win 64240, options [mss 1460,sackOK,TS val 1367952450 ecr 0,nop,wscale 10], length 0';

/** A database and an nflog capture file of `packets`, in a directory of the test's own. */
async function capture(t: ExecutionContext, packets: NflogPacket[]): Promise<{ db: string; pcap: string }> {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const pcap = path.join(dir, 'nflog.pcap');
  await writeNflogPcap(pcap, packets);
  await openStore(db, { create: true }).then((st) => st.close());
  return { db, pcap };
}

test('tcpdump\'s nflog lines give the direction by group, IPv4 and IPv6', (t) => {
  t.deepEqual(parseNflogLine(INBOUND_V4, GROUPS), { action: 'pass', dir: 'in', src: '192.0.2.2', sport: 57230, dst: '192.0.2.1', dport: 25 });
  t.deepEqual(parseNflogLine(INBOUND_V6, GROUPS), { action: 'pass', dir: 'in', src: '2001:db8::2', sport: 40954, dst: '2001:db8::1', dport: 25 });
  t.deepEqual(parseNflogLine(OUTBOUND_V4, GROUPS), { action: 'pass', dir: 'out', src: '192.0.2.1', sport: 35030, dst: '192.0.2.2', dport: 25 });
  // Whitelisted: the client of an inbound connection, the server of an outbound one.
  t.is(whitelistTarget(parseNflogLine(INBOUND_V6, GROUPS)!, false), '2001:db8::2');
  t.is(whitelistTarget(parseNflogLine(OUTBOUND_V4, GROUPS)!, false), '192.0.2.2');
  t.is(whitelistTarget(parseNflogLine(OUTBOUND_V4, GROUPS)!, true), undefined, '-I');
});

test('nflog lines of other groups, other ports or not a lone SYN are not connections', (t) => {
  t.is(parseNflogLine(INBOUND_V4, { in: 5, out: 6 }), undefined, 'another group');
  t.is(parseNflogLine(OUTBOUND_V4, { in: 25 }), undefined, 'no outbound group: inbound only');
  t.is(parseNflogLine(INBOUND_V4.replace('192.0.2.1.25:', '192.0.2.1.587:'), GROUPS), undefined, 'submission, not SMTP');
  t.is(parseNflogLine(INBOUND_V4.replace('Flags [S]', 'Flags [S.]'), GROUPS), undefined, 'SYN-ACK');
  t.is(parseNflogLine(INBOUND_V4.replace('Flags [S]', 'Flags [.]'), GROUPS), undefined, 'ACK');
  t.is(parseNflogLine(INBOUND_V4.replace('Flags [S]', 'Flags [SEW]'), GROUPS)?.src, '192.0.2.2', 'an ECN SYN is a SYN');
  t.is(parseNflogLine(INBOUND_V4.replace('192.0.2.2.57230', '192.0.2.256.57230'), GROUPS), undefined, 'not an address');
  t.is(parseNflogLine('listening on nflog:25,26, link-type NFLOG (Linux netfilter log messages), snapshot length 262144 bytes', GROUPS), undefined);
  // A pflog line is not an nflog line.
  t.is(parseNflogLine(' 00:00:00.000000 rule 3/0(match): pass in on em0: 192.0.2.7.51234 > 198.51.100.1.25: Flags [S], seq 0', GROUPS), undefined);
});

test('-l takes a pflog interface, or nflog groups as libpcap names them', (t) => {
  t.deepEqual(parseCaptureInterface('pflog1'), { kind: 'pflog', ifname: 'pflog1' });
  t.deepEqual(parseCaptureInterface('nflog:7,8'), { kind: 'nflog', ifname: 'nflog:7,8', groups: { in: 7, out: 8 } });
  t.deepEqual(parseCaptureInterface('nflog:7'), { kind: 'nflog', ifname: 'nflog:7', groups: { in: 7, out: undefined } });
  t.deepEqual(parseCaptureInterface('nflog'), { kind: 'nflog', ifname: 'nflog:25,26', groups: { ...DEFAULTS.nflogGroups } });
  t.is(defaultCaptureInterface('linux'), `nflog:${DEFAULTS.nflogGroups.in},${DEFAULTS.nflogGroups.out}`);
  t.is(defaultCaptureInterface('openbsd'), 'pflog0');
  t.is(defaultCaptureInterface('freebsd'), 'pflog0');
});

test('bad nflog groups in -l, and -i with nflog, are one clear line', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['-l', 'nflog:25,25'], /-l nflog:25,25: inbound and outbound connections need groups of their own, since nflog packets do not say which way they went/],
    [['-l', 'nflog:65536'], /-l nflog:65536: expected nflog:IN,OUT \(or nflog:IN\), nflog group numbers from 0 to 65535/],
    [['-l', 'nflog:1,2,3'], /-l nflog:1,2,3: expected nflog:IN,OUT/],
    [['-l', 'nflog:'], /-l nflog:: expected nflog:IN,OUT/],
    [['-l', 'nflog:07'], /-l nflog:07: expected nflog:IN,OUT/],
    [['-l', 'nflog:25,26', '-i', 'eth0'], /-i eth0: nflog packets, as tcpdump prints them, do not name their interface; limit pfgrey\.nft's log rules to it instead \(iifname "eth0" on the inbound one\)/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(['logd', '--log', 'stderr', ...args]);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, re);
    t.notRegex(r.stderr, /\n\s+at /);
  }
});

test('a capture file\'s pcap header says whether it holds pflog or nflog', async (t) => {
  const dir = await tempDir(t);
  const nf = path.join(dir, 'nf.pcap');
  const pf = path.join(dir, 'pf.pcap');
  await writeNflogPcap(nf, [{ group: 25, src: '192.0.2.2', dst: '192.0.2.1' }]);
  await writePflogPcap(pf, [{ dir: 'in', src: '192.0.2.7', dst: '198.51.100.1' }]);
  t.is(await captureFileKind(nf), 'nflog');
  t.is(await captureFileKind(pf), 'pflog');
  t.is(await captureFileKind(path.join(dir, 'missing.pcap')), undefined);
  t.is(await captureFileKind(path.join(dir)), undefined, 'a directory');
});

withTcpdump('logd reads an nflog capture through tcpdump: group 25 renews clients, group 26 whitelists servers, IPv6 too', async (t) => {
  const { db, pcap } = await capture(t, [
    { group: 25, src: '192.0.2.2', dst: '192.0.2.1' },
    { group: 25, src: '2001:db8::2', dst: '2001:db8::1' },
    { group: 26, src: '192.0.2.1', dst: '198.51.100.9' },
    { group: 25, src: '192.0.2.3', dst: '192.0.2.1', flags: 0x12 }, // SYN-ACK: not a new connection
    { group: 25, src: '192.0.2.4', dst: '192.0.2.1', dport: 587 }, // not SMTP
    { group: 7, src: '192.0.2.5', dst: '192.0.2.1' }, // a group logd does not read
  ]);
  t.is((await runCli(['db', '--db', db, '-a', '192.0.2.2'])).code, 0);
  // Without -l: the file is nflog, whatever this system's default, and the groups are pfgrey.nft's.
  const r = await runCli(['logd', '--log', 'stderr', '-D', '--db', db, '--tcpdump', TCPDUMP, '-r', pcap]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /inbound 192\.0\.2\.2\b/);
  t.regex(r.stderr, /outbound 198\.51\.100\.9\b/);
  t.regex(r.stderr, /3 connections read from /);
  const listing = (await runCli(['db', '--db', db])).stdout.trim().split('\n').map((l) => l.split('|')).sort((a, b) => a[1]!.localeCompare(b[1]!));
  t.deepEqual(listing.map((l) => [l[0], l[1], l[8]]), [
    ['WHITE', '192.0.2.2', '1'], // the existing entry counted the pass
    ['WHITE', '198.51.100.9', '0'],
    ['WHITE', '2001:db8::2', '0'],
  ]);
});

withTcpdump('with -l nflog:IN,OUT logd reads those groups, and -I only the inbound one', async (t) => {
  const { db, pcap } = await capture(t, [
    { group: 25, src: '192.0.2.2', dst: '192.0.2.1' },
    { group: 7, src: '192.0.2.5', dst: '192.0.2.1' },
    { group: 8, src: '192.0.2.1', dst: '198.51.100.9' },
  ]);
  const r = await runCli(['logd', '--log', 'stderr', '-I', '-l', 'nflog:7,8', '--db', db, '--tcpdump', TCPDUMP, '-r', pcap]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /Inbound direction only\./);
  t.regex((await runCli(['db', '--db', db])).stdout, /^WHITE\|192\.0\.2\.5\|\|\|\d+\|\d+\|\d+\|1\|0\n$/);
});

withTcpdump('-i with a capture file that holds nflog is refused; with a pflog one it still filters on Linux', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const nf = path.join(dir, 'nflog.pcap');
  const pf = path.join(dir, 'pflog.pcap');
  await writeNflogPcap(nf, [{ group: 25, src: '192.0.2.2', dst: '192.0.2.1' }]);
  await writePflogPcap(pf, [{ dir: 'in', src: '192.0.2.7', dst: '198.51.100.1', ifname: 'em0' }, { dir: 'in', src: '192.0.2.8', dst: '198.51.100.1', ifname: 'em1' }]);
  await openStore(db, { create: true }).then((st) => st.close());
  const refused = await runCli(['logd', '--log', 'stderr', '-i', 'em0', '--db', db, '--tcpdump', TCPDUMP, '-r', nf]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /-i em0: nflog packets, as tcpdump prints them, do not name their interface/);
  // -l nflog names what to capture live; the file still says what it holds.
  const r = await runCli(['logd', '--log', 'stderr', '-l', 'nflog:25,26', '-i', 'em0', '--db', db, '--tcpdump', TCPDUMP, '-r', pf]);
  t.is(r.code, 0, r.stderr);
  t.regex((await runCli(['db', '--db', db])).stdout, /^WHITE\|192\.0\.2\.7\|[^\n]*\n$/);
});
