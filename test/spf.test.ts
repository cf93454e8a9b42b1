// The SPF check of weighted greylisting (src/weighted/spf.ts): the identity checked, how DNS
// answers and failures reach mailauth, RFC 7208's limits and the details, against fake lookups;
// then real records served by Debian's NSD, and a resolver that never answers.

import { execFile } from 'node:child_process';
import dns from 'node:dns';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import test from 'ava';
import { DEFAULTS } from '../src/config/defaults.js';
import { type DnsLookups, type DnsResult, type DnsType, normalizeName, reverseName } from '../src/weighted/dns.js';
import { SPF_DETAIL_MAX, spfCheck, spfIdentity, type SpfResult } from '../src/weighted/spf.js';
import { BUDGET_SLACK, deadClient, nsdClient } from './helpers/nsd.js';

type Lookups = Pick<DnsLookups, 'lookup'>;
type Table = Record<string, DnsResult | string[]>;

/**
 * Lookups answered from a table by "TYPE name" (a string list is an answer); anything else is
 * nxdomain, and a name the DNS layer would not ask is BADNAME, as DnsClient answers it.
 */
function fakeLookups(table: Table, asked: string[] = []): Lookups {
  return {
    lookup: (type: DnsType, name: string) => {
      const n = normalizeName(name);
      if (n === undefined) return Promise.resolve({ kind: 'error', code: 'BADNAME' });
      asked.push(`${type} ${n}`);
      const r = table[`${type} ${n}`];
      if (r === undefined) return Promise.resolve({ kind: 'nxdomain' });
      return Promise.resolve(Array.isArray(r) ? { kind: 'answer', records: r, ttl: 300 } : r);
    },
  };
}

const check = (table: Table, ip: string, sender = 'user@example.test', helo = 'mail.example.test'): Promise<SpfResult> =>
  spfCheck(fakeLookups(table), { ip, helo, sender });

const spf = (record: string): string[] => [record];

test('the verdict follows the qualifier of the mechanism that matched, and the detail names it', async (t) => {
  const table = { 'TXT example.test': spf('v=spf1 ip4:192.0.2.0/28 +ip4:192.0.2.16/28 ~ip4:192.0.2.32/28 ?ip4:192.0.2.48/28 -all') };
  t.deepEqual(await check(table, '192.0.2.1'), { verdict: 'pass', domain: 'example.test', detail: 'matched ip4:192.0.2.0/28' });
  t.deepEqual(await check(table, '192.0.2.17'), { verdict: 'pass', domain: 'example.test', detail: 'matched ip4:192.0.2.16/28' });
  t.deepEqual(await check(table, '192.0.2.33'), { verdict: 'softfail', domain: 'example.test', detail: 'matched ~ip4:192.0.2.32/28' });
  t.deepEqual(await check(table, '192.0.2.49'), { verdict: 'neutral', domain: 'example.test', detail: 'matched ?ip4:192.0.2.48/28' });
  t.deepEqual(await check(table, '198.51.100.1'), { verdict: 'fail', domain: 'example.test', detail: 'matched -all' });
  const noAll = await check({ 'TXT example.test': spf('v=spf1 ip4:192.0.2.0/28') }, '198.51.100.1');
  t.deepEqual(noAll, { verdict: 'neutral', domain: 'example.test', detail: 'no mechanism matched, neutral by default (RFC 7208 section 4.7)' });
});

test('no SPF record, or no such domain, is none; other TXT records do not count', async (t) => {
  t.deepEqual(await check({ 'TXT example.test': ['google-site-verification=abc', 'v=spf10 nope'] }, '192.0.2.1'), {
    verdict: 'none',
    domain: 'example.test',
    detail: 'no SPF record at example.test',
  });
  t.like(await check({ 'TXT example.test': { kind: 'nodata' } }, '192.0.2.1'), { verdict: 'none' });
  t.like(await check({}, '192.0.2.1'), { verdict: 'none', detail: 'no SPF record at example.test' }, 'nxdomain');
});

