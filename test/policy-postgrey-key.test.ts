import test from 'ava';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { isPfgreyError } from '../src/errors.js';
import {
  asciiLower, awlClientKey, clientNet, decodeSrs, normaliseSender, parseClientAddress, postgreyKey, privateKey,
  RecentInstances, rfc5322Date, tripletKey, xGreylistHeader,
} from '../src/policy/postgrey-key.js';
import { dbDumpCommand, perlOracle, postgreyMissing, startPostgrey } from './helpers/postgrey.js';
import { lacking } from './helpers/require.js';

const sha1 = (s: string) => createHash('sha1').update(Buffer.from(s, 'latin1')).digest('hex');

// --- senders -------------------------------------------------------------------------------

test('senders: extensions, VERP numbers and addresses without @ as postgrey leaves them', (t) => {
  const cases: [string, string][] = [
    ['Foo.Bar+list-123@Example.COM', 'Foo.Bar@Example.COM'],
    ['list-bounces+user=example.com@lists.example', 'list-bounces@lists.example'],
    ['bounce-4711-42@lists.example', 'bounce-#-#@lists.example'],
    ['x-00042-y@x', 'x-#-y@x'],
    ['42.a@x', '#.a@x'],
    ['a1@x', 'a1@x'], // no word boundary between a and 1
    ['user_42@x', 'user_42@x'], // _ is a word character
    ['a+b+c@x', 'a@x'],
    ['joe@host123.example', 'joe@host123.example'], // the domain is kept
    ['', ''],
    ['postmaster', 'postmaster'],
    ['12345', '12345'], // no @: unchanged, numbers too
    ['@x', '@x'],
    ['a@', 'a@'],
    ['a@b@c', 'a@b@c'],
    // Latin-1 bytes are not word characters, in Perl on bytes as in JavaScript without /u
    // (seen in a real postgrey's database).
    ['Ab\u00c9\u00e9-12\u00e912@x', 'Ab\u00c9\u00e9-#\u00e9#@x'],
  ];
  for (const [input, out] of cases) t.is(normaliseSender(input), out, JSON.stringify(input));
});

test('senders: BATV in both orders, and what postgrey leaves of the odd ones', (t) => {
  const cases: [string, string][] = [
    ['prvs=1234567890=joe@example.org', 'joe@example.org'], // prvs=tag-val=loc-core (standard)
    ['prvs=joe=1234567890@example.org', 'joe@example.org'], // prvs=loc-core=tag-val (seen too)
    ['prvs=0123abcdef=joe+x-12@example.org', 'joe@example.org'],
    ['prvs=0123456789=abcdefghij@x', 'abcdefghij@x'], // both look like tags: the standard order
    ['prvs=a=b@x', 'b@x'], // neither: the standard order
    ['prvs=ABCDEFGHIJ=joe@x', 'joe@x'], // tags are lower-case: neither matches, standard order
    ['PRVS=1234567890=joe@x', 'PRVS=#=joe@x'], // postgrey's prvs= is case-sensitive
    ['prvs=1234567890=joe=x@y', 'prvs=#=joe=x@y'], // four fields: not BATV
    ['prvs=1234567890=@y', 'prvs=#=@y'], // Perl's split drops the trailing empty field: two fields
    ['prvs==joe@y', 'joe@y'],
  ];
  for (const [input, out] of cases) t.is(normaliseSender(input), out, JSON.stringify(input));
});

