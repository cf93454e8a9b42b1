// The greylist core's policy requests: postgrey's rules (delay, retry window, max age, the
// client auto-whitelist) decided by the one core, on the same store as the tarpit's tuples.

import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { ManualClock } from '../src/clock.js';
import { awlKey, policyKey } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import type { PolicyRequest } from '../src/grey/requests.js';
import { policyHit, type PolicyTimes, ScanAccumulator } from '../src/grey/rules.js';
import { entryToJson, formatEntry, parseLine } from '../src/grey/spamdb-format.js';
import { memoryLogger } from '../src/log.js';
import { MemoryStore } from '../src/store/memory.js';
import type { Store } from '../src/store/types.js';
import { backends } from './helpers/backends.js';

const S = 1000;
const H = 3600 * S;
const D = 24 * H;
const policy: PolicyTimes = { delay: 300 * S, maxAge: 35 * D, retryWindow: 2 * D, awlClients: 3, awlEvery: H };
const times = { passTime: 25 * 60 * S, greyExpiry: 4 * H, whiteExpiry: 36 * D, trapExpiry: D };
const T0 = 1_800_000_000_000;

function req(over: Partial<PolicyRequest> = {}): PolicyRequest {
  return { kind: 'policy', ip: '192.0.2.7', triplet: '192.0.2.0/a@x.example/b@us.example', client: '192.0.2.7', rcpt: 'b@us.example', privacy: false, ...over };
}

async function core(t: ExecutionContext, store: Store) {
  const clock = new ManualClock(T0);
  const log = memoryLogger();
  const g = new Greylister({ store, times, policy, log, clock, atomic: true });
  const events: string[] = [];
  g.events.on((e) => events.push(`${e.kind} ${'ip' in e ? e.ip : ''}`));
  t.teardown(() => g.stop());
  return { g, clock, events, log };
}

for (const [name, open] of Object.entries(backends)) {
  test(`${name}: a new triplet is deferred for the delay, its retry after it passes once with how long it waited`, async (t) => {
    const store = await open(t);
    const { g, clock } = await core(t, store);
    t.like(await g.handle(req()), { kind: 'greylisted', left: 300 * S, fresh: true });
    clock.advance(100 * S);
    t.like(await g.handle(req()), { kind: 'greylisted', left: 200 * S, fresh: false });
    clock.advance(201 * S);
    t.deepEqual(await g.handle(req()), { kind: 'passed', key: policyKey(req().triplet), waited: 301 * S });
    clock.advance(S);
    t.deepEqual(await g.handle(req()), { kind: 'passed', key: policyKey(req().triplet) });
    const e = await store.get(policyKey(req().triplet));
    t.like(e, { first: T0, pass: T0 + 302 * S, expire: T0 + 302 * S + policy.maxAge, bcount: 4, pcount: 2 });
  });

  test(`${name}: a client whose triplets pass on ${policy.awlClients} separate hours becomes WHITE, with a white event`, async (t) => {
    const store = await open(t);
    const { g, clock, events } = await core(t, store);
    for (let n = 0; n < policy.awlClients; n++) {
      const r = req({ triplet: `192.0.2.0/a${n}@x.example/b@us.example` });
      await g.handle(r);
      clock.advance(301 * S);
      t.like(await g.handle(r), { kind: 'passed' });
      // Two passes in one hour count once.
      const again = req({ triplet: `192.0.2.0/c${n}@x.example/b@us.example` });
      await g.handle(again);
      clock.advance(301 * S);
      await g.handle(again);
      clock.advance(H);
    }
    t.like(await store.get('192.0.2.7'), { bcount: policy.awlClients, pcount: 0 });
    t.is(await store.get(awlKey('192.0.2.7')), undefined);
    t.true(events.includes('white 192.0.2.7'));
    t.like(await g.handle(req({ triplet: 'new/one' })), { kind: 'whitelisted', ip: '192.0.2.7' });
  });

  test(`${name}: with --privacy the count stays a hashed AWL entry and no address is written`, async (t) => {
    const store = await open(t);
    const { g, clock } = await core(t, store);
    for (let n = 0; n < policy.awlClients; n++) {
      const r = req({ triplet: `h${n}`, client: 'hash-of-ip', privacy: true });
      await g.handle(r);
      clock.advance(301 * S);
      await g.handle(r);
      clock.advance(H);
    }
    t.is(await store.get('192.0.2.7'), undefined);
    t.like(await store.get(awlKey('hash-of-ip')), { bcount: policy.awlClients });
    t.like(await g.handle(req({ triplet: 'h-new', client: 'hash-of-ip', privacy: true })), { kind: 'whitelisted', by: 'awl' });
  });

  test(`${name}: a host the tarpit made WHITE passes at once; a TRAPPED one is deferred for its trap`, async (t) => {
    const store = await open(t);
    const { g } = await core(t, store);
    await store.update(['192.0.2.7', '192.0.2.8'], () => [
      { put: { key: '192.0.2.7', first: T0 - D, pass: T0 - D, expire: T0 + D, bcount: 1, pcount: 0 } },
      { put: { key: '192.0.2.8', first: 0, pass: 0, expire: T0 + 60 * S, bcount: 0, pcount: -1 } },
    ]);
    t.like(await g.handle(req()), { kind: 'whitelisted', ip: '192.0.2.7' });
    // Its expiry moves to max-age from now (it was seen), as logd renews a WHITE host.
    t.is((await store.get('192.0.2.7'))?.expire, T0 + policy.maxAge);
    t.like(await g.handle(req({ ip: '192.0.2.8', client: '192.0.2.8' })), { kind: 'trapped', left: 60 * S });
    t.is(await store.get(policyKey(req().triplet)), undefined);
  });

  test(`${name}: a spamtrap recipient traps the client, except under --privacy where nothing names it`, async (t) => {
    const store = await open(t);
    const { g, events } = await core(t, store);
    await store.update(['trap@us.example'], () => [{ put: { key: 'trap@us.example', first: 0, pass: 0, expire: 0, bcount: 0, pcount: -2 } }]);
    t.like(await g.handle(req({ rcpt: 'Trap@US.example', privacy: true, ip: '192.0.2.9' })), { kind: 'trapped' });
    t.is(await store.get('192.0.2.9'), undefined);
    t.like(await g.handle(req({ rcpt: 'Trap@US.example' })), { kind: 'trapped' });
    t.like(await store.get('192.0.2.7'), { pcount: -1, expire: T0 + times.trapExpiry });
    t.deepEqual(events, ['trap 192.0.2.7']);
  });
}

