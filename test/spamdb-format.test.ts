import test from 'ava';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { PfgreyError } from '../src/errors.js';
import { greyKey, type Entry } from '../src/grey/entry.js';
import { entryToJson, formatEntry, parseLine } from '../src/grey/spamdb-format.js';

const S = 1000;

test('a GREY entry lists as spamdb prints it', (t) => {
  const e: Entry = {
    key: greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<b@us>'),
    first: 1700000000 * S,
    pass: 1700014400 * S,
    expire: 1700014400 * S,
    bcount: 1,
    pcount: 0,
  };
  t.is(formatEntry(e), 'GREY|192.0.2.7|mx.ex|<a@ex>|<b@us>|1700000000|1700014400|1700014400|1|0');
});

test('times are printed as whole seconds, rounded down', (t) => {
  const e: Entry = { key: '192.0.2.7', first: 1700000000999, pass: 1700000001000, expire: 1700000002500, bcount: 3, pcount: 2 };
  t.is(formatEntry(e), 'WHITE|192.0.2.7|||1700000000|1700000001|1700000002|3|2');
});

test('a WHITE entry has two empty fields between ip and times', (t) => {
  const e: Entry = { key: '2001:db8::1', first: 10 * S, pass: 20 * S, expire: 30 * S, bcount: 4, pcount: 5 };
  t.is(formatEntry(e), 'WHITE|2001:db8::1|||10|20|30|4|5');
});

test('a TRAPPED entry shows only its expiry', (t) => {
  t.is(formatEntry({ key: '198.51.100.1', first: 5 * S, pass: 0, expire: 86405 * S, bcount: 1, pcount: -1 }), 'TRAPPED|198.51.100.1|86405');
});

test('a SPAMTRAP entry shows only its address', (t) => {
  t.is(formatEntry({ key: 'trap@us.example', first: 5 * S, pass: 0, expire: 0, bcount: 1, pcount: -2 }), 'SPAMTRAP|trap@us.example');
});

test('a GREY entry with an empty helo keeps the empty field', (t) => {
  const e: Entry = { key: greyKey('192.0.2.7', '', '<a@ex>', '<b@us>'), first: 1 * S, pass: 2 * S, expire: 3 * S, bcount: 1, pcount: 0 };
  t.is(formatEntry(e), 'GREY|192.0.2.7||<a@ex>|<b@us>|1|2|3|1|0');
});

test('a legacy three-part GREY key lists with an empty helo, as spamdb does', (t) => {
  const e: Entry = { key: '192.0.2.7\n<a@ex>\n<b@us>', first: 1 * S, pass: 2 * S, expire: 3 * S, bcount: 1, pcount: 0 };
  t.is(formatEntry(e), 'GREY|192.0.2.7||<a@ex>|<b@us>|1|2|3|1|0');
  t.deepEqual(parseLine(formatEntry(e), 1), { ...e, key: greyKey('192.0.2.7', '', '<a@ex>', '<b@us>') });
});

test('a GREY key with one line break cannot be printed: spamdb\'s "No from part" message, naming the whole key', (t) => {
  const err = t.throws(() => formatEntry({ key: '192.0.2.7\nhelo', first: 0, pass: 0, expire: 0, bcount: 0, pcount: 0 }));
  t.true(err instanceof PfgreyError);
  t.is(err!.message, 'No from part in grey key "192.0.2.7\\x0ahelo"');
});

test('8-bit bytes from 0xa0 and UTF-8 pass through unchanged; a stray C1 byte is escaped and reads back', (t) => {
  const e: Entry = { key: greyKey('192.0.2.7', 'h\xe9\xff\xc4\x81', '<\x80@x>', '<b@us>'), first: 0, pass: 0, expire: 0, bcount: 0, pcount: 0 };
  const line = formatEntry(e);
  t.is(line, 'GREY|192.0.2.7|h\xe9\xff\xc4\x81|<\\x80@x>|<b@us>|0|0|0|0|0');
  t.deepEqual(parseLine(line, 1), e);
});

