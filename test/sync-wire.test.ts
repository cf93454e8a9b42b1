// spamd's sync packets (spamd(8), SYNCHRONISATION; protocol version 2). The golden packets are
// written out byte by byte from the layout, with HMACs computed outside pfgrey, so the decoder
// is held to spamd's layout, not to our own encoder; the encoder must then produce exactly those
// bytes. Mutated, cut and random packets are refused with a reason and never throw.
//
// The seed changes every run; a failure names it. PFGREY_FUZZ_SEED=n repeats a run.

import test from 'ava';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { loadSyncKey } from '../src/sync/key.js';
import { decodePacket, encodePacket, packetSize, type Refusal, type SyncRecord } from '../src/sync/wire.js';
import { isPfgreyError } from '../src/errors.js';
import { memoryLogger } from '../src/log.js';
import { tempDir } from './helpers/daemon.js';
import { addrTlv, END, greyTlv, packet, TEST_KEY, TEST_KEY_FILE, u16 } from './helpers/sync-packets.js';

const SEED = process.env.PFGREY_FUZZ_SEED !== undefined
  ? Number(process.env.PFGREY_FUZZ_SEED)
  : (Date.now() ^ (process.pid << 16)) | 0;

/** The key file's contents and the key spamd derives from it: SHA1File's lower-case hex. */
const KEY_FILE = TEST_KEY_FILE;
const KEY = TEST_KEY;

// Computed with Python's hmac and struct from the layout, not with pfgrey.
const GOLDEN = {
  // counter 7; GREY time 1600000000, 192.0.2.7, <a@b>, <c@d>, helo h (18 + 6 + 6 + 2 = 32 bytes); END
  grey: '0202004400000007be0162d941d07beafd8876fc084a5b5e888e4f4500000000' +
    '000100205f5e1000c00002070006000600023c6140623e003c6340643e006800' + '00000004',
  // counter 0; WHITE time 1600000000, expire 1603110400 (+36 days), 198.51.100.9; END
  white: '02020034000000009b1d006c66a506e5f8e7cddb6589623558d9f09800000000' +
    '000200105f5e10005f8d8600c6336409' + '00000004',
  // counter 2^32 - 1; TRAPPED time 1600000000, expire 1600086400 (+24 h), 203.0.113.5; END
  trapped: '02020034ffffffff47785dc471f96ec5a906f94f64b61dcbcb958f9700000000' +
    '000300105f5e10005f5f6180cb007105' + '00000004',
};
const T = 1_600_000_000_000;

test('the key is the SHA-1 digest of the key file in lower-case hex, as spamd makes it', (t) => {
  t.deepEqual(Buffer.from(createHash('sha1').update(KEY_FILE).digest('hex'), 'ascii'), KEY);
});

test('spamd\'s GREY, WHITE and TRAPPED packets decode to their records', (t) => {
  const grey = decodePacket(Buffer.from(GOLDEN.grey, 'hex'), KEY);
  t.deepEqual(grey, { ok: true, packet: { counter: 7, records: [
    { type: 'GREY', time: T, ip: '192.0.2.7', helo: 'h', from: '<a@b>', to: '<c@d>' },
  ] } });
  t.deepEqual(decodePacket(Buffer.from(GOLDEN.white, 'hex'), KEY), { ok: true, packet: { counter: 0, records: [
    { type: 'WHITE', time: T, expire: 1_603_110_400_000, ip: '198.51.100.9' },
  ] } });
  t.deepEqual(decodePacket(Buffer.from(GOLDEN.trapped, 'hex'), KEY), { ok: true, packet: { counter: 0xffffffff, records: [
    { type: 'TRAPPED', time: T, expire: 1_600_086_400_000, ip: '203.0.113.5' },
  ] } });
});

test('the encoder writes exactly spamd\'s bytes', (t) => {
  t.is(encodePacket([{ type: 'GREY', time: T + 999, ip: '192.0.2.7', helo: 'h', from: '<a@b>', to: '<c@d>' }], 7, KEY).toString('hex'), GOLDEN.grey);
  t.is(encodePacket([{ type: 'WHITE', time: T, expire: 1_603_110_400_000, ip: '198.51.100.9' }], 0, KEY).toString('hex'), GOLDEN.white);
  t.is(encodePacket([{ type: 'TRAPPED', time: T, expire: 1_600_086_400_000, ip: '203.0.113.5' }], 0xffffffff, KEY).toString('hex'), GOLDEN.trapped);
  t.is(packetSize({ type: 'GREY', time: T, ip: '192.0.2.7', helo: 'h', from: '<a@b>', to: '<c@d>' }), 68);
  t.is(packetSize({ type: 'WHITE', time: T, expire: T, ip: '192.0.2.7' }), 52);
});

// --- packets assembled in the test from the layout ------------------------------------------