test('senders: SRS0 and SRS1 become the original sender, whatever the hash, stamp and forwarder', (t) => {
  const cases: [string, string][] = [
    ['SRS0=HHH4=TT=orig.example=Joe.User@fwd.example', 'Joe.User@orig.example'],
    ['srs0+abcd=2K=orig.example=joe+tag@fwd', 'joe@orig.example'],
    ['SRS0-ab+/=XY=orig.example=user=with=eq@fwd', 'user=with=eq@orig.example'],
    ['SRS1=ZZZZ=fwd1.example==HHHH=TT=orig.example=joe@fwd2.example', 'joe@orig.example'],
    ['SRS1+ZZZZ=fwd1.example=+HHHH=TT=orig.example=joe@fwd2.example', 'joe@orig.example'],
    // BATV inside SRS, and numbers, are then handled as postgrey handles them.
    ['SRS0=abcd=AB=example.org=prvs=1234567890=joe@fwd', 'joe@example.org'],
    ['SRS0=abcd=AB=lists.example=bounce-4711@fwd', 'bounce-#@lists.example'],
    // Not SRS: a stamp of other than two characters, a missing field.
    ['SRS0=HHH=T=d.example=l@x', 'SRS0=HHH=T=d.example=l@x'],
    ['SRS0=broken@x', 'SRS0=broken@x'],
  ];
  for (const [input, out] of cases) t.is(normaliseSender(input), out, JSON.stringify(input));
  t.is(decodeSrs('SRS1=ZZZZ=fwd1.example==HHHH=TT=orig.example=joe@fwd2.example'), 'SRS0=HHHH=TT=orig.example=joe@fwd1.example');
  t.is(decodeSrs('joe@example.org'), undefined);
  // srs: false is postgrey 1.37, which knows no SRS.
  t.is(normaliseSender('SRS0=HHH4=TT=orig.example=joe@fwd', { srs: false }), 'SRS0=HHH4=TT=orig.example=joe@fwd');
  // One original sender forwarded on two days, and through a second forwarder: one key.
  const keys = [
    'SRS0=a1B2=2K=orig.example=joe@fwd.example',
    'SRS0=Zz9/=2L=orig.example=joe@fwd.example',
    'SRS1=Qq+q=fwd.example==a1B2=2K=orig.example=joe@fwd2.example',
  ].map((sender) => tripletKey({ clientAddress: '192.0.2.7', sender, recipient: 'rcpt@example.net' }));
  t.deepEqual(new Set(keys).size, 1);
  t.is(keys[0], '192.0.2.0/joe@orig.example/rcpt@example.net');
});

// --- clients -------------------------------------------------------------------------------

test('client networks as postgrey writes them: IPv4 dotted, IPv6 in NetAddr::IP\'s full upper-case form', (t) => {
  t.is(clientNet('192.0.2.77'), '192.0.2.0');
  t.is(clientNet('192.0.2.77', { ipv4cidr: 16 }), '192.0.0.0');
  t.is(clientNet('192.0.2.77', { ipv4cidr: 25 }), '192.0.2.0');
  t.is(clientNet('192.0.2.200', { ipv4cidr: 25 }), '192.0.2.128');
  t.is(clientNet('192.0.2.77', { ipv4cidr: 32 }), '192.0.2.77');
  t.is(clientNet('255.255.255.255', { ipv4cidr: 0 }), '0.0.0.0');
  t.is(clientNet('2001:db8:1:2:3:4:5:6'), '2001:DB8:1:2:0:0:0:0');
  t.is(clientNet('2001:db8:1:2:3:4:5:6', { ipv6cidr: 48 }), '2001:DB8:1:0:0:0:0:0');
  t.is(clientNet('2001:db8:1:2:3:4:5:6', { ipv6cidr: 128 }), '2001:DB8:1:2:3:4:5:6');
  t.is(clientNet('2001:db8:1:2:3:4:5:6', { ipv6cidr: 0 }), '0:0:0:0:0:0:0:0');
  t.is(clientNet('2001:0DB8:0000::00ff'), '2001:DB8:0:0:0:0:0:0');
  t.is(clientNet('::1'), '0:0:0:0:0:0:0:0');
  t.is(clientNet('fe80::1:2:3:4', { ipv6cidr: 96 }), 'FE80:0:0:0:1:2:0:0');
  // --lookup-by-host: postgrey puts NetAddr::IP's text, with the prefix length, in the key.
  t.is(clientNet('192.0.2.77', { byHost: true }), '192.0.2.77/32');
  t.is(clientNet('2001:db8::1', { byHost: true }), '2001:DB8:0:0:0:0:0:1/128');
  // IPv4-mapped: the IPv4 address (postgrey would make it IPv6 and 0:0:0:0:0:0:0:0 at /64).
  t.is(clientNet('::ffff:192.0.2.77'), '192.0.2.0');
  t.is(clientNet('::FFFF:c000:024d', { byHost: true }), '192.0.2.77/32');
  t.deepEqual(parseClientAddress('::ffff:192.0.2.1'), { family: 4, v4: 0xc0000201, mapped: 0xffffc0000201n });
  // What is not an address, or a prefix out of range.
  for (const bad of ['unknown', '', '192.0.2', '010.0.0.1', 'fe80::1%eth0', '1.2.3.4/24']) {
    const err = t.throws(() => clientNet(bad));
    t.true(isPfgreyError(err) && err.code === 'E_BAD_ADDRESS', bad);
  }
  const err = t.throws(() => clientNet('192.0.2.1', { ipv4cidr: 33 }));
  t.true(isPfgreyError(err) && err.code === 'E_BAD_OPTION');
  t.throws(() => clientNet('::1', { ipv6cidr: 129 }));
  t.throws(() => clientNet('::1', { ipv6cidr: 1.5 }));
});

