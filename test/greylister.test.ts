import test from 'ava';
import path from 'node:path';
import { ManualClock } from '../src/clock.js';
import { greyKey } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import { memoryLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import { tempDir } from './helpers/daemon.js';

const times = { passTime: 1000, greyExpiry: 10_000, whiteExpiry: 100_000, trapExpiry: 50_000 };

async function setup(t: Parameters<typeof tempDir>[0]) {
  const store = await openStore(path.join(await tempDir(t), 'g.db'), { create: true });
  t.teardown(() => store.close());
  const clock = new ManualClock(1_000_000);
  const traps: string[] = [];
  const g = new Greylister({ store, times, log: memoryLogger(), clock, onTrap: (ip) => traps.push(ip) });
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
