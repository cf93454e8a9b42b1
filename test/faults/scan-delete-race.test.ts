// The scan walks the store in chunks and yields between them, then deletes the expired rows it
// read. `pfgrey db -a` in another process may re-add one of those keys meanwhile: the re-added
// entry must survive the scan, and every row that stayed as read must still be deleted.

import test from 'ava';
import path from 'node:path';
import { ManualClock } from '../../src/clock.js';
import { type Entry, greyKey } from '../../src/grey/entry.js';
import { Scanner } from '../../src/grey/scanner.js';
import { silentLogger } from '../../src/log.js';
import { openStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from '../helpers/daemon.js';

const NOW = 50_000_000;
const HOUR = 3_600_000;
const ENTRIES = 600;
const CHUNK = 25;

/** An expired entry: WHITE (an ip key) for even i, GREY (a tuple) for odd. */
function expired(i: number): Entry {
  const ip = `198.51.${100 + (i >> 8)}.${i & 255}`;
  const key = i % 2 ? greyKey(ip, 'mx.example', '<a@example.org>', `<r${i}@us.example>`) : ip;
  return { key, first: NOW - 5 * HOUR, pass: NOW - 5 * HOUR, expire: NOW - HOUR, bcount: 2, pcount: i % 2 ? 0 : 3 };
}

/** The store, with `between` run (and waited for) after the walk's chunk number `after`. */
function pausing(store: Store, after: number, between: (read: Entry[]) => Promise<void>): Store {
  async function* chunks(size: number): AsyncIterable<Entry[]> {
    const read: Entry[] = [];
    let n = 0;
    for await (const c of store.chunks(size)) {
      read.push(...c);
      yield c;
      if (++n === after) await between(read);
    }
  }
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'chunks') return chunks;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

test('entries pfgrey db -a re-adds while the scan runs survive it; the rest of the expired entries are deleted', async (t) => {
  const file = path.join(await tempDir(t), 'race.db');
  const daemonStore = await openStore(file, { create: true, commitBatch: 100_000 });
  t.teardown(() => daemonStore.close().catch(() => undefined));
  for (let i = 0; i < ENTRIES; i++) daemonStore.put(expired(i));
  await daemonStore.flush();

  const readd = new Map<string, Entry>();
  const scanned = pausing(daemonStore, 4, async (read) => {
    // The scan has read these rows as expired: `pfgrey db -a` (a connection of its own) now
    // writes 20 of them again, live, and commits before the scan goes on.
    t.is(read.length, 4 * CHUNK);
    const cli = await openStore(file, {});
    try {
      for (let i = 0; i < 20; i++) {
        const old = read[i * 5]!;
        const fresh = { ...old, first: NOW, pass: NOW, expire: NOW + 36 * 24 * HOUR, bcount: 0, pcount: 0 };
        readd.set(fresh.key, fresh);
        cli.put(fresh);
      }
      await cli.flush();
    } finally {
      await cli.close();
    }
  });
  const scanner = new Scanner({
    store: scanned, log: silentLogger, clock: new ManualClock(NOW), interval: 60_000,
    whiteExpiry: 36 * 24 * HOUR, chunk: CHUNK, onResult: () => {},
  });
  const plan = await scanner.scanOnce();
  t.truthy(plan, 'the scan succeeded');
  t.is(readd.size, 20);

  const reader = await openStore(file, { readonly: true });
  t.teardown(() => reader.close().catch(() => undefined));
  const left = new Map<string, Entry>();
  for await (const chunk of reader.chunks(1000)) for (const e of chunk) left.set(e.key, e);
  const lost = [...readd.keys()].filter((k) => !left.has(k));
  t.deepEqual(lost, [], `${lost.length} of ${readd.size} re-added entries deleted by the scan`);
  for (const [key, e] of readd) t.deepEqual(left.get(key), e);
  t.is(left.size, readd.size, 'every entry left as the scan read it was deleted');
});
