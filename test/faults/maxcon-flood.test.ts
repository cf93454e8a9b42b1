// A flood of connections past maxcon (-c): every excess connection is closed at once without a
// byte, the tarpit never holds more than maxcon, the held clients go on unaffected, and once they
// leave new clients are served again.

import test from 'ava';
import net from 'node:net';
import { REPLY } from '../../src/tarpit/replies.js';
import { testDaemon } from '../helpers/daemon.js';
import { RawClient } from '../helpers/smtp.js';

const MAXCON = 20;
const FLOOD = 600;
/** Flood connections in flight at once. */
const WAVE = 150;

/** Connects, and resolves with the bytes received and how long the connection lived. */
function excess(port: number): Promise<{ bytes: number; ms: number; error?: string }> {
  return new Promise((resolve) => {
    const start = Date.now();
    let bytes = 0;
    let error: string | undefined;
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('data', (b: Buffer) => (bytes += b.length));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
    // The flood must not wait forever on a connection the tarpit kept by mistake.
    const guard = setTimeout(() => s.destroy(), 30_000);
    s.on('close', () => {
      clearTimeout(guard);
      resolve({ bytes, ms: Date.now() - start, error });
    });
  });
}

test('a connection flood past maxcon is closed at once without a banner, and the held clients are unaffected', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['-c', String(MAXCON), '--stutter', '0']);
  const held = await Promise.all(Array.from({ length: MAXCON }, () => RawClient.connect(port)));
  t.teardown(() => held.forEach((c) => c.destroy()));
  await Promise.all(held.map((c) => c.waitFor('\r\n')));
  t.is(daemon.tarpit.clients, MAXCON);

  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, daemon.tarpit.clients)), 5);
  t.teardown(() => clearInterval(sampler));

  // The held clients talk while the flood runs; none of them finishes its session yet.
  const talking = Promise.all(held.map(async (c, i) => {
    c.send(`HELO held${i}.example\r\n`);
    await c.waitFor(REPLY.helo);
    c.send('MAIL FROM:<a@held.example>\r\n');
    await c.waitFor(REPLY.mail);
    c.send(`RCPT TO:<b${i}@us.example>\r\n`);
    await c.waitFor(REPLY.rcpt);
  }));
  const results: Array<{ bytes: number; ms: number; error?: string }> = [];
  for (let i = 0; i < FLOOD; i += WAVE) {
    results.push(...await Promise.all(Array.from({ length: Math.min(WAVE, FLOOD - i) }, () => excess(port))));
  }
  await talking;
  clearInterval(sampler);

  const withBytes = results.filter((r) => r.bytes > 0);
  t.is(withBytes.length, 0, 'no excess connection receives a byte');
  const ms = results.map((r) => r.ms).sort((a, b) => a - b);
  t.log(`${FLOOD} excess connections closed; lifetime median ${ms[ms.length >> 1]} ms, max ${ms[ms.length - 1]} ms`);
  t.true(ms[ms.length - 1]! < 20_000, 'every excess connection was closed by the tarpit, not by the guard');
  t.true(most <= MAXCON, `the tarpit held ${most} connections at most`);
  t.is(log.lines.filter((l) => l.includes(': connected (')).length, MAXCON, 'only the held clients were accepted');

  // Each held client still completes its session: 451 at DATA.
  await Promise.all(held.map(async (c) => {
    c.send('DATA\r\n');
    await c.waitClosed();
    t.true(c.text.endsWith(REPLY.greylisted), c.text);
    t.regex(c.text, /^(\d{3} [^\r\n]*\r\n)+$/);
  }));

  // With the held clients gone, there is room again.
  const after = await RawClient.connect(port);
  t.teardown(() => after.destroy());
  await after.waitFor('\r\n');
  t.regex(after.text, /^220 /);
});