test('control characters, "|" and backslashes in a key are listed as \\xHH and \\\\, and read back', (t) => {
  const e: Entry = { key: greyKey('192.0.2.7', 'a\x1b]0;owned\x07|b', '<\\x1b@x>', '<\xc2\x9b2J@us>'), first: 0, pass: 0, expire: 0, bcount: 0, pcount: 0 };
  const line = formatEntry(e);
  t.is(line, 'GREY|192.0.2.7|a\\x1b]0;owned\\x07\\x7cb|<\\\\x1b@x>|<\\xc2\\x9b2J@us>|0|0|0|0|0');
  t.is(formatEntry({ key: 'a|b\\c@x', first: 0, pass: 0, expire: 0, bcount: 0, pcount: -2 }), 'SPAMTRAP|a\\x7cb\\\\c@x');
  // The GREY key holds control characters, which no way in accepts any more (keyProblem)...
  importError(t, line, 3, 'line 3: key "192.0.2.7\\x0aa\\x1b]0;owned\\x07\\x7cb\\x0a<\\\\x1b@x>\\x0a<\\xc2\\x9b2J@us>" contains the control character \\x1b');
  // ...but everything else reads back to the same bytes.
  const ok: Entry = { ...e, key: greyKey('192.0.2.7', 'a|b', '<\\x1b@x>', '<\xc2\x9b2J@us>') };
  t.deepEqual(parseLine(formatEntry(ok), 1), ok);
  // A backslash that is not one of the two escapes is itself, as spamdb's raw dumps have it.
  t.is(parseLine('SPAMTRAP|a\\b\\x4@x', 1).key, 'a\\b\\x4@x');
});

test('--import refuses keys with control characters or beyond the length limits, raw or escaped', (t) => {
  importError(t, 'SPAMTRAP|a@x\\x0ab@y', 2, 'line 2: address "a@x\\x0ab@y" contains a line break (\\x0a): one key per argument or line');
  importError(t, 'SPAMTRAP|a@x\x1b[2J', 3, 'line 3: address "a@x\\x1b[2J" contains the control character \\x1b');
  importError(t, `SPAMTRAP|${'a'.repeat(250)}@x.ex`, 4, `line 4: address "${'a'.repeat(57)}..." is 255 bytes long; a spamtrap address may have at most 254`);
  importError(t, 'GREY|192.0.2.7|h\\x0ax|<a>|<b>|0|0|0|1|0', 5, 'line 5: key "192.0.2.7\\x0ah\\x0ax\\x0a<a>\\x0a<b>" has 5 parts; a GREY key has four (ip, helo, from, to), none with a line break');
  importError(t, `GREY|192.0.2.7|${'h'.repeat(40_000)}|<a>|<b>|0|0|0|1|0`, 6, `line 6: key "192.0.2.7\\x0a${'h'.repeat(47)}..." is 40018 bytes long; a key may have at most 32767`);
  t.is(parseLine(`SPAMTRAP|${'a'.repeat(249)}@x.ex`, 1).key.length, 254);
});

test('each spamdb line parses to the entry it came from', (t) => {
  t.deepEqual(parseLine('GREY|192.0.2.7|mx.ex|<a@ex>|<b@us>|1700000000|1700014400|1700014400|1|0', 1), {
    key: '192.0.2.7\nmx.ex\n<a@ex>\n<b@us>',
    first: 1700000000 * S,
    pass: 1700014400 * S,
    expire: 1700014400 * S,
    bcount: 1,
    pcount: 0,
  });
  t.deepEqual(parseLine('WHITE|192.0.2.8|||1|2|3|4|5', 1), { key: '192.0.2.8', first: S, pass: 2 * S, expire: 3 * S, bcount: 4, pcount: 5 });
  t.deepEqual(parseLine('TRAPPED|192.0.2.9|1700086400', 1), { key: '192.0.2.9', first: 0, pass: 0, expire: 1700086400 * S, bcount: 0, pcount: -1 });
  t.deepEqual(parseLine('SPAMTRAP|trap@us.example', 1), { key: 'trap@us.example', first: 0, pass: 0, expire: 0, bcount: 0, pcount: -2 });
});