test('keys: lower-cased as Perl lc does (ASCII only), hashed with --privacy, and the auto-whitelist key', (t) => {
  t.is(postgreyKey('2001:DB8:1:2:0:0:0:0', 'Ab\u00c9@X.Example', 'User@Example.NET'), '2001:db8:1:2:0:0:0:0/ab\u00c9@x.example/user@example.net');
  t.is(asciiLower('ÀBC\u00ff'), 'Àbc\u00ff');
  t.is(tripletKey({ clientAddress: '192.0.2.77', sender: 'Foo.Bar+list-123@Example.COM', recipient: 'User@Example.NET' }),
    '192.0.2.0/foo.bar@example.com/user@example.net');
  t.is(tripletKey({ clientAddress: '192.0.2.77', sender: '', recipient: 'x@y.z' }, { byHost: true }), '192.0.2.77/32//x@y.z');
  // Known answers from a real postgrey 1.37 (--privacy --ipv6cidr=48), read with db_dump.
  t.is(tripletKey({ clientAddress: '2001:db8:1:2:3:4:5:6', sender: 'A@B', recipient: 'C@D' }, { privacy: true, ipv6cidr: 48 }),
    'd4b0df789aa35bd2a3bcdea494f5234e6f43a850');
  t.is(awlClientKey('2001:db8:1:2:3:4:5:6', { privacy: true }), 'ec22b9e3cf64cd64505e39dffb5663a9628b8253');
  t.is(awlClientKey('2001:db8:1:2:3:4:5:6'), '2001:DB8:1:2:3:4:5:6'); // not lower-cased
  t.is(awlClientKey('192.0.2.77'), '192.0.2.77');
  t.is(awlClientKey('::ffff:192.0.2.77'), '192.0.2.77');
  // privateKey is sha1_hex of the bytes.
  t.is(privateKey('abc'), 'a9993e364706816aba3e25717850c26c9cd0d89d');
  t.is(privateKey('\u00e9'), sha1('\u00e9'));
  t.is(privateKey('192.0.2.0/a@b/c@d'), sha1('192.0.2.0/a@b/c@d'));
});

// --- the header ----------------------------------------------------------------------------

test('X-Greylist: each placeholder once, in postgrey\'s order %t %v %d %h, values taken literally', (t) => {
  const date = new Date(Date.UTC(2026, 11, 3, 1, 52, 38));
  const v = { delaySeconds: 312, version: '0.1.0', hostname: 'mx.example', date, zoneOffsetMinutes: 0 };
  t.is(xGreylistHeader('X-Greylist: delayed %t seconds by postgrey-%v at %h; %d', v),
    'X-Greylist: delayed 312 seconds by postgrey-0.1.0 at mx.example; Thu, 03 Dec 2026 01:52:38 +0000');
  t.is(xGreylistHeader('%t %t %v %v %h %h %d %d', v), '312 %t 0.1.0 %v mx.example %h Thu, 03 Dec 2026 01:52:38 +0000 %d');
  // %v goes in before %d is looked for, %h last: a %d in the version is filled, one in the host name is not.
  t.is(xGreylistHeader('[%v] %d', { ...v, version: 'v%d' }), '[vThu, 03 Dec 2026 01:52:38 +0000] %d');
  t.is(xGreylistHeader('%h %d', { ...v, hostname: 'h%d' }), 'h%d Thu, 03 Dec 2026 01:52:38 +0000');
  t.is(xGreylistHeader('%h', { ...v, hostname: "a$&b$1c$'d" }), "a$&b$1c$'d");
  t.is(xGreylistHeader('%t', { ...v, delaySeconds: 12.9 }), '12');
  t.is(xGreylistHeader('no placeholders', v), 'no placeholders');
});

test('RFC 5322 dates: English names, two-digit day, numeric zone', (t) => {
  const d = new Date(Date.UTC(2026, 11, 3, 1, 52, 38));
  t.is(rfc5322Date(d, 0), 'Thu, 03 Dec 2026 01:52:38 +0000');
  t.is(rfc5322Date(d, 60), 'Thu, 03 Dec 2026 02:52:38 +0100');
  t.is(rfc5322Date(d, -330), 'Wed, 02 Dec 2026 20:22:38 -0530');
  t.is(rfc5322Date(new Date(Date.UTC(2024, 1, 29, 23, 59, 59)), 345), 'Fri, 01 Mar 2024 05:44:59 +0545');
  t.regex(rfc5322Date(new Date()), /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}$/);
  t.throws(() => rfc5322Date(new Date(NaN), 0));
  fc.assert(fc.property(fc.date({ min: new Date(0), max: new Date(Date.UTC(9999, 0)), noInvalidDate: true }), fc.integer({ min: -14 * 60, max: 14 * 60 }), (date, off) => {
    const s = rfc5322Date(date, off);
    // The text read back (Date.parse takes RFC 5322) is the same instant, to the second.
    t.is(Date.parse(s), Math.floor(date.getTime() / 1000) * 1000);
  }));
});

