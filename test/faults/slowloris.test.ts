// Slow-loris clients are cut at the idle timeout: one that sends a byte less often than the
// timeout, and one that trickles bytes more often but never finishes a line (bytes that do not
// complete a command do not count as activity). Many of them at once do not stop the tarpit
// from serving a normal client.

import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPLY } from '../../src/tarpit/replies.js';
import { testDaemon } from '../helpers/daemon.js';
import { eventually, RawClient } from '../helpers/smtp.js';

const IDLE = 1000;
const ARGS = ['--stutter', '0', '--idle-timeout', `${IDLE}ms`];

/** From the banner on, sends `text` one byte every `every` ms until the server closes; resolves with ms from banner to close. */
async function trickle(c: RawClient, text: string, every: number): Promise<{ ms: number; sent: number }> {
  await c.waitFor('\r\n');
  const start = Date.now();
  let sent = 0;
  while (!c.ended && Date.now() - start < 30_000) {
    c.send(text[sent % text.length]!);
    sent++;
    await Promise.race([sleep(every), c.closed]);
  }
  return { ms: Date.now() - start, sent };
}

test('a client that sends a byte less often than the idle timeout (a byte a minute, scaled down) is cut at the idle timeout', async (t) => {
  const { port, daemon } = await testDaemon(t, ARGS);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  const { ms, sent } = await trickle(c, 'HELO slow.example\r\n', IDLE * 1.5);
  t.log(`closed ${ms} ms after the banner, ${sent} bytes sent`);
  t.true(ms >= IDLE * 0.9, `not cut before the idle timeout (${ms} ms)`);
  t.true(ms < 15_000, `cut within a generous bound of the idle timeout (${ms} ms)`);
  t.regex(c.text, /^220 [^\r\n]*\r\n$/, 'only the banner was sent');
  await eventually(() => daemon.tarpit.clients === 0, 'the connection released');
  t.pass();
});

test('a client trickling a byte every 100 ms without ever ending a line is cut at the idle timeout all the same', async (t) => {
  const { port } = await testDaemon(t, ARGS);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  const { ms, sent } = await trickle(c, 'HELO a-host-name-that-never-ends-', 100);
  t.log(`closed ${ms} ms after the banner, ${sent} bytes sent`);
  t.true(sent >= 5, `it kept sending (${sent} bytes)`);
  t.true(ms >= IDLE * 0.9, `cut at the idle timeout, not before (${ms} ms)`);
  t.true(ms < 15_000, `the trickle did not extend the idle timeout (${ms} ms)`);
  t.regex(c.text, /^220 [^\r\n]*\r\n$/);
});

test('fifty slow-loris clients are all cut while a normal client is served', async (t) => {
  const { port, daemon } = await testDaemon(t, ARGS);
  const slow = await Promise.all(Array.from({ length: 50 }, () => RawClient.connect(port)));
  t.teardown(() => slow.forEach((c) => c.destroy()));
  const trickling = Promise.all(slow.map((c, i) => trickle(c, 'MAIL FROM:<x@y>', i % 2 ? 150 : IDLE * 1.5)));

  const normal = await RawClient.connect(port);
  t.teardown(() => normal.destroy());
  await normal.waitFor('\r\n');
  for (const [send, reply] of [['HELO fast.example\r\n', REPLY.helo], ['MAIL FROM:<a@b>\r\n', REPLY.mail],
    ['RCPT TO:<c@d>\r\n', REPLY.rcpt]] as const) {
    normal.send(send);
    await normal.waitFor(reply);
  }
  normal.send('DATA\r\n');
  await normal.waitClosed();
  t.true(normal.text.endsWith(REPLY.greylisted));

  const cut = await trickling;
  t.true(cut.every((r) => r.ms < 15_000), `slowest cut after ${Math.max(...cut.map((r) => r.ms))} ms`);
  await eventually(() => daemon.tarpit.clients === 0, 'every slow-loris connection released');
  t.pass();
});