test('a helo containing "|" is still read when from and to are in angle brackets', (t) => {
  const e: Entry = { key: greyKey('192.0.2.7', 'a|b', '<a@ex>', '<b@us>'), first: 0, pass: 0, expire: 0, bcount: 1, pcount: 0 };
  t.deepEqual(parseLine(formatEntry(e), 4), e);
});

test('a "|" that leaves more than one way to read helo, from and to is an error', (t) => {
  const err = t.throws(() => parseLine('GREY|192.0.2.7|h|<a>|<b>|<c>|0|0|0|1|0', 4));
  t.is((err as PfgreyError).code, 'E_IMPORT');
  t.regex(err!.message, /^line 4: cannot tell helo, from and to apart/);
});

function importError(t: import('ava').ExecutionContext, line: string, lineNo: number, message: string): void {
  const err = t.throws(() => parseLine(line, lineNo));
  t.true(err instanceof PfgreyError);
  t.is((err as PfgreyError).code, 'E_IMPORT');
  t.is(err!.message, message);
}

test('a bad line is E_IMPORT naming the line and what is wrong', (t) => {
  importError(t, 'GREY|192.0.2.7|h|<a>|<b>|1|2|3|4', 7, 'line 7: GREY needs 10 fields, found 9');
  importError(t, 'WHITE|192.0.2.7|||1|2|3|4', 8, 'line 8: WHITE needs 9 fields, found 8');
  importError(t, 'TRAPPED|192.0.2.7|1|2', 9, 'line 9: TRAPPED needs 3 fields, found 4');
  importError(t, 'SPAMTRAP', 10, 'line 10: SPAMTRAP needs 2 fields, found 1');
  importError(t, 'BLACK|192.0.2.7|1', 11, 'line 11: unknown type "BLACK" (expected GREY, WHITE, TRAPPED, SPAMTRAP, POLICY, AWL or GOOD)');
  importError(t, 'WHITE|192.0.2.7|||1|soon|3|4|5', 12, 'line 12: pass time "soon" is not a number');
  importError(t, 'TRAPPED|192.0.2.7|1.5', 13, 'line 13: expire time "1.5" is not a number');
  importError(t, 'WHITE|192.0.2.7|||1|2|3|x|5', 14, 'line 14: bcount "x" is not a number');
  importError(t, 'WHITE|192.0.2.7|||1|2|3|4|99999999999', 15, 'line 15: pcount "99999999999" is out of range');
  importError(t, 'WHITE|192.0.2.7|||99999999999999999|2|3|4|5', 16, 'line 16: first time "99999999999999999" is out of range');
  importError(t, 'WHITE|mail.example|||1|2|3|4|5', 17, 'line 17: invalid ip address "mail.example"');
  importError(t, 'SPAMTRAP|nobody', 18, 'line 18: not an email address: "nobody"');
  importError(t, 'WHITE|192.0.2.7|x||1|2|3|4|5', 19, 'line 19: WHITE has text between the ip and the times; those fields must be empty');
  importError(t, 'WHITE|192.0.2.7|||1|2|3|4|-1', 20, 'line 20: pcount -1 makes this a TRAPPED entry, not WHITE');
  importError(t, '', 21, 'line 21: unknown type "" (expected GREY, WHITE, TRAPPED, SPAMTRAP, POLICY, AWL or GOOD)');
});

