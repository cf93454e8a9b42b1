// The greylist core, as every door sees it: requests in, verdicts and events out. Each test runs
// against the in-memory store and against SQLite, from this one file, so the rules are shown not
// to depend on the backend.

import test, { type ExecutionContext } from 'ava';
import { greyKey } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import type { CoreEvent, GreyRequest } from '../src/grey/requests.js';
import type { GreyTimes } from '../src/grey/rules.js';
import { memoryLogger } from '../src/log.js';
import { backends } from './helpers/backends.js';

const MIN = 60_000;
const times: GreyTimes = { passTime: 25 * MIN, greyExpiry: 240 * MIN, whiteExpiry: 36 * 24 * 60 * MIN, trapExpiry: 24 * 60 * MIN };

async function core(t: ExecutionContext, backend: string) {
  const store = await backends[backend]!(t);
  let now = Date.UTC(2026, 0, 1);
  const events: CoreEvent[] = [];
  const g = new Greylister({ store, times, log: memoryLogger(), clock: { now: () => now }, whiteExpiry: times.whiteExpiry });
  g.events.on((e) => events.push(e));
  return { g, store, events, advance: (ms: number) => (now += ms), now: () => now };
}

const tuple = (to = '<b@us.example>'): GreyRequest => ({ kind: 'tuple', ip: '192.0.2.1', helo: 'mx.example', from: '<a@example.org>', to });

for (const backend of Object.keys(backends)) {
  test(`${backend}: a new tuple is greylisted for the pass time, and passes when retried after it`, async (t) => {
    const { g, advance } = await core(t, backend);
    const key = greyKey('192.0.2.1', 'mx.example', '<a@example.org>', '<b@us.example>');
    t.deepEqual(await g.handle(tuple()), { kind: 'greylisted', key, left: 25 * MIN });
    advance(10 * MIN);
    t.deepEqual(await g.handle(tuple()), { kind: 'greylisted', key, left: 15 * MIN });
    advance(16 * MIN);
    t.deepEqual(await g.handle(tuple()), { kind: 'passed', key });
  });

  test(`${backend}: requests of one turn are decided in order, each seeing the one before`, async (t) => {
    const { g, store } = await core(t, backend);
    const [first, second] = await Promise.all([g.handle(tuple()), g.handle(tuple())]);
    t.is(first.kind, 'greylisted');
    t.is(second.kind, 'greylisted');
    await store.flush();
    const [entry] = await store.tuplesOf('192.0.2.1');
    t.is(entry?.bcount, 2, 'the second counted as seen again, not as new');
  });

  test(`${backend}: a tuple to a spamtrap traps its sender, with a trap event`, async (t) => {
    const { g, store, events } = await core(t, backend);
    t.like(await g.handle({ kind: 'add', type: 'SPAMTRAP', key: 'trap@us.example' }), { kind: 'written' });
    t.deepEqual(await g.handle(tuple('<Trap@US.example>')), { kind: 'trapped', ip: '192.0.2.1', why: 'trap@us.example is a spamtrap' });
    t.deepEqual(events.filter((e) => e.kind === 'trap'), [{ kind: 'trap', ip: '192.0.2.1' }]);
    t.is((await store.get('192.0.2.1'))?.pcount, -1);
  });

  test(`${backend}: a tuple from a whitelisted address says so`, async (t) => {
    const { g } = await core(t, backend);
    await g.handle({ kind: 'add', type: 'WHITE', key: '192.0.2.1' });
    t.deepEqual(await g.handle(tuple()), { kind: 'whitelisted', ip: '192.0.2.1' });
  });

  test(`${backend}: pfgrey db's requests: add, a refused spamtrap, delete, delete the first tuple, and absent keys`, async (t) => {
    const { g, store } = await core(t, backend);
    t.deepEqual(await g.handle({ kind: 'add', type: 'SPAMTRAP', key: 'not-an-address' }), { kind: 'refused', why: 'not an email address: not-an-address' });
    await g.handle(tuple('<x@us.example>'));
    await g.handle(tuple('<y@us.example>'));
    const [x, y] = (await store.tuplesOf('192.0.2.1')).map((e) => e.key);
    t.deepEqual(await g.handle({ kind: 'delete-tuple', ip: '192.0.2.1' }), { kind: 'deleted', key: x! });
    t.deepEqual(await g.handle({ kind: 'delete-tuple', ip: '192.0.2.1' }), { kind: 'deleted', key: y! });
    t.deepEqual(await g.handle({ kind: 'delete-tuple', ip: '192.0.2.1' }), { kind: 'absent', key: '192.0.2.1' });
    t.deepEqual(await g.handle({ kind: 'delete', key: '198.51.100.1' }), { kind: 'absent', key: '198.51.100.1' });
    await g.handle({ kind: 'add', type: 'TRAPPED', key: '198.51.100.1' });
    t.deepEqual(await g.handle({ kind: 'delete', key: '198.51.100.1' }), { kind: 'deleted', key: '198.51.100.1' });
    await store.flush();
    t.is(await store.get('198.51.100.1'), undefined);
  });

  test(`${backend}: logd's extension keeps a WHITE entry alive for the white expiry; an import restores an entry as it was`, async (t) => {
    const { g, store, now } = await core(t, backend);
    const v = await g.handle({ kind: 'extend', ip: '192.0.2.7' });
    t.like(v, { kind: 'written', entry: { key: '192.0.2.7', expire: now() + times.whiteExpiry, pcount: 0 } });
    const entry = { key: '192.0.2.8', first: 1000, pass: 2000, expire: 3000, bcount: 4, pcount: 5 };
    t.deepEqual(await g.handle({ kind: 'restore', entry }), { kind: 'written', entry });
    await store.flush();
    t.deepEqual(await store.get('192.0.2.8'), entry);
  });
}