test('a triplet not retried within the retry window starts again as new', async (t) => {
  const { g, clock } = await core(t, new MemoryStore());
  await g.handle(req());
  clock.advance(policy.retryWindow + S);
  t.like(await g.handle(req()), { kind: 'greylisted', left: policy.delay, fresh: true });
});

test('policyHit: a first attempt in the future is taken as now', (t) => {
  const hit = policyHit({ key: 'k', first: T0 + D, pass: T0 + D, expire: T0 + 2 * D, bcount: 1, pcount: 0 }, 'k', T0, policy);
  t.is(hit.entry.first, T0);
  t.is(hit.left, policy.delay);
});

test('policyHit: a triplet passes exactly when the delay has gone by since its first attempt, and never un-passes', (t) => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 3 * D }), { minLength: 1, maxLength: 20 }), (gaps) => {
    let e: ReturnType<typeof policyHit>['entry'] | undefined;
    let now = T0;
    let passed = false;
    for (const gap of gaps) {
      now += gap;
      const hit = policyHit(e, 'k', now, policy);
      if (passed && hit.left > 0) return false; // once passed, always passed
      if (hit.left <= 0) passed = true;
      if (hit.left !== policy.delay - (now - hit.entry.first)) return false;
      if (hit.entry.expire <= now) return false;
      e = hit.entry;
    }
    return true;
  }));
  t.pass();
});

test('the scan expires POLICY and AWL entries and never makes their keys WHITE', (t) => {
  const scan = new ScanAccumulator(T0, 36 * D);
  scan.add([
    { key: policyKey('192.0.2.0/a@x/b@y'), first: T0 - D, pass: T0 - D, expire: T0 + D, bcount: 2, pcount: 1 },
    { key: policyKey('old'), first: T0 - 40 * D, pass: T0 - 36 * D, expire: T0 - D, bcount: 2, pcount: 1 },
    { key: awlKey('192.0.2.7'), first: T0 - D, pass: T0 - D, expire: T0 + D, bcount: 2, pcount: 0 },
  ]);
  const plan = scan.finish();
  t.deepEqual(plan.whitelist, []);
  t.deepEqual(plan.deletes.map((e) => e.key), [policyKey('old')]);
  t.deepEqual(plan.puts, []);
});

test('POLICY and AWL entries list in lines of their own and import back to the same entries', (t) => {
  const policyEntry = { key: policyKey('192.0.2.0/a|b@x.example/c@us.example'), first: 1000_000, pass: 1300_000, expire: 5000_000, bcount: 3, pcount: 1 };
  const awl = { key: awlKey('2001:db8::7'), first: 1000_000, pass: 2000_000, expire: 9000_000, bcount: 4, pcount: 0 };
  t.is(formatEntry(policyEntry), 'POLICY|192.0.2.0/a\\x7cb@x.example/c@us.example|1000|1300|5000|3|1');
  t.is(formatEntry(awl), 'AWL|2001:db8::7|1000|2000|9000|4');
  t.deepEqual(parseLine(formatEntry(policyEntry), 1), policyEntry);
  t.deepEqual(parseLine(formatEntry(awl), 1), awl);
  // A raw '|' (a hand-written line) is part of the triplet.
  t.deepEqual(parseLine('POLICY|192.0.2.0/a|b@x.example/c@us.example|1000|1300|5000|3|1', 1), policyEntry);
  t.deepEqual(entryToJson(awl), { type: 'AWL', client: '2001:db8::7', first: 1000, last: 2000, expire: 9000, count: 4 });
  t.like(entryToJson(policyEntry), { type: 'POLICY', last: 1300, requests: 3, passes: 1 });
  t.throws(() => parseLine('POLICY|x|1|2|3|4|-1', 7), { message: /line 7: pcount -1 makes this a TRAPPED entry, not POLICY/ });
  t.throws(() => parseLine('AWL|x|1|2|3', 8), { message: /line 8: AWL needs 6 fields, found 5/ });
});
