// HELO and reverse-DNS checks for weighted greylisting (src/weighted/helo-rdns.ts): HELO syntax,
// generic names and the rDNS verdicts against fake lookups, the pattern file; then real zones
// served by Debian's NSD, and a resolver that never answers.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { DEFAULTS } from '../src/config/defaults.js';
import { isPfgreyError } from '../src/errors.js';
import { type DnsLookups, type DnsResult, reverseName } from '../src/weighted/dns.js';
import { DEFAULT_GENERIC_PATTERNS, embedsAddress, heloCheck, type HeloVerdict, loadGenericPatterns, looksGeneric, rdnsCheck } from '../src/weighted/helo-rdns.js';
import { tempDir } from './helpers/daemon.js';
import { BUDGET_SLACK, deadClient, nsdClient } from './helpers/nsd.js';

type Lookups = Pick<DnsLookups, 'a' | 'aaaa' | 'ptr'>;

/** Lookups answered from a table by "TYPE name" (PTR by the address's reverse name); anything else is nxdomain. */
function fakeLookups(table: Record<string, DnsResult>, asked: string[] = []): Lookups {
  const look = (type: string, name: string) => {
    asked.push(`${type} ${name}`);
    return Promise.resolve(table[`${type} ${name}`] ?? { kind: 'nxdomain' });
  };
  return {
    a: (name) => look('A', name),
    aaaa: (name) => look('AAAA', name),
    ptr: (address) => look('PTR', reverseName(address) ?? address),
  };
}
const answer = (...records: string[]): DnsResult => ({ kind: 'answer', records, ttl: 300 });
const OURS = ['mx.example.net', '198.51.100.25', '2001:db8:ffff::25'];