test('include, a, mx, ptr, exists and redirect each match through the lookups given, and the detail shows the path', async (t) => {
  const ip = '192.0.2.10';
  const table: Table = {
    'TXT example.test': spf('v=spf1 include:one.example.test -all'),
    'TXT one.example.test': spf('v=spf1 include:two.example.test ~all'),
    'TXT two.example.test': spf('v=spf1 ip4:192.0.2.10 -all'),
    'TXT a.example.test': spf('v=spf1 a:host.example.test -all'),
    'A host.example.test': ['198.51.100.1', ip],
    'TXT mx.example.test': spf('v=spf1 mx -all'),
    'MX mx.example.test': ['20 mx2.example.test', '10 mx1.example.test', '0 .'],
    'A mx1.example.test': ['198.51.100.2'],
    'A mx2.example.test': [ip],
    'TXT ptr.example.test': spf('v=spf1 ptr -all'),
    [`PTR ${reverseName(ip)}`]: ['mail.ptr.example.test'],
    'A mail.ptr.example.test': [ip],
    'TXT exists.example.test': spf('v=spf1 exists:%{i}._spf.exists.example.test -all'),
    'A 192.0.2.10._spf.exists.example.test': ['127.0.0.2'],
    'TXT redirect.example.test': spf('v=spf1 redirect=two.example.test'),
  };
  const at = (domain: string) => check(table, ip, `user@${domain}`);
  t.deepEqual(await at('example.test'), { verdict: 'pass', domain: 'example.test', detail: 'matched include:one.example.test > include:two.example.test > ip4:192.0.2.10' });
  t.deepEqual(await at('a.example.test'), { verdict: 'pass', domain: 'a.example.test', detail: 'matched a' });
  t.deepEqual(await at('mx.example.test'), { verdict: 'pass', domain: 'mx.example.test', detail: 'matched mx (mx2.example.test)' });
  t.deepEqual(await at('ptr.example.test'), { verdict: 'pass', domain: 'ptr.example.test', detail: 'matched ptr (mail.ptr.example.test)' });
  t.deepEqual(await at('exists.example.test'), { verdict: 'pass', domain: 'exists.example.test', detail: 'matched exists:192.0.2.10._spf.exists.example.test' });
  t.deepEqual(await at('redirect.example.test'), { verdict: 'pass', domain: 'redirect.example.test', detail: 'matched ip4:192.0.2.10' });
  t.like(await check(table, '198.51.100.9', 'user@mx.example.test'), { verdict: 'fail', detail: 'matched -all' });
});

test('mailauth asks DNS only through the lookups given, never node:dns itself', async (t) => {
  const promises = dns.promises as unknown as Record<string, unknown>;
  const names = ['resolve', 'resolveTxt', 'resolveMx', 'resolve4', 'resolve6', 'resolvePtr'];
  const saved = names.map((n) => promises[n]);
  const direct: string[] = [];
  names.forEach((n) => {
    promises[n] = (...args: unknown[]) => {
      direct.push(`${n} ${String(args[0])}`);
      return Promise.reject(Object.assign(new Error('not here'), { code: 'EREFUSED' }));
    };
  });
  t.teardown(() => names.forEach((n, i) => (promises[n] = saved[i])));
  const asked: string[] = [];
  const lookups = fakeLookups(
    {
      'TXT example.test': spf('v=spf1 a mx ptr include:inc.example.test exists:x.example.test -all'),
      'TXT inc.example.test': spf('v=spf1 ?all'),
      'MX example.test': ['10 mx.example.test'],
      'A example.test': ['198.51.100.1'],
      'A mx.example.test': ['198.51.100.2'],
      [`PTR ${reverseName('192.0.2.1')}`]: ['h.example.test'],
      'A h.example.test': ['198.51.100.3'],
    },
    asked,
  );
  const r = await spfCheck(lookups, { ip: '192.0.2.1', helo: 'mail.example.test', sender: 'user@example.test' });
  t.deepEqual(direct, []);
  t.like(r, { verdict: 'fail' });
  // The spy does see mailauth when it is given no resolver.
  const mailauth = createRequire(import.meta.url)('mailauth/lib/spf/index.js') as { spf(o: object): Promise<unknown> };
  await mailauth.spf({ sender: 'user@example.test', ip: '192.0.2.1', helo: 'mail.example.test', mta: 'mx.example.test' });
  t.true(direct.includes('resolve example.test'), direct.join(', '));
  const expected = ['TXT example.test', 'A example.test', 'AAAA example.test', 'MX example.test', 'A mx.example.test', `PTR ${reverseName('192.0.2.1')}`, 'A h.example.test', 'TXT inc.example.test', 'A x.example.test'];
  for (const q of expected) {
    t.true(asked.includes(q), q);
  }
});

