import test from 'ava';
import fc from 'fast-check';
import { type Entry, greyKey } from '../src/grey/entry.js';
import { greyHit, manualAdd, outsideAllowedDomains, ScanAccumulator, spamtrapAddress } from '../src/grey/rules.js';

const MIN = 60_000;
const times = { passTime: 25 * MIN, greyExpiry: 240 * MIN, whiteExpiry: 36 * 24 * 60 * MIN, trapExpiry: 24 * 60 * MIN };
const key = greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<b@us>');

test('a new tuple starts with pass = expire = first + greyexp', (t) => {
  t.deepEqual(greyHit(undefined, key, 0, times),
    { key, first: 0, pass: 240 * MIN, expire: 240 * MIN, bcount: 1, pcount: 0 });
});

test('a retry before the pass time only counts; a retry after it passes the tuple', (t) => {
  const first = greyHit(undefined, key, 0, times);
  const early = greyHit(first, key, 10 * MIN, times);
  t.is(early.bcount, 2);
  t.is(early.pass, first.pass);
  const exact = greyHit(early, key, 25 * MIN, times);
  t.is(exact.pass, first.pass, 'exactly passtime later is not yet enough (strict comparison)');
  const late = greyHit(exact, key, 30 * MIN, times);
  t.is(late.pass, 30 * MIN);
  t.is(late.bcount, 4);
  t.is(late.expire, first.expire, 'expire never moves');
});

test('a trap hit makes a TRAPPED ip entry for trapexp; a WHITE entry hit by a trap keeps its expiry', (t) => {
  t.deepEqual(greyHit(undefined, '192.0.2.7', 0, times, true),
    { key: '192.0.2.7', first: 0, pass: 24 * 60 * MIN, expire: 24 * 60 * MIN, bcount: 1, pcount: -1 });
  const white = { key: '192.0.2.7', first: 0, pass: 0, expire: 99e9, bcount: 3, pcount: 2 };
  t.deepEqual(greyHit(white, '192.0.2.7', 60 * MIN, times, true), { ...white, bcount: 4, pcount: -1, pass: 60 * MIN });
});

test('the spamtrap check compares the recipient without brackets, in lower case', (t) => {
  t.is(spamtrapAddress('<Trap@US.Example>'), 'trap@us.example');
  t.is(spamtrapAddress('<<odd>'), '<odd');
  t.is(spamtrapAddress('plain@x'), 'plain@x');
});

test('allowed domains are suffixes compared without case; none configured allows all', (t) => {
  t.false(outsideAllowedDomains('a@mail.us.example', ['US.example']));
  t.true(outsideAllowedDomains('a@them.example', ['us.example']));
  t.false(outsideAllowedDomains('a@them.example', []));
});

test('pfgrey db -a follows spamdb: new entries, and existing ones of any type', (t) => {
  const day = 24 * 60 * MIN;
  t.deepEqual(manualAdd(undefined, '192.0.2.1', 'WHITE', 1000), { key: '192.0.2.1', first: 1000, pass: 1000, expire: 1000 + 36 * day, bcount: 1, pcount: 0 });
  t.deepEqual(manualAdd(undefined, '192.0.2.1', 'TRAPPED', 1000), { key: '192.0.2.1', first: 1000, pass: 0, expire: 1000 + day, bcount: 1, pcount: -1 });
  t.deepEqual(manualAdd(undefined, 'Trap@X', 'SPAMTRAP', 1000), { key: 'trap@x', first: 1000, pass: 0, expire: 0, bcount: 1, pcount: -2 });
  const trapped = { key: '192.0.2.1', first: 5, pass: 0, expire: 9, bcount: 7, pcount: -1 };
  t.deepEqual(manualAdd(trapped, '192.0.2.1', 'WHITE', 1000), { ...trapped, pass: 1000, expire: 1000 + 36 * day, pcount: 0 });
});

function scan(entries: Entry[], now: number, black: (ip: string) => boolean = () => false) {
  const acc = new ScanAccumulator(now, times.whiteExpiry, black);
  acc.add(entries);
  return acc.finish();
}

test('a tuple seen, retried early, then retried after the pass time is promoted by the next scan to WHITE keyed by ip', (t) => {
  let e = greyHit(undefined, key, 0, times);
  e = greyHit(e, key, 600_000, times);
  e = greyHit(e, key, 1_800_000, times);
  const plan = scan([e], 1_860_000);
  t.deepEqual(plan.whitelist, ['192.0.2.7']);
  t.deepEqual(plan.puts, [{ key: '192.0.2.7', first: 0, pass: 1_800_000, expire: 1_860_000 + times.whiteExpiry, bcount: 3, pcount: 0 }]);
  t.deepEqual(plan.deletes, []);
});