test('a HELO that is empty, not a FQDN, a bare IP, a foreign literal or our own name is bad without asking DNS', async (t) => {
  const asked: string[] = [];
  const dns = fakeLookups({}, asked);
  const cases: [string, HeloVerdict, RegExp][] = [
    ['', 'empty', /without a name/],
    ['   ', 'empty', /without a name/],
    ['localhost', 'not-fqdn', /not a fully qualified domain name/],
    ['WIN-PC', 'not-fqdn', /not a fully qualified/],
    ['my_pc.example.com', 'not-fqdn', /not a fully qualified/],
    ['-bad.example.com', 'not-fqdn', /not a fully qualified/],
    ['mail..example.com', 'not-fqdn', /not a fully qualified/],
    ['1.2.3', 'not-fqdn', /not a fully qualified/],
    ['[not.an.address]', 'not-fqdn', /not an address literal/],
    ['[2001:db8::7]', 'not-fqdn', /not an address literal/],
    ['192.0.2.7', 'ip', /a bare IP address/],
    ['2001:db8::7', 'ip', /a bare IP address/],
    ['[192.0.2.99]', 'foreign-literal', /not the client's address 192\.0\.2\.7/],
    ['MX.Example.NET.', 'ours', /our own name/],
    ['[198.51.100.25]', 'ours', /our own address/],
    ['198.51.100.25', 'ours', /our own address/],
    ['[IPv6:2001:DB8:FFFF:0:0:0:0:25]', 'ours', /our own address/],
  ];
  for (const [helo, result, why] of cases) {
    const r = await heloCheck(dns, helo, '192.0.2.7', OURS);
    t.is(r.check, 'helo');
    t.is(r.result, result, helo);
    t.is(r.weight, DEFAULTS.heloWeight, helo);
    t.regex(r.why, why, helo);
  }
  t.deepEqual(asked, [], 'syntax alone decided');
  t.true(DEFAULTS.heloWeight > 0);
});

test('an address literal of the client\'s own address is allowed and weighs nothing, IPv4 and IPv6, also when the client is this host', async (t) => {
  const dns = fakeLookups({});
  t.like(await heloCheck(dns, '[192.0.2.7]', '192.0.2.7', OURS), { result: 'literal', weight: 0 });
  t.like(await heloCheck(dns, '[192.0.2.7]', '::ffff:192.0.2.7', OURS), { result: 'literal', weight: 0 }, 'an IPv4-mapped client');
  t.like(await heloCheck(dns, '[IPv6:2001:db8:0::7]', '2001:DB8::7', OURS), { result: 'literal', weight: 0 });
  t.like(await heloCheck(dns, '[IPv6:2001:db8::8]', '2001:db8::7', OURS), { result: 'foreign-literal', weight: DEFAULTS.heloWeight });
  t.like(await heloCheck(dns, '[198.51.100.25]', '198.51.100.25', OURS), { result: 'literal', weight: 0 }, 'a client on this host, saying so');
  t.like(await heloCheck(dns, '[127.0.0.1]', '127.0.0.1', ['127.0.0.1']), { result: 'literal', weight: 0 }, 'a local client');
});

test('a HELO name with an A or AAAA record is fine; without either it is bad; a timeout or failure is unknown', async (t) => {
  const dns = fakeLookups({
    'A mail.example.com': answer('192.0.2.7'),
    'AAAA v6only.example.com': answer('2001:db8::7'),
    'A nodata.example.com': { kind: 'nodata' },
    'AAAA nodata.example.com': { kind: 'nodata' },
    'A slow.example.com': { kind: 'timeout' },
    'A broken.example.com': { kind: 'error', code: 'SERVFAIL' },
    'AAAA broken.example.com': { kind: 'error', code: 'SERVFAIL' },
  });
  t.like(await heloCheck(dns, 'Mail.Example.COM', '192.0.2.7', OURS), { result: 'ok', weight: 0 });
  t.like(await heloCheck(dns, 'v6only.example.com', '192.0.2.7', OURS), { result: 'ok', weight: 0 });
  const none = await heloCheck(dns, 'nowhere.example.com', '192.0.2.7', OURS);
  t.like(none, { result: 'no-address', weight: DEFAULTS.heloWeight });
  t.regex(none.why, /no such name/);
  t.like(await heloCheck(dns, 'nodata.example.com', '192.0.2.7', OURS), { result: 'no-address', weight: DEFAULTS.heloWeight });
  const slow = await heloCheck(dns, 'slow.example.com', '192.0.2.7', OURS);
  t.like(slow, { result: 'unknown', weight: 0 });
  t.regex(slow.why, /no answer in time, neutral$/);
  const broken = await heloCheck(dns, 'broken.example.com', '192.0.2.7', OURS);
  t.like(broken, { result: 'unknown', weight: 0 });
  t.regex(broken.why, /SERVFAIL/);
  const throwing: Lookups = { a: () => Promise.reject(new Error('boom')), aaaa: () => Promise.reject(new Error('boom')), ptr: () => Promise.reject(new Error('boom')) };
  t.like(await heloCheck(throwing, 'mail.example.com', '192.0.2.7', OURS), { result: 'unknown', weight: 0 }, 'a rejecting lookup is no crash');
});

test('generic names: the client\'s address dashed, dotted, padded, hex or backwards, and dial-up words next to numbers', (t) => {
  const generic: [string, string][] = [
    ['dsl-1-2-3-4.pool.example', '1.2.3.4'],
    ['1.2.3.4.dyn.example', '1.2.3.4'],
    ['4-3-2-1.example.net', '1.2.3.4'],
    ['host192-000-002-001.example.net', '192.0.2.1'],
    ['c0000201.example', '192.0.2.1'],
    ['ip192000002001.isp.example', '192.0.2.1'],
    ['p5b0c1e2f.dip0.t-ipconnect.example', '91.12.30.47'],
    ['dynamic-10-20-30.isp.example', '198.51.100.9'],
    ['ppp.45.67.89.isp.example', '198.51.100.9'],
    ['45-67-89-12.cable.isp.example', '198.51.100.9'],
    ['2001-db8--25.dyn.example', '2001:db8::25'],
    ['20010db8000000000000000000000025.example', '2001:db8::25'],
  ];
  for (const [name, ip] of generic) t.true(looksGeneric(name, ip), `${name} for ${ip}`);
  const plain: [string, string][] = [
    ['mail.example.com', '192.0.2.1'],
    ['mx1.example.org', '192.0.2.1'],
    ['smtp-out-2.example.net', '192.0.2.1'],
    ['mail192.example.com', '192.0.2.1'],
    ['mta2-12.example.org', '192.0.2.12'],
    ['host.example.com', '192.0.2.1'],
    ['mx.example.net', '2001:db8::25'],
    ['11-2-3-4.example.net', '1.2.3.4'],
  ];
  for (const [name, ip] of plain) t.false(looksGeneric(name, ip), `${name} for ${ip}`);
  t.true(embedsAddress('p5b0c1e2f.example', '91.12.30.47'), 'hex');
  t.false(embedsAddress('p5b0c1e2f.example', '91.12.30.48'));
});

test('rDNS: confirmed, missing, not confirmed, generic whether confirmed or not, and unknown on a timeout or failure', async (t) => {
  const ip = '192.0.2.10';
  const ptr = `PTR ${reverseName(ip)}`;
  const check = async (table: Record<string, DnsResult>, patterns?: RegExp[]) => rdnsCheck(fakeLookups(table), ip, patterns);

  const ok = await check({ [ptr]: answer('mail.example.com'), 'A mail.example.com': answer('192.0.2.99', '192.0.2.10') });
  t.deepEqual(ok, { check: 'rdns', result: 'confirmed', weight: 0, why: 'rDNS of 192.0.2.10: mail.example.com, forward-confirmed', name: 'mail.example.com' });

  const missing = await check({});
  t.like(missing, { result: 'missing', weight: DEFAULTS.rdnsMissingWeight });
  t.like(await check({ [ptr]: { kind: 'nodata' } }), { result: 'missing', weight: DEFAULTS.rdnsMissingWeight });

  const unconfirmed = await check({ [ptr]: answer('mail.example.com', 'other.example.com'), 'A mail.example.com': answer('192.0.2.99') });
  t.like(unconfirmed, { result: 'unconfirmed', weight: DEFAULTS.rdnsUnconfirmedWeight });
  t.regex(unconfirmed.why, /PTR mail\.example\.com, other\.example\.com does not resolve back/);

  const generic = await check({ [ptr]: answer('dsl-192-0-2-10.pool.example'), 'A dsl-192-0-2-10.pool.example': answer(ip) });
  t.like(generic, { result: 'generic', weight: DEFAULTS.rdnsGenericWeight, name: 'dsl-192-0-2-10.pool.example' });

  const unconfirmedGeneric = await check({ [ptr]: answer('dsl-192-0-2-10.pool.example'), 'A dsl-192-0-2-10.pool.example': answer('192.0.2.99') });
  t.deepEqual(unconfirmedGeneric, {
    check: 'rdns', result: 'generic', weight: DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight, name: 'dsl-192-0-2-10.pool.example',
    why: `rDNS of 192.0.2.10: PTR dsl-192-0-2-10.pool.example does not resolve back to it and looks generic (a dial-up or dynamic line), weight ${DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight}`,
  }, 'a generic name that does not confirm weighs more than one that does, not less');
  t.like(await check({ [ptr]: answer('dsl-192-0-2-10.pool.example') }), { result: 'generic', weight: DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight }, 'no A record at all');
  t.like(await check({ [ptr]: answer('dsl-192-0-2-10.pool.example', 'mail.example.com') }), { result: 'unconfirmed', weight: DEFAULTS.rdnsUnconfirmedWeight },
    'a plain name among them is not generic, as with confirmed names');
  t.like(await check({ [ptr]: answer('mail.example.com') }, [/^mail\./]), { result: 'generic', weight: DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight },
    'the given patterns are used for names that do not confirm too');

  const oneGood = await check({
    [ptr]: answer('dsl-192-0-2-10.pool.example', 'mail.example.com'),
    'A dsl-192-0-2-10.pool.example': answer(ip),
    'A mail.example.com': answer(ip),
  });
  t.like(oneGood, { result: 'confirmed', name: 'mail.example.com' }, 'one plain confirmed name is enough');

  const byFile = await check({ [ptr]: answer('mail.example.com'), 'A mail.example.com': answer(ip) }, [/^mail\./]);
  t.like(byFile, { result: 'generic' }, 'the given patterns are used');

  t.like(await check({ [ptr]: { kind: 'timeout' } }), { result: 'unknown', weight: 0 });
  t.like(await check({ [ptr]: { kind: 'error', code: 'SERVFAIL' } }), { result: 'unknown', weight: 0 });
  const fwdSlow = await check({ [ptr]: answer('mail.example.com'), 'A mail.example.com': { kind: 'timeout' } });
  t.like(fwdSlow, { result: 'unknown', weight: 0 }, 'a forward lookup that times out leaves it open');
  t.regex(fwdSlow.why, /no answer in time, neutral$/);
  const fwdSlowOtherOk = await check({ [ptr]: answer('slow.example.com', 'mail.example.com'), 'A slow.example.com': { kind: 'timeout' }, 'A mail.example.com': answer(ip) });
  t.like(fwdSlowOtherOk, { result: 'confirmed' }, 'a timeout that cannot change the verdict is ignored');
  t.like(await rdnsCheck(fakeLookups({}), 'not-an-address'), { result: 'unknown', weight: 0 });
});

test('rDNS of IPv6 and IPv4-mapped clients asks AAAA and A respectively, and follows at most rdnsMaxNames names', async (t) => {
  const asked: string[] = [];
  const v6 = '2001:db8::25';
  const dns = fakeLookups(
    {
      [`PTR ${reverseName(v6)}`]: answer('mail6.example.com'),
      'AAAA mail6.example.com': answer('2001:DB8:0:0:0:0:0:25'),
      [`PTR ${reverseName('192.0.2.10')}`]: answer(...Array.from({ length: 15 }, (_, i) => `n${i}.example.com`)),
    },
    asked,
  );
  t.like(await rdnsCheck(dns, v6), { result: 'confirmed', name: 'mail6.example.com' });
  t.true(asked.includes('AAAA mail6.example.com'));
  asked.length = 0;
  t.like(await rdnsCheck(dns, '::ffff:192.0.2.10'), { result: 'unconfirmed' });
  t.is(asked.filter((a) => a.startsWith('A ')).length, DEFAULTS.rdnsMaxNames);
  t.true(asked[0] === `PTR ${reverseName('192.0.2.10')}`, 'asked as IPv4');
});

test('a pattern file: one expression a line, comments skipped; a bad one is E_BAD_OPTION naming FILE:LINE; a huge file is refused', async (t) => {
  const dir = await tempDir(t, 'pfgrey-generic-');
  const good = path.join(dir, 'good');
  await writeFile(good, '# generic names\n\n^dyn-\n  \\.pool\\.  \n# end\n');
  const patterns = await loadGenericPatterns(good);
  t.deepEqual(patterns.map((p) => p.source), ['^dyn-', '\\.pool\\.']);
  t.true(patterns[0].test('DYN-x.example'), 'case-insensitive');

  const bad = path.join(dir, 'bad');
  await writeFile(bad, '^ok\n# fine\n(unclosed\n');
  const err = await t.throwsAsync(loadGenericPatterns(bad));
  t.true(isPfgreyError(err) && err.code === 'E_BAD_OPTION');
  t.regex(err?.message ?? '', new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: bad regular expression "\\(unclosed"`));

  const huge = path.join(dir, 'huge');
  await writeFile(huge, 'x\n'.repeat(600));
  const tooBig = await t.throwsAsync(loadGenericPatterns(huge, 1000));
  t.true(isPfgreyError(tooBig) && tooBig.code === 'E_BAD_OPTION');
  t.regex(tooBig?.message ?? '', /larger than 1000 bytes/);

  const missing = await t.throwsAsync(loadGenericPatterns(path.join(dir, 'nope')));
  t.true(isPfgreyError(missing) && missing.code === 'E_BAD_OPTION');
  t.regex(missing?.message ?? '', /nope: .*ENOENT/);
  t.true(DEFAULT_GENERIC_PATTERNS.length > 0);
});

// Against NSD.

const SOA = '@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ IN NS ns.example.test.\n';
const V6_ZONE = '8.b.d.0.1.0.0.2.ip6.arpa';
const V6_PTR = '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0';
const ZONES = {
  'example.test': `$ORIGIN example.test.\n$TTL 300\n${SOA}ns IN A 127.0.0.1
mail IN A 192.0.2.10
mail6 IN AAAA 2001:db8::25
other IN A 198.51.100.1
dsl-192-0-2-20.pool IN A 192.0.2.20
textonly IN TXT "no address"
`,
  '2.0.192.in-addr.arpa': `$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 300\n${SOA}10 IN PTR mail.example.test.
20 IN PTR dsl-192-0-2-20.pool.example.test.
25 IN PTR dsl-192-0-2-25.pool.example.test.
30 IN PTR other.example.test.
`,
  [V6_ZONE]: `$ORIGIN ${V6_ZONE}.\n$TTL 300\n${SOA}${V6_PTR} IN PTR mail6.example.test.
`,
};

test.serial('real HELO and rDNS checks against nsd: confirming, not confirming, generic (confirmed or not) and missing PTRs, IPv6', async (t) => {
  const client = await nsdClient(t, ZONES);
  if (!client) return;
  const dns = () => client.budget(5000);

  t.like(await heloCheck(dns(), 'mail.example.test', '192.0.2.10', OURS), { result: 'ok', weight: 0 });
  t.like(await heloCheck(dns(), 'mail6.example.test', '192.0.2.10', OURS), { result: 'ok', weight: 0 }, 'AAAA only');
  t.like(await heloCheck(dns(), 'textonly.example.test', '192.0.2.10', OURS), { result: 'no-address', weight: DEFAULTS.heloWeight });
  t.like(await heloCheck(dns(), 'nowhere.example.test', '192.0.2.10', OURS), { result: 'no-address', weight: DEFAULTS.heloWeight });
  const refused = await heloCheck(dns(), 'mail.elsewhere.test', '192.0.2.10', OURS);
  t.like(refused, { result: 'unknown', weight: 0 }, 'a zone nsd does not serve is REFUSED: unknown');

  t.like(await rdnsCheck(dns(), '192.0.2.10'), { result: 'confirmed', weight: 0, name: 'mail.example.test' });
  t.like(await rdnsCheck(dns(), '192.0.2.20'), { result: 'generic', weight: DEFAULTS.rdnsGenericWeight, name: 'dsl-192-0-2-20.pool.example.test' });
  t.like(await rdnsCheck(dns(), '192.0.2.25'), { result: 'generic', weight: DEFAULTS.rdnsUnconfirmedWeight + DEFAULTS.rdnsGenericWeight, name: 'dsl-192-0-2-25.pool.example.test' },
    'a dial-up PTR without its A record: not confirmed and generic');
  t.like(await rdnsCheck(dns(), '192.0.2.30'), { result: 'unconfirmed', weight: DEFAULTS.rdnsUnconfirmedWeight });
  t.like(await rdnsCheck(dns(), '192.0.2.40'), { result: 'missing', weight: DEFAULTS.rdnsMissingWeight });
  t.like(await rdnsCheck(dns(), '2001:db8::25'), { result: 'confirmed', name: 'mail6.example.test' });
  t.like(await rdnsCheck(dns(), '2001:db8::26'), { result: 'missing' });
  t.like(await rdnsCheck(dns(), '::ffff:192.0.2.10'), { result: 'confirmed' }, 'IPv4-mapped asks as IPv4');
});

test.serial('a dead resolver makes HELO and rDNS unknown, weight 0, within the budget', async (t) => {
  // The client's own lookup timeout is far above the budget: only the budget can end these.
  const { dead, client } = await deadClient(t);
  const started = Date.now();
  const helo = await heloCheck(client.budget(200), 'mail.example.test', '192.0.2.10', OURS);
  t.like(helo, { result: 'unknown', weight: 0 });
  t.regex(helo.why, /no answer in time, neutral/);
  const rdns = await rdnsCheck(client.budget(200), '192.0.2.10');
  t.like(rdns, { result: 'unknown', weight: 0 });
  const took = Date.now() - started;
  t.true(took < 2 * 200 + BUDGET_SLACK, `two budgets of 200 ms took ${took} ms`);
  t.true(dead.received() >= 1, 'the queries were sent');
});
