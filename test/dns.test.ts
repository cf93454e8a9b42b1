// The DNS layer of weighted greylisting (src/weighted/dns.ts): first its cache, sharing, queue
// and budget against a fake resolver and a hand-moved clock; then the real thing, node:dns's
// Resolver against Debian's NSD serving zones written here, and against a resolver that never
// answers.

import test from 'ava';
import { ManualClock } from '../src/clock.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { isPfgreyError } from '../src/errors.js';
import { DnsClient, type DnsOptions, type DnsResult, type DnsType, normalizeName, parseResolver, reverseName } from '../src/weighted/dns.js';
import { BUDGET_SLACK, DEAD_LOOKUP_TIMEOUT, deadClient, deadResolver, nsdClient, nsdFor } from './helpers/nsd.js';

const S = 1000;
const T0 = 1_800_000_000_000;

/** A resolver whose queries the test answers by hand. */
class FakeDns {
  readonly asked: { type: DnsType; name: string; answer: (r: DnsResult) => void }[] = [];
  readonly query = (type: DnsType, name: string): Promise<DnsResult> => new Promise((answer) => this.asked.push({ type, name, answer }));
  /** Answers the oldest unanswered query for `name`. */
  answer(name: string, r: DnsResult): void {
    const i = this.asked.findIndex((q) => q.name === name);
    if (i < 0) throw new Error(`no query for ${name}`);
    this.asked.splice(i, 1)[0].answer(r);
  }
}

function fake(over: DnsOptions = {}) {
  const dns = new FakeDns();
  const clock = new ManualClock(T0);
  const client = new DnsClient({ query: dns.query, clock, timeout: 60_000, ...over });
  return { dns, clock, client };
}

const answer = (records: string[], ttl: number): DnsResult => ({ kind: 'answer', records, ttl });

test('an answer is cached for its TTL, then asked again', async (t) => {
  const { dns, clock, client } = fake();
  const first = client.a('mail.example.test');
  dns.answer('mail.example.test', answer(['192.0.2.7'], 60));
  t.deepEqual(await first, answer(['192.0.2.7'], 60));
  clock.advance(59 * S);
  t.deepEqual(await client.a('MAIL.example.test.'), answer(['192.0.2.7'], 1), 'same name in another case and with the final dot; TTL counts down');
  t.is(dns.asked.length, 0);
  clock.advance(1 * S);
  const again = client.a('mail.example.test');
  t.is(dns.asked.length, 1, 'expired: asked again');
  dns.answer('mail.example.test', answer(['192.0.2.8'], 60));
  t.deepEqual(await again, answer(['192.0.2.8'], 60));
  t.is(client.stats().queries, 2);
  t.is(client.stats().cacheHits, 1);
});

test('the cache is keyed by type as well as name', async (t) => {
  const { dns, client } = fake();
  const a = client.a('x.example.test');
  dns.answer('x.example.test', answer(['192.0.2.1'], 60));
  await a;
  const txt = client.txt('x.example.test');
  t.is(dns.asked.length, 1);
  dns.answer('x.example.test', { kind: 'nodata' });
  t.deepEqual(await txt, { kind: 'nodata' });
});

test('no answer is cached past the maximum TTL, and a zero TTL is not cached', async (t) => {
  const { dns, clock, client } = fake({ maxTtl: 3600 * S });
  const long = client.a('long.example.test');
  dns.answer('long.example.test', answer(['192.0.2.1'], 7 * 86400));
  await long;
  clock.advance(3600 * S);
  void client.a('long.example.test');
  t.is(dns.asked.length, 1, 'asked again after maxTtl');
  const zero = client.a('zero.example.test');
  dns.answer('zero.example.test', answer(['192.0.2.2'], 0));
  await zero;
  void client.a('zero.example.test');
  t.is(dns.asked.filter((q) => q.name === 'zero.example.test').length, 1);
});

test('nxdomain and nodata are cached for the negative TTL', async (t) => {
  const { dns, clock, client } = fake({ negativeTtl: 300 * S });
  const nx = client.a('gone.example.test');
  const nd = client.aaaa('v4only.example.test');
  dns.answer('gone.example.test', { kind: 'nxdomain' });
  dns.answer('v4only.example.test', { kind: 'nodata' });
  t.deepEqual(await nx, { kind: 'nxdomain' });
  t.deepEqual(await nd, { kind: 'nodata' });
  clock.advance(299 * S);
  t.deepEqual(await client.a('gone.example.test'), { kind: 'nxdomain' });
  t.deepEqual(await client.aaaa('v4only.example.test'), { kind: 'nodata' });
  t.is(dns.asked.length, 0);
  clock.advance(1 * S);
  void client.a('gone.example.test');
  t.is(dns.asked.length, 1);
});

