// The SMTP session state machine under generated input: over 100,000 lines a run — commands in
// any case with odd arguments, random bytes with NULs and bare CRs, lines far past the 8191
// bytes a connection would pass on, a 1 MB line — for greylisted, blacklisted and blacklist-only
// sessions. It never throws, every reply is one or more well-formed `ddd text CRLF` lines of
// bounded size, a finished session stays finished, and tuples carry at most 1023 bytes a field.
//
// The seed changes every run; a failure names it. PFGREY_FUZZ_SEED=n repeats a run.

import test from 'ava';
import fc from 'fast-check';
import { parseConfigLine } from '../../src/blacklist/config-line.js';
import { parseSpamdConf } from '../../src/blacklist/spamd-conf.js';
import { formatConfigLine } from '../../src/blacklist/config-line.js';
import { Session, type SessionOptions } from '../../src/tarpit/session.js';

const WELL_FORMED = /^(\d{3}[ -][^\r\n]*\r\n)+$/;
const SEED = process.env.PFGREY_FUZZ_SEED !== undefined
  ? Number(process.env.PFGREY_FUZZ_SEED)
  : (Date.now() ^ (process.pid << 16)) | 0;
const MIN_INPUTS = 100_000;

const latin1 = (b: Uint8Array) => Buffer.from(b).toString('latin1');
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map(latin1);
/** A long line costs nothing to generate: a random head and one byte repeated. */
const longLine = fc.tuple(bytes(16), fc.integer({ min: 1000, max: 20_000 }), fc.integer({ min: 0, max: 255 }))
  .map(([head, n, b]) => head + String.fromCharCode(b).repeat(n));
const MEGA = `HELO ${'x'.repeat(1 << 20)}`;

const ARG_UNITS = [...'abz09.-_@<>:;, \t"\\%()[]', '\x00', '\r', '\x7f', '\xe9', '\xff', 'x'.repeat(1100)];
const arg = fc.array(fc.constantFrom(...ARG_UNITS), { maxLength: 12 }).map((u) => u.join(''));
const VERBS = ['HELO', 'EHLO', 'helo', 'eHlO', 'HELOx', 'MAIL FROM:', 'mail from:', 'MAIL', 'MAILX', 'RCPT TO:',
  'rcpt to:', 'RCPT', 'DATA', 'data', 'NOOP', 'noop', 'RSET', 'QUIT', 'quit', 'VRFY', 'EXPN', 'STARTTLS', 'AUTH',
  'HELP', 'BDAT', 'TURN', ' HELO', '\x00HELO'];
const command = fc.tuple(fc.constantFrom(...VERBS), fc.constantFrom('', ' ', '  ', '\t'), arg)
  .map(([verb, sep, a]) => verb + sep + a);
const line = fc.oneof(
  { weight: 16, arbitrary: command },
  { weight: 3, arbitrary: fc.constantFrom('.', '', '..', 'QUIT', 'quit now', ' .', '.\r', '\r') },
  { weight: 4, arbitrary: bytes(80) },
  { weight: 1, arbitrary: longLine },
  { weight: 1, arbitrary: fc.constant(MEGA) },
);

// Blacklist messages as the config port hands them over: quoted, with spamd's escapes.
const MESSAGE_UNITS = [...'Your address is on list. abc~`!#$&*+=?^{|}', '\t', '\xa0', '\xe9', '\xff', '\x00',
  '\\n', '\\"', '\\\\', '\\t', '\\x', '%A', '%%', '%', ':'];
const message = fc.array(fc.constantFrom(...MESSAGE_UNITS), { maxLength: 30 }).map((u) => {
  const parsed = parseConfigLine(`tag;"${u.join('')}";inet;1;192.0.2.0/24`);
  if (parsed.kind !== 'list') throw new Error('a generated message did not parse');
  return parsed.message;
});
const options: fc.Arbitrary<SessionOptions> = fc.record({
  hostname: fc.domain(),
  greylist: fc.boolean(),
  blackMessages: fc.oneof(fc.constant([]), fc.array(message, { minLength: 1, maxLength: 3 })),
  blackCode: fc.constantFrom(450, 550),
  ip: fc.oneof(fc.ipV4(), fc.ipV6()),
});

