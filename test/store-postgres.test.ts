// The PostgreSQL store against a real server (a throwaway cluster, test/helpers/postgres.ts):
// what the shared store promises beyond the interface tests that every backend runs
// (core.test.ts, store-update.test.ts): keys byte for byte and in SQLite's order, the group
// commit, updates from two hosts that lose nothing, the schema made once by nodes that start
// together, a server restart in the middle of writes, the maintenance election, and a
// password that never appears in a message.

import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { ManualClock } from '../src/clock.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { PfgreyError } from '../src/errors.js';
import { greyKey, toByteString } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import { memoryLogger } from '../src/log.js';
import { openPostgresStore, PG_SCHEMA_VERSION, PostgresMaintenance, redactUrl, type OpenPostgresOptions } from '../src/store/postgres.js';
import { openStore } from '../src/store/sqlite.js';
import type { Entry, Store } from '../src/store/types.js';
import { tempDir } from './helpers/daemon.js';
import { postgresMissing, rawPg, startCluster, testDatabase } from './helpers/postgres.js';
import { lacking } from './helpers/require.js';
import { eventually } from './helpers/wait.js';

const white = (ip: string, n = 0): Entry => ({ key: ip, first: 1_000_000 + n, pass: 2_000_000, expire: 3_000_000, bcount: 1, pcount: n });
const grey = (ip: string, to: string, n = 0): Entry => ({
  key: greyKey(ip, 'mx.example', '<a@example.org>', to), first: 1000 * n, pass: 2000, expire: 3000, bcount: 1, pcount: 0,
});

async function open(t: ExecutionContext, url: string, opts: OpenPostgresOptions = {}): Promise<Store> {
  const s = await openPostgresStore(url, opts);
  t.teardown(() => s.close().catch(() => undefined));
  return s;
}

async function collect(s: Store, size: number): Promise<Entry[][]> {
  const out: Entry[][] = [];
  for await (const c of s.chunks(size)) out.push(c);
  return out;
}

const count = async (url: string) => Number((await rawPg(url, 'SELECT count(*) AS n FROM pfgrey_entries'))[0]!.n);

test('8-bit keys keep every byte and come back in the order SQLite gives them', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const keys = [
    grey('192.0.2.1', '<\xff\xe9\x01@us>').key, grey('192.0.2.1', '<~@us>').key, grey('192.0.2.1', '<\x7f@us>').key,
    grey('192.0.2.1', '<\x80@us>').key, '192.0.2.10', toByteString('höst@exämple'), '\x01\x02\x03', 'spamtrap@\xfe\xfd',
  ];
  const s = await open(t, url);
  const lite = await openStore(path.join(await tempDir(t), 'pfgrey.db'), { create: true });
  t.teardown(() => lite.close());
  keys.forEach((key, i) => {
    s.put({ ...white('x', i), key });
    lite.put({ ...white('x', i), key });
  });
  await s.flush();
  await lite.flush();
  for (const [i, key] of keys.entries()) t.deepEqual(await s.get(key), { ...white('x', i), key });
  const pgOrder = (await collect(s, 3)).flat().map((e) => e.key);
  t.deepEqual(pgOrder, (await collect(lite, 3)).flat().map((e) => e.key));
  t.deepEqual(pgOrder, [...keys].sort());
  // Held as the UTF-8 bytes SQLite keeps: 0xff is c3 bf.
  t.deepEqual(await rawPg(url, "SELECT encode(key, 'hex') AS h FROM pfgrey_entries WHERE key > '\\x7370616d' AND key < '\\x7370616e'"),
    [{ h: `${Buffer.from('spamtrap@').toString('hex')}c3bec3bd` }]);
});

test('tuplesOf reads one ip\'s range, queued writes included', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const s = await open(t, url);
  for (const ip of ['10.0.0.1', '10.0.0.10', '10.0.0.1x', '10.0.0.']) s.put(grey(ip, '<r0@us.example>'));
  s.put(white('10.0.0.1'));
  await s.flush();
  t.deepEqual((await s.tuplesOf('10.0.0.1')).map((e) => e.key), [grey('10.0.0.1', '<r0@us.example>').key]);
  s.put(grey('10.0.0.1', '<a@us>'));
  s.delete(grey('10.0.0.1', '<r0@us.example>').key);
  t.deepEqual((await s.tuplesOf('10.0.0.1')).map((e) => e.key), [grey('10.0.0.1', '<a@us>').key]);
  t.deepEqual(await s.tuplesOf('10.9.9.9'), []);
});

