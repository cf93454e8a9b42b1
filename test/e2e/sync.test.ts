// End to end: several MX hosts in one sync group (README.md, "Several MX hosts"). Three pfgrey
// daemons, each in its own network namespace with its own database, send each other spamd sync
// packets (-y its address, -Y the two others); two more share a veth pair and sync by multicast.
//
// Topology (namespaces named with this process's pid, deleted afterwards; TEST-NET addresses
// only, no traffic leaves the namespaces):
//
//   hub    a bridge, br0, joining the four below
//   a, b, c  eth0: 192.0.2.1, .2, .3 — pfgrey run -y own -Y the others, --firewall none
//   x      eth0: 192.0.2.50, .51 — the SMTP clients, and the test's hand-made packets
//   m1, m2 one veth pair, eth0: 198.51.100.1, .2 — pfgrey run -y eth0 -Y eth0 (multicast)
//
// Needs root and iproute2. Run after a build:
//
//   npx tsc -p tsconfig.test.json
//   PFGREY_REQUIRE_E2E=1 npx ava .build/test/e2e/sync.test.js
//
// Without PFGREY_REQUIRE_E2E=1 a missing prerequisite skips the tests with the reason;
// PFGREY_E2E_KEEP=1 keeps the lab directory (the logs, the databases) afterwards.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLine } from '../../src/grey/spamdb-format.js';
import { CLI, runCli } from '../helpers/cli.js';
import { lacking, required } from '../helpers/require.js';
import { addrTlv, END, greyTlv, packet, TEST_KEY_FILE } from '../helpers/sync-packets.js';
import { eventually } from '../helpers/wait.js';
import { check, Lab, namespaceProblem, type Proc } from './lab.js';

const CLIENT_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sync-client.js');
const tag = `${process.pid}`;
const NS = {
  hub: `pfgrey-e2e-sync-hub-${tag}`, a: `pfgrey-e2e-sync-a-${tag}`, b: `pfgrey-e2e-sync-b-${tag}`, c: `pfgrey-e2e-sync-c-${tag}`,
  x: `pfgrey-e2e-sync-x-${tag}`, m1: `pfgrey-e2e-sync-m1-${tag}`, m2: `pfgrey-e2e-sync-m2-${tag}`,
};
const ADDR = { a: '192.0.2.1', b: '192.0.2.2', c: '192.0.2.3' } as const;
const CLIENT = '192.0.2.50';
const TRAPPED = '192.0.2.51';
const M = { m1: '198.51.100.1', m2: '198.51.100.2' } as const;
const PASS = '2s';
const PASS_MS = 2000;

/** Why this machine cannot run the suite, or undefined when it can. */
function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (network namespaces)';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (!fs.existsSync(CLI)) return 'not built: run npx tsc -p tsconfig.test.json';
  return namespaceProblem();
}

const missing = missingPrerequisite();
if (missing && !required) console.log(`# skipping the sync end-to-end test: ${missing}`);

interface World {
  lab: Lab;
  daemons: Record<'a' | 'b' | 'c' | 'm1' | 'm2', Proc>;
  db: (name: string) => string;
}
let world: World | undefined;

test.before(async () => {
  if (missing) return;
  const lab = new Lab(Object.values(NS));
  try {
    world = await buildLab(lab);
  } catch (err) {
    // AVA may not run after.always when before fails; do not leave the lab up in the meantime.
    await lab.destroy();
    throw err;
  }
});

test.after.always(async () => {
  await world?.lab.destroy();
});