test('JSON carries the fields of the spamdb line, in seconds, and omits the rest', (t) => {
  const g: Entry = { key: greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<b@us>'), first: 1 * S, pass: 2 * S, expire: 3 * S, bcount: 4, pcount: 0 };
  t.deepEqual(entryToJson(g), { type: 'GREY', ip: '192.0.2.7', helo: 'mx.ex', from: '<a@ex>', to: '<b@us>', first: 1, pass: 2, expire: 3, bcount: 4, pcount: 0 });
  t.deepEqual(entryToJson({ key: '192.0.2.8', first: 1500, pass: 2 * S, expire: 3 * S, bcount: 4, pcount: 5 }), {
    type: 'WHITE', ip: '192.0.2.8', first: 1, pass: 2, expire: 3, bcount: 4, pcount: 5,
  });
  t.deepEqual(entryToJson({ key: '192.0.2.9', first: 1, pass: 0, expire: 9 * S, bcount: 1, pcount: -1 }), { type: 'TRAPPED', ip: '192.0.2.9', expire: 9 });
  t.deepEqual(entryToJson({ key: 'trap@us', first: 1, pass: 0, expire: 0, bcount: 1, pcount: -2 }), { type: 'SPAMTRAP', address: 'trap@us' });
});

test('JSON shows UTF-8 bytes as text and other bytes as U+FFFD', (t) => {
  const utf8Helo = Buffer.from('hé.example', 'utf8').toString('latin1');
  const j = entryToJson({ key: greyKey('192.0.2.7', utf8Helo, '<\xff@x>', '<b@us>'), first: 0, pass: 0, expire: 0, bcount: 0, pcount: 0 });
  t.like(j, { helo: 'hé.example', from: '<\ufffd@x>' });
});

// --- round trips ----------------------------------------------------------------------------
// node:assert inside the properties, so fast-check sees a failure as a throw and can shrink it.

const seconds = fc.integer({ min: -(2 ** 40), max: 2 ** 40 }).map((s) => s * S);
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const ip = fc.oneof(fc.ipV4(), fc.ipV6());
/** Any byte a key may hold (keyProblem): all but C0 and DEL; '|' and '\\' too, as they are escaped. */
const keyByte = fc.integer({ min: 0x20, max: 0xff }).filter((b) => b !== 0x7f).map((b) => String.fromCharCode(b));
const field = fc.string({ unit: keyByte });

const greyEntry = fc.record({
  key: fc.tuple(ip, field, field, field).map(([i, h, f, to]) => greyKey(i, h, f, to)),
  first: seconds,
  pass: seconds,
  expire: seconds,
  bcount: int32,
  pcount: int32,
});
const whiteEntry = fc.record({
  key: ip,
  first: seconds,
  pass: seconds,
  expire: seconds,
  bcount: int32,
  pcount: int32.filter((p) => p !== -1 && p !== -2),
});
const trappedEntry = fc.record({ key: ip, first: fc.constant(0), pass: fc.constant(0), expire: seconds, bcount: fc.constant(0), pcount: fc.constant(-1) });
const spamtrapEntry = fc.record({
  key: fc.tuple(fc.string({ unit: keyByte, maxLength: 100 }), fc.string({ unit: keyByte, maxLength: 100 })).map(([l, d]) => `${l}@${d}`),
  first: fc.constant(0),
  pass: fc.constant(0),
  expire: fc.constant(0),
  bcount: fc.constant(0),
  pcount: fc.constant(-2),
});
// fc.record builds null-prototype objects; spread them into plain ones like parseLine returns.
const anyEntry = fc.oneof(greyEntry, whiteEntry, trappedEntry, spamtrapEntry).map((e): Entry => ({ ...e }));

test('parseLine(formatEntry(e)) is e for every entry with whole-second times', (t) => {
  fc.assert(fc.property(anyEntry, (e) => {
    assert.deepEqual(parseLine(formatEntry(e), 1), e);
  }), { numRuns: 2000 });
  t.pass();
});

test('no line pfgrey prints holds a control byte a terminal would obey', (t) => {
  fc.assert(fc.property(anyEntry, (e) => {
    // C0, DEL, stray 0x80–0x9f and UTF-8 C1 (C2 80–C2 9F); other bytes of UTF-8 stay.
    const valid = formatEntry(e).replace(/[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}/g, (m) => (m[0] === '\xc2' && m.charCodeAt(1) < 0xa0 ? m : ''));
    assert.doesNotMatch(valid, /[\x00-\x1f\x7f-\x9f]/);
  }), { numRuns: 2000 });
  t.pass();
});

test('formatEntry(parseLine(line)) is the line for every line pfgrey prints', (t) => {
  fc.assert(fc.property(anyEntry, (e) => {
    const line = formatEntry(e);
    assert.equal(formatEntry(parseLine(line, 1)), line);
  }), { numRuns: 1000 });
  t.pass();
});