test('recent instances: the last ten, a repeated one is not new and does not move, none is always new', (t) => {
  const r = new RecentInstances();
  t.true(r.isNew('m0'));
  t.false(r.isNew('m0'));
  for (let i = 1; i <= 9; i++) t.true(r.isNew(`m${i}`));
  t.false(r.isNew('m0')); // ten held: m0 … m9
  t.true(r.isNew('m10')); // m0 goes
  t.true(r.isNew('m0'));
  t.false(r.isNew('m10'));
  t.true(r.isNew(undefined));
  t.true(r.isNew(undefined));
  t.true(r.isNew(''));
  t.false(r.isNew(''));
  const two = new RecentInstances(2);
  t.true(two.isNew('a'));
  t.true(two.isNew('b'));
  t.true(two.isNew('c'));
  t.true(two.isNew('a'));
  t.throws(() => new RecentInstances(0));
});

// --- against postgrey's own code -----------------------------------------------------------

/** Latin-1 text without LF or TAB (the oracle's separators), rich in what the rules look at. */
const latin1Piece = fc.constantFrom(
  'prvs=', 'PRVS=', 'SRS0=', '=', '==', '+', '@', '-', '_', '.', '0', '7', '42', '1234567890', 'abcdefghij', 'ab',
  'joe', 'Joe', 'X', '\u00c9', '\u00e9', '\u00b5', '\u00a0', '\u00ff', '\r', ' ', '#', '\\', '$&',
);
const latin1Text = fc.array(latin1Piece, { maxLength: 12 }).map((a) => a.join(''));
const anyLatin1 = fc.string({ unit: fc.integer({ min: 0, max: 255 }).filter((c) => c !== 10 && c !== 9).map((c) => String.fromCharCode(c)), maxLength: 40 });

test('senders, networks, the auto-whitelist key, lc and sha1_hex agree with postgrey\'s own functions', (t) => {
  const missing = postgreyMissing();
  if (missing) { lacking(t, missing); return; }
  const senders = [...fc.sample(latin1Text, { numRuns: 3000, seed: 1 }), ...fc.sample(anyLatin1, { numRuns: 500, seed: 2 })];
  const got = perlOracle(senders.map((s) => ['S', s]));
  senders.forEach((s, i) => t.is(normaliseSender(s, { srs: false }), got[i], JSON.stringify(s)));

  const v6 = fc.oneof(fc.ipV6(), fc.tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n })).map(([n]) => n.toString(16).padStart(32, '0').replace(/(....)(?!$)/g, '$1:')));
  // IPv4-mapped addresses are left out: pfgrey reads them as IPv4 on purpose (see postgrey-key.ts).
  const address = fc.oneof(fc.ipV4(), v6).filter((ip) => {
    const a = parseClientAddress(ip);
    return a !== undefined && !(a.family === 4 && a.mapped !== undefined);
  });
  const clients = fc.sample(fc.record({ ip: address, v4: fc.integer({ min: 0, max: 32 }), v6: fc.integer({ min: 0, max: 128 }), byHost: fc.boolean() }), { numRuns: 2000, seed: 3 });
  const nets = perlOracle(clients.map((c) => ['C', String(c.v4), String(c.v6), c.byHost ? '1' : '', c.ip]));
  clients.forEach((c, i) => t.is(clientNet(c.ip, { ipv4cidr: c.v4, ipv6cidr: c.v6, byHost: c.byHost }), nets[i], JSON.stringify(c)));
  const awl = perlOracle(clients.map((c) => ['A', c.ip]));
  clients.forEach((c, i) => t.is(awlClientKey(c.ip), awl[i], c.ip));

  const texts = fc.sample(anyLatin1, { numRuns: 1000, seed: 4 });
  const lc = perlOracle(texts.map((s) => ['L', s]));
  texts.forEach((s, i) => t.is(asciiLower(s), lc[i], JSON.stringify(s)));
  const hashes = perlOracle(texts.map((s) => ['H', s]));
  texts.forEach((s, i) => t.is(privateKey(s), hashes[i], JSON.stringify(s)));
});

// --- against a running postgrey's database -------------------------------------------------

interface Req { client_address: string; client_name: string; sender: string; recipient: string; instance?: string }