test('expired GREY, WHITE and TRAPPED entries are deleted; SPAMTRAP entries never expire', (t) => {
  const plan = scan([
    { key, first: 0, pass: 10, expire: 10, bcount: 1, pcount: 0 },
    { key: '192.0.2.8', first: 0, pass: 0, expire: 10, bcount: 1, pcount: 0 },
    { key: '192.0.2.9', first: 0, pass: 0, expire: 10, bcount: 1, pcount: -1 },
    { key: 'trap@us.example', first: 0, pass: 0, expire: 0, bcount: 1, pcount: -2 },
  ], 10);
  t.deepEqual(plan.deletes.map((e) => e.key).sort(), [key, '192.0.2.8', '192.0.2.9'].sort());
  t.deepEqual(plan.whitelist, []);
});

test('a trapped ip is neither whitelisted nor promoted, and is listed as a trap', (t) => {
  const plan = scan([
    { key: '192.0.2.7', first: 0, pass: 0, expire: 99e9, bcount: 1, pcount: -1 },
    { key, first: 0, pass: 5, expire: 99e9, bcount: 2, pcount: 0 },
  ], 10);
  t.deepEqual(plan.whitelist, []);
  t.deepEqual(plan.puts, []);
  t.deepEqual(plan.traps, ['192.0.2.7']);
});

test('a blacklisted ip loses its WHITE entry and is not promoted', (t) => {
  const plan = scan([
    { key: '192.0.2.7', first: 0, pass: 0, expire: 99e9, bcount: 1, pcount: 0 },
    { key: greyKey('192.0.2.8', 'h', '<a>', '<b>'), first: 0, pass: 5, expire: 99e9, bcount: 2, pcount: 0 },
  ], 10, () => true);
  t.deepEqual(plan.whitelist, []);
  t.deepEqual(plan.puts, []);
  t.is(plan.deletes.length, 2);
});

test('an ip with a WHITE entry is not promoted again by its other passed tuples', (t) => {
  const plan = scan([
    { key: '192.0.2.7', first: 0, pass: 0, expire: 99e9, bcount: 1, pcount: 0 },
    { key, first: 0, pass: 5, expire: 99e9, bcount: 2, pcount: 0 },
    { key: greyKey('192.0.2.7', 'h', '<c>', '<d>'), first: 0, pass: 5, expire: 99e9, bcount: 2, pcount: 0 },
  ], 10);
  t.deepEqual(plan.whitelist, ['192.0.2.7']);
  t.deepEqual(plan.puts, []);
});

test('scan invariants: every whitelisted ip has a live passed entry, and nothing is both kept and deleted', (t) => {
  const ip = fc.constantFrom('192.0.2.1', '192.0.2.2', '198.51.100.3', 'not-an-ip');
  const entry = fc.record({
    ip, tuple: fc.boolean(), first: fc.nat(1000), passIn: fc.integer({ min: -500, max: 500 }),
    expireIn: fc.integer({ min: -500, max: 500 }), pcount: fc.constantFrom(0, 0, 3, -1, -2),
  });
  fc.assert(fc.property(fc.array(entry, { maxLength: 30 }), (raw) => {
    const now = 1000;
    const byKey = new Map<string, Entry>();
    for (const r of raw) {
      // SPAMTRAP keys are mail addresses, never ips (pfgrey db -T -a insists on an @).
      const k = r.tuple ? greyKey(r.ip, 'h', `<${r.first}>`, '<t>') : r.pcount === -2 ? `trap@${r.ip}` : r.ip;
      byKey.set(k, { key: k, first: r.first, pass: now + r.passIn, expire: now + r.expireIn, bcount: 1, pcount: r.tuple && r.pcount < 0 ? 0 : r.pcount });
    }
    const entries = [...byKey.values()];
    const plan = scan(entries, now);
    const deleted = new Set(plan.deletes.map((e) => e.key));
    for (const w of plan.whitelist) {
      const live = entries.some((e) => e.key.split('\n')[0] === w && !deleted.has(e.key) && e.pcount >= 0 && e.pass <= now && e.expire > now);
      if (!live) return false;
      if (plan.traps.includes(w)) return false;
    }
    for (const p of plan.puts) {
      if (deleted.has(p.key)) return false;
      const had = byKey.get(p.key);
      if (had && had.expire > now) return false;
    }
    for (const e of entries) if (e.pcount === -2 && deleted.has(e.key)) return false;
    return true;
  }), { numRuns: 3000 });
  t.pass();
});
