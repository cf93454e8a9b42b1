import test from 'ava';
import fc from 'fast-check';
import {
  cidrToRange, formatCidr, formatIPv4, mergeRanges, parseCidr, parseCidr6, parseIPv4, parseIPv6,
  parseNetV4, rangesToCidrs, subtractRanges, V4_MAX, type Range,
} from '../src/blacklist/cidr.js';

// Addresses crowd near both ends of the space so that ranges overlap and touch often, and the
// arithmetic meets 0.0.0.0, 255.255.255.255 and the 2³¹ boundary.
const addr = fc.oneof(
  fc.integer({ min: 0, max: 600 }),
  fc.integer({ min: V4_MAX - 600, max: V4_MAX }),
  fc.integer({ min: 2 ** 31 - 300, max: 2 ** 31 + 300 }),
  fc.integer({ min: 0, max: V4_MAX }),
);
const range = fc.tuple(addr, addr).map(([a, b]): Range => ({ start: Math.min(a, b), end: Math.max(a, b) }));
const ranges = fc.array(range, { maxLength: 25 });

const inAny = (rs: readonly Range[], ip: number) => rs.some((r) => r.start <= ip && ip <= r.end);

/** Addresses worth probing: every range edge and its neighbours, and a few random ones. */
function probes(rs: readonly Range[], extra: number[]): number[] {
  const out = [0, V4_MAX, ...extra];
  for (const r of rs) out.push(r.start - 1, r.start, r.start + 1, r.end - 1, r.end, r.end + 1);
  return out.filter((p) => p >= 0 && p <= V4_MAX);
}

function wellFormed(t: { true(v: boolean, m?: string): void }, rs: Range[]): void {
  for (let i = 0; i < rs.length; i++) {
    t.true(rs[i]!.start <= rs[i]!.end, 'start ≤ end');
    if (i > 0) t.true(rs[i - 1]!.end + 1 < rs[i]!.start, 'sorted, apart, not touching');
  }
}

test('merging is idempotent, ignores order and keeps exactly the same addresses', (t) => {
  fc.assert(fc.property(
    ranges.chain((rs) => fc.tuple(fc.constant(rs), fc.shuffledSubarray(rs, { minLength: rs.length, maxLength: rs.length }))),
    fc.array(addr, { maxLength: 20 }),
    ([rs, shuffled], extra) => {
      const merged = mergeRanges(rs);
      t.deepEqual(mergeRanges(merged), merged);
      t.deepEqual(mergeRanges(shuffled), merged);
      wellFormed(t, merged);
      for (const p of probes(rs, extra)) t.is(inAny(merged, p), inAny(rs, p), `probe ${formatIPv4(p)}`);
    },
  ));
});

test('subtraction keeps an address iff it is in black and not in white', (t) => {
  fc.assert(fc.property(ranges, ranges, fc.array(addr, { maxLength: 20 }), (black, white, extra) => {
    const result = subtractRanges(black, white);
    wellFormed(t, result);
    for (const p of probes([...black, ...white], extra)) {
      t.is(inAny(result, p), inAny(black, p) && !inAny(white, p), `probe ${formatIPv4(p)}`);
    }
  }));
});

test('ranges become aligned CIDR blocks that cover exactly them and cannot be merged further', (t) => {
  fc.assert(fc.property(ranges, (rs) => {
    const cidrs = rangesToCidrs(rs);
    const back = cidrs.map(cidrToRange);
    t.deepEqual(mergeRanges(back), mergeRanges(rs), 'round trip');
    for (let i = 0; i < cidrs.length; i++) {
      const c = cidrs[i]!;
      t.is(c.addr % 2 ** (32 - c.bits), 0, `${formatCidr(c)} is aligned`);
      if (i === 0) continue;
      const prev = cidrs[i - 1]!;
      t.true(back[i - 1]!.end < back[i]!.start, 'ascending, no overlap');
      // Two touching blocks of one size that start on a boundary of twice that size are one block.
      const mergeable = prev.bits === c.bits && back[i - 1]!.end + 1 === c.addr && prev.addr % 2 ** (33 - c.bits) === 0;
      t.false(mergeable, `${formatCidr(prev)} and ${formatCidr(c)} should have been one block`);
    }
  }));
});

