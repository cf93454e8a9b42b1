import test from 'ava';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { greyKey, keyProblem } from '../src/grey/entry.js';
import { REPLY } from '../src/tarpit/replies.js';
import { runCli } from './helpers/cli.js';
import { testDaemon } from './helpers/daemon.js';
import { attemptToData, eventually, RawClient } from './helpers/smtp.js';

const BANNER = /^220 tarpit\.test ESMTP spamd IP-based SPAM blocker; \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\r\n$/;

test('a greylisted client sees spamd\'s dialogue byte for byte and a 451 at DATA', async (t) => {
  const { port } = await testDaemon(t, ['--stutter', '0']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  t.regex(c.text, BANNER);
  const transcript: Array<[string, string]> = [
    ['EHLO sender.example\r\n', REPLY.helo],
    ['MAIL FROM:<a@sender.example>\r\n', REPLY.mail],
    ['RCPT TO:<b@us.example>\r\n', REPLY.rcpt],
    ['NOOP\r\n', REPLY.noop],
    ['HELP\r\n', REPLY.unknown],
    ['DATA\r\n', '451 Temporary failure, please try again later.\r\n'],
  ];
  let expected = c.text;
  for (const [send, reply] of transcript) {
    c.send(send);
    expected += reply;
    await c.waitFor(reply === REPLY.unknown ? '500 ' : reply.slice(0, 20));
  }
  await c.waitClosed();
  t.is(c.text, expected);
});

test('QUIT gets 221 with the -h hostname and the connection closes', async (t) => {
  const { port } = await testDaemon(t, ['--stutter', '0', '-n', 'pfgrey test']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  t.regex(c.text, /^220 tarpit\.test ESMTP pfgrey test; /);
  c.send('QUIT\r\n');
  await c.waitClosed();
  t.true(c.text.endsWith('221 tarpit.test\r\n'));
});

test('stuttered replies arrive one byte at a time, spaced by the stutter delay', async (t) => {
  const { port } = await testDaemon(t, ['--stutter', '40ms', '--grey-stutter', '60s']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  const bytes = c.text.length;
  // A busy test machine may let the kernel coalesce a few bytes into one read, so the proof is
  // the pacing: n bytes one stutter apart take at least (n − 1) stutters to arrive.
  const span = c.arrivals[c.arrivals.length - 1]!.at - c.arrivals[0]!.at;
  t.true(span >= (bytes - 1) * 40 * 0.9, `${bytes} bytes arrived over ${span} ms`);
  t.true(c.arrivals.length >= bytes / 3, `${c.arrivals.length} reads for ${bytes} bytes`);
  // connectedAt is taken in the client's connect callback, a little after the server accepted.
  t.true(c.arrivals[0]!.at - c.connectedAt >= 25, 'the first byte waits one stutter delay');
});

test('greylisted clients are stuttered only during the grey-stutter window', async (t) => {
  const { port } = await testDaemon(t, ['--stutter', '30ms', '--grey-stutter', '300ms']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  // Waits out the 300 ms grey-stutter window on purpose: what comes after it is the point.
  await sleep(400);
  const before = c.arrivals.length;
  t.true(before >= 3, `inside the window the banner came a byte at a time (${before} reads)`);
  c.send('HELO x\r\n');
  await c.waitFor(REPLY.helo);
  t.is(c.arrivals.length - before, 1, 'after the window the whole reply comes in one write');
});

test('pipelined commands in one packet are each answered, in order', async (t) => {
  const { port, daemon } = await testDaemon(t, ['--stutter', '0']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send('HELO a.example\r\nMAIL FROM:<a@a.example>\r\nRCPT TO:<x@us.example>\r\nRCPT TO:<y@us.example>\r\nDATA\r\n');
  await c.waitClosed();
  t.true(c.text.endsWith(REPLY.helo + REPLY.mail + REPLY.rcpt + REPLY.rcpt + REPLY.greylisted));
  await daemon.greylister!.settle();
  t.truthy(await daemon.store!.get('127.0.0.1\na.example\n<a@a.example>\n<y@us.example>'));
});

test('an input line is cut at 8191 bytes and the rest counts as the next line', async (t) => {
  const { port } = await testDaemon(t, ['--stutter', '0']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  // 8191 bytes of "NOOP…" are one line; the 9 bytes after it ("HELO x.y") are a second one.
  c.send(`NOOP${'x'.repeat(8191 - 4)}HELO x.y\r\n`);
  await c.waitFor(REPLY.helo);
  t.true(c.text.endsWith(REPLY.noop + REPLY.helo));
});

test('a client idle past the idle timeout is disconnected', async (t) => {
  const { port, log } = await testDaemon(t, ['--stutter', '0', '--idle-timeout', '300ms']);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send('HELO x\r\n');
  await c.waitFor(REPLY.helo);
  const start = Date.now();
  await c.waitClosed(10_000);
  t.true(Date.now() - start >= 250);
  await eventually(() => log.lines.some((l) => /127\.0\.0\.1: disconnected after \d+ seconds\./.test(l)), 'disconnect log');
  t.pass();
});

test('with maxcon connections held, the next connection is closed at once without a banner', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['-c', '3', '--stutter', '0']);
  const held = await Promise.all([1, 2, 3].map(() => RawClient.connect(port)));
  t.teardown(() => held.forEach((c) => c.destroy()));
  await Promise.all(held.map((c) => c.waitFor('\r\n')));
  t.is(daemon.tarpit.clients, 3);
  const extra = await RawClient.connect(port);
  await extra.waitClosed();
  t.is(extra.text, '');
  t.true(log.lines.some((l) => l.includes('127.0.0.1: connected (3/0)')));
  // The held ones are unaffected.
  held[0]!.send('HELO still.here\r\n');
  await held[0]!.waitFor(REPLY.helo);
  t.pass();
});

test('near maxcon, replies go out whole instead of one byte at a time, to drain the tarpit', async (t) => {
  // maxcon 8: from 8 − 5 = 3 clients on, spamd stops stuttering. A stutter of a second leaves
  // ample time for all three to be accepted before the first banner byte is due.
  const { port, daemon } = await testDaemon(t, ['-c', '8', '--stutter', '1s', '--grey-stutter', '60s']);
  // Below the threshold a client is stuttered: its banner is still coming a byte a second.
  const alone = await RawClient.connect(port);
  t.teardown(() => alone.destroy());
  await alone.waitFor('220');
  t.false(alone.text.includes('\r\n'), 'one client alone gets its banner a byte at a time');
  const more = await Promise.all([1, 2].map(() => RawClient.connect(port)));
  t.teardown(() => more.forEach((c) => c.destroy()));
  await eventually(() => daemon.tarpit.clients === 3, 'three clients');
  // With three held, every reply goes out whole: the rest of the first banner, and the others'.
  await Promise.all([alone, ...more].map((c) => c.waitFor('\r\n', 10_000)));
  for (const c of more) t.is(c.arrivals.length, 1, 'the banner came in one write');
});

test('a client that half-closes after pipelining still gets every answer', async (t) => {
  const { port } = await testDaemon(t, ['--stutter', '0']);
  const c = await RawClient.connect(port);
  await c.waitFor('\r\n');
  c.socket.end('HELO a\r\nNOOP\r\n');
  await c.waitClosed();
  t.true(c.text.endsWith(REPLY.helo + REPLY.noop));
});

test('listening on a port that is taken is one clear error naming the address and how to find the holder', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const err = await t.throwsAsync(testDaemon(t, ['-p', String(port)]));
  t.regex(err!.message, new RegExp(`^cannot listen for SMTP connections on 127\\.0\\.0\\.1:${port}: address already in use \\(EADDRINUSE\\): another program holds it; find it with `));
  t.false(err!.message.includes('\n'));
});

test('control bytes in HELO, MAIL and RCPT are recorded as \\xHH: the retry passes greylisting, and the key lists and imports back', async (t) => {
  const { port, daemon, dbPath, dir } = await testDaemon(t, ['--stutter', '0', '--passtime', '300ms', '--scan-interval', '100ms']);
  // ESC ] retitles a terminal, ESC [2J clears it; NUL, BEL, DEL, a stray CSI byte, and the '|'
  // and backslash the listing must escape too. spamd would store them raw.
  const env = { hello: 'HELO a\x1b]0;owned\x07\x00\x7f\x9b|b\\c', from: '<x\x01@sender.example>', to: '<b\x1b[2J@us.example>' };
  const first = await attemptToData(port, env);
  t.true(first.includes(`${REPLY.helo}${REPLY.mail}${REPLY.rcpt}${REPLY.greylisted}`), JSON.stringify(first));
  await daemon.greylister!.settle();
  const key = greyKey('127.0.0.1', 'a\\x1b]0;owned\\x07\\x00\\x7f\\x9b|b\\c', '<x\\x01@sender.example>', '<b\\x1b[2J@us.example>');
  t.truthy(await daemon.store!.get(key), 'the tuple is kept, with each control byte as \\xHH text');
  t.is(keyProblem(key, 'GREY'), undefined);

  // The same bytes again make the same key: once the pass time is over, a retry passes.
  await eventually(async () => {
    await attemptToData(port, env);
    return daemon.store!.get('127.0.0.1');
  }, 'a WHITE entry for the retrying client');
  t.true((await daemon.store!.get(key))!.bcount >= 2);

  const list = await runCli(['db', '--db', dbPath]);
  t.is(list.code, 0, list.stderr);
  const grey = list.stdout.split('\n').filter((l) => l.startsWith('GREY|'));
  t.is(grey.length, 1, list.stdout);
  t.regex(grey[0]!, /^GREY\|127\.0\.0\.1\|a\\\\x1b\]0;owned\\\\x07\\\\x00\\\\x7f\\\\x9b\\x7cb\\\\c\|<x\\\\x01@sender\.example>\|<b\\\\x1b\[2J@us\.example>\|/);
  t.notRegex(list.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, 'no control byte reaches the terminal');

  const dump = path.join(dir, 'dump');
  await writeFile(dump, Buffer.from(list.stdout, 'latin1'));
  const copy = path.join(dir, 'copy.db');
  const imported = await runCli(['db', '--db', copy, '--import', dump]);
  t.is(imported.code, 0, imported.stderr);
  t.is((await runCli(['db', '--db', copy])).stdout, list.stdout);
});
