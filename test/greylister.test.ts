import test from 'ava';
import path from 'node:path';
import { ManualClock } from '../src/clock.js';
import { greyKey } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import { memoryLogger } from '../src/log.js';
import { PfgreyError } from '../src/errors.js';
import { openStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/types.js';
import { tempDir } from './helpers/daemon.js';
import { eventually } from './helpers/smtp.js';

const times = { passTime: 1000, greyExpiry: 10_000, whiteExpiry: 100_000, trapExpiry: 50_000 };

async function setup(t: Parameters<typeof tempDir>[0]) {
  const store = await openStore(path.join(await tempDir(t), 'g.db'), { create: true });
  t.teardown(() => store.close());
  const clock = new ManualClock(1_000_000);
  const traps: string[] = [];
  const g = new Greylister({ store, times, log: memoryLogger(), clock });
  g.events.on((e) => {
    if (e.kind === 'trap') traps.push(e.ip);
  });
  return { store, clock, g, traps };
}

const tuple = { ip: '192.0.2.7', helo: 'h', from: '<a@x>', to: '<b@us.example>' };

test('hits of one tuple in the same batch count in order: one new entry, then a hit', async (t) => {
  const { store, g } = await setup(t);
  await Promise.all([g.tuple(tuple), g.tuple(tuple), g.tuple(tuple)]);
  const e = await store.get(greyKey(tuple.ip, tuple.helo, tuple.from, tuple.to));
  t.is(e?.bcount, 3);
  t.is(e?.first, 1_000_000);
});

test('a spamtrap recipient traps the ip, even in the batch that made it a trap', async (t) => {
  const { store, g, traps } = await setup(t);
  store.put({ key: 'b@us.example', first: 0, pass: 0, expire: 0, bcount: 1, pcount: -2 });
  await g.tuple({ ...tuple, to: '<B@US.example>' });
  t.is((await store.get('192.0.2.7'))?.pcount, -1);
  t.deepEqual(traps, ['192.0.2.7']);
});

test('a retry after the pass time passes the tuple, whichever batch it lands in', async (t) => {
  const { store, g, clock } = await setup(t);
  await g.tuple(tuple);
  clock.advance(1001);
  await g.tuple(tuple);
  await g.settle();
  const e = await store.get(greyKey(tuple.ip, tuple.helo, tuple.from, tuple.to));
  t.is(e?.pass, 1_001_001);
  t.is(e?.expire, 1_010_000);
});

/** The store, with getMany failing the next `n` times as a locked or failing database would. */
function flaky(store: Store, n: { left: number }): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'getMany') {
        return async (keys: readonly string[]) => {
          if (n.left > 0) {
            n.left -= 1;
            throw new PfgreyError('E_DB_OPEN', 'database is locked');
          }
          return target.getMany(keys);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

test('tuples whose batch the store refuses are retried until it takes them, not dropped', async (t) => {
  const store = await openStore(path.join(await tempDir(t), 'g.db'), { create: true });
  t.teardown(() => store.close());
  const log = memoryLogger();
  const failing = { left: 3 };
  const g = new Greylister({ store: flaky(store, failing), times, log, clock: new ManualClock(1_000_000) });
  await Promise.all([g.tuple(tuple), g.tuple({ ...tuple, to: '<c@us.example>' })]);
  t.is(failing.left, 0);
  t.truthy(await store.get(greyKey(tuple.ip, tuple.helo, tuple.from, tuple.to)));
  t.truthy(await store.get(greyKey(tuple.ip, tuple.helo, tuple.from, '<c@us.example>')));
  t.deepEqual(log.lines.filter((l) => /greylist update/.test(l)), [
    'error: greylist update of 2 tuples failed, retrying: database is locked',
    'notice: greylist updates resumed after 3 failed attempts',
  ]);
});

test('stopping while the store refuses every batch ends, and says how many tuples were lost', async (t) => {
  const store = await openStore(path.join(await tempDir(t), 'g.db'), { create: true });
  t.teardown(() => store.close());
  const log = memoryLogger();
  const g = new Greylister({ store: flaky(store, { left: Infinity }), times, log, clock: new ManualClock(1_000_000) });
  const pending = g.tuple(tuple);
  await eventually(() => log.lines.some((l) => /failed, retrying/.test(l)), 'the first failure');
  t.deepEqual(await g.stop(), { tuples: 1, reason: 'database is locked' });
  await pending;
  t.false(log.lines.some((l) => /lost/.test(l)), 'the stop\'s caller says it, in its one line');
});

test('stopping keeps retrying a refusing store until the stop gives up, and loses nothing if it recovers first', async (t) => {
  const store = await openStore(path.join(await tempDir(t), 'g.db'), { create: true });
  t.teardown(() => store.close());
  const log = memoryLogger();
  const failing = { left: Infinity };
  const g = new Greylister({ store: flaky(store, failing), times, log, clock: new ManualClock(1_000_000) });
  const pending = g.tuple(tuple);
  await eventually(() => log.lines.some((l) => /failed, retrying/.test(l)), 'the first failure');
  const giveUp = new AbortController();
  const stopped = g.stop(giveUp.signal);
  failing.left = 2;
  t.is(await stopped, undefined);
  await pending;
  t.truthy(await store.get(greyKey(tuple.ip, tuple.helo, tuple.from, tuple.to)));

  const again = new Greylister({ store: flaky(store, { left: Infinity }), times, log, clock: new ManualClock(1_000_000) });
  const lost = again.tuple({ ...tuple, to: '<c@us.example>' });
  const giveUpLater = new AbortController();
  const stopping = again.stop(giveUpLater.signal);
  await eventually(() => log.lines.filter((l) => /failed, retrying/.test(l)).length === 2, 'the second greylister retrying');
  giveUpLater.abort();
  t.deepEqual(await stopping, { tuples: 1, reason: 'database is locked' });
  await lost;
});

test('a store that keeps refusing for longer than greyRetryFor costs that batch, said in one line, and the queue moves on', async (t) => {
  const store = await openStore(path.join(await tempDir(t), 'g.db'), { create: true });
  t.teardown(() => store.close());
  const log = memoryLogger();
  const clock = new ManualClock(1_000_000);
  const failing = { left: Infinity };
  const g = new Greylister({ store: flaky(store, failing), times, log, clock });
  const first = g.tuple(tuple);
  await eventually(() => log.lines.some((l) => /failed, retrying/.test(l)), 'the first failure');
  clock.advance(61_000);
  await first;
  t.true(log.lines.some((l) => l === 'error: greylist update of 1 tuple failed for 61s; lost: database is locked'), log.lines.join('\n'));
  // The store recovers: the next tuple is recorded as usual.
  failing.left = 0;
  await g.tuple({ ...tuple, to: '<d@us.example>' });
  t.truthy(await store.get(greyKey(tuple.ip, tuple.helo, tuple.from, '<d@us.example>')));
});
