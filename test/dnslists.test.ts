// DNSBLs and DNSWLs for weighted greylisting (src/weighted/dnslists.ts): the --dnsbl/--dnswl
// spec, the names asked, what answers mean against a fake lookup; then real lists served by
// Debian's NSD, and a resolver that never answers.

import test from 'ava';
import { DEFAULTS } from '../src/config/defaults.js';
import { isPfgreyError } from '../src/errors.js';
import type { DnsLookups, DnsResult } from '../src/weighted/dns.js';
import { checkLists, listQueryName, parseListSpec } from '../src/weighted/dnslists.js';
import { BUDGET_SLACK, deadClient, nsdClient } from './helpers/nsd.js';

test('a list spec without weight takes the kind\'s default weight', (t) => {
  t.deepEqual(parseListSpec('zen.spamhaus.org', 'dnsbl'), { kind: 'dnsbl', zone: 'zen.spamhaus.org', weight: DEFAULTS.dnsblWeight });
  t.deepEqual(parseListSpec('list.dnswl.org', 'dnswl'), { kind: 'dnswl', zone: 'list.dnswl.org', weight: DEFAULTS.dnswlWeight });
  t.true(DEFAULTS.dnsblWeight > 0, 'a block list listing is suspicious');
  t.true(DEFAULTS.dnswlWeight < 0, 'an allow list listing is trust');
});

test('a list spec takes a weight and return codes, and normalizes the zone', (t) => {
  t.deepEqual(parseListSpec('BL.Example.TEST.=5:127.0.0.4,127.0.0.2,127.0.0.4', 'dnsbl'), {
    kind: 'dnsbl',
    zone: 'bl.example.test',
    weight: 5,
    codes: ['127.0.0.4', '127.0.0.2'],
  });
  t.deepEqual(parseListSpec('wl.example.test=-2.5', 'dnswl'), { kind: 'dnswl', zone: 'wl.example.test', weight: -2.5 });
  t.deepEqual(parseListSpec('bl.example.test:127.0.0.2', 'dnsbl'), { kind: 'dnsbl', zone: 'bl.example.test', weight: DEFAULTS.dnsblWeight, codes: ['127.0.0.2'] });
  t.deepEqual(parseListSpec('bl.example.test=+0', 'dnsbl').weight, 0);
});