test('several records in one packet, unpadded GREY records and a missing END are taken, as spamd takes them', (t) => {
  const d = decodePacket(packet([addrTlv(2, '192.0.2.1', 1_700_000_000), greyTlv('192.0.2.2', '<>', '<x@y>', 'mx.example', false),
    addrTlv(3, '192.0.2.3', 1_700_000_001)]), KEY);
  t.true(d.ok);
  if (d.ok) t.deepEqual(d.packet.records.map((r) => `${r.type} ${r.ip}`), ['WHITE 192.0.2.1', 'GREY 192.0.2.2', 'TRAPPED 192.0.2.3']);
});

test('what follows END, or the length field\'s end, is ignored', (t) => {
  const p = packet([addrTlv(2, '192.0.2.1', 1_700_000_000), END, Buffer.from('junk after the end')]);
  const d = decodePacket(p, KEY);
  t.true(d.ok && d.packet.records.length === 1);
  const short = packet([addrTlv(2, '192.0.2.1', 1_700_000_000), END], { length: 52 });
  t.true(decodePacket(Buffer.concat([short, Buffer.from('trailing bytes beyond the length')]), KEY).ok);
});

test('a GREY record keeps every byte of its strings (latin1), as the tarpit records them', (t) => {
  const d = decodePacket(packet([greyTlv('192.0.2.9', '<\xe9t\xe9@example>', '<b@ex>', '[192.0.2.9]'), END]), KEY);
  t.true(d.ok);
  if (d.ok) t.like(d.packet.records[0], { from: '<\xe9t\xe9@example>', helo: '[192.0.2.9]' });
});

const refusals: Array<[string, () => Buffer, Refusal]> = [
  ['a packet shorter than a header', () => packet([addrTlv(2, '192.0.2.1', 1)]).subarray(0, 31), 'short'],
  ['version 1', () => packet([addrTlv(2, '192.0.2.1', 1), END], { version: 1 }), 'version'],
  ['address family 24', () => packet([addrTlv(2, '192.0.2.1', 1), END], { af: 24 }), 'af'],
  ['a length field shorter than the header', () => packet([END], { length: 20 }), 'length'],
  ['a length field over 1408', () => packet([greyTlv('192.0.2.1', 'f'.repeat(1400), 't', 'h'), END]), 'length'],
  ['a datagram cut short of its length field', () => packet([addrTlv(2, '192.0.2.1', 1), END]).subarray(0, 40), 'truncated'],
  ['another key', () => packet([addrTlv(2, '192.0.2.1', 1), END], { key: Buffer.from('0'.repeat(40)) }), 'hmac'],
  ['a record longer than the packet', () => packet([u16(2), u16(40), Buffer.alloc(12)]), 'overrun'],
  ['two bytes where a record header would be', () => packet([addrTlv(2, '192.0.2.1', 1), u16(0)]), 'overrun'],
  ['a WHITE record of 20 bytes', () => packet([u16(2), u16(20), Buffer.alloc(16), END]), 'record'],
  ['a GREY record whose strings overrun it', () => {
    const g = greyTlv('192.0.2.1', 'from', 'to', 'helo');
    g.writeUInt16BE(200, 12);
    return packet([g, END]);
  }, 'record'],
  ['a GREY string without its NUL', () => {
    const g = greyTlv('192.0.2.1', 'from', 'to', 'helo');
    g[18 + 4] = 0x41; // from's NUL
    return packet([g, END]);
  }, 'record'],
  ['a GREY string with a NUL inside', () => {
    const g = greyTlv('192.0.2.1', 'from', 'to', 'helo');
    g[18 + 1] = 0;
    return packet([g, END]);
  }, 'record'],
  ['a GREY string of length 0', () => {
    const g = greyTlv('192.0.2.1', 'from', 'to', 'helo');
    g.writeUInt16BE(0, 16);
    return packet([g, END]);
  }, 'record'],
  ['an unknown record type', () => packet([u16(4), u16(16), Buffer.alloc(12), END]), 'type'],
  ['a zero-length GREY record', () => packet([u16(1), u16(0), END]), 'record'],
];
for (const [what, make, reason] of refusals) {
  test(`refused: ${what} (${reason})`, (t) => {
    const d = decodePacket(make(), KEY);
    t.false(d.ok);
    if (!d.ok) {
      t.is(d.reason, reason, d.detail);
      t.true(d.detail.length > 0);
    }
  });
}

test('the HMAC covers every byte of the packet: any change is refused', (t) => {
  const good = Buffer.from(GOLDEN.grey, 'hex');
  for (let i = 0; i < good.length; i++) {
    if (i >= 8 && i < 28) continue;
    const bad = Buffer.from(good);
    bad[i]! ^= 0x01;
    t.false(decodePacket(bad, KEY).ok, `byte ${i}`);
  }
});

// --- generated damage -------------------------------------------------------------------------