/** Drives one session through `lines`; throws on the first broken promise. Returns lines fed. */
function drive(o: SessionOptions, lines: readonly string[]): number {
  const s = new Session(o);
  // Longest legitimate reply: a blacklist reply (each message once, %A expanded) or a 221.
  const limit = 600 + o.blackMessages.reduce((n, m) => n + 12 + m.length * (1 + o.ip.length), 0);
  let finished = false;
  for (const l of lines) {
    const out = s.line(l);
    const where = `to ${JSON.stringify(l.slice(0, 60))}${l.length > 60 ? '…' : ''}`;
    if (finished) {
      if (out.reply !== '' || !out.close) throw new Error(`a finished session answered ${JSON.stringify(out)} ${where}`);
      continue;
    }
    if (out.reply !== '' && !WELL_FORMED.test(out.reply)) throw new Error(`malformed reply ${JSON.stringify(out.reply)} ${where}`);
    if (out.reply.length > limit) throw new Error(`reply of ${out.reply.length} bytes ${where}`);
    if (out.tuple && [out.tuple.helo, out.tuple.from, out.tuple.to].some((f) => f.length > 1023)) {
      throw new Error(`tuple field over 1023 bytes ${where}`);
    }
    if (out.close) {
      if (!s.finished || out.reply === '') throw new Error(`closed without a final reply ${where}`);
      finished = true;
    }
  }
  if (!WELL_FORMED.test(s.finalReply())) throw new Error(`malformed final reply ${JSON.stringify(s.finalReply())}`);
  return lines.length;
}

test(`the session state machine takes ${MIN_INPUTS} generated lines without a throw or a malformed reply`, (t) => {
  let inputs = 0;
  let sessions = 0;
  let seed = SEED;
  const started = Date.now();
  while (inputs < MIN_INPUTS) {
    fc.assert(fc.property(options, fc.array(line, { minLength: 1, maxLength: 40 }), (o, lines) => {
      inputs += drive(o, lines);
      sessions++;
    }), { seed, numRuns: 1000 });
    seed = (seed + 1) | 0;
  }
  t.log(`seed ${SEED}: ${inputs} lines in ${sessions} sessions, ${Date.now() - started} ms`);
  t.true(inputs >= MIN_INPUTS);
});

// Regression test; the bug was in (src/blacklist/config-line.ts parseConfigLine, src/tarpit/replies.ts renderBlackReply): a
// blacklist message may hold a raw CR. spamd.conf's getcap escape `\r` decodes to one,
// formatConfigLine escapes only LF and `"`, the config port strips only a line's last CR, and
// the reply is sent as `450 first\rsecond\r\n`: a bare CR inside a reply line, which RFC 5321
// forbids and which some clients take as the end of the line. The same goes for a CR sent over
// the config port by another spamd-setup.
test('a blacklist message from spamd.conf holding \\r still gives well-formed replies', (t) => {
  const [list] = parseSpamdConf('all:a:\na:black:msg="first\\rsecond":file=/dev/null:\n', 'spamd.conf');
  const line = formatConfigLine('a', list!.message!, ['192.0.2.0/24']).replace(/\n$/, '');
  const parsed = parseConfigLine(line);
  if (parsed.kind !== 'list') throw new Error('not a list line');
  const s = new Session({ hostname: 'mx', greylist: true, blackMessages: [parsed.message], blackCode: 450, ip: '192.0.2.1' });
  s.line('HELO a');
  s.line('MAIL FROM:<a@b>');
  s.line('RCPT TO:<c@d>');
  s.line('DATA');
  s.line('');
  const out = s.line('.');
  t.regex(out.reply, WELL_FORMED);
});