test('queued writes stay invisible to other hosts until the group commit, which a full batch starts at once', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const s = await open(t, url, { commitDelay: 3_600_000, commitBatch: 50 });
  for (let i = 0; i < 49; i++) s.put(white(`192.0.2.${i}`));
  s.delete('192.0.2.3');
  t.is(s.pendingWrites, 49);
  t.is(await count(url), 0);
  t.is(await s.get('192.0.2.3'), undefined, 'a queued delete reads as deleted');
  t.is((await s.getMany(['192.0.2.4', '192.0.2.99'])).size, 1);
  s.put(white('192.0.2.49'));
  await eventually(() => s.pendingWrites === 0, 'the batch committed');
  t.is(await count(url), 49);
});

test('deleteIf deletes a row only while it is as the scan read it', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const s = await open(t, url, { commitDelay: 3_600_000 });
  s.put(white('192.0.2.1'));
  s.put(white('192.0.2.2'));
  await s.flush();
  // Another host rewrites 192.0.2.2 after the scan read it.
  await rawPg(url, "UPDATE pfgrey_entries SET pcount = 9 WHERE key = '192.0.2.2'::bytea");
  s.deleteIf(white('192.0.2.1'));
  s.deleteIf(white('192.0.2.2'));
  t.is(await s.get('192.0.2.1'), undefined);
  await s.flush();
  t.deepEqual((await collect(s, 10)).flat().map((e) => [e.key, e.pcount]), [['192.0.2.2', 9]]);
});

test('two hosts\' cores, each read-modify-writing one key at once, lose no update', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  // Two stores are two pools of connections: two MX hosts, for the database's purpose.
  const a = await open(t, url);
  const b = await open(t, url);
  const doorA = new Greylister({ store: a, log: memoryLogger(), atomic: true });
  const doorB = new Greylister({ store: b, log: memoryLogger(), atomic: true });
  const rounds = 30;
  for (let i = 0; i < rounds; i++) {
    // logd's extension counts pcount up by one each time: a lost update would show as a gap.
    await Promise.all([doorA.handle({ kind: 'extend', ip: '192.0.2.9' }), doorB.handle({ kind: 'extend', ip: '192.0.2.9' })]);
  }
  t.is((await a.get('192.0.2.9'))?.pcount, 2 * rounds - 1);
});

test('an update whose missing key another host inserts between its read and its write is decided again on that row', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const a = await open(t, url);
  // Another host's group commit, blind (it takes no key lock), with its row inserted but not yet
  // committed when the update reads: the update's write waits for it, then finds the row.
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('BEGIN');
  await other.query("INSERT INTO pfgrey_entries VALUES ('192.0.2.9'::bytea, 1, 1, 1099511627776, 1, 100)");
  const seen: Array<number | undefined> = [];
  let committed: Promise<unknown> | undefined;
  await a.update(['192.0.2.9'], (current) => {
    const e = current.get('192.0.2.9');
    seen.push(e?.pcount);
    committed ??= other.query('COMMIT');
    return [{ put: e ? { ...e, pcount: e.pcount + 1 } : white('192.0.2.9', 1) }];
  });
  await committed;
  t.deepEqual(seen, [undefined, 100]);
  t.is((await a.get('192.0.2.9'))?.pcount, 101);
});

/**
 * A TCP proxy to the server that, once armed, passes the next COMMIT on and then drops the
 * connection instead of passing its reply back: a commit made whose outcome the client never learns.
 */
async function commitReplyCutter(t: ExecutionContext, url: string): Promise<{ url: string; arm: () => void; cuts: () => number }> {
  const target = new URL(url);
  let armed = false;
  let cuts = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    let cutting = false;
    client.on('data', (d: Buffer) => {
      // The simple query protocol's Q message carries the text NUL-terminated.
      if (armed && d.includes('COMMIT\0')) {
        armed = false;
        cutting = true;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!cutting) return void client.write(d);
      cuts++;
      client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const proxied = new URL(url);
  proxied.port = String((server.address() as net.AddressInfo).port);
  return { url: proxied.toString(), arm: () => (armed = true), cuts: () => cuts };
}

test('a batch whose COMMIT reply is lost is retried by the core and not made twice', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const proxy = await commitReplyCutter(t, url);
  const s = await open(t, proxy.url);
  const log = memoryLogger();
  const door = new Greylister({ store: s, log, atomic: true });
  // A name from long ago, past any retry: the node's first named update deletes it.
  await rawPg(url, "INSERT INTO pfgrey_updates (id, at) VALUES ('long-ago', 0)");
  t.is((await door.handle({ kind: 'extend', ip: '192.0.2.9' })).kind, 'written');
  const before = (await s.get('192.0.2.9'))!.pcount;
  proxy.arm();
  // logd's extension counts pcount up by one: made twice, it would count two.
  const verdict = await door.handle({ kind: 'extend', ip: '192.0.2.9' });
  t.is(proxy.cuts(), 1, 'the COMMIT reply was cut');
  t.is(verdict.kind, 'written');
  t.is((await s.get('192.0.2.9'))!.pcount, before + 1);
  t.true(log.lines.some((l) => /greylist update of 1 request had been committed before its reply was lost; not made twice/.test(l)), log.lines.join('\n'));
  // Each update left its name; the old one is gone.
  const names = await rawPg(url, 'SELECT id FROM pfgrey_updates');
  t.is(names.length, 2);
  t.false(names.some((r) => r.id === 'long-ago'));
});

test('nodes starting at once on a new database make its schema once; a newer schema is refused', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const stores = await Promise.all(Array.from({ length: 4 }, () => open(t, url)));
  await Promise.all(stores.map((s) => s.close()));
  t.deepEqual(await rawPg(url, 'SELECT version FROM pfgrey_schema'), [{ version: PG_SCHEMA_VERSION }]);
  await rawPg(url, 'UPDATE pfgrey_schema SET version = 99');
  for (const readonly of [false, true]) {
    const err = await t.throwsAsync(openPostgresStore(url, { readonly }));
    t.is((err as PfgreyError).code, 'E_DB_SCHEMA');
    t.regex(err!.message, new RegExp(`schema version 99 is newer than this pfgrey supports \\(${PG_SCHEMA_VERSION}\\)`));
  }
});