test('a bad list spec is E_BAD_OPTION naming the option, the spec and what is wrong', (t) => {
  const cases: [string, 'dnsbl' | 'dnswl', RegExp][] = [
    ['', 'dnsbl', /^--dnsbl : empty/],
    ['bad zone.test', 'dnsbl', /^--dnsbl bad zone\.test: bad zone "bad zone\.test"/],
    ['localhost', 'dnswl', /^--dnswl localhost: bad zone "localhost"/],
    ['=3', 'dnsbl', /bad zone ""/],
    ['bl.example.test=', 'dnsbl', /bad weight ""/],
    ['bl.example.test=heavy', 'dnsbl', /bad weight "heavy"/],
    ['bl.example.test=1e3', 'dnsbl', /bad weight "1e3"/],
    ['bl.example.test=5000', 'dnsbl', /weight 5000 is out of range/],
    ['bl.example.test=2:', 'dnsbl', /bad return code ""/],
    ['bl.example.test=2:192.0.2.2', 'dnsbl', /bad return code "192\.0\.2\.2" \(an address in 127\.0\.0\.0\/8/],
    ['bl.example.test=2:127.0.0.2,127.0.0', 'dnsbl', /bad return code "127\.0\.0"/],
    ['bl.example.test=2=3', 'dnsbl', /bad weight "2=3"/],
  ];
  for (const [text, kind, message] of cases) {
    const err = t.throws(() => parseListSpec(text, kind), undefined, text);
    t.true(isPfgreyError(err) && err.code === 'E_BAD_OPTION', text);
    t.regex(err?.message ?? '', message);
  }
});

test('the name asked is the address backwards in front of the zone; IPv6 as 32 nibbles; IPv4-mapped as IPv4', (t) => {
  t.is(listQueryName('192.0.2.2', 'bl.test'), '2.2.0.192.bl.test');
  t.is(listQueryName('2001:db8::1', 'bl.test'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test');
  t.is(listQueryName('2001:DB8:0:0:1::A', 'bl.test'), 'a.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test');
  t.is(listQueryName('::ffff:192.0.2.4', 'bl.test'), '4.2.0.192.bl.test');
  t.is(listQueryName('::ffff:c000:204', 'bl.test'), '4.2.0.192.bl.test');
  t.is(listQueryName('not-an-address', 'bl.test'), undefined);
});

/** Lookups answered from a table by name; a name not in it is nxdomain. */
function fakeLookups(table: Record<string, DnsResult>, asked: string[] = []): Pick<DnsLookups, 'a'> {
  return {
    a: (name) => {
      asked.push(name);
      return Promise.resolve(table[name] ?? { kind: 'nxdomain' });
    },
  };
}
const answer = (...records: string[]): DnsResult => ({ kind: 'answer', records, ttl: 300 });

test('a listing in 127.0.0.0/8 weighs the list\'s weight; no such name or record weighs nothing', async (t) => {
  const asked: string[] = [];
  const dns = fakeLookups(
    {
      '2.2.0.192.bl.test': answer('127.0.0.2'),
      '2.2.0.192.wl.test': answer('127.0.15.1'),
      '2.2.0.192.nodata.test': { kind: 'nodata' },
    },
    asked,
  );
  const specs = [parseListSpec('bl.test=3', 'dnsbl'), parseListSpec('wl.test', 'dnswl'), parseListSpec('other.test', 'dnsbl'), parseListSpec('nodata.test', 'dnsbl')];
  const results = await checkLists(dns, '192.0.2.2', specs);
  t.deepEqual(
    results.map((r) => [r.zone, r.kind, r.listed, r.codes, r.weight]),
    [
      ['bl.test', 'dnsbl', true, ['127.0.0.2'], 3],
      ['wl.test', 'dnswl', true, ['127.0.15.1'], DEFAULTS.dnswlWeight],
      ['other.test', 'dnsbl', false, [], 0],
      ['nodata.test', 'dnsbl', false, [], 0],
    ],
  );
  t.regex(results[0].why, /^2\.2\.0\.192\.bl\.test: listed \(127\.0\.0\.2\), weight 3$/);
  t.regex(results[2].why, /not listed/);
  t.is(asked.length, 4);
});

test('with codes selected, only those codes are a listing', async (t) => {
  const dns = fakeLookups({ '2.2.0.192.bl.test': answer('127.0.0.2'), '4.2.0.192.bl.test': answer('127.0.0.4', '127.0.0.10') });
  const spec = parseListSpec('bl.test=5:127.0.0.4', 'dnsbl');
  const [two] = await checkLists(dns, '192.0.2.2', [spec]);
  t.like(two, { listed: false, weight: 0, codes: ['127.0.0.2'] });
  t.regex(two.why, /none of the selected codes 127\.0\.0\.4/);
  const [four] = await checkLists(dns, '192.0.2.4', [spec]);
  t.like(four, { listed: true, weight: 5, codes: ['127.0.0.4'] });
});

test('a timeout, a failed lookup, a list error code or an answer outside 127.0.0.0/8 is unknown and weighs nothing', async (t) => {
  const name = '2.2.0.192.bl.test';
  const cases: [DnsResult, RegExp][] = [
    [{ kind: 'timeout' }, /no answer in time, neutral$/],
    [{ kind: 'error', code: 'SERVFAIL' }, /lookup failed \(SERVFAIL\), neutral$/],
    [answer('127.255.255.254'), /error code 127\.255\.255\.254, neutral$/],
    [answer('127.0.0.2', '127.255.255.255'), /error code 127\.255\.255\.255/],
    [answer('127.0.0.255'), /error code 127\.0\.0\.255/],
    [answer('198.51.100.80'), /answered 198\.51\.100\.80, outside 127\.0\.0\.0\/8, ignored, neutral$/],
  ];
  for (const [result, why] of cases) {
    const [r] = await checkLists(fakeLookups({ [name]: result }), '192.0.2.2', [parseListSpec('bl.test=9', 'dnsbl')]);
    t.is(r.listed, 'unknown', JSON.stringify(result));
    t.is(r.weight, 0);
    t.regex(r.why, why);
  }
  const [mixed] = await checkLists(fakeLookups({ [name]: answer('198.51.100.80', '127.0.0.3') }), '192.0.2.2', [parseListSpec('bl.test', 'dnsbl')]);
  t.like(mixed, { listed: true, codes: ['127.0.0.3'] }, 'an address outside 127/8 beside a code is ignored');
});

test('a list answering many codes makes one short line: a few codes, then how many more; only the first records are looked at', async (t) => {
  const name = '2.2.0.192.bl.test';
  const many = (prefix: string) => Array.from({ length: 500 }, (_, i) => `${prefix}.${i % 250}`);
  const max = DEFAULTS.dnslistMaxRecords;
  const cases: [DnsResult, string, RegExp][] = [
    [answer(...many('127.1.0')), 'bl.test=2', /^2\.2\.0\.192\.bl\.test: listed \(127\.1\.0\.0, 127\.1\.0\.1, 127\.1\.0\.10, 127\.1\.0\.11 … and \d+ more; the first \d+ of 500 records\), weight 2$/],
    [answer(...many('127.1.0')), 'bl.test:127.0.0.2', /answered 127\.1\.0\.0, 127\.1\.0\.1, 127\.1\.0\.10, 127\.1\.0\.11 … and \d+ more; the first \d+ of 500 records, none of the selected codes 127\.0\.0\.2$/],
    [answer(...many('198.51.100')), 'bl.test', /answered 198\.51\.100\.0, 198\.51\.100\.1, 198\.51\.100\.10, 198\.51\.100\.11 … and \d+ more; the first \d+ of 500 records, outside 127\.0\.0\.0\/8, ignored, neutral$/],
    [answer(...many('127.255.255')), 'bl.test', /error code 127\.255\.255\.0, 127\.255\.255\.1, 127\.255\.255\.10, 127\.255\.255\.11 … and \d+ more; the first \d+ of 500 records, neutral$/],
  ];
  for (const [result, spec, why] of cases) {
    const [r] = await checkLists(fakeLookups({ [name]: result }), '192.0.2.2', [parseListSpec(spec, 'dnsbl')]);
    t.regex(r.why, why, spec);
    t.true(r.why.length < 200, `${r.why.length} characters: ${r.why}`);
    t.true(r.codes.length <= max, `${r.codes.length} codes kept`);
  }
  const few = await checkLists(fakeLookups({ [name]: answer('127.0.0.4', '127.0.0.2', '127.0.0.3', '127.0.0.2') }), '192.0.2.2', [parseListSpec('bl.test=2', 'dnsbl')]);
  t.is(few[0].why, `${name}: listed (127.0.0.2, 127.0.0.3, 127.0.0.4), weight 2`, 'a few codes are all shown');
});

test('a lookup that throws and a client that is no address are unknown, never a rejection', async (t) => {
  const throwing: Pick<DnsLookups, 'a'> = { a: () => Promise.reject(Object.assign(new Error('boom'), { code: 'EBOOM' })) };
  const [r] = await checkLists(throwing, '192.0.2.2', [parseListSpec('bl.test', 'dnsbl')]);
  t.like(r, { listed: 'unknown', weight: 0 });
  const [bad] = await checkLists(fakeLookups({}), 'mail.example.test', [parseListSpec('bl.test', 'dnsbl')]);
  t.like(bad, { listed: 'unknown', weight: 0 });
  t.regex(bad.why, /not an IP address/);
});

test('all lists are asked at once', async (t) => {
  const asked: string[] = [];
  const release: (() => void)[] = [];
  const dns: Pick<DnsLookups, 'a'> = {
    a: (name) => {
      asked.push(name);
      return new Promise((resolve) => release.push(() => resolve({ kind: 'nxdomain' })));
    },
  };
  const pending = checkLists(dns, '192.0.2.2', ['a.test', 'b.test', 'c.test'].map((z) => parseListSpec(z, 'dnsbl')));
  t.deepEqual(asked, ['2.2.0.192.a.test', '2.2.0.192.b.test', '2.2.0.192.c.test'], 'all asked before any answered');
  for (const r of release) r();
  t.is((await pending).length, 3);
});

// Against NSD.

const SOA = '@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ IN NS ns.example.test.\n';
const V6 = '2001:db8::25';
const V6_NAME = '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2';
const ZONES = {
  'bl.test': `$ORIGIN bl.test.\n$TTL 300\n${SOA}ns IN A 127.0.0.1
2.2.0.192 IN A 127.0.0.2
2.2.0.192 IN TXT "listed for tests"
4.2.0.192 IN A 127.0.0.4
9.2.0.192 IN A 127.255.255.254
${V6_NAME} IN A 127.0.0.2
`,
  'wl.test': `$ORIGIN wl.test.\n$TTL 300\n${SOA}ns IN A 127.0.0.1
5.2.0.192 IN A 127.0.15.2
`,
};

test.serial('real lists against nsd: listed, not listed, IPv6, IPv4-mapped, DNSWL, code selection, list errors', async (t) => {
  const client = await nsdClient(t, ZONES);
  if (!client) return;
  const specs = [parseListSpec('bl.test', 'dnsbl'), parseListSpec('bl.test=5:127.0.0.4', 'dnsbl'), parseListSpec('wl.test=-3', 'dnswl')];
  const summary = async (ip: string) => (await checkLists(client.budget(5000), ip, specs)).map((r) => [r.listed, r.codes, r.weight]);

  const B = DEFAULTS.dnsblWeight;
  t.deepEqual(await summary('192.0.2.2'), [[true, ['127.0.0.2'], B], [false, ['127.0.0.2'], 0], [false, [], 0]]);
  t.deepEqual(await summary('192.0.2.4'), [[true, ['127.0.0.4'], B], [true, ['127.0.0.4'], 5], [false, [], 0]]);
  t.deepEqual(await summary('::ffff:192.0.2.4'), [[true, ['127.0.0.4'], B], [true, ['127.0.0.4'], 5], [false, [], 0]], 'IPv4-mapped asks as IPv4');
  t.deepEqual(await summary('192.0.2.5'), [[false, [], 0], [false, [], 0], [true, ['127.0.15.2'], -3]], 'the DNSWL lists it');
  t.deepEqual(await summary('192.0.2.77'), [[false, [], 0], [false, [], 0], [false, [], 0]], 'listed nowhere');
  t.deepEqual(await summary(V6), [[true, ['127.0.0.2'], B], [false, ['127.0.0.2'], 0], [false, [], 0]], 'IPv6 by its nibbles');
  t.deepEqual(await summary('192.0.2.9'), [['unknown', ['127.255.255.254'], 0], ['unknown', ['127.255.255.254'], 0], [false, [], 0]], 'a list error code');

  const [outside] = await checkLists(client.budget(5000), '192.0.2.2', [parseListSpec('elsewhere.test', 'dnsbl')]);
  t.like(outside, { listed: 'unknown', weight: 0 }, 'a zone nsd does not serve is REFUSED: unknown');
  t.regex(outside.why, /REFUSED/);
});

test.serial('a dead resolver makes every list unknown, weight 0, within the budget', async (t) => {
  const { dead, client } = await deadClient(t);
  const specs = [parseListSpec('bl.test=4', 'dnsbl'), parseListSpec('wl.test', 'dnswl')];
  const budget = 200;
  const start = Date.now();
  const results = await checkLists(client.budget(budget), '192.0.2.2', specs);
  const took = Date.now() - start;
  t.true(took < budget + BUDGET_SLACK, `took ${took} ms`);
  t.deepEqual(
    results.map((r) => [r.zone, r.listed, r.weight]),
    [
      ['bl.test', 'unknown', 0],
      ['wl.test', 'unknown', 0],
    ],
  );
  t.regex(results[0].why, /no answer in time, neutral/);
  t.true(dead.received() >= 1, 'the queries were sent');
});