const REQUESTS: Req[] = [
  { client_address: '192.0.2.77', client_name: 'mail.example.com', sender: 'Foo.Bar+list-123@Example.COM', recipient: 'User@Example.NET' },
  { client_address: '192.0.2.78', client_name: 'unknown', sender: 'prvs=1234567890=joe@example.org', recipient: 'x@y.z' },
  { client_address: '198.51.100.200', client_name: 'unknown', sender: 'prvs=joe=1234567890@example.org', recipient: 'x@y.z' },
  { client_address: '203.0.113.5', client_name: 'unknown', sender: 'Ab\u00c9\u00e9-12\u00e912@X', recipient: 'Z\u00c9@y' },
  { client_address: '203.0.113.6', client_name: 'unknown', sender: '', recipient: 'postmaster@y' },
  { client_address: '2001:db8:1:2:3:4:5:6', client_name: 'unknown', sender: 'bounce-4711-42@lists.example', recipient: 'x@y.z' },
  { client_address: '2001:DB8:0:0:0:0:0:1', client_name: 'unknown', sender: 'a+b@c', recipient: 'D@E' },
  { client_address: 'fe80::abcd:1', client_name: 'unknown', sender: 'SRS0=HHH4=TT=orig.example=joe@fwd.example', recipient: 'x@y.z' },
  { client_address: '10.255.255.255', client_name: 'unknown', sender: 'noat', recipient: 'x@y.z' },
];

const CONFIGS: { args: string[]; opts: { byHost?: boolean; ipv4cidr?: number; ipv6cidr?: number; privacy?: boolean } }[] = [
  { args: [], opts: {} },
  { args: ['--ipv4cidr=16', '--ipv6cidr=48', '--privacy'], opts: { ipv4cidr: 16, ipv6cidr: 48, privacy: true } },
  { args: ['--lookup-by-host'], opts: { byHost: true } },
  { args: ['--ipv4cidr=25', '--ipv6cidr=96'], opts: { ipv4cidr: 25, ipv6cidr: 96 } },
];

const HEADER = 'X-Test: %t %t %v %h %d %h';
const DATE = /\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d (?:UTC|\+0000)/;

for (const { args, opts } of CONFIGS) {
  test.serial(`a running postgrey ${args.join(' ') || '(defaults)'} stores exactly our keys, and its header is ours`, async (t) => {
    const missing = postgreyMissing() ?? (dbDumpCommand() ? undefined : 'db_dump is not installed (apt-get install db5.3-util)');
    if (missing) { lacking(t, missing); return; }
    const pg = await startPostgrey([
      '--delay=300', '--whitelist-clients=/dev/null', '--whitelist-recipients=/dev/null', '--auto-whitelist-clients=1',
      `--x-greylist-header=${HEADER}`, '--hostname=h$&x', ...args,
    ]);
    try {
      // First seen at 1000 (greylisted), back at 2000: passed, with a header for a new
      // instance, and the client counted in the auto-whitelist. Requests 0 and 1 share an
      // instance: the second gets no header.
      const first = await pg.ask(REQUESTS.map((r) => ({ ...r, policy_test_time: '1000' })));
      for (const a of first) t.regex(a, /^action=DEFER_IF_PERMIT /);
      const instances = new RecentInstances();
      const again = REQUESTS.map((r, i) => ({ ...r, instance: i <= 1 ? 'shared' : `m${i}`, policy_test_time: '2000' }));
      const second = await pg.ask(again);
      second.forEach((answer, i) => {
        const ours = instances.isNew(again[i]!.instance)
          ? `action=PREPEND ${xGreylistHeader(HEADER, { delaySeconds: 1000, version: '1.37', hostname: 'h$&x', date: new Date(), zoneOffsetMinutes: 0 })}`
          : 'action=DUNNO';
        t.is(answer.replace(DATE, '<date>'), ours.replace(DATE, '<date>'), `request ${i}`);
      });

      const triplets = pg.dump('postgrey.db');
      const expected = new Set(REQUESTS.map((r) => tripletKey({ clientAddress: r.client_address, sender: r.sender, recipient: r.recipient }, { ...opts, srs: false })));
      t.deepEqual([...triplets.keys()].sort(), [...expected].sort());
      for (const v of triplets.values()) t.is(v, '1000,2000');
      const clients = pg.dump('postgrey_clients.db');
      t.deepEqual([...clients.keys()].sort(), REQUESTS.map((r) => awlClientKey(r.client_address, { privacy: opts.privacy })).sort());
    } finally {
      await pg.stop();
    }
  });
}