test('a database of schema version 1 is migrated in place: its entries kept, the update names\' table added', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  // Version 1 as the first PostgreSQL store made it.
  await rawPg(url, 'CREATE TABLE pfgrey_schema (version integer NOT NULL)');
  await rawPg(url, 'INSERT INTO pfgrey_schema (version) VALUES (1)');
  await rawPg(url, `CREATE TABLE pfgrey_entries (key bytea PRIMARY KEY, first bigint NOT NULL, pass bigint NOT NULL,
    expire bigint NOT NULL, bcount bigint NOT NULL, pcount bigint NOT NULL)`);
  await rawPg(url, "INSERT INTO pfgrey_entries VALUES ('192.0.2.7'::bytea, 1, 2, 1099511627776, 1, 3)");
  const s = await open(t, url);
  t.deepEqual(await rawPg(url, 'SELECT version FROM pfgrey_schema'), [{ version: PG_SCHEMA_VERSION }]);
  t.deepEqual(await s.get('192.0.2.7'), { key: '192.0.2.7', first: 1, pass: 2, expire: 1099511627776, bcount: 1, pcount: 3 });
  t.true(await s.update(['192.0.2.7'], (c) => [{ put: { ...c.get('192.0.2.7')!, pcount: 4 } }], 'a name'));
  t.false(await s.update(['192.0.2.7'], () => t.fail('decided twice') as never, 'a name'), 'the same name again is not made');
  t.is((await s.get('192.0.2.7'))!.pcount, 4);
});

test('a read-only open of a database no node has written reads as empty and refuses writes', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const r = await open(t, url, { readonly: true });
  t.deepEqual(await collect(r, 10), []);
  t.is(await r.get('192.0.2.1'), undefined);
  t.deepEqual(await r.tuplesOf('192.0.2.1'), []);
  t.throws(() => r.put(white('192.0.2.1')), { message: /read-only/ });
  t.deepEqual(await rawPg(url, "SELECT to_regclass('pfgrey_entries') AS t"), [{ t: null }], 'nothing created');
});

test('a server that cannot be reached is E_DB_OPEN naming the URL without its password', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const { port } = new URL(url);
  const wrong = `postgres://pfgrey:s3cret@127.0.0.1:${port}/no_such_db`;
  const err = await t.throwsAsync(openPostgresStore(wrong));
  t.is((err as PfgreyError).code, 'E_DB_OPEN');
  t.is(err!.message, `cannot open postgres://pfgrey:***@127.0.0.1:${port}/no_such_db for writing: role "pfgrey" does not exist`);
  const refused = await t.throwsAsync(openPostgresStore('postgresql://u:pw@127.0.0.1:1/x', { readonly: true }));
  t.regex(refused!.message, /^cannot open postgresql:\/\/u:\*\*\*@127\.0\.0\.1:1\/x for reading: connect ECONNREFUSED/);
  t.is(redactUrl('postgres://h/db?user=u&password=pw'), 'postgres://h/db?user=u&password=***');
  // An @ in a password that was not percent-encoded: all of it is hidden, up to the host.
  t.is(redactUrl('postgres://u:hun@ter2@db.example:5432/x'), 'postgres://u:***@db.example:5432/x');
  t.is(redactUrl('postgresql://u@db.example/x?password=a&sslpassword=b&PASSWORD=c'), 'postgresql://u@db.example/x?password=***&sslpassword=***&PASSWORD=***');
});

