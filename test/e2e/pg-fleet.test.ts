// End to end: two MX hosts on one PostgreSQL database (README.md, "Several MX hosts"), each in a
// network namespace of its own, the database server in a third, the sending MTA in a fourth:
// a tuple greylisted at the primary passes when retried at the secondary, both publish the
// whitelist, and when the maintaining host dies, or drops off the network without closing its
// connection, the other takes maintenance over.
//
// Topology (namespaces named with this process's pid, deleted afterwards; TEST-NET addresses
// only, no traffic leaves the namespaces):
//
//   hub  a bridge, br0, joining the four below
//   db   eth0 192.0.2.10: PostgreSQL (Debian's server, a throwaway cluster) on port 5432
//   a, b eth0 192.0.2.1, .2: pfgrey run --db postgres://postgres@192.0.2.10:5432/postgres
//   x    eth0 192.0.2.50: the sending MTA
//
// Needs root, iproute2 and PostgreSQL. Run after a build:
//
//   npx tsc -p tsconfig.test.json
//   PFGREY_REQUIRE_E2E=1 npx ava .build/test/e2e/pg-fleet.test.js

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLine } from '../../src/grey/spamdb-format.js';
import { CLI } from '../helpers/cli.js';
import { type Cluster, postgresMissing, startCluster } from '../helpers/pg-cluster.js';
import { lacking, required } from '../helpers/require.js';
import { eventually } from '../helpers/wait.js';
import { check, Lab, namespaceProblem, type Proc } from './lab.js';

const CLIENT_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sync-client.js');
const tag = `${process.pid}`;
const NS = { hub: `pfgrey-e2e-pg-hub-${tag}`, db: `pfgrey-e2e-pg-db-${tag}`, a: `pfgrey-e2e-pg-a-${tag}`, b: `pfgrey-e2e-pg-b-${tag}`, x: `pfgrey-e2e-pg-x-${tag}` };
const ADDR = { db: '192.0.2.10', a: '192.0.2.1', b: '192.0.2.2', x: '192.0.2.50' } as const;

function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (network namespaces)';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (!fs.existsSync(CLI)) return 'not built: run npx tsc -p tsconfig.test.json';
  return namespaceProblem() ?? postgresMissing();
}

const missing = missingPrerequisite();
if (missing && !required) console.log(`# skipping the PostgreSQL fleet end-to-end test: ${missing}`);

const PASS_MS = 2000;

interface World {
  lab: Lab;
  cluster: Cluster;
  url: string;
  /** Starts pfgrey run on host `name`; `label` names its log (a second daemon on the host). */
  start(name: 'a' | 'b', label?: string): Proc;
  /** Every daemon started, to stop between the tests. */
  daemons: Proc[];
}
let world: World | undefined;

test.before(async () => {
  if (missing) return;
  const lab = new Lab(Object.values(NS));
  let cluster: Cluster | undefined;
  try {
    for (const ns of Object.values(NS)) await lab.addNetns(ns);
    await check(['ip', '-n', NS.hub, 'link', 'add', 'br0', 'type', 'bridge']);
    await check(['ip', '-n', NS.hub, 'link', 'set', 'br0', 'up']);
    for (const name of ['db', 'a', 'b', 'x'] as const) {
      const port = `${name}0`;
      await check(['ip', '-n', NS.hub, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS[name]]);
      await check(['ip', '-n', NS.hub, 'link', 'set', port, 'master', 'br0', 'up']);
      await check(['ip', '-n', NS[name], 'addr', 'add', `${ADDR[name]}/24`, 'dev', 'eth0']);
      await check(['ip', '-n', NS[name], 'link', 'set', 'eth0', 'up']);
    }
    cluster = await startCluster({ netns: { name: NS.db, listen: ADDR.db, trust: '192.0.2.0/24' } });
    const url = cluster.url();
    const daemons: Proc[] = [];
    const start = (name: 'a' | 'b', label: string = name) => {
      const d = lab.spawn(label, NS[name], [
        process.execPath, CLI, 'run', '--log', 'stderr', '-v', '--firewall', 'none', '--db', url,
        '--alloweddomains', path.join(lab.dir, 'alloweddomains'), '-l', ADDR[name], '-s', '0', '-S', '0',
        '--passtime', `${PASS_MS}ms`, '--scan-interval', '1s',
      ]);
      daemons.push(d);
      return d;
    };
    world = { lab, cluster, url, start, daemons };
  } catch (err) {
    // AVA may not run after.always when before fails; do not leave the lab up in the meantime.
    await cluster?.stop();
    await lab.destroy();
    throw err;
  }
});

test.after.always(async () => {
  await world?.lab.destroy();
  await world?.cluster.stop();
});

/** One SMTP attempt to DATA from the MTA's namespace, as a retrying MTA makes it. */
async function attempt(w: World, host: string, to: string): Promise<string> {
  const r = await w.lab.exec(NS.x, [process.execPath, CLIENT_SCRIPT, 'smtp', host, '8025', ADDR.x, 'mx.sender.example', '<a@sender.example>', to],
    { timeout: 30_000 });
  return r.stdout;
}

