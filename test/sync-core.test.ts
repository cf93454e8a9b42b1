// What the greylist core does with records from sync peers (spamd(8), SYNCHRONISATION): spamd's
// receive rules for WHITE and TRAPPED addresses, as properties of the pure rule and through the
// core; GREY tuples decided as local ones, without the low-priority MX rule; and every event a
// record causes marked as the peer's, so the sync sender never sends it on.

import test from 'ava';
import fc from 'fast-check';
import { ManualClock } from '../src/clock.js';
import { greyKey, PCOUNT_SPAMTRAP, PCOUNT_TRAPPED } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import type { CoreEvent, SyncRecord } from '../src/grey/requests.js';
import { syncAddress } from '../src/grey/rules.js';
import { memoryLogger } from '../src/log.js';
import { MemoryStore } from '../src/store/memory.js';
import type { Entry } from '../src/store/types.js';

const NOW = 1_600_000_000_000;
const times = { passTime: 1000, greyExpiry: 10_000, whiteExpiry: 100_000, trapExpiry: 50_000 };

const entryArb: fc.Arbitrary<Entry> = fc.record({
  key: fc.constant('192.0.2.1'),
  first: fc.integer({ min: 0, max: NOW }),
  pass: fc.integer({ min: 0, max: NOW * 2 }),
  expire: fc.integer({ min: 0, max: NOW * 2 }),
  bcount: fc.nat({ max: 1000 }),
  pcount: fc.integer({ min: -2, max: 1000 }),
});

test('syncAddress: an expired record changes nothing; a spamtrap entry is never changed', (t) => {
  fc.assert(fc.property(fc.option(entryArb, { nil: undefined }), fc.constantFrom('WHITE' as const, 'TRAPPED' as const),
    fc.integer({ min: 0, max: NOW - 1 }), (old, type, expire) => syncAddress(old, '192.0.2.1', type, expire, NOW) === undefined));
  fc.assert(fc.property(entryArb, fc.constantFrom('WHITE' as const, 'TRAPPED' as const), fc.integer({ min: NOW, max: NOW * 2 }),
    (old, type, expire) => syncAddress({ ...old, pcount: PCOUNT_SPAMTRAP }, '192.0.2.1', type, expire, NOW) === undefined));
  t.pass();
});

test('syncAddress: TRAPPED always traps, WHITE never does; no count falls, no expiry comes closer, first stays', (t) => {
  fc.assert(fc.property(fc.option(entryArb.filter((e) => e.pcount !== PCOUNT_SPAMTRAP), { nil: undefined }),
    fc.constantFrom('WHITE' as const, 'TRAPPED' as const), fc.integer({ min: NOW, max: NOW * 2 }), (old, type, expire) => {
      const e = syncAddress(old, '192.0.2.1', type, expire, NOW)!;
      if (e.key !== '192.0.2.1') return false;
      if (type === 'TRAPPED' ? e.pcount !== PCOUNT_TRAPPED : e.pcount < 0) return false;
      if (!old) return e.first === NOW && e.pass === 0 && e.bcount === 0 && e.expire === expire;
      return e.first === old.first && e.bcount >= old.bcount && e.expire >= old.expire && e.pass === old.pass;
    }));
  t.pass();
});

test('syncAddress follows spamd: a known WHITE counts a pass, a TRAPPED one turns WHITE, a trap keeps the expiry', (t) => {
  const white = { key: '192.0.2.1', first: 1, pass: 2, expire: NOW + 10, bcount: 3, pcount: 4 };
  t.deepEqual(syncAddress(white, '192.0.2.1', 'WHITE', NOW + 5, NOW), { ...white, pcount: 5 });
  t.deepEqual(syncAddress(white, '192.0.2.1', 'WHITE', NOW + 50, NOW), { ...white, pcount: 5, expire: NOW + 50 });
  t.deepEqual(syncAddress(white, '192.0.2.1', 'TRAPPED', NOW + 50, NOW), { ...white, pcount: PCOUNT_TRAPPED, bcount: 4 });
  t.deepEqual(syncAddress({ ...white, pcount: PCOUNT_TRAPPED }, '192.0.2.1', 'WHITE', NOW + 5, NOW), { ...white, pcount: 0 });
  t.deepEqual(syncAddress(undefined, '192.0.2.1', 'TRAPPED', NOW, NOW),
    { key: '192.0.2.1', first: NOW, pass: 0, expire: NOW, bcount: 0, pcount: PCOUNT_TRAPPED });
});

