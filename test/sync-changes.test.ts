// The whitelist reaches the firewall as changes: what the scanner reports between two scans,
// and what the sync keeps until the table has seen it. These tests prove the changes add up to
// the list, whatever order updates, changes, failures and pushes come in, and that a small
// change costs the same on a large table as on a small one.

import test from 'ava';
import fc from 'fast-check';
import path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { ManualClock } from '../src/clock.js';
import { PfgreyError } from '../src/errors.js';
import { WhitelistSync } from '../src/firewall/sync.js';
import type { Firewall } from '../src/firewall/types.js';
import { greyKey } from '../src/grey/entry.js';
import { Scanner, whitelistChanges, type WhitelistChanges } from '../src/grey/scanner.js';
import { memoryLogger, silentLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import { tempDir } from './helpers/daemon.js';

type FailMode = 'none' | 'before' | 'half';

/** A firewall table in memory that counts what it is sent and can fail, before or half-way. */
class MemoryFirewall implements Firewall {
  readonly name = 'none' as const;
  readonly table = new Set<string>();
  fail: FailMode = 'none';
  /** Addresses sent per call, by kind. */
  readonly calls: Array<{ op: 'replace' | 'add' | 'delete'; n: number }> = [];

  private async apply(op: 'replace' | 'add' | 'delete', addrs: readonly string[]): Promise<void> {
    this.calls.push({ op, n: addrs.length });
    // A push takes a turn of the event loop, so changes can arrive while it runs.
    await tick();
    const upto = this.fail === 'half' ? Math.floor(addrs.length / 2) : this.fail === 'before' ? 0 : addrs.length;
    if (op === 'replace') this.table.clear();
    for (const a of addrs.slice(0, upto)) {
      if (op === 'delete') this.table.delete(a);
      else this.table.add(a);
    }
    if (this.fail !== 'none') throw new PfgreyError('E_FIREWALL', `${op}: exited with status 1`);
  }

  replace(_t: string, addrs: readonly string[]) { return this.apply('replace', addrs); }
  add(_t: string, addrs: readonly string[]) { return this.apply('add', addrs); }
  delete(_t: string, addrs: readonly string[]) { return this.apply('delete', addrs); }
  async show() { return [...this.table]; }
}

const pool = Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? `2001:db8::${i}` : `192.0.2.${i}`));
const subset = fc.subarray(pool);
const op = fc.oneof(
  fc.record({ kind: fc.constant('update' as const), list: subset }),
  fc.record({ kind: fc.constant('change' as const), add: subset, del: subset }),
  fc.record({ kind: fc.constant('fail' as const), mode: fc.constantFrom<FailMode>('none', 'none', 'before', 'half') }),
  fc.record({ kind: fc.constant('tick' as const) }),
  fc.record({ kind: fc.constant('flush' as const) }),
  fc.record({ kind: fc.constant('advance' as const) }),
);

async function settle(sync: WhitelistSync): Promise<void> {
  // A push that started while the firewall failed ends in failure; the next flush retries it.
  for (let i = 0; i < 4 && !sync.inSync; i++) await sync.flush();
}

test('whatever mix of whole lists, changes, failed and half-done pushes, the table ends as the list', async (t) => {
  await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
    const fw = new MemoryFirewall();
    const clock = new ManualClock(1_000_000);
    const sync = new WhitelistSync({
      firewall: fw, table: 'spamd-white', log: silentLogger, clock, refresh: 60_000,
      retryMin: 600_000, retryMax: 600_000, diffMax: 8, diffRatio: 1,
    });
    const model = new Set<string>();
    try {
      for (const o of ops) {
        if (o.kind === 'update') {
          model.clear();
          for (const a of o.list) model.add(a);
          sync.update(o.list);
        } else if (o.kind === 'change') {
          for (const a of o.del) model.delete(a);
          for (const a of o.add) model.add(a);
          sync.change(o.add, o.del);
        } else if (o.kind === 'fail') {
          fw.fail = o.mode;
        } else if (o.kind === 'tick') {
          await tick();
        } else if (o.kind === 'advance') {
          clock.advance(60_000);
        } else {
          await sync.flush();
          // In sync means in sync: a diff that went wrong must not hide until the next replace.
          if (sync.inSync) t.deepEqual([...fw.table].sort(), [...model].sort());
        }
        for (const c of fw.calls) if (c.op !== 'replace') t.true(c.n <= 8, 'a diff never carries more than diffMax');
      }
      fw.fail = 'none';
      await settle(sync);
      if (!ops.some((o) => o.kind === 'update' || o.kind === 'change')) {
        t.deepEqual(fw.calls, [], 'no list given, nothing pushed');
        return;
      }
      t.true(sync.inSync);
      t.deepEqual([...fw.table].sort(), [...model].sort());
      t.is(sync.pushedCount, model.size);
    } finally {
      sync.stop();
    }
  }), { numRuns: 300 });
});

