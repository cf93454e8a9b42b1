// End to end on Linux: pf/linux/pfgrey.nft logs passed SMTP to its nflog groups, and
// `pfgrey logd`, run inside the namespace with its Linux defaults, renews the WHITE entries of
// whitelisted clients that reach the MTA and whitelists the servers this host sends mail to.
//
// Topology (network namespaces named with this process's pid, deleted afterwards; only
// TEST-NET and documentation addresses, no traffic leaves the namespaces):
//
//   mx    eth0: 192.0.2.1/24, 198.51.100.1/24, 2001:db8::1/64
//         pf/linux/pfgrey.nft loaded, 192.0.2.2 and 2001:db8::2 in its whitelist sets;
//         a listener on :25 (the "MTA"); tcpdump, then pfgrey logd
//   peer  eth0: 192.0.2.2, 192.0.2.3, 198.51.100.2, 2001:db8::2, 2001:db8::3
//         a listener on :25 (the servers mx sends to)
//
// Needs root, iproute2, nftables and tcpdump. Run after a build:
//
//   npx tsc -p tsconfig.test.json
//   PFGREY_REQUIRE_E2E=1 npx ava .build/test/e2e/logd-nflog.test.js
//
// Without PFGREY_REQUIRE_E2E=1 a missing prerequisite skips the tests with the reason;
// PFGREY_E2E_KEEP=1 keeps the lab directory (the logs, the database) afterwards.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../../src/config/defaults.js';
import { parseNflogLine } from '../../src/logd/nflog.js';
import { CLI, runCli } from '../helpers/cli.js';
import { required } from '../helpers/require.js';
import { eventually } from '../helpers/wait.js';
import { Lab, NFT, check, namespaceProblem } from './lab.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const RULESET = path.join(REPO, 'pf/linux/pfgrey.nft');
const NS = { mx: `pfgrey-e2e-logd-mx-${process.pid}`, peer: `pfgrey-e2e-logd-peer-${process.pid}` };
const MX = '192.0.2.1';
const MX6 = '2001:db8::1';
const CLIENT = '192.0.2.2'; // whitelisted
const STRANGER = '192.0.2.3'; // not whitelisted: redirected to the tarpit port, never logged
const CLIENT6 = '2001:db8::2'; // whitelisted
const SERVER = '198.51.100.2'; // mx sends mail to it
const SERVER6 = '2001:db8::3';
const GROUPS = `nflog:${DEFAULTS.nflogGroups.in},${DEFAULTS.nflogGroups.out}`;
const W_HOURS = 2;

const TCPDUMP = ['/usr/sbin/tcpdump', '/usr/bin/tcpdump'].find((p) => fs.existsSync(p));

/** Why this machine cannot run the suite, or undefined when it can. */
function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (network namespaces, nftables, nflog)';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables, nflog)';
  if (!TCPDUMP) return 'tcpdump is not installed (apt-get install tcpdump)';
  if (!fs.existsSync(NFT)) return `${NFT} is not installed (apt-get install nftables)`;
  if (!fs.existsSync(CLI)) return 'not built: run npx tsc -p tsconfig.test.json';
  return namespaceProblem();
}

const missing = missingPrerequisite();
if (missing && !required) console.log(`# skipping the pfgrey logd nflog end-to-end test: ${missing}`);
const e2e = missing && !required ? test.serial.skip : test.serial;

let lab: Lab | undefined;

test.before(async () => {
  if (missing) {
    if (required) throw new Error(`PFGREY_REQUIRE_E2E=1 but ${missing}`);
    return;
  }
  lab = new Lab(Object.values(NS));
  try {
    await buildLab(lab);
  } catch (err) {
    // AVA may not run after.always when before fails; do not leave the lab up in the meantime.
    await lab.destroy();
    throw err;
  }
});

test.after.always(async () => {
  await lab?.destroy();
});