test('timeouts and errors are never cached', async (t) => {
  const { dns, client } = fake();
  for (const r of [{ kind: 'timeout' }, { kind: 'error', code: 'SERVFAIL' }] as DnsResult[]) {
    const p = client.a('flaky.example.test');
    dns.answer('flaky.example.test', r);
    t.deepEqual(await p, r);
  }
  void client.a('flaky.example.test');
  t.is(dns.asked.length, 1, 'asked a third time');
});

test('identical lookups in flight share one query', async (t) => {
  const { dns, client } = fake();
  const all = [client.a('same.example.test'), client.a('Same.Example.Test.'), client.a('same.example.test')];
  t.is(dns.asked.length, 1);
  dns.answer('same.example.test', answer(['192.0.2.9'], 60));
  for (const r of await Promise.all(all)) t.deepEqual(r, answer(['192.0.2.9'], 60));
  t.is(client.stats().shared, 2);
});

test('queries in flight are bounded; more wait in a bounded queue; past it OVERLOAD at once', async (t) => {
  const { dns, client } = fake({ maxInFlight: 2, maxQueued: 2 });
  const p = ['a', 'b', 'c', 'd'].map((n) => client.a(`${n}.example.test`));
  t.is(dns.asked.length, 2, 'two sent');
  t.like(client.stats(), { inFlight: 2, queued: 2 });
  t.deepEqual(await client.a('e.example.test'), { kind: 'error', code: 'OVERLOAD' });
  t.is(client.stats().overloads, 1);
  dns.answer('a.example.test', answer(['192.0.2.1'], 60));
  await p[0];
  t.deepEqual(
    dns.asked.map((q) => q.name),
    ['b.example.test', 'c.example.test'],
    'a queued lookup takes the freed slot',
  );
  dns.answer('b.example.test', { kind: 'nxdomain' });
  dns.answer('c.example.test', { kind: 'nxdomain' });
  await Promise.all([p[1], p[2]]);
  dns.answer('d.example.test', { kind: 'nxdomain' });
  await p[3];
  t.like(client.stats(), { inFlight: 0, queued: 0 });
});

test('the cache is bounded in entries, the least recently used going first', async (t) => {
  const { dns, client } = fake({ cacheEntries: 2 });
  const fill = async (name: string) => {
    const p = client.a(name);
    dns.answer(name, answer(['192.0.2.1'], 600));
    await p;
  };
  await fill('one.example.test');
  await fill('two.example.test');
  await client.a('one.example.test'); // used: two is now the oldest
  await fill('three.example.test');
  t.is(client.stats().cached, 2);
  await client.a('one.example.test');
  t.is(dns.asked.length, 0, 'one is still cached');
  void client.a('two.example.test');
  t.is(dns.asked.length, 1, 'two was evicted');
});

test('a spent budget answers timeout without a query', async (t) => {
  const { dns, clock, client } = fake();
  const decision = client.budget(5 * S);
  clock.advance(5 * S);
  t.deepEqual(await decision.a('late.example.test'), { kind: 'timeout' });
  t.deepEqual(await decision.ptr('192.0.2.7'), { kind: 'timeout' });
  t.is(dns.asked.length, 0);
});

test('a budget ends a lookup that does not answer, and its answer still fills the cache', async (t) => {
  const { dns, client } = fake();
  const decision = client.budget(20);
  t.deepEqual(await decision.txt('slow.example.test'), { kind: 'timeout' });
  t.is(dns.asked.length, 1);
  dns.answer('slow.example.test', answer(['v=spf1 -all'], 60));
  await new Promise((r) => setImmediate(r)); // the answer settles and is cached
  t.deepEqual(await client.budget(20).txt('slow.example.test'), answer(['v=spf1 -all'], 60));
  t.is(dns.asked.length, 0);
});