test('a 10-address change sends those 10 addresses to the firewall, on a table of 100 or of 100,000', async (t) => {
  for (const size of [100, 100_000]) {
    const fw = new MemoryFirewall();
    const sync = new WhitelistSync({ firewall: fw, table: 'spamd-white', log: silentLogger, diffMax: 1000 });
    const list = Array.from({ length: size }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    sync.update(list);
    await sync.flush();
    sync.change(['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4', '198.51.100.5'], list.slice(0, 5));
    await sync.flush();
    t.deepEqual(fw.calls.slice(1), [{ op: 'delete', n: 5 }, { op: 'add', n: 5 }], `table of ${size}`);
    t.is(sync.pushedCount, size);
    t.is(fw.table.size, size);
    sync.stop();
  }
});

test('a change undone before the push sends nothing, and a change during a push follows it as a diff', async (t) => {
  const fw = new MemoryFirewall();
  const sync = new WhitelistSync({ firewall: fw, table: 'spamd-white', log: silentLogger, diffMax: 100, diffRatio: 1 });
  t.teardown(() => sync.stop());
  sync.update(pool);
  // During the first replace: one address comes and goes, another leaves.
  sync.change(['198.51.100.9'], []);
  sync.change([], ['198.51.100.9', pool[0]!]);
  await sync.flush();
  t.deepEqual(fw.calls, [{ op: 'replace', n: pool.length }, { op: 'delete', n: 1 }]);
  t.false(fw.table.has(pool[0]!));
  t.true(sync.inSync);
  t.is(sync.pushedCount, pool.length - 1);
});

test('change names invalid additions in one warning, and removing an address not in the list is nothing', async (t) => {
  const fw = new MemoryFirewall();
  const log = memoryLogger();
  const sync = new WhitelistSync({ firewall: fw, table: 'spamd-white', log });
  t.teardown(() => sync.stop());
  sync.change(['192.0.2.1', 'fe80::1%eth0', 'not an address'], ['192.0.2.200']);
  await sync.flush();
  t.deepEqual([...fw.table], ['192.0.2.1']);
  t.true(log.lines.includes('warning: firewall: leaving 2 invalid addresses out of <spamd-white>: "fe80::1%eth0", "not an address"'));
});

test('the changes between two whitelists turn the first into the second', async (t) => {
  await fc.assert(fc.asyncProperty(subset, subset, fc.integer({ min: 1, max: 5 }), async (a, b, chunk) => {
    const prev = new Set(a);
    const next = new Set(b);
    const { add, del } = await whitelistChanges(prev, next, chunk);
    const applied = new Set(prev);
    for (const x of del) t.true(applied.delete(x), 'only what was there is removed');
    for (const x of add) {
      t.false(applied.has(x), 'only what was missing is added');
      applied.add(x);
    }
    t.deepEqual([...applied].sort(), [...next].sort());
  }));
});

test('the scanner reports the whole whitelist first, then only what changed between scans', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(path.join(dir, 's.db'), { create: true });
  t.teardown(() => store.close());
  const clock = new ManualClock(10_000_000);
  const results: Array<WhitelistChanges | undefined> = [];
  const scanner = new Scanner({
    store, log: silentLogger, clock, interval: 60_000, whiteExpiry: 3_600_000, chunk: 2,
    onResult: (_plan, changes) => results.push(changes),
  });
  const white = (ip: string, expire: number) => store.put({ key: ip, first: 0, pass: 0, expire, bcount: 1, pcount: 1 });
  white('192.0.2.1', 20_000_000);
  white('192.0.2.2', 10_500_000);
  await scanner.scanOnce();
  t.deepEqual(results, [undefined], 'first scan: no earlier whitelist to compare with');

  // 192.0.2.2 expires; a passed tuple for 192.0.2.3 is promoted.
  clock.advance(600_000);
  store.put({ key: greyKey('192.0.2.3', 'mx.example', '<a@example.org>', '<b@example.net>'),
    first: 0, pass: 10_000_000, expire: 20_000_000, bcount: 2, pcount: 0 });
  await scanner.scanOnce();
  t.deepEqual(results[1], { add: ['192.0.2.3'], del: ['192.0.2.2'] });

  await scanner.scanOnce();
  t.deepEqual(results[2], { add: [], del: [] }, 'nothing changed: an empty change, which still lets the sync re-assert');
});
