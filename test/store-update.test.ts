// Store.update: an atomic read-modify-write. Two writers of one key — pfgrey db or logd in one
// process, another door in another — never lose an update, whichever backend.

import test from 'ava';
import path from 'node:path';
import { Greylister } from '../src/grey/greylister.js';
import { memoryLogger } from '../src/log.js';
import sqlite3 from 'sqlite3';
import { openStore } from '../src/store/sqlite.js';
import type { Entry } from '../src/store/types.js';
import { backends } from './helpers/backends.js';
import { tempDir } from './helpers/daemon.js';

const white = (key: string, pcount = 0): Entry => ({ key, first: 1, pass: 1, expire: 2 ** 40, bcount: 1, pcount });

for (const [name, open] of Object.entries(backends)) {
  test(`${name}: update hands decide what is stored under the keys and writes what it returns`, async (t) => {
    const store = await open(t);
    store.put(white('192.0.2.1', 5));
    // Queued before the update: committed first, so the update reads it.
    let seen: Map<string, Entry> | undefined;
    await store.update(['192.0.2.1', '192.0.2.2'], (current) => {
      seen = current;
      return [{ put: white('192.0.2.2', 7) }, { delete: '192.0.2.1' }];
    });
    t.deepEqual([...seen!.keys()], ['192.0.2.1']);
    t.is(seen!.get('192.0.2.1')?.pcount, 5);
    t.is(await store.get('192.0.2.1'), undefined);
    t.is((await store.get('192.0.2.2'))?.pcount, 7);
  });
}

test('two processes\' worth of writers, each read-modify-writing one key, lose no update', async (t) => {
  const file = path.join(await tempDir(t), 'pfgrey.db');
  // Two connections to one file behave as two processes do: SQLite's locks keep them apart.
  const a = await openStore(file, { create: true });
  const b = await openStore(file, {});
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const doorA = new Greylister({ store: a, log: memoryLogger(), atomic: true });
  const doorB = new Greylister({ store: b, log: memoryLogger(), atomic: true });
  const rounds = 30;
  for (let i = 0; i < rounds; i++) {
    // logd's extension counts pcount up by one each time: a lost update would show as a gap.
    await Promise.all([doorA.handle({ kind: 'extend', ip: '192.0.2.9' }), doorB.handle({ kind: 'extend', ip: '192.0.2.9' })]);
  }
  const reader = await openStore(file, { readonly: true });
  t.teardown(() => reader.close());
  // The first extension makes the entry (pcount 0), every later one adds 1.
  t.is((await reader.get('192.0.2.9'))?.pcount, 2 * rounds - 1);
});

test('a trap the daemon writes is read and written in one step, so an address pfgrey db changes meanwhile keeps its change', async (t) => {
  const file = path.join(await tempDir(t), 'pfgrey.db');
  // The daemon's store holds its writes for the group commit; this one never commits on its own.
  const daemonStore = await openStore(file, { create: true, commitDelay: 3_600_000 });
  const cli = await openStore(file, {});
  t.teardown(async () => {
    await cli.close();
    await daemonStore.close();
  });
  const daemon = new Greylister({ store: daemonStore, log: memoryLogger() });
  const db = new Greylister({ store: cli, log: memoryLogger(), atomic: true });
  await db.handle({ kind: 'add', type: 'SPAMTRAP', key: 'trap@us.example' });
  // The daemon traps 192.0.2.5; the operator, with pfgrey db in its own process, then
  // whitelists it. The later change must stand, not be undone by the daemon's next commit.
  t.like(await daemon.handle({ kind: 'tuple', ip: '192.0.2.5', helo: 'h', from: '<a@b>', to: '<trap@us.example>' }), { kind: 'trapped' });
  t.like(await db.handle({ kind: 'add', type: 'WHITE', key: '192.0.2.5' }), { kind: 'written', entry: { bcount: 1, pcount: 0 } });
  await daemonStore.flush();
  const reader = await openStore(file, { readonly: true });
  t.teardown(() => reader.close());
  // WHITE (pcount 0), made from the trap's entry (its first sighting, bcount 1).
  t.like(await reader.get('192.0.2.5'), { bcount: 1, pcount: 0 });
});

test('an update another connection commits ahead of, between its read and its write, is decided again on what that one wrote', async (t) => {
  const file = path.join(await tempDir(t), 'pfgrey.db');
  const a = await openStore(file, { create: true });
  a.put(white('192.0.2.9', 1));
  await a.flush();
  // Another process, as raw SQLite: it holds the write lock from before the update starts, so
  // the update's read comes first and its write waits for this one's commit.
  const other = new sqlite3.Database(file);
  const exec = (sql: string) => new Promise<void>((resolve, reject) => other.exec(sql, (err) => (err ? reject(err) : resolve())));
  t.teardown(async () => {
    await a.close();
    await new Promise((resolve) => other.close(resolve));
  });
  await exec('BEGIN IMMEDIATE');
  const seen: number[] = [];
  let committed: Promise<void> | undefined;
  await a.update(['192.0.2.9'], (current) => {
    const e = current.get('192.0.2.9')!;
    seen.push(e.pcount);
    committed ??= exec("UPDATE entries SET pcount = 100 WHERE key = '192.0.2.9'; COMMIT");
    return [{ put: { ...e, pcount: e.pcount + 1 } }];
  });
  await committed;
  t.deepEqual(seen, [1, 100]);
  t.is((await a.get('192.0.2.9'))?.pcount, 101);
});