test('when a budget ends, its lookups still queued leave the queue and are never sent', async (t) => {
  const { dns, client } = fake({ maxInFlight: 1 });
  const busy = client.a('busy.example.test'); // holds the only slot
  const decision = client.budget(20);
  const late = await Promise.all([decision.a('q1.example.test'), decision.txt('q2.example.test'), decision.ptr('192.0.2.7')]);
  t.deepEqual(late, [{ kind: 'timeout' }, { kind: 'timeout' }, { kind: 'timeout' }]);
  dns.answer('busy.example.test', { kind: 'nxdomain' });
  await busy;
  t.deepEqual(dns.asked, [], 'the freed slot went to none of the ended budget\'s lookups');
  t.like(client.stats(), { queued: 0, dropped: 3 });
  void client.a('fresh.example.test');
  t.deepEqual(
    dns.asked.map((q) => q.name),
    ['fresh.example.test'],
    'a fresh lookup is sent at once',
  );
  t.is(client.stats().queries, 2);
});

test('a queued lookup that another caller still waits for stays queued when one budget ends, and is answered', async (t) => {
  const { dns, client } = fake({ maxInFlight: 1 });
  const busy = client.a('busy.example.test');
  const short = client.budget(20);
  const long = client.budget(60 * S);
  const plainFirst = client.a('plain1.example.test'); // a caller without a budget, then a budget joins it
  const shortJoins = short.a('plain1.example.test');
  const shortFirst = short.a('plain2.example.test'); // a budget first, then a caller without one
  const plainJoins = client.a('plain2.example.test');
  const shortShared = short.a('shared.example.test'); // two budgets, the short one first
  const longShared = long.a('shared.example.test');
  const shortOnly = short.a('only.example.test');
  t.deepEqual(await Promise.all([shortJoins, shortFirst, shortShared, shortOnly]), [0, 1, 2, 3].map(() => ({ kind: 'timeout' })));
  t.like(client.stats(), { queued: 3, dropped: 1 }, 'only the lookup nobody else waits for left');
  const sent: string[] = [];
  const answerNext = async (p: Promise<DnsResult>, r: DnsResult) => {
    t.is(dns.asked.length, 1);
    sent.push(dns.asked[0].name);
    dns.answer(dns.asked[0].name, r);
    t.deepEqual(await p, r);
  };
  await answerNext(busy, { kind: 'nxdomain' });
  await answerNext(plainFirst, answer(['192.0.2.1'], 60));
  await answerNext(plainJoins, answer(['192.0.2.2'], 60));
  await answerNext(longShared, answer(['192.0.2.3'], 60));
  t.deepEqual(sent, ['busy.example.test', 'plain1.example.test', 'plain2.example.test', 'shared.example.test']);
  t.is(dns.asked.length, 0, 'only.example.test was never sent');
  t.like(client.stats(), { queries: 4, inFlight: 0, queued: 0 });
});

test('a query that hangs gives its slot back after the lookup timeout, as a timeout', async (t) => {
  const { dns, client } = fake({ timeout: 20, maxInFlight: 1 });
  t.deepEqual(await client.a('hang.example.test'), { kind: 'timeout' });
  t.is(client.stats().inFlight, 0);
  void client.a('next.example.test');
  t.is(dns.asked.length, 2);
});

test('a query that throws or rejects is an error result, never an exception', async (t) => {
  const throwing = new DnsClient({
    query: () => {
      throw Object.assign(new Error('boom'), { code: 'ESERVFAIL' });
    },
  });
  t.deepEqual(await throwing.a('x.example.test'), { kind: 'error', code: 'SERVFAIL' });
  const rejecting = new DnsClient({ query: () => Promise.reject(new Error('no code')) });
  t.deepEqual(await rejecting.a('x.example.test'), { kind: 'error', code: 'UNKNOWN' });
});