test('rangesToCidrs cuts a range into the largest aligned blocks', (t) => {
  const show = (start: string, end: string) =>
    rangesToCidrs([{ start: parseIPv4(start)!, end: parseIPv4(end)! }]).map(formatCidr);
  t.deepEqual(show('10.0.0.0', '10.255.255.255'), ['10.0.0.0/8']);
  t.deepEqual(show('1.2.3.4', '1.2.3.9'), ['1.2.3.4/30', '1.2.3.8/31']);
  t.deepEqual(show('0.0.0.0', '255.255.255.255'), ['0.0.0.0/0']);
  t.deepEqual(show('255.255.255.255', '255.255.255.255'), ['255.255.255.255/32']);
  t.deepEqual(show('127.255.255.255', '128.0.0.0'), ['127.255.255.255/32', '128.0.0.0/32']);
  t.deepEqual(rangesToCidrs([]), []);
});

test('dotted quads parse strictly, as inet_pton takes them', (t) => {
  t.is(parseIPv4('0.0.0.0'), 0);
  t.is(parseIPv4('255.255.255.255'), V4_MAX);
  t.is(parseIPv4('192.0.2.7'), 0xc0000207);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.0.0.1', '1.2.3.4 ', '1..3.4', 'a.b.c.d', '1.2.3.-4', '1.2.3.4.']) {
    t.is(parseIPv4(bad), undefined, bad);
  }
  t.is(formatIPv4(0xc0000207), '192.0.2.7');
  t.is(formatIPv4(V4_MAX), '255.255.255.255');
});

test('inet_net_pton forms fill missing octets with zeros', (t) => {
  t.is(parseNetV4('10'), parseIPv4('10.0.0.0'));
  t.is(parseNetV4('192.168'), parseIPv4('192.168.0.0'));
  t.is(parseNetV4('172.16.5'), parseIPv4('172.16.5.0'));
  t.is(parseNetV4('010.001.0.1'), parseIPv4('10.1.0.1'), 'leading zeros are decimal');
  for (const bad of ['', '256', '1.2.3.4.5', '1.', 'x', '0x0a']) t.is(parseNetV4(bad), undefined, bad);
});

test('CIDR blocks parse strictly and their host bits are masked off', (t) => {
  t.deepEqual(parseCidr('10.1.2.3/8'), { addr: parseIPv4('10.1.2.3')!, bits: 8 });
  t.deepEqual(cidrToRange(parseCidr('10.1.2.3/8')!), { start: parseIPv4('10.0.0.0')!, end: parseIPv4('10.255.255.255')! });
  t.deepEqual(cidrToRange({ addr: 5, bits: 0 }), { start: 0, end: V4_MAX });
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/', '10/8', '10.0.0.0/8x', '10.0.0.0/-1']) {
    t.is(parseCidr(bad), undefined, bad);
  }
});

test('IPv6 literals parse to 128-bit numbers, and blocks to ranges', (t) => {
  t.is(parseIPv6('::'), 0n);
  t.is(parseIPv6('::1'), 1n);
  t.is(parseIPv6('::ffff:192.0.2.7'), 0xffffc0000207n);
  t.is(parseIPv6('2001:db8::8:800:200c:417a'), 0x20010db8000000000008_0800200c417an);
  t.is(parseIPv6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), (1n << 128n) - 1n);
  t.is(parseIPv6('1:2:3:4:5:6:7:8'), 0x0001000200030004000500060007_0008n);
  for (const bad of ['', '1.2.3.4', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', ':::']) t.is(parseIPv6(bad), undefined, bad);
  const b = parseCidr6('2001:db8::1/32');
  t.is(b?.bits, 32);
  t.is(b?.range.start, 0x20010db8n << 96n);
  t.is(b?.range.end, ((0x20010db8n + 1n) << 96n) - 1n);
  t.is(parseCidr6('2001:db8::/129'), undefined);
});