async function buildLab(lab: Lab): Promise<World> {
  for (const ns of Object.values(NS)) await lab.addNetns(ns);
  await check(['ip', '-n', NS.hub, 'link', 'add', 'br0', 'type', 'bridge']);
  await check(['ip', '-n', NS.hub, 'link', 'set', 'br0', 'up']);
  const hosts: Array<[string, string, string[]]> = [
    [NS.a, 'a0', [`${ADDR.a}/24`]], [NS.b, 'b0', [`${ADDR.b}/24`]], [NS.c, 'c0', [`${ADDR.c}/24`]],
    [NS.x, 'x0', [`${CLIENT}/24`, `${TRAPPED}/24`]],
  ];
  for (const [ns, port, addrs] of hosts) {
    await check(['ip', '-n', NS.hub, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await check(['ip', '-n', NS.hub, 'link', 'set', port, 'master', 'br0', 'up']);
    for (const a of addrs) await check(['ip', '-n', ns, 'addr', 'add', a, 'dev', 'eth0']);
    await check(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  await check(['ip', '-n', NS.m1, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.m2]);
  for (const m of ['m1', 'm2'] as const) {
    await check(['ip', '-n', NS[m], 'addr', 'add', `${M[m]}/24`, 'dev', 'eth0']);
    await check(['ip', '-n', NS[m], 'link', 'set', 'eth0', 'up']);
  }

  // The one key file every peer shares, root's and private, as the README sets it up.
  const key = path.join(lab.dir, 'spamd.key');
  fs.writeFileSync(key, TEST_KEY_FILE, { mode: 0o600 });
  const db = (name: string) => path.join(lab.dir, `${name}.db`);
  const start = (name: keyof World['daemons'], ns: string, listen: string, sync: string[]) => lab.spawn(name, ns, [
    process.execPath, CLI, 'run', '--log', 'stderr', '-d', '--firewall', 'none', '--db', db(name),
    '--alloweddomains', path.join(lab.dir, 'alloweddomains'), '-l', listen, '-s', '0',
    '--passtime', PASS, '--scan-interval', '500ms', '--sync-key', key, ...sync,
  ]);
  const others = (me: 'a' | 'b' | 'c') => (['a', 'b', 'c'] as const).filter((n) => n !== me).flatMap((n) => ['-Y', ADDR[n]]);
  const daemons = {
    a: start('a', NS.a, ADDR.a, ['-y', ADDR.a, ...others('a')]),
    b: start('b', NS.b, ADDR.b, ['-y', ADDR.b, ...others('b')]),
    c: start('c', NS.c, ADDR.c, ['-y', ADDR.c, ...others('c')]),
    m1: start('m1', NS.m1, M.m1, ['-y', 'eth0', '-Y', 'eth0']),
    m2: start('m2', NS.m2, M.m2, ['-y', 'eth0', '-Y', 'eth0:1']),
  };
  for (const [name, d] of Object.entries(daemons)) {
    const where = name.startsWith('m') ? `224\\.0\\.1\\.240:8025 on eth0` : `${ADDR[name as 'a']}:8025`;
    await d.waitFor(new RegExp(`listening for sync packets on ${where}`), 30_000);
    await d.waitFor(/listening for incoming connections on [\d.]+:8025\./, 30_000);
  }
  return { lab, daemons, db };
}

const e2e = (title: string, body: (t: import('ava').ExecutionContext, w: World) => Promise<void>) => {
  test.serial(title, async (t) => {
    if (missing || !world) {
      lacking(t, missing ?? 'the lab was not built');
      return;
    }
    await body(t, world);
  });
};

/** One SMTP attempt to DATA from `local` in namespace x (or `ns`), as a retrying MTA makes it. */
async function attempt(w: World, host: string, local: string, to: string, ns = NS.x): Promise<string> {
  const r = await w.lab.exec(ns, [process.execPath, CLIENT_SCRIPT, 'smtp', host, '8025', local, 'mx.sender.example', '<a@sender.example>', to],
    { timeout: 30_000 });
  return r.stdout;
}

/** spamdb lines of a daemon's database, by their first two fields (type|key start). */
async function lines(w: World, name: string): Promise<string[]> {
  const r = await runCli(['db', '--db', w.db(name)]);
  if (r.code !== 0) throw new Error(`pfgrey db exited ${r.code}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

const has = async (w: World, name: string, prefix: string) => (await lines(w, name)).find((l) => l.startsWith(prefix));

e2e('a tuple greylisted at A and retried at B passes at B: B knew it from A', async (t, w) => {
  const reply = await attempt(w, ADDR.a, CLIENT, '<b@us.example>');
  t.regex(reply, /451 /);
  const grey = `GREY|${CLIENT}|mx.sender.example|<a@sender.example>|<b@us.example>|`;
  for (const n of ['b', 'c']) await eventually(() => has(w, n, grey), `the tuple at ${n.toUpperCase()}`);
  // B has never seen the client itself: its entry is A's one attempt, not passed.
  const learnt = parseLine((await has(w, 'b', grey))!, 1);
  t.like(learnt, { bcount: 1, pcount: 0, pass: learnt.expire });
  // One retry at B, once the pass time has gone by since B's entry began (spamdb shows whole
  // seconds: the next second is past it). Had B not known the tuple, this first sighting at B
  // would only start a new entry, waiting a pass time of its own; it passes because B counts
  // it as the tuple's second attempt.
  const passable = learnt.first + 1000 + PASS_MS;
  await eventually(() => Date.now() > passable, 'the pass time gone by at B');
  t.regex(await attempt(w, ADDR.b, CLIENT, '<b@us.example>'), /451 /, 'the retry that passes is still greylisted, as in spamd');
  const retried = parseLine((await eventually(async () => {
    const line = await has(w, 'b', grey);
    return line !== undefined && parseLine(line, 1).bcount === 2 && line;
  }, 'the retry counted at B'))!, 1);
  t.is(retried.first, learnt.first, 'the entry B learnt from A');
  t.true(retried.pass < retried.expire && retried.pass >= passable - 1000, `passed at the retry (pass ${retried.pass}, expire ${retried.expire})`);
  await eventually(() => has(w, 'b', `WHITE|${CLIENT}|`), `${CLIENT} WHITE at B`);
});

e2e('a trap at A holds at C: C tarpits the trapped client as spamd-greytrap', async (t, w) => {
  t.is((await runCli(['db', '--db', w.db('a'), '-T', '-a', 'trap@us.example'])).code, 0);
  await attempt(w, ADDR.a, TRAPPED, '<trap@us.example>');
  await eventually(() => has(w, 'a', `TRAPPED|${TRAPPED}|`), `${TRAPPED} TRAPPED at A`);
  await eventually(() => has(w, 'c', `TRAPPED|${TRAPPED}|`), `${TRAPPED} TRAPPED at C`);
  const atC = await eventually(async () => {
    const r = await attempt(w, ADDR.c, TRAPPED, '<b@us.example>');
    return /has mailed to spamtraps here/.test(r) && r;
  }, 'the spamtrap reply at C');
  t.regex(atC, new RegExp(`450 Your address ${TRAPPED.replace(/\./g, '\\.')} has mailed to spamtraps here`));
});

e2e('packets made by hand from spamd\'s layout are taken; a bad HMAC and a cut packet are refused and logged', async (t, w) => {
  const expire = Math.floor(Date.now() / 1000) + 3600;
  const good = packet([addrTlv(2, '198.51.100.77', expire), greyTlv('198.51.100.78', '<x@y.example>', '<z@us.example>', 'helo.example'), END]);
  const badKey = packet([addrTlv(2, '198.51.100.79', expire), END], { key: Buffer.from('0'.repeat(40)) });
  const cut = packet([addrTlv(2, '198.51.100.80', expire), END]).subarray(0, 44);
  await w.lab.execCheck(NS.x, [process.execPath, CLIENT_SCRIPT, 'udp', ADDR.c, '8025', badKey.toString('hex'), cut.toString('hex'), good.toString('hex')]);
  await eventually(() => has(w, 'c', 'WHITE|198.51.100.77|'), 'the hand-made WHITE record at C');
  await eventually(() => has(w, 'c', 'GREY|198.51.100.78|helo.example|<x@y.example>|<z@us.example>|'), 'the hand-made GREY record at C');
  await w.daemons.c.waitFor(new RegExp(`sync: refused a packet from ${CLIENT}: HMAC does not match`), 10_000);
  await w.daemons.c.waitFor(new RegExp(`sync: refused a packet from ${CLIENT}: 44 bytes arrived of the 52`), 10_000);
  const c = await lines(w, 'c');
  t.falsy(c.find((l) => l.includes('198.51.100.79') || l.includes('198.51.100.80')));
  // What C took from a hand-made packet it does not send on: a tuple C sees afterwards reaches
  // A, and nothing from those packets came before it.
  await attempt(w, ADDR.c, CLIENT, '<marker@us.example>');
  await eventually(() => has(w, 'a', `GREY|${CLIENT}|mx.sender.example|<a@sender.example>|<marker@us.example>|`), 'the marker tuple at A');
  t.falsy((await lines(w, 'a')).find((l) => l.includes('198.51.100.77') || l.includes('198.51.100.78')));
});

e2e('multicast over a veth pair: a tuple at m1 reaches m2 through 224.0.1.240', async (t, w) => {
  // The client is m1's own address, in m1's namespace.
  t.regex(await attempt(w, M.m1, M.m1, '<b@us.example>', NS.m1), /451 /);
  const line = await eventually(() => has(w, 'm2', `GREY|${M.m1}|mx.sender.example|`), 'the tuple at m2 by multicast');
  t.regex(line, /<a@sender\.example>\|<b@us\.example>\|/);
  t.regex(w.daemons.m2.output, /sync: received GREY 198\.51\.100\.1 .* from 198\.51\.100\.1/);
});