test('malformed names are BADNAME without a query', async (t) => {
  const { dns, client } = fake();
  const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`; // 254 bytes
  t.is(long.length, 254);
  for (const name of ['', '.', 'a..b', `${'x'.repeat(64)}.example.test`, long, 'sp ace.example.test', 'ünï.example.test', 'a.example.test\n']) {
    t.deepEqual(await client.a(name), { kind: 'error', code: 'BADNAME' }, JSON.stringify(name));
  }
  t.deepEqual(await client.ptr('not-an-address'), { kind: 'error', code: 'BADNAME' });
  t.deepEqual(await client.budget().ptr('192.0.2.256'), { kind: 'error', code: 'BADNAME' });
  t.is(dns.asked.length, 0);
  t.is(normalizeName(long.slice(1)), long.slice(1), '253 bytes is allowed');
  t.is(normalizeName('_spf.Example.TEST.'), '_spf.example.test');
});

test('reverse names of IPv4 and IPv6 addresses', (t) => {
  t.is(reverseName('192.0.2.7'), '7.2.0.192.in-addr.arpa');
  t.is(reverseName('2001:db8::7'), '7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  t.is(reverseName('::ffff:192.0.2.7'), '7.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa');
  t.is(reverseName('2001:DB8:0:0:1:0:0:1'), '1.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  t.is(reverseName('example.test'), undefined);
});

test('--resolver takes HOST[:PORT] with an IP address, IPv6 with a port in brackets', (t) => {
  t.is(parseResolver('192.0.2.53'), '192.0.2.53');
  t.is(parseResolver('127.0.0.1:5353'), '127.0.0.1:5353');
  t.is(parseResolver('2001:db8::53'), '2001:db8::53');
  t.is(parseResolver('[2001:db8::53]'), '[2001:db8::53]');
  t.is(parseResolver('[2001:db8::53]:5353'), '[2001:db8::53]:5353');
  for (const bad of ['dns.example.test', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:x', '[192.0.2.1]:53', '']) {
    const err = t.throws(() => parseResolver(bad), undefined, bad);
    t.true(isPfgreyError(err) && err.code === 'E_BAD_OPTION' && err.message.startsWith(`--resolver ${bad}:`), String(err?.message));
  }
});

test('the DNS defaults are those documented', (t) => {
  t.like(DEFAULTS, {
    dnsTimeout: 2 * S,
    dnsBudget: 3 * S,
    dnsCacheEntries: 50_000,
    dnsMaxInFlight: 64,
    dnsNegativeTtl: 300 * S,
    dnsDefaultTtl: 300 * S,
    dnsMaxTtl: 86400 * S,
  });
});

// Against NSD.

const SOA = '@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ IN NS ns.example.test.\n';
const ZONES = {
  'example.test': `$ORIGIN example.test.\n$TTL 3600\n${SOA}ns IN A 127.0.0.1
mail 120 IN A 192.0.2.7
mail 120 IN A 192.0.2.8
mail 600 IN AAAA 2001:db8::7
text IN TXT "v=spf1 ip4:192.0.2.0/24 " "-all"
text IN TXT "second"
mx IN MX 20 mail2.example.test.
mx IN MX 10 mail.example.test.
nullmx IN MX 0 .
`,
  '2.0.192.in-addr.arpa': `$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 3600\n${SOA}7 IN PTR mail.example.test.\n`,
  '8.b.d.0.1.0.0.2.ip6.arpa': `$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.\n$TTL 3600\n${SOA}7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR mail.example.test.\n`,
};

test.serial('real lookups against nsd: answers with TTLs, PTR, TXT, MX, nxdomain, nodata, REFUSED', async (t) => {
  const client = await nsdClient(t, ZONES);
  if (!client) return;
  const a = await client.a('mail.example.test');
  t.is(a.kind, 'answer');
  if (a.kind === 'answer') {
    t.deepEqual([...a.records].sort(), ['192.0.2.7', '192.0.2.8']);
    t.is(a.ttl, 120);
  }
  t.deepEqual(await client.aaaa('mail.example.test'), answer(['2001:db8::7'], 600));
  t.deepEqual(await client.ptr('192.0.2.7'), answer(['mail.example.test'], DEFAULTS.dnsDefaultTtl / 1000));
  t.deepEqual(await client.ptr('2001:db8::7'), answer(['mail.example.test'], DEFAULTS.dnsDefaultTtl / 1000));
  const txt = await client.txt('text.example.test');
  t.is(txt.kind, 'answer');
  if (txt.kind === 'answer') t.deepEqual([...txt.records].sort(), ['second', 'v=spf1 ip4:192.0.2.0/24 -all'], 'character-strings joined');
  const mx = await client.lookup('MX', 'mx.example.test');
  t.is(mx.kind, 'answer');
  if (mx.kind === 'answer') t.deepEqual([...mx.records].sort(), ['10 mail.example.test', '20 mail2.example.test'], 'PRIORITY EXCHANGE');
  t.deepEqual(await client.lookup('MX', 'nullmx.example.test'), answer(['0 .'], DEFAULTS.dnsDefaultTtl / 1000), 'a null MX (RFC 7505)');
  t.deepEqual(await client.lookup('MX', 'mail.example.test'), { kind: 'nodata' });
  t.deepEqual(await client.a('missing.example.test'), { kind: 'nxdomain' });
  t.deepEqual(await client.ptr('192.0.2.99'), { kind: 'nxdomain' });
  t.deepEqual(await client.aaaa('ns.example.test'), { kind: 'nodata' });
  t.deepEqual(await client.txt('mail.example.test'), { kind: 'nodata' });
  t.deepEqual(await client.a('elsewhere.invalid'), { kind: 'error', code: 'REFUSED' }, 'a name outside every zone nsd serves');
  const sent = client.stats().queries;
  await client.a('mail.example.test');
  await client.a('missing.example.test');
  await client.a('elsewhere.invalid');
  t.is(client.stats().queries, sent + 1, 'the answer and the nxdomain from the cache, the REFUSED asked again');
});

test.serial('a resolver that never answers costs a timeout, bounded by the lookup timeout', async (t) => {
  const dead = await deadResolver();
  t.teardown(() => dead.close());
  const client = new DnsClient({ servers: [dead.server], timeout: 300 });
  t.teardown(() => client.close());
  const start = Date.now();
  t.deepEqual(await client.a('mail.example.test'), { kind: 'timeout' });
  t.true(Date.now() - start < 300 + 2 * S, `lookup took ${Date.now() - start} ms`);
  t.true(dead.received() >= 1, 'the query was sent');
});

test.serial('against a resolver that never answers, the budget alone ends lookups made one after another, long before the lookup timeout', async (t) => {
  const { dead, client } = await deadClient(t);
  const budget = 400;
  const decision = client.budget(budget);
  const start = Date.now();
  const results = [await decision.a('a.example.test'), await decision.txt('b.example.test'), await decision.ptr('192.0.2.7')];
  results.push(...(await Promise.all([decision.aaaa('c.example.test'), decision.lookup('MX', 'd.example.test')])));
  const took = Date.now() - start;
  t.deepEqual(results, [0, 1, 2, 3, 4].map(() => ({ kind: 'timeout' })));
  // Each later lookup gets what is left of the budget, not a budget of its own.
  t.true(took < budget + BUDGET_SLACK, `the decision took ${took} ms, its budget ${budget} ms, the lookup timeout ${DEAD_LOOKUP_TIMEOUT} ms`);
  t.true(dead.received() >= 1, 'the first query was sent');
});

test.serial('with a dead resolver first, the next resolver answers', async (t) => {
  const nsd = await nsdFor(t, ZONES);
  if (!nsd) return;
  const dead = await deadResolver();
  t.teardown(() => dead.close());
  const client = new DnsClient({ servers: [dead.server, nsd.server], timeout: 300 });
  t.teardown(() => client.close());
  t.deepEqual(await client.aaaa('mail.example.test'), answer(['2001:db8::7'], 600));
});

test.serial('against nsd, answers expire by their TTL on the client\'s clock', async (t) => {
  const nsd = await nsdFor(t, ZONES);
  if (!nsd) return;
  const clock = new ManualClock(T0);
  const client = new DnsClient({ servers: [nsd.server], clock });
  t.teardown(() => client.close());
  await client.a('mail.example.test');
  clock.advance(119 * S);
  t.like(await client.a('mail.example.test'), { kind: 'answer', ttl: 1 });
  t.is(client.stats().queries, 1);
  clock.advance(1 * S);
  t.like(await client.a('mail.example.test'), { kind: 'answer', ttl: 120 });
  t.is(client.stats().queries, 2, 'asked nsd again after 120 s');
});

test.serial('a dead resolver holds at most the in-flight bound of queries; the rest queue, then OVERLOAD', async (t) => {
  const dead = await deadResolver();
  t.teardown(() => dead.close());
  const client = new DnsClient({ servers: [dead.server], timeout: 1000, maxInFlight: 2, maxQueued: 3 });
  t.teardown(() => client.close());
  const lookups = Array.from({ length: 8 }, (_, i) => client.a(`host${i}.example.test`));
  const results = await Promise.all(lookups);
  t.deepEqual(
    results.slice(5),
    [0, 0, 0].map(() => ({ kind: 'error', code: 'OVERLOAD' })),
  );
  for (const r of results.slice(0, 5)) t.deepEqual(r, { kind: 'timeout' });
  t.true(dead.received() <= 5, `${dead.received()} queries reached the resolver`);
  t.like(client.stats(), { queries: 5, overloads: 3, inFlight: 0, queued: 0 });
});

test.serial('a resolver port nobody listens on is an error result, not an exception', async (t) => {
  const dead = await deadResolver();
  const server = dead.server;
  await dead.close(); // the port is now closed: the kernel answers port unreachable
  const client = new DnsClient({ servers: [server], timeout: 1000 });
  t.teardown(() => client.close());
  const r = await client.a('mail.example.test');
  t.true(r.kind === 'error' || r.kind === 'timeout', JSON.stringify(r));
  t.log(JSON.stringify(r));
});