async function buildLab(l: Lab): Promise<void> {
  for (const ns of Object.values(NS)) await l.addNetns(ns);
  await check(['ip', '-n', NS.mx, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.peer]);
  const addrs: Array<[string, string[]]> = [
    [NS.mx, [`${MX}/24`, '198.51.100.1/24', `${MX6}/64`]],
    [NS.peer, [`${CLIENT}/24`, `${STRANGER}/24`, `${SERVER}/24`, `${CLIENT6}/64`, `${SERVER6}/64`]],
  ];
  for (const [ns, list] of addrs) {
    // nodad: an IPv6 address is usable at once, not after duplicate address detection.
    for (const a of list) await check(['ip', '-n', ns, 'addr', 'add', a, 'dev', 'eth0', ...(a.includes(':') ? ['nodad'] : [])]);
    await check(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  await l.execCheck(NS.mx, [NFT, '-f', RULESET]);
  // What pfgrey run keeps in the sets; here the test fills them itself.
  await l.execCheck(NS.mx, [NFT, 'add', 'element', 'inet', 'pfgrey', DEFAULTS.table, `{ ${CLIENT} }`]);
  await l.execCheck(NS.mx, [NFT, 'add', 'element', 'inet', 'pfgrey', `${DEFAULTS.table}6`, `{ ${CLIENT6} }`]);
  // The clients close at once, often with a reset: the listener ignores socket errors.
  const listener = "require('net').createServer((s) => { s.on('error', () => {}); s.end('220 test\\r\\n'); })" +
    ".listen(25, '::', () => console.log('listening on 25'))";
  for (const ns of Object.values(NS)) await l.spawn(`mta-${ns}`, ns, [process.execPath, '-e', listener]).waitFor(/listening on 25/, 20_000);
}

/** Opens a TCP connection to HOST:25 from inside `ns` (from `local` if given) and closes it. */
async function connect(ns: string, host: string, local?: string): Promise<string> {
  const script = `const [host, local] = process.argv.slice(1);
    const s = require('net').connect({ host, port: 25, localAddress: local || undefined });
    s.on('connect', () => { console.log('connected'); s.destroy(); });
    s.on('error', (e) => console.log(e.code));
    setTimeout(() => console.log('timeout'), 5000).unref();`;
  const r = await lab!.exec(ns, [process.execPath, '-e', script, host, local ?? ''], { timeout: 15_000 });
  return r.stdout.trim();
}

interface Row {
  type: string;
  ip: string;
  first: number;
  pass: number;
  expire: number;
  bcount: number;
  pcount: number;
}

async function rows(db: string): Promise<Map<string, Row>> {
  const r = await runCli(['db', '--db', db]);
  if (r.code !== 0) throw new Error(`pfgrey db exited ${r.code}: ${r.stderr}`);
  const out = new Map<string, Row>();
  for (const line of r.stdout.trim().split('\n').filter(Boolean)) {
    const f = line.split('|');
    out.set(f[1]!, { type: f[0]!, ip: f[1]!, first: +f[4]!, pass: +f[5]!, expire: +f[6]!, bcount: +f[7]!, pcount: +f[8]! });
  }
  return out;
}

e2e('tcpdump prints the ruleset\'s nflog packets as logd reads them: group 25 in, group 26 out, IPv4 and IPv6', async (t) => {
  const l = lab!;
  const dump = l.spawn('tcpdump', NS.mx, [TCPDUMP!, '-l', '-n', '-e', '-ttt', '-i', GROUPS]);
  // Only one process can read a group: the next test's logd needs it back, whatever happens here.
  t.teardown(async () => {
    dump.signal('SIGTERM');
    await dump.exited;
  });
  await dump.waitFor(new RegExp(`listening on ${GROUPS}, link-type NFLOG`), 20_000);
  t.is(await connect(NS.peer, MX, CLIENT), 'connected');
  t.is(await connect(NS.peer, MX6, CLIENT6), 'connected');
  t.is(await connect(NS.mx, SERVER), 'connected');
  await eventually(() => (dump.output.match(/resource ID/g) ?? []).length >= 3, 'three nflog lines', 20_000);
  const lines = dump.output.split('\n').filter((line) => line.includes('resource ID'));
  t.log(lines.join('\n'));
  const events = lines.map((line) => parseNflogLine(line, DEFAULTS.nflogGroups));
  t.deepEqual(events.map((e) => e && [e.dir, e.src, e.dst, e.dport]), [
    ['in', CLIENT, MX, 25],
    ['in', CLIENT6, MX6, 25],
    ['out', '198.51.100.1', SERVER, 25],
  ]);
});

e2e('pfgrey logd in the namespace renews whitelisted clients that reach the MTA and whitelists the servers mx sends to', async (t) => {
  const l = lab!;
  const db = path.join(l.dir, 'pfgrey.db');
  t.is((await runCli(['db', '--db', db, '-a', CLIENT, CLIENT6])).code, 0);
  const seeded = await rows(db);
  // Linux's defaults: -l nflog:25,26, the groups pfgrey.nft logs to. -W 2 makes a renewal show.
  const logd = l.spawn('logd', NS.mx, [process.execPath, CLI, 'logd', '--log', 'stderr', '-D', '-W', String(W_HOURS), '--db', db]);
  await logd.waitFor(new RegExp(`Listening on ${GROUPS} for all interfaces\\.`), 30_000);

  // logd says it listens before tcpdump has bound the groups: connect until one is seen.
  await eventually(async () => {
    t.is(await connect(NS.peer, MX, CLIENT), 'connected');
    return (await rows(db)).get(CLIENT)!.pcount >= 1;
  }, `logd to renew ${CLIENT}`, 60_000);
  const start = Math.floor(Date.now() / 1000);

  // Now that logd reads the groups: what must not count, then what must, in the same groups, so
  // the later ones seen mean the earlier ones were read too.
  t.is(await connect(NS.peer, MX, STRANGER), 'ECONNREFUSED', 'a stranger is sent to the tarpit port, where nothing listens here');
  t.is(await connect(NS.mx, MX), 'connected', 'mail to itself, over lo');
  const before = (await rows(db)).get(CLIENT)!.pcount;
  t.is(await connect(NS.peer, MX, CLIENT), 'connected');
  t.is(await connect(NS.peer, MX6, CLIENT6), 'connected');
  t.is(await connect(NS.mx, SERVER), 'connected');
  t.is(await connect(NS.mx, SERVER6), 'connected');
  const after = await eventually(async () => {
    const r = await rows(db);
    return r.get(CLIENT)!.pcount > before && r.get(CLIENT6)!.pcount >= 1 && r.has(SERVER) && r.has(SERVER6) && r;
  }, 'every connection to be counted', 30_000);
  const end = Math.floor(Date.now() / 1000);

  t.deepEqual([...after.keys()].sort(), [CLIENT, CLIENT6, SERVER, SERVER6].sort(), `not ${STRANGER}, not ${MX}`);
  for (const ip of [CLIENT, CLIENT6]) {
    const was = seeded.get(ip)!;
    const now = after.get(ip)!;
    t.is(now.type, 'WHITE', ip);
    t.is(now.first, was.first, `${ip}: first kept`);
    t.true(was.expire > end + 30 * 86_400, `${ip}: seeded for 36 days`);
    t.true(now.expire >= start + W_HOURS * 3600 - 5 && now.expire <= end + W_HOURS * 3600, `${ip}: renewed for -W ${W_HOURS} hours`);
  }
  for (const ip of [SERVER, SERVER6]) {
    const now = after.get(ip)!;
    t.deepEqual([now.type, now.pcount], ['WHITE', 0], ip);
    t.true(now.expire >= start + W_HOURS * 3600 - 5 && now.expire <= end + W_HOURS * 3600, `${ip}: whitelisted for -W ${W_HOURS} hours`);
  }
  // logd's log reaches us through a pipe that may lag behind its database write.
  await eventually(() => new RegExp(`outbound ${SERVER6.replaceAll('.', '\\.')}`).test(logd.output), 'logd to log the outbound IPv6 server', 10_000);

  logd.signal('SIGTERM');
  t.is(await logd.exited, 0, logd.output);
  t.notRegex(logd.output, /\n\s+at /);
});
