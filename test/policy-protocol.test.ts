// Postfix's policy protocol, framed and checked (src/policy/protocol.ts): requests split at
// their empty line however the bytes arrive, garbage and oversized input bounded and counted,
// and answers that cannot run into the next one.

import test from 'ava';
import fc from 'fast-check';
import { DEFAULTS } from '../src/config/defaults.js';
import { formatAnswer, PolicyReader, policyQuery } from '../src/policy/protocol.js';

const REQUEST = 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.1\n' +
  'client_name=mx.example\nhelo_name=mx.example\nsender=a@example.org\nrecipient=b@us.example\n\n';

test('a request ends at its empty line, and two in one read are two requests', (t) => {
  const r = new PolicyReader();
  const reqs = r.push(Buffer.from(REQUEST + REQUEST.replace('b@us', 'c@us'), 'latin1'));
  t.is(reqs.length, 2);
  t.is(reqs[0]!.attrs.get('recipient'), 'b@us.example');
  t.is(reqs[1]!.attrs.get('recipient'), 'c@us.example');
  t.false(r.partial);
});

test('however the bytes are split, the same requests come out', (t) => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 30 }), (sizes) => {
    const bytes = Buffer.from(REQUEST.repeat(3).replace(/\n/g, '\r\n'), 'latin1');
    const r = new PolicyReader();
    const out = [];
    let at = 0;
    for (let i = 0; at < bytes.length; i++) {
      const n = sizes[i % sizes.length]!;
      out.push(...r.push(bytes.subarray(at, at + n)));
      at += n;
    }
    return out.length === 3 && out.every((q) => q.attrs.get('sender') === 'a@example.org' && q.attrs.size === 8);
  }));
  t.pass();
});

test('lines without "=" are ignored and counted, and a blank line alone is no request', (t) => {
  const r = new PolicyReader();
  t.deepEqual(r.push(Buffer.from('\n\nhello\n=x\n' + REQUEST)).length, 1);
  t.is(r.trouble.garbage, 2);
});

test('a name longer than the limit makes its line garbage, one at the limit is kept; in one read or a byte at a time', (t) => {
  const long = 'n'.repeat(DEFAULTS.policyNameMax);
  const text = `${long}x=1\r\n${long}=2\r\nname=a=b\r\n=3\r\nno equals sign\r\n\r\n`;
  for (const split of [text.length, 1]) {
    const r = new PolicyReader();
    const reqs = [];
    for (let at = 0; at < text.length; at += split) reqs.push(...r.push(Buffer.from(text.slice(at, at + split), 'latin1')));
    t.is(reqs.length, 1);
    t.deepEqual([...reqs[0]!.attrs], [[long, '2'], ['name', 'a=b']]);
    t.is(r.trouble.garbage, 3);
  }
});

test('an over-long value is cut at the limit and the rest of its line skipped, without holding it', (t) => {
  const r = new PolicyReader();
  const long = 'x'.repeat(DEFAULTS.policyValueMax * 20);
  // In pieces, as a client streams it: memory stays at one line's limit.
  r.push(Buffer.from('request=smtpd_access_policy\nsender='));
  for (let i = 0; i < 20; i++) r.push(Buffer.from(long.slice(i * DEFAULTS.policyValueMax, (i + 1) * DEFAULTS.policyValueMax)));
  const [req] = r.push(Buffer.from('\nrecipient=b@us.example\n\n'));
  t.is(req!.attrs.get('sender')!.length, DEFAULTS.policyValueMax);
  t.is(req!.attrs.get('recipient'), 'b@us.example');
  t.is(r.trouble.cut, 1);
});

test('attributes past the per-request limit are ignored and counted', (t) => {
  const r = new PolicyReader();
  const many = Array.from({ length: DEFAULTS.policyAttrsMax + 5 }, (_, i) => `a${i}=v`).join('\n');
  const [req] = r.push(Buffer.from(`${many}\n\n`));
  t.is(req!.attrs.size, DEFAULTS.policyAttrsMax);
  t.is(r.trouble.dropped, 5);
});

test('8-bit bytes in a value are kept as they were sent', (t) => {
  const r = new PolicyReader();
  const [req] = r.push(Buffer.concat([Buffer.from('helo_name='), Buffer.from([0xe9, 0xff]), Buffer.from('\n\n')]));
  t.is(req!.attrs.get('helo_name'), '\u00e9\u00ff');
});

test('an RCPT request gives what postgrey reads of it; anything else says why it is not greylisted', (t) => {
  const [req] = new PolicyReader().push(Buffer.from(REQUEST));
  t.like(policyQuery(req!), { ok: true, query: { ip: '192.0.2.1', helo: 'mx.example', sender: 'a@example.org', recipient: 'b@us.example', enhanced: false } });
  const [bounce] = new PolicyReader().push(Buffer.from(REQUEST.replace('sender=a@example.org', 'sender=')));
  t.like(policyQuery(bounce!), { ok: true, query: { sender: '' } });
  const [noState] = new PolicyReader().push(Buffer.from(REQUEST.replace('protocol_state=RCPT\n', '')));
  t.like(policyQuery(noState!), { ok: true }, 'a hand-built request (an Exim ACL) may leave the state out');
  const [other] = new PolicyReader().push(Buffer.from('request=junk\n\n'));
  t.deepEqual(policyQuery(other!), { ok: false, why: 'request "junk" is not smtpd_access_policy' });
  const [data] = new PolicyReader().push(Buffer.from(REQUEST.replace('RCPT', 'DATA')));
  t.deepEqual(policyQuery(data!), { ok: false, why: 'protocol_state "DATA" is not RCPT' });
  const [noIp] = new PolicyReader().push(Buffer.from(REQUEST.replace('client_address=192.0.2.1\n', '')));
  t.deepEqual(policyQuery(noIp!), { ok: false, why: 'no client_address' });
  const [badIp] = new PolicyReader().push(Buffer.from(REQUEST.replace('client_address=192.0.2.1', 'client_address=192.0.2')));
  t.deepEqual(policyQuery(badIp!), { ok: false, why: 'client_address "192.0.2" is not an IP address' });
});

test('an answer is one action line and the empty line, whatever its text holds', (t) => {
  t.is(formatAnswer('DUNNO').toString(), 'action=DUNNO\n\n');
  t.is(formatAnswer('DEFER_IF_PERMIT Greylisted\r\n\nfor 300 s').toString(), 'action=DEFER_IF_PERMIT Greylisted   for 300 s\n\n');
});