/** What the shared database holds, as pfgrey db lists it from host `ns`. */
async function listing(w: World, ns: string): Promise<string[]> {
  const r = await w.lab.exec(ns, [process.execPath, CLI, 'db', '--db', w.url], { timeout: 30_000 });
  if (r.code !== 0) throw new Error(`pfgrey db exited ${r.code}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

test.serial('two MX hosts in their own namespaces share one PostgreSQL database: greylisted at A, passed at B, and B takes maintenance over when A dies', async (t) => {
  if (missing || !world) {
    lacking(t, missing ?? 'the lab was not built');
    return;
  }
  const w = world;
  const a = w.start('a');
  await a.waitFor(/maintenance: this node expires and promotes/, 30_000);
  await a.waitFor(/listening for incoming connections on 192\.0\.2\.1:8025\./, 30_000);
  const b = w.start('b');
  await b.waitFor(/maintenance: another node expires and promotes/, 30_000);
  await b.waitFor(/listening for incoming connections on 192\.0\.2\.2:8025\./, 30_000);

  // The secondary-MX story: the first attempt at A is greylisted ...
  t.regex(await attempt(w, ADDR.a, '<b@us.example>'), /451 /);
  const grey = `GREY|${ADDR.x}|mx.sender.example|<a@sender.example>|<b@us.example>|`;
  const tuple = async () => {
    const line = (await listing(w, NS.b)).find((l) => l.startsWith(grey));
    return line === undefined ? undefined : parseLine(line, 1);
  };
  const seen = await eventually(tuple, 'the tuple in the shared database, seen from B');
  t.like(seen, { bcount: 1, pcount: 0, pass: seen.expire });
  // ... and its one retry at B, once the pass time has gone by since A saw it (spamdb shows
  // whole seconds: the next second is past it), passes. B has never seen the client: had it
  // not found A's entry in the database, this attempt would only start an entry of its own.
  const passable = seen.first + 1000 + PASS_MS;
  await eventually(() => Date.now() > passable, 'the pass time gone by');
  t.regex(await attempt(w, ADDR.b, '<b@us.example>'), /451 /, 'the retry that passes is still greylisted, as in spamd');
  const retried = await eventually(async () => {
    const e = await tuple();
    return e?.bcount === 2 && e;
  }, 'the retry at B counted on the tuple');
  t.is(retried.first, seen.first, 'the entry A made');
  t.true(retried.pass < retried.expire && retried.pass >= passable - 1000, `passed at the retry (pass ${retried.pass}, expire ${retried.expire})`);
  // The maintainer's scan whitelists the address.
  await eventually(async () => (await listing(w, NS.a)).some((l) => l.startsWith(`WHITE|${ADDR.x}|`)), `${ADDR.x} WHITE after its retry at B`);
  // Both hosts publish it to their own firewall.
  for (const d of [a, b]) await d.waitFor(new RegExp(`table <spamd-white> would now hold 1 address: ${ADDR.x.replace(/\./g, '\\.')}`), 30_000);

  // A dies without a word: its connection drops, the server frees the lock, B takes it.
  a.signal('SIGKILL');
  await a.exited;
  await b.waitFor(/maintenance: took over expiry and promotion/, 30_000);
  t.pass();
});

test.serial('when the maintaining host drops off the network without closing its connection, the other takes maintenance over within 90 s', async (t) => {
  if (missing || !world) {
    lacking(t, missing ?? 'the lab was not built');
    return;
  }
  // The bounds below, not AVA's two minutes without a result, decide when this fails.
  t.timeout(5 * 60_000);
  const w = world;
  // A fresh pair, whatever the test before left running: A maintains, B waits.
  for (const d of w.daemons) d.signal('SIGTERM');
  await Promise.all(w.daemons.map((d) => d.exited));
  const a = w.start('a', 'a-silent');
  await a.waitFor(/maintenance: this node expires and promotes/, 30_000);
  const b = w.start('b', 'b-silent');
  await b.waitFor(/maintenance: another node expires and promotes/, 30_000);

  // A's link goes down: no process ends, nothing closes A's connections, no packet of A's
  // reaches the server any more. Only the server's keepalives on the lock's connection can
  // tell (DEFAULTS.pgKeepalive: 30 s), and B's next scan (every second here) takes over.
  const down = Date.now();
  await check(['ip', '-n', NS.a, 'link', 'set', 'eth0', 'down']);
  await b.waitFor(/maintenance: took over expiry and promotion/, 90_000);
  t.log(`B took over ${Math.round((Date.now() - down) / 1000)} s after A's link went down`);
  // Back on the network, A finds its lock gone (at once if its scan's query timed out while cut
  // off; or when a read of its scan in flight at the cut is answered, and its next turn is
  // refused) and B holding it: one maintainer, as before.
  await check(['ip', '-n', NS.a, 'link', 'set', 'eth0', 'up']);
  await a.waitFor(/maintenance: lost the lock in postgres:\/\/.* another node may take over/, 90_000);
  await a.waitFor(/maintenance: another node expires and promotes/, 90_000);
  t.true(a.running && b.running);
});