test('writes acknowledged across a server restart are all committed: queued ones retried, updates redone', async (t) => {
  const missing = postgresMissing();
  if (missing) return lacking(t, missing);
  // A cluster of this test's own: a restart drops every connection to it.
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  const url = cluster.url();
  const log = memoryLogger();
  const s = await open(t, url, { commitDelay: 20, log });
  const core = new Greylister({ store: s, log: memoryLogger() });
  const atomic = new Greylister({ store: s, log: memoryLogger(), atomic: true });
  let stop = false;
  const acknowledged: string[] = [];
  // Writers that keep going through the restart, as SMTP clients would: the daemon's group
  // commit (acknowledged once queued) and a door's atomic updates (acknowledged once committed).
  const writer = (door: Greylister, net: number) => (async () => {
    for (let i = 0; !stop; i++) {
      const ip = `10.${net}.${i >> 8}.${i & 255}`;
      const v = await door.handle({ kind: 'tuple', ip, helo: 'h', from: '<a@b.example>', to: '<c@d.example>' });
      if (v.kind !== 'dropped') acknowledged.push(ip);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  const writers = [writer(core, 1), writer(atomic, 2)];
  await eventually(() => acknowledged.length > 100, 'writes before the restart');
  await cluster.down();
  await eventually(() => log.lines.some((l) => l.includes('keeping them queued')), 'a group commit refused');
  // Reads fail too while it is down, so nothing new is decided (the doors answer fail-safe);
  // what was queued before stays queued.
  const queued = s.pendingWrites;
  await cluster.up();
  const up = acknowledged.length;
  await eventually(() => acknowledged.some((ip) => ip.startsWith('10.2.')) && acknowledged.length > up + 100, 'writes after the restart');
  stop = true;
  await Promise.all(writers);
  await s.flush();
  const stored = new Set((await collect(s, 10_000)).flat().map((e) => e.key.split('\n')[0]));
  t.deepEqual(acknowledged.filter((ip) => !stored.has(ip)), [], 'every acknowledged tuple is in the database');
  t.true(queued > 0);
  t.log(`${acknowledged.length} acknowledged; ${queued} writes were queued while the server was down`);
});

test('a server down for longer than a failing batch is retried keeps the tuples: they are held, said once, and written when it is back', async (t) => {
  const missing = postgresMissing();
  if (missing) return lacking(t, missing);
  const cluster = await startCluster();
  t.teardown(() => cluster.stop());
  const s = await open(t, cluster.url());
  const log = memoryLogger();
  const clock = new ManualClock(Date.now());
  const door = new Greylister({ store: s, log, clock, atomic: true });
  t.teardown(() => door.stop());
  const tuple = (ip: string) => ({ kind: 'tuple' as const, ip, helo: 'h', from: '<a@b.example>', to: '<c@d.example>' });
  t.like(await door.handle(tuple('192.0.2.1')), { kind: 'greylisted' });
  await cluster.down();
  // The tarpit has answered this client already: the tuple must survive the outage.
  const held = door.handle(tuple('192.0.2.2'));
  await eventually(() => log.lines.some((l) => l.includes('failed, retrying')), 'the first failure');
  // Past the time after which a batch a store refuses is given up.
  clock.advance(DEFAULTS.greyRetryFor + 1000);
  await eventually(() => log.lines.some((l) => /greylist updates failing for \S+: 1 request held until the database server answers again/.test(l)),
    'the one line saying the batch is held', 30_000).catch((e: Error) => { throw new Error(`${e.message}: ${log.lines.join(' | ')}`); });
  t.false(log.lines.some((l) => l.includes('lost:')), log.lines.join('\n'));
  await cluster.up();
  t.like(await held, { kind: 'greylisted' });
  t.truthy(await s.get(greyKey('192.0.2.2', 'h', '<a@b.example>', '<c@d.example>')));
  t.is(log.lines.filter((l) => l.includes('held until the database server answers again')).length, 1);
});

test('one node holds maintenance; when its connection goes, the next turn of another takes over and says so', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const logA = memoryLogger();
  const logB = memoryLogger();
  const a = new PostgresMaintenance(url, logA);
  const b = new PostgresMaintenance(url, logB);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.true(await a.turn());
  t.false(await b.turn());
  t.true(await a.turn(), 'the holder keeps it');
  t.false(await b.turn());
  t.is(logB.lines.filter((l) => l.includes('another node expires and promotes')).length, 1, 'said once');
  // The holder's session ends (a node killed: its connection dropped).
  await rawPg(url, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 0 AND classid = $1", [0x70666703]);
  t.true(await b.turn());
  t.true(logB.lines.some((l) => /maintenance: took over expiry and promotion in postgres:\/\/postgres@127\.0\.0\.1:\d+\/\w+ from the node that held them/.test(l)));
  t.false(await a.turn(), 'the old holder finds its lock gone and another holding it');
});
