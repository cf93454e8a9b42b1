// Store.deleteIf: the scan's deletion of a row it read. It deletes the row only while it is still
// what was read; a row another connection (pfgrey db -a) or this process rewrote since stays.

import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import type { Entry } from '../src/grey/entry.js';
import { openStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/types.js';
import { tempDir } from './helpers/daemon.js';

const row = (i: number, bcount = 1): Entry => ({
  key: `10.0.${i >> 8}.${i & 255}`, first: 1000 + i, pass: 2000 + i, expire: 3000 + i, bcount, pcount: i % 3,
});

async function twoConnections(t: ExecutionContext): Promise<{ store: Store; other: Store }> {
  const file = path.join(await tempDir(t), 'd.db');
  const store = await openStore(file, { create: true, commitDelay: 3_600_000 });
  t.teardown(() => store.close().catch(() => undefined));
  // A connection of its own, as `pfgrey db -a` in another process has.
  const other = await openStore(file, { commitDelay: 3_600_000 });
  t.teardown(() => other.close().catch(() => undefined));
  return { store, other };
}

test('a conditional delete of an unchanged row deletes it; of a row changed since, does nothing', async (t) => {
  const { store, other } = await twoConnections(t);
  store.put(row(1));
  store.put(row(2));
  await store.flush();
  other.put(row(2, 7));
  await other.flush();

  store.deleteIf(row(1));
  store.deleteIf(row(2));
  t.is(await store.get(row(2).key), undefined, 'reads see it as deleted until the commit, as for delete');
  await store.flush();
  t.is(await other.get(row(1).key), undefined);
  t.deepEqual(await other.get(row(2).key), row(2, 7));
  t.deepEqual(await store.get(row(2).key), row(2, 7), 'once committed, the row that stayed reads again');
});

test('conditional deletes in batches of hundreds delete exactly the unchanged rows', async (t) => {
  const { store, other } = await twoConnections(t);
  // More than one full multi-row statement (128 rows) plus single-row ones, changed rows spread through.
  const n = 300;
  for (let i = 0; i < n; i++) store.put(row(i));
  await store.flush();
  const changed = new Set<number>();
  for (let i = 0; i < n; i += 7) {
    changed.add(i);
    other.put({ ...row(i), expire: 9_000_000 });
  }
  await other.flush();
  for (let i = 0; i < n; i++) store.deleteIf(row(i));
  await store.flush();
  const left: string[] = [];
  for await (const chunk of other.chunks(1000)) left.push(...chunk.map((e) => e.key));
  t.deepEqual(left.sort(), [...changed].map((i) => row(i).key).sort());
});

test('a put queued after a conditional delete wins; one queued before it is not undone', async (t) => {
  const { store, other } = await twoConnections(t);
  store.put(row(1));
  store.put(row(2));
  await store.flush();

  store.deleteIf(row(1));
  store.put(row(1, 5));
  store.put(row(2, 5));
  store.deleteIf(row(2));
  t.deepEqual(await store.get(row(2).key), row(2, 5));
  await store.flush();
  t.deepEqual(await other.get(row(1).key), row(1, 5));
  t.deepEqual(await other.get(row(2).key), row(2, 5));
});