const byteString = fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 300 });
const recordArb: fc.Arbitrary<SyncRecord> = fc.oneof(
  fc.record({
    type: fc.constant('GREY' as const), time: fc.integer({ min: 0, max: 0xffffffff }).map((s) => s * 1000),
    ip: fc.ipV4(), helo: byteString, from: byteString, to: byteString,
  }),
  fc.record({
    type: fc.constantFrom('WHITE' as const, 'TRAPPED' as const), time: fc.integer({ min: 0, max: 0xffffffff }).map((s) => s * 1000),
    expire: fc.integer({ min: 0, max: 0xffffffff }).map((s) => s * 1000), ip: fc.ipV4(),
  }),
);

test('a packet the encoder writes decodes to the same records', (t) => {
  fc.assert(fc.property(recordArb, fc.integer({ min: 0, max: 0xffffffff }), (record, counter) => {
    if (packetSize(record) > 1408) return t.throws(() => encodePacket([record], counter, KEY)) !== undefined;
    const d = decodePacket(encodePacket([record], counter, KEY), KEY);
    return d.ok && d.packet.counter === counter && JSON.stringify(d.packet.records) === JSON.stringify([record]);
  }), { seed: SEED, numRuns: 500 });
  t.pass();
});

const REASONS = new Set(['short', 'version', 'af', 'length', 'truncated', 'hmac', 'overrun', 'record', 'type']);

/** Decodes and reports whether the result is well formed; a throw fails the property. */
function wellFormed(b: Buffer, key: Buffer): boolean {
  const d = decodePacket(b, key);
  return d.ok ? Array.isArray(d.packet.records) : REASONS.has(d.reason) && d.detail.length > 0;
}

test('mutated, cut and random packets are refused without a throw; a changed one never passes the HMAC', (t) => {
  const goods = [...Object.values(GOLDEN).map((h) => Buffer.from(h, 'hex')),
    packet([greyTlv('192.0.2.2', '<a@b>', '<c@d>', 'helo.example'), addrTlv(3, '192.0.2.4', 5), END])];
  fc.assert(fc.property(fc.constantFrom(...goods), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }),
    (good, flips) => {
      const bad = Buffer.from(good);
      for (const [at, x] of flips) bad[at % bad.length]! ^= x;
      if (bad.equals(good)) return true;
      const d = decodePacket(bad, KEY);
      return wellFormed(bad, KEY) && !d.ok;
    }), { seed: SEED, numRuns: 2000 });
  fc.assert(fc.property(fc.constantFrom(...goods), fc.nat(), (good, n) => {
    const cut = good.subarray(0, n % good.length);
    return wellFormed(cut, KEY) && !decodePacket(cut, KEY).ok;
  }), { seed: SEED, numRuns: 500 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => wellFormed(Buffer.from(bytes), KEY)), { seed: SEED, numRuns: 2000 });
  t.pass();
});

test('packets whose HMAC is right but whose records are damaged are refused, never thrown', (t) => {
  // Valid header and HMAC around generated record bytes: the record walk is what is tested.
  fc.assert(fc.property(fc.array(fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 2000 }), fc.uint8Array({ maxLength: 40 }))
      .map(([type, len, rest]) => Buffer.concat([u16(type), u16(len), Buffer.from(rest)])),
  ), { maxLength: 6 }), (parts) => {
    const p = packet(parts);
    return p.length > 1408 || wellFormed(p, KEY);
  }), { seed: SEED, numRuns: 3000 });
  t.pass();
});

// --- the key file -----------------------------------------------------------------------------

test('the key file: its digest keys the HMAC; missing, a link, someone else\'s or writable by others is refused', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'spamd.key');
  await fs.writeFile(file, KEY_FILE, { mode: 0o600 });
  const log = memoryLogger();
  t.deepEqual(await loadSyncKey(file, log), KEY);
  t.deepEqual(log.lines, []);

  const refused = async (p: string, pattern: RegExp) => {
    const err = await t.throwsAsync(loadSyncKey(p, log));
    t.true(isPfgreyError(err) && err.code === 'E_SYNC_KEY', err?.message);
    t.regex(err!.message, pattern);
  };
  await refused(path.join(dir, 'missing.key'), /missing\.key: no such file; create one .*openssl rand/);
  await fs.symlink(file, path.join(dir, 'link.key'));
  await refused(path.join(dir, 'link.key'), /symbolic link/);
  await fs.mkdir(path.join(dir, 'dir.key'));
  await refused(path.join(dir, 'dir.key'), /not a plain file/);
  await fs.chmod(file, 0o620);
  await refused(file, /may be written by others/);
  await fs.chmod(file, 0o644);
  t.deepEqual(await loadSyncKey(file, log), KEY);
  t.true(log.lines.some((l) => /may be read by every user/.test(l)));
  if (process.getuid?.() === 0) {
    await fs.chown(file, 4242, 4242);
    await refused(file, /belongs to uid 4242/);
  }
});