test('a timeout, SERVFAIL, REFUSED or OVERLOAD in the DNS layer is temperror naming the lookup, also inside an include', async (t) => {
  const r = await check({ 'TXT example.test': { kind: 'timeout' } }, '192.0.2.1');
  t.deepEqual(r, { verdict: 'temperror', domain: 'example.test', detail: 'no answer in time for TXT example.test' });
  t.like(await check({ 'TXT example.test': { kind: 'error', code: 'SERVFAIL' } }, '192.0.2.1'), { verdict: 'temperror', detail: 'SERVFAIL for TXT example.test' });
  t.like(await check({ 'TXT example.test': { kind: 'error', code: 'REFUSED' } }, '192.0.2.1'), { verdict: 'temperror' });
  t.like(await check({ 'TXT example.test': { kind: 'error', code: 'OVERLOAD' } }, '192.0.2.1'), { verdict: 'temperror', detail: 'OVERLOAD for TXT example.test' });
  const table: Table = {
    'TXT example.test': spf('v=spf1 include:slow.example.test include:broken.example.test -all'),
    'TXT slow.example.test': { kind: 'timeout' },
  };
  t.deepEqual(await check(table, '192.0.2.1'), { verdict: 'temperror', domain: 'example.test', detail: 'no answer in time for TXT slow.example.test' }, 'not a silent no-match');
  table['TXT slow.example.test'] = spf('v=spf1 ?all');
  table['TXT broken.example.test'] = { kind: 'error', code: 'SERVFAIL' };
  t.like(await check(table, '192.0.2.1'), { verdict: 'temperror', detail: 'SERVFAIL for TXT broken.example.test' });
  const aSlow = await check({ 'TXT example.test': spf('v=spf1 a:host.example.test -all'), 'A host.example.test': { kind: 'timeout' } }, '192.0.2.1');
  t.like(aSlow, { verdict: 'temperror', detail: 'no answer in time for A host.example.test' });
  const aaaaSlow = await check({ 'TXT example.test': spf('v=spf1 a:host.example.test -all'), 'A host.example.test': ['192.0.2.1'], 'AAAA host.example.test': { kind: 'timeout' } }, '192.0.2.1');
  t.like(aaaaSlow, { verdict: 'pass' }, 'an IPv4 client needs only the A answer');
});

test('checks at the same time each get the detail of their own evaluation', async (t) => {
  const table: Table = {};
  const checks: Promise<SpfResult>[] = [];
  for (let i = 0; i < 20; i++) {
    table[`TXT d${i}.example.test`] = spf(`v=spf1 include:i${i}.example.test -all`);
    table[`TXT i${i}.example.test`] = spf(`v=spf1 ip4:192.0.2.${i} ~all`);
    checks.push(check(table, `192.0.2.${i}`, `u@d${i}.example.test`));
  }
  const results = await Promise.all(checks);
  results.forEach((r, i) => t.deepEqual(r, { verdict: 'pass', domain: `d${i}.example.test`, detail: `matched include:i${i}.example.test > ip4:192.0.2.${i}` }));
});