function setup(opts: { lowPriorityMx?: string } = {}) {
  const store = new MemoryStore();
  const clock = new ManualClock(NOW);
  const log = memoryLogger();
  const g = new Greylister({ store, times, log, clock, mxGrace: 0, ...opts });
  const events: CoreEvent[] = [];
  g.events.on((e) => events.push(e));
  const sync = (record: SyncRecord) => g.handle({ kind: 'sync', peer: '192.0.2.200', record });
  return { store, clock, g, events, log, sync };
}

const grey = { type: 'GREY' as const, time: NOW, ip: '198.51.100.7', helo: 'mx.example', from: '<a@example>', to: '<b@us.example>' };
const key = greyKey(grey.ip, grey.helo, grey.from, grey.to);

test('a GREY record is a tuple: new, then counted; a later local retry after the pass time passes', async (t) => {
  const { store, clock, g, sync, events } = setup();
  t.like(await sync(grey), { kind: 'greylisted', key });
  t.like(await store.get(key), { first: NOW, bcount: 1, pcount: 0, expire: NOW + times.greyExpiry });
  clock.advance(times.passTime + 1);
  t.like(await g.tuple({ ip: grey.ip, helo: grey.helo, from: grey.from, to: grey.to }), { kind: 'passed', key });
  t.deepEqual(events.map((e) => [e.kind, 'origin' in e ? e.origin : undefined]), [['grey', 'sync'], ['grey', undefined]]);
});

test('a GREY record to a spamtrap traps its sender here, as the peer\'s, not ours; -M never applies to it', async (t) => {
  const { store, sync, events } = setup({ lowPriorityMx: '192.0.2.25' });
  store.put({ key: 'trap@us.example', first: 0, pass: 0, expire: 0, bcount: 1, pcount: PCOUNT_SPAMTRAP });
  t.like(await sync({ ...grey, to: '<trap@us.example>' }), { kind: 'trapped', ip: grey.ip });
  t.like(await store.get(grey.ip), { pcount: PCOUNT_TRAPPED });
  t.like(await sync({ ...grey, ip: '198.51.100.8' }), { kind: 'greylisted' });
  t.deepEqual(events.map((e) => `${e.kind} ${'origin' in e ? e.origin : ''}`), ['trap sync', 'grey sync']);
});

test('a GREY record whose strings hold a control character is refused and writes nothing', async (t) => {
  const { store, sync, events } = setup();
  t.like(await sync({ ...grey, helo: 'evil\nhelo' }), { kind: 'refused' });
  t.like(await sync({ ...grey, from: '<a\x1b[31m@x>' }), { kind: 'refused' });
  let n = 0;
  for await (const chunk of store.chunks(100)) n += chunk.length;
  t.is(n, 0);
  t.deepEqual(events, []);
});

test('WHITE and TRAPPED records write the address, say so at debug, and are marked as the peer\'s', async (t) => {
  const { store, sync, events, log } = setup();
  t.like(await sync({ type: 'WHITE', time: NOW, expire: NOW + 5000, ip: '192.0.2.1' }), { kind: 'written' });
  t.like(await sync({ type: 'TRAPPED', time: NOW, expire: NOW + 5000, ip: '192.0.2.2' }), { kind: 'written' });
  t.like(await sync({ type: 'WHITE', time: NOW, expire: NOW - 1, ip: '192.0.2.3' }), { kind: 'refused' });
  t.like(await store.get('192.0.2.1'), { pcount: 0, pass: 0, bcount: 0, expire: NOW + 5000 });
  t.like(await store.get('192.0.2.2'), { pcount: PCOUNT_TRAPPED });
  t.is(await store.get('192.0.2.3'), undefined);
  t.deepEqual(events, [{ kind: 'white', ip: '192.0.2.1', origin: 'sync' }, { kind: 'trap', ip: '192.0.2.2', origin: 'sync' }]);
  t.true(log.lines.includes(`debug: new WHITE from 192.0.2.200 for 192.0.2.1, expires ${(NOW + 5000) / 1000}`));
  t.true(log.lines.includes(`debug: new TRAP from 192.0.2.200 for 192.0.2.2, expires ${(NOW + 5000) / 1000}`));
});
