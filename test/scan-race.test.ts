// The scan yields between chunks, so the greylister (and `pfgrey db`) can write while it runs.
// spamd's scan holds a lock instead; these tests prove that what lands mid-scan is not undone.

import test from 'ava';
import path from 'node:path';
import { ManualClock } from '../src/clock.js';
import { type Entry, PCOUNT_TRAPPED, greyKey } from '../src/grey/entry.js';
import type { ScanPlan } from '../src/grey/rules.js';
import { Scanner, type WhitelistChanges } from '../src/grey/scanner.js';
import { silentLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import type { Store, StoreWrite } from '../src/store/types.js';
import { tempDir } from './helpers/daemon.js';

const NOW = 10_000_000;
const HOUR = 3_600_000;

interface Hooks {
  /** Once the walk has read its first chunk. */
  afterFirstChunk?: () => void;
  /** As the scan starts the atomic update that re-reads and writes the addresses it promotes. */
  beforeUpdate?: () => void;
  /**
   * In the turn after the scan's last commit, when it works out the whitelist's changes; with
   * the number of the scan (1 for the first).
   */
  afterLastFlush?: (scan: number) => void;
}

/** The store, with hooks that let a test write at the moments the scan yields. */
function racing(store: Store, hooks: Hooks): Store {
  async function* chunks(size: number): AsyncIterable<Entry[]> {
    let first = true;
    for await (const c of store.chunks(size)) {
      yield c;
      if (first) hooks.afterFirstChunk?.();
      first = false;
    }
  }
  let flushes = 0;
  const overrides: Record<string, unknown> = {
    chunks,
    async update(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[], once?: string) {
      hooks.beforeUpdate?.();
      return store.update(keys, decide, once);
    },
    async flush() {
      await store.flush();
      // The scan commits when it starts and when it ends.
      const n = ++flushes;
      if (n % 2 === 0 && hooks.afterLastFlush) setImmediate(() => hooks.afterLastFlush!(n / 2));
    },
  };
  return new Proxy(store, {
    get(target, prop) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function setup(t: import('ava').ExecutionContext, during: (store: Store, scanner: Scanner, scan?: number) => void,
  when: keyof Hooks = 'afterFirstChunk') {
  const dir = await tempDir(t);
  const store = await openStore(path.join(dir, 's.db'), { create: true });
  t.teardown(() => store.close());
  const plans: ScanPlan[] = [];
  const changes: Array<WhitelistChanges | undefined> = [];
  // eslint-disable-next-line prefer-const
  let scanner: Scanner;
  const s = racing(store, { [when]: (scan?: number) => during(store, scanner, scan) });
  scanner = new Scanner({
    store: s, log: silentLogger, clock: new ManualClock(NOW), interval: 60_000, whiteExpiry: 36 * 24 * HOUR, chunk: 1,
    onResult: (plan, c) => {
      plans.push(plan);
      changes.push(c);
    },
  });
  // A passed tuple of 192.0.2.3, read first (key order); then 192.0.2.9, WHITE already.
  store.put({ key: greyKey('192.0.2.3', 'mx.example', '<a@example.org>', '<b@example.net>'),
    first: NOW - HOUR, pass: NOW - 1000, expire: NOW + 3 * HOUR, bcount: 1, pcount: 1 });
  store.put({ key: '192.0.2.9', first: NOW - HOUR, pass: NOW - HOUR, expire: NOW + HOUR, bcount: 1, pcount: 2 });
  await store.flush();
  return { store, scanner, plans, changes };
}

const trapped = (ip: string): Entry => ({ key: ip, first: NOW, pass: NOW, expire: NOW + 24 * HOUR, bcount: 1, pcount: PCOUNT_TRAPPED });

test('an address trapped while the scan runs keeps its TRAPPED entry, is not whitelisted, and is in that scan\'s trap list', async (t) => {
  const { store, scanner, plans } = await setup(t, (store, scanner) => {
    for (const ip of ['192.0.2.3', '192.0.2.9']) {
      store.put(trapped(ip));
      scanner.noteTrap(ip);
    }
  });
  await scanner.scanOnce();
  t.is((await store.get('192.0.2.3'))?.pcount, PCOUNT_TRAPPED, 'the passed tuple did not overwrite the trap with WHITE');
  t.deepEqual(plans[0]!.whitelist, []);
  t.deepEqual([...plans[0]!.traps].sort(), ['192.0.2.3', '192.0.2.9']);
});

test('a WHITE entry written by hand while the scan runs is kept as written', async (t) => {
  const byHand: Entry = { key: '192.0.2.3', first: NOW, pass: NOW, expire: NOW + 2 * HOUR, bcount: 0, pcount: 0 };
  const { store, scanner, plans } = await setup(t, (store) => store.put(byHand));
  await scanner.scanOnce();
  t.deepEqual(await store.get('192.0.2.3'), byHand);
  t.deepEqual([...plans[0]!.whitelist].sort(), ['192.0.2.3', '192.0.2.9'], 'it is whitelisted all the same');
});

test('with nothing written meanwhile, the passed tuple is promoted to a WHITE entry as spamd does', async (t) => {
  const { store, scanner, plans } = await setup(t, () => {});
  await scanner.scanOnce();
  const white = await store.get('192.0.2.3');
  t.is(white?.expire, NOW + 36 * 24 * HOUR);
  t.is(white?.pcount, 1);
  t.deepEqual([...plans[0]!.whitelist].sort(), ['192.0.2.3', '192.0.2.9']);
  t.deepEqual(plans[0]!.traps, []);
});

test('a trap noted between scans is left to the next scan, which reads it from the store', async (t) => {
  const { store, scanner, plans } = await setup(t, () => {});
  scanner.noteTrap('192.0.2.9');
  store.put(trapped('192.0.2.9'));
  await scanner.scanOnce();
  t.deepEqual(plans[0]!.traps, ['192.0.2.9']);
  t.deepEqual(plans[0]!.whitelist, ['192.0.2.3']);
});

const trapBoth = (store: Store, scanner: Scanner) => {
  for (const ip of ['192.0.2.3', '192.0.2.9']) {
    store.put(trapped(ip));
    scanner.noteTrap(ip);
  }
};

test('a trap set as the scan re-reads the addresses it promotes is not overwritten with WHITE', async (t) => {
  const { store, scanner, plans } = await setup(t, trapBoth, 'beforeUpdate');
  await scanner.scanOnce();
  t.is((await store.get('192.0.2.3'))?.pcount, PCOUNT_TRAPPED);
  t.deepEqual(plans[0]!.whitelist, []);
  t.deepEqual([...plans[0]!.traps].sort(), ['192.0.2.3', '192.0.2.9']);
});

test('a trap set as the scan works out the whitelist\'s changes leaves the whitelist in those changes', async (t) => {
  const { store, scanner, plans, changes } = await setup(t, (s, sc, scan) => {
    if (scan === 2) trapBoth(s, sc);
  }, 'afterLastFlush');
  await scanner.scanOnce();
  t.deepEqual([...plans[0]!.whitelist].sort(), ['192.0.2.3', '192.0.2.9'], 'first scan: both whitelisted');
  await scanner.scanOnce();
  t.deepEqual(plans[1]!.whitelist, []);
  t.deepEqual([...plans[1]!.traps].sort(), ['192.0.2.3', '192.0.2.9']);
  t.deepEqual({ add: changes[1]!.add, del: [...changes[1]!.del].sort() }, { add: [], del: ['192.0.2.3', '192.0.2.9'] });
  t.is((await store.get('192.0.2.9'))?.pcount, PCOUNT_TRAPPED);
});

test('a scan without maintenance only publishes: it writes nothing, and its whitelist still holds the passed tuples\' addresses', async (t) => {
  const { MemoryStore } = await import('../src/store/memory.js');
  const { Scanner } = await import('../src/grey/scanner.js');
  const { memoryLogger } = await import('../src/log.js');
  const store = new MemoryStore();
  const now = 10_000_000;
  const passed = { key: '192.0.2.1\nmx\n<a@b>\n<c@d>', first: 0, pass: now - 1000, expire: now + 60_000, bcount: 2, pcount: 0 };
  const expired = { key: '192.0.2.2', first: 0, pass: 0, expire: now - 1, bcount: 1, pcount: 0 };
  store.put(passed);
  store.put(expired);
  const results: string[][] = [];
  const scanner = new Scanner({
    store, log: memoryLogger(), clock: { now: () => now }, interval: 3_600_000, whiteExpiry: 3_600_000, chunk: 10,
    maintain: false, onResult: (plan) => results.push(plan.whitelist),
  });
  await scanner.scanOnce();
  t.deepEqual(results, [['192.0.2.1']]);
  t.deepEqual((await store.get('192.0.2.2'))?.expire, now - 1, 'the expired entry is left for the maintaining host');
  t.is(await store.get('192.0.2.1'), undefined, 'no WHITE entry written');
});