test('where mailauth was loaded before, the verdicts are the same and the details are its comments', async (t) => {
  const spfModule = new URL('../src/weighted/spf.js', import.meta.url).href;
  const script = `
    import { createRequire } from 'node:module';
    createRequire(${JSON.stringify(spfModule)})('mailauth/lib/spf/index.js');
    const { spfCheck } = await import(${JSON.stringify(spfModule)});
    const lookup = async (type, name) => type === 'TXT' && name === 'example.test'
      ? { kind: 'answer', records: ['v=spf1 ip4:192.0.2.0/24 -all'], ttl: 300 } : { kind: 'nxdomain' };
    const at = (ip) => spfCheck({ lookup }, { ip, helo: 'h.example.test', sender: 'u@example.test' }, { receiver: 'mx.example.test' });
    console.log(JSON.stringify([await at('192.0.2.1'), await at('198.51.100.1')]));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  t.deepEqual(JSON.parse(stdout), [
    { verdict: 'pass', domain: 'example.test', detail: 'domain of u@example.test designates 192.0.2.1 as permitted sender' },
    { verdict: 'fail', domain: 'example.test', detail: 'domain of u@example.test does not designate 198.51.100.1 as permitted sender' },
  ]);
});

test('a lookup that rejects, a record mailauth cannot parse and a check that never ends are temperror, never an exception', async (t) => {
  const rejecting: Lookups = { lookup: () => Promise.reject(new Error('boom')) };
  const r = await spfCheck(rejecting, { ip: '192.0.2.1', helo: 'mail.example.test', sender: 'user@example.test' });
  t.like(r, { verdict: 'temperror' });
  t.regex(r.detail, /boom/);
  const throwing: Lookups = {
    lookup: () => {
      throw new Error('sync boom');
    },
  };
  t.like(await spfCheck(throwing, { ip: '192.0.2.1', helo: 'mail.example.test', sender: 'user@example.test' }), { verdict: 'temperror' });
  const garbage = await check({ 'TXT example.test': spf('v=spf1 a -all'), 'A example.test': ['not an address'] }, '192.0.2.1');
  t.like(garbage, { verdict: 'temperror', domain: 'example.test' }, 'a failure inside mailauth');
  t.regex(garbage.detail, /ipaddr/);
  const never: Lookups = { lookup: () => new Promise<DnsResult>(() => undefined) };
  const hung = await spfCheck(never, { ip: '192.0.2.1', helo: 'mail.example.test', sender: 'user@example.test' }, { timeout: 50 });
  t.deepEqual(hung, { verdict: 'temperror', domain: 'example.test', detail: 'the SPF check did not end within 50 ms' });
});

test('more than 10 mechanisms that query DNS is permerror; 10 are allowed; the limit is an option', async (t) => {
  const hosts = (n: number) => Array.from({ length: n }, (_, i) => `a:h${i}.example.test`).join(' ');
  const table: Table = {};
  for (let i = 0; i < 12; i++) table[`A h${i}.example.test`] = ['198.51.100.1'];
  table['TXT ten.example.test'] = spf(`v=spf1 ${hosts(10)} ip4:192.0.2.1 -all`);
  table['TXT eleven.example.test'] = spf(`v=spf1 ${hosts(11)} ip4:192.0.2.1 -all`);
  t.like(await check(table, '192.0.2.1', 'u@ten.example.test'), { verdict: 'pass' });
  t.deepEqual(await check(table, '192.0.2.1', 'u@eleven.example.test'), {
    verdict: 'permerror',
    domain: 'eleven.example.test',
    detail: 'more than 10 DNS lookups (RFC 7208 section 4.6.4)',
  });
  t.is(DEFAULTS.spfMaxLookups, 10);
  const three = await spfCheck(fakeLookups(table), { ip: '192.0.2.1', helo: 'x.example.test', sender: 'u@ten.example.test' }, { maxLookups: 3 });
  t.deepEqual(three, { verdict: 'permerror', domain: 'ten.example.test', detail: 'more than 3 DNS lookups (RFC 7208 section 4.6.4)' });
});

test('a third lookup that finds nothing is permerror; two are allowed; the limit is an option', async (t) => {
  const table: Table = {
    'TXT two.example.test': spf('v=spf1 a:n1.example.test a:n2.example.test ip4:192.0.2.1 -all'),
    'TXT three.example.test': spf('v=spf1 a:n1.example.test a:n2.example.test a:n3.example.test ip4:192.0.2.1 -all'),
    'A n2.example.test': { kind: 'nodata' },
    'AAAA n2.example.test': { kind: 'nodata' },
  };
  t.like(await check(table, '192.0.2.1', 'u@two.example.test'), { verdict: 'pass' });
  t.deepEqual(await check(table, '192.0.2.1', 'u@three.example.test'), {
    verdict: 'permerror',
    domain: 'three.example.test',
    detail: 'more than 2 DNS lookups found nothing (RFC 7208 section 4.6.4)',
  });
  t.is(DEFAULTS.spfMaxVoidLookups, 2);
  const one = await spfCheck(fakeLookups(table), { ip: '192.0.2.1', helo: 'x.example.test', sender: 'u@two.example.test' }, { maxVoidLookups: 1 });
  t.like(one, { verdict: 'permerror', detail: 'more than 1 DNS lookups found nothing (RFC 7208 section 4.6.4)' });
  table['A n1.example.test'] = { kind: 'nodata' };
  table['AAAA n1.example.test'] = ['2001:db8::1'];
  t.like(await check(table, '192.0.2.1', 'u@three.example.test'), { verdict: 'pass' }, 'a host with only an AAAA record is not void');
});

test('syntax errors, two SPF records and an include without a record are permerror with what is wrong', async (t) => {
  const cases: [string, string[], RegExp][] = [
    ['unknown', ['v=spf1 ipv4:192.0.2.1 -all'], /^Unknown mechanism ipv4$/],
    ['badip', ['v=spf1 ip4:192.0.2.300 -all'], /^invalid IP address$/],
    ['badcidr', ['v=spf1 ip4:192.0.2.0/33 -all'], /invalid cidr/],
    ['two', ['v=spf1 -all', 'v=spf1 +all'], /^multiple SPF records found for two\.example\.test$/],
    ['macro', ['v=spf1 exists:%{z}.example.test -all'], /macro/i],
    ['noinc', ['v=spf1 include:missing.example.test -all'], /^no SPF record at missing\.example\.test$/],
  ];
  for (const [name, records, detail] of cases) {
    const r = await check({ [`TXT ${name}.example.test`]: records }, '192.0.2.1', `u@${name}.example.test`);
    t.is(r.verdict, 'permerror', name);
    t.regex(r.detail, detail, name);
  }
});

test('an IPv6 client matches ip6: and AAAA records; an IPv4-mapped client is checked as IPv4; a client that is no address is none', async (t) => {
  const table: Table = {
    'TXT example.test': spf('v=spf1 ip6:2001:db8:5::/48 a:host.example.test ip4:192.0.2.1 -all'),
    'A host.example.test': ['192.0.2.99'],
    'AAAA host.example.test': ['2001:db8:7::25'],
  };
  t.like(await check(table, '2001:db8:5::1'), { verdict: 'pass', detail: 'matched ip6:2001:db8:5::/48' });
  t.like(await check(table, '2001:DB8:7:0::25'), { verdict: 'pass', detail: 'matched a' });
  t.like(await check(table, '2001:db8:6::1'), { verdict: 'fail' });
  t.like(await check(table, '::ffff:192.0.2.1'), { verdict: 'pass', detail: 'matched ip4:192.0.2.1' });
  t.like(await check(table, '::ffff:c000:201'), { verdict: 'pass', detail: 'matched ip4:192.0.2.1' });
  t.deepEqual(await check(table, 'not-an-address'), { verdict: 'none', domain: 'example.test', detail: 'the client address "not-an-address" is not an IP address' });
});

test('the identity: postmaster@HELO for the null sender, postmaster for a missing local part, A-labels; no domain is none without a lookup', async (t) => {
  t.deepEqual(spfIdentity('<>', 'Mail.Example.TEST.'), { sender: 'postmaster@mail.example.test', domain: 'mail.example.test' });
  t.deepEqual(spfIdentity('', 'mail.example.test'), { sender: 'postmaster@mail.example.test', domain: 'mail.example.test' });
  t.deepEqual(spfIdentity('<User@Example.TEST>', 'x'), { sender: 'User@example.test', domain: 'example.test' });
  t.deepEqual(spfIdentity('@example.test', 'x'), { sender: 'postmaster@example.test', domain: 'example.test' });
  t.deepEqual(spfIdentity('"a@b"@example.test', 'x'), { sender: '"a@b"@example.test', domain: 'example.test' });
  t.deepEqual(spfIdentity('user@bücher.example', 'x'), { sender: 'user@xn--bcher-kva.example', domain: 'xn--bcher-kva.example' });
  const none: [string, string, RegExp][] = [
    ['user', 'mail.example.test', /the sender has no domain/],
    ['user@localhost', 'mail.example.test', /"localhost" is no domain name/],
    ['user@[192.0.2.1]', 'mail.example.test', /"\[192\.0\.2\.1\]" is no domain name/],
    ['user@192.0.2.1', 'mail.example.test', /no domain name/],
    ['user@exa mple.test', 'mail.example.test', /no domain name/],
    ['user@-bad.example.test', 'mail.example.test', /no domain name/],
    ['user@', 'mail.example.test', /no domain name/],
    ['<>', '[192.0.2.1]', /null sender, and the HELO name "\[192\.0\.2\.1\]" is no domain name/],
    ['', 'localhost', /null sender/],
    ['', '', /null sender/],
    [`${'x'.repeat(250)}@example.test`, 'mail.example.test', /longer than 256/],
  ];
  for (const [sender, helo, why] of none) {
    const asked: string[] = [];
    const r = await spfCheck(fakeLookups({}, asked), { ip: '192.0.2.1', helo, sender });
    t.is(r.verdict, 'none', sender);
    t.regex(r.detail, why, sender);
    t.deepEqual(asked, [], `${sender}: no lookup`);
  }
});

test('the null sender is checked by the HELO name\'s record', async (t) => {
  const table: Table = { 'TXT mail.example.test': spf('v=spf1 ip4:192.0.2.1 -all'), 'TXT example.test': spf('v=spf1 -all') };
  t.deepEqual(await check(table, '192.0.2.1', '<>', 'mail.example.test'), { verdict: 'pass', domain: 'mail.example.test', detail: 'matched ip4:192.0.2.1' });
  t.like(await check(table, '192.0.2.2', '', 'mail.example.test'), { verdict: 'fail', domain: 'mail.example.test' });
});

test('macros expand the sender; a name the DNS layer cannot ask matches nothing, without a query', async (t) => {
  const table: Table = {
    'TXT example.test': spf('v=spf1 exists:%{l}.%{d}._spf.example.test -all'),
    'A good.example.test._spf.example.test': ['127.0.0.2'],
  };
  t.like(await check(table, '192.0.2.1', 'good@example.test'), { verdict: 'pass', detail: 'matched exists:good.example.test._spf.example.test' });
  const asked: string[] = [];
  const r = await spfCheck(fakeLookups(table, asked), { ip: '192.0.2.1', helo: 'mail.example.test', sender: 'a+b@example.test' });
  t.like(r, { verdict: 'fail', detail: 'matched -all' });
  t.deepEqual(asked, ['TXT example.test']);
});

test('the detail is printable ASCII and bounded, whatever the record and the sender hold', async (t) => {
  const long = await check({ 'TXT example.test': spf(`v=spf1 ${'x'.repeat(600)} -all`) }, '192.0.2.1');
  t.is(long.verdict, 'permerror');
  t.is(long.detail.length, SPF_DETAIL_MAX);
  t.true(long.detail.endsWith('...'));
  const control = await check({ 'TXT example.test': spf('v=spf1 ip4:192.0.2.1\r\n -all\u00e9') }, '192.0.2.1');
  t.is(control.verdict, 'permerror');
  const exotic = await spfCheck(fakeLookups({}), { ip: '192.0.2.1', helo: 'x\r\n\u0000\u00e9', sender: '' });
  for (const r of [long, control, exotic]) t.regex(r.detail, /^[\x20-\x7e]*$/);
});

// Against NSD.

const SOA = '@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ IN NS ns.example.test.\n';
const includes = (n: number, from = 1) =>
  Array.from({ length: n }, (_, i) => `"include:i${i + from}.example.test "`).join(' ');
const ZONES = {
  'example.test': `$ORIGIN example.test.\n$TTL 300\n${SOA}ns IN A 127.0.0.1
ip4 IN TXT "v=spf1 ip4:192.0.2.0/28 -all"
a IN TXT "v=spf1 a -all"
a IN A 192.0.2.20
mx IN TXT "v=spf1 mx -all"
mx IN MX 10 mx1.example.test.
mx IN MX 20 mx2.example.test.
mx1 IN A 198.51.100.1
mx2 IN A 192.0.2.30
inc IN TXT "v=spf1 include:l1.example.test -all"
l1 IN TXT "v=spf1 include:l2.example.test ~all"
l2 IN TXT "v=spf1 include:l3.example.test ?all"
l3 IN TXT "v=spf1 include:l4.example.test -all"
l4 IN TXT "v=spf1 ip4:192.0.2.40 -all"
fail IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
soft IN TXT "v=spf1 ip4:198.51.100.0/24 ~all"
neutral IN TXT "v=spf1 ip4:198.51.100.0/24 ?all"
none IN TXT "not an SPF record"
none IN A 192.0.2.50
ten IN TXT "v=spf1 " ${includes(10)} "ip4:192.0.2.60 -all"
eleven IN TXT "v=spf1 " ${includes(11)} "ip4:192.0.2.60 -all"
${Array.from({ length: 11 }, (_, i) => `i${i + 1} IN TXT "v=spf1 ?all"`).join('\n')}
twovoid IN TXT "v=spf1 a:gone1.example.test a:gone2.example.test ip4:192.0.2.70 -all"
threevoid IN TXT "v=spf1 a:gone1.example.test a:gone2.example.test a:gone3.example.test ip4:192.0.2.70 -all"
syntax IN TXT "v=spf1 ip4:192.0.2.0/24 bogus -all"
v6 IN TXT "v=spf1 ip6:2001:db8:5::/48 a:host6.example.test -all"
host6 IN AAAA 2001:db8:7::25
helo IN TXT "v=spf1 a -all"
helo IN A 192.0.2.80
`,
};

test.serial('real SPF records served by nsd: pass by ip4, a, mx and include, fail, softfail, neutral, none', async (t) => {
  const client = await nsdClient(t, ZONES);
  if (!client) return;
  const at = (domain: string, ip: string) => spfCheck(client.budget(5000), { ip, helo: 'client.example.test', sender: `someone@${domain}.example.test` });

  t.deepEqual(await at('ip4', '192.0.2.5'), { verdict: 'pass', domain: 'ip4.example.test', detail: 'matched ip4:192.0.2.0/28' });
  t.like(await at('a', '192.0.2.20'), { verdict: 'pass', detail: 'matched a' });
  t.like(await at('mx', '192.0.2.30'), { verdict: 'pass', detail: 'matched mx (mx2.example.test)' });
  t.like(await at('mx', '192.0.2.31'), { verdict: 'fail', detail: 'matched -all' });
  t.like(await at('inc', '192.0.2.40'), { verdict: 'pass', detail: 'matched include:l1.example.test > include:l2.example.test > include:l3.example.test > include:l4.example.test > ip4:192.0.2.40' });
  t.like(await at('inc', '192.0.2.41'), { verdict: 'fail', detail: 'matched -all' }, 'the outer record decides when no include passes');
  t.like(await at('fail', '192.0.2.5'), { verdict: 'fail', detail: 'matched -all' });
  t.like(await at('soft', '192.0.2.5'), { verdict: 'softfail', detail: 'matched ~all' });
  t.like(await at('neutral', '192.0.2.5'), { verdict: 'neutral', detail: 'matched ?all' });
  t.deepEqual(await at('none', '192.0.2.5'), { verdict: 'none', domain: 'none.example.test', detail: 'no SPF record at none.example.test' });
  t.like(await at('nowhere', '192.0.2.5'), { verdict: 'none' }, 'a domain that does not exist');
  const refused = await spfCheck(client.budget(5000), { ip: '192.0.2.5', helo: 'client.example.test', sender: 'someone@elsewhere.invalid' });
  t.like(refused, { verdict: 'temperror' }, 'a domain nsd does not serve is REFUSED: temperror');
});

test.serial('real limits, errors and identities against nsd: 11 includes, 3 void lookups, a syntax error, IPv6, the null sender', async (t) => {
  const client = await nsdClient(t, ZONES);
  if (!client) return;
  const at = (domain: string, ip: string) => spfCheck(client.budget(5000), { ip, helo: 'client.example.test', sender: `someone@${domain}.example.test` });

  t.like(await at('ten', '192.0.2.60'), { verdict: 'pass', detail: 'matched ip4:192.0.2.60' }, '10 includes are allowed');
  t.deepEqual(await at('eleven', '192.0.2.60'), { verdict: 'permerror', domain: 'eleven.example.test', detail: 'more than 10 DNS lookups (RFC 7208 section 4.6.4)' });
  t.like(await at('twovoid', '192.0.2.70'), { verdict: 'pass' }, 'two void lookups are allowed');
  t.like(await at('threevoid', '192.0.2.70'), { verdict: 'permerror', detail: 'more than 2 DNS lookups found nothing (RFC 7208 section 4.6.4)' });
  t.like(await at('syntax', '192.0.2.5'), { verdict: 'permerror', detail: 'Unknown mechanism bogus' });
  t.like(await at('v6', '2001:db8:5::1'), { verdict: 'pass', detail: 'matched ip6:2001:db8:5::/48' });
  t.like(await at('v6', '2001:db8:7::25'), { verdict: 'pass', detail: 'matched a' });
  t.like(await at('v6', '2001:db8:6::1'), { verdict: 'fail' });
  t.like(await at('v6', '192.0.2.5'), { verdict: 'fail' }, 'an IPv4 client does not match ip6:');

  const nullSender = (ip: string) => spfCheck(client.budget(5000), { ip, helo: 'helo.example.test', sender: '<>' });
  t.deepEqual(await nullSender('192.0.2.80'), { verdict: 'pass', domain: 'helo.example.test', detail: 'matched a' });
  t.like(await nullSender('192.0.2.81'), { verdict: 'fail', domain: 'helo.example.test' });
});

test.serial('a resolver that never answers makes SPF temperror within the decision\'s budget', async (t) => {
  const { dead, client } = await deadClient(t);
  const budget = 300;
  const start = Date.now();
  const r = await spfCheck(client.budget(budget), { ip: '192.0.2.5', helo: 'client.example.test', sender: 'someone@example.test' });
  const took = Date.now() - start;
  // The budget's timeout, not the check's own backstop (DEFAULTS.dnsBudget) nor c-ares's, ended it.
  t.deepEqual(r, { verdict: 'temperror', domain: 'example.test', detail: 'no answer in time for TXT example.test' });
  t.true(took < budget + BUDGET_SLACK, `took ${took} ms`);
  t.true(dead.received() >= 1, 'the query was sent');
});
