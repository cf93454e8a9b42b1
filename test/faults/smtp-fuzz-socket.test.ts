// Generated abuse over real sockets against one daemon: random bytes with NULs and bare CRs,
// 1 MB lines, dialogues written a byte at a time, pipelining floods of thousands of commands,
// half-closed sockets, clients that just stop. Every transcript is a sequence of well-formed
// `ddd text CRLF` replies starting with the banner, a NOOP flood is answered once per command
// in order, the daemon stays up (a fresh client gets a banner), every connection is released,
// and the heap is back near where it started.
//
// The seed changes every run; a failure names it. PFGREY_FUZZ_SEED=n repeats a run.

import test from 'ava';
import fc from 'fast-check';
import net from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { REPLY } from '../../src/tarpit/replies.js';
import { testDaemon } from '../helpers/daemon.js';
import { eventually, RawClient } from '../helpers/smtp.js';

const SEED = process.env.PFGREY_FUZZ_SEED !== undefined
  ? Number(process.env.PFGREY_FUZZ_SEED)
  : (Date.now() ^ (process.pid << 16)) | 0;
const CONNECTIONS = 400;
const PARALLEL = 40;
const TRANSCRIPT = /^220 [^\r\n]*\r\n(\d{3}[ -][^\r\n]*\r\n)*$/;

interface Scenario {
  kind: string;
  data: string;
  /** How the data is written: all at once, a byte per write, or in random-sized pieces. */
  writes: 'whole' | 'bytes' | number[];
  /** After writing: half-close and wait, or just wait for the tarpit to end the session. */
  finish: 'end' | 'wait';
  /** Replies a NOOP flood must get, exactly. */
  noops?: number;
}

const latin1 = (b: Uint8Array) => Buffer.from(b).toString('latin1');
const VERBS = ['HELO a.example', 'EHLO b', 'MAIL FROM:<x@y>', 'mail from: <\x00>', 'RCPT TO:<r@us.example>',
  'RCPT TO:', 'RSET', 'NOOP', 'VRFY root', 'STARTTLS', 'DATA', '.', '', 'QUIT'];
const TERMINATORS = ['\r\n', '\r\n', '\r\n', '\n', '\r', '\r\r\n', '\x00\r\n'];
const dialogueLine = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...VERBS) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 60 }).map(latin1) },
);
const dialogue = fc.array(fc.tuple(dialogueLine, fc.constantFrom(...TERMINATORS)), { minLength: 1, maxLength: 60 })
  .map((ls) => ls.map(([l, end]) => l + end).join(''));
const finish = fc.constantFrom<'end' | 'wait'>('end', 'end', 'wait');
const pieces = fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 20 });

const scenario: fc.Arbitrary<Scenario> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('dialogue'), data: dialogue, writes: fc.oneof(fc.constant<'whole'>('whole'), pieces), finish }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('byte-by-byte'), data: dialogue.map((d) => d.slice(0, 400)), writes: fc.constant<'bytes'>('bytes'), finish }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('random bytes'), data: fc.uint8Array({ minLength: 1, maxLength: 5000 }).map(latin1), writes: fc.oneof(fc.constant<'whole'>('whole'), pieces), finish }) },
  { weight: 1, arbitrary: fc.record({
    kind: fc.constant('1 MB line'),
    data: fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 256 }), fc.constantFrom('\r\n', '', '\r')).map(([b, end]) => {
      const block = latin1(b.map((x) => (x === 10 ? 32 : x)));
      return block.repeat(Math.ceil((1 << 20) / block.length)).slice(0, 1 << 20) + end;
    }),
    writes: fc.constant<'whole'>('whole'), finish }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 4000 }).map((n): Scenario => (
    { kind: 'NOOP flood', data: `${'NOOP\r\n'.repeat(n)}QUIT\r\n`, writes: 'whole', finish: 'wait', noops: n })) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 3000 }).map((n): Scenario => ({
    kind: 'RCPT flood',
    data: `HELO flood.example\r\nMAIL FROM:<f@flood.example>\r\n${Array.from({ length: n }, (_, i) => `RCPT TO:<r${i}@us.example>\r\n`).join('')}DATA\r\n`,
    writes: 'whole', finish: 'end' })) },
);

interface Outcome {
  text: string;
  error?: string;
  /** Set when our own guard had to close the connection. */
  stuck?: boolean;
}

async function play(port: number, s: Scenario): Promise<Outcome> {
  const sock = net.connect({ port, host: '127.0.0.1' });
  sock.setNoDelay(true);
  const received: Buffer[] = [];
  let error: string | undefined;
  let stuck = false;
  sock.on('data', (b: Buffer) => received.push(b));
  sock.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
  const guard = setTimeout(() => {
    stuck = true;
    sock.destroy();
  }, 60_000);
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()).once('close', () => resolve()));
  const data = Buffer.from(s.data, 'latin1');
  const write = (b: Buffer) => {
    if (!sock.destroyed && sock.writable) sock.write(b);
  };
  if (s.writes === 'whole') write(data);
  else if (s.writes === 'bytes') {
    for (let i = 0; i < data.length && !sock.destroyed; i++) {
      write(data.subarray(i, i + 1));
      await tick();
    }
  } else {
    let at = 0;
    for (let k = 0; at < data.length && !sock.destroyed; k++) {
      const n = s.writes[k % s.writes.length]!;
      write(data.subarray(at, at + n));
      at += n;
      await tick();
    }
  }
  if (s.finish === 'end' && !sock.destroyed) sock.end();
  await closed;
  clearTimeout(guard);
  return { text: Buffer.concat(received).toString('latin1'), error, stuck };
}

function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) gc();
}

function memory(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('thousands of generated inputs over real sockets: well-formed replies, no crash, no leak', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['--stutter', '0', '--idle-timeout', '1s', '-c', String(PARALLEL + 20)]);
  const scenarios = fc.sample(scenario, { seed: SEED, numRuns: CONNECTIONS });
  // Warm up (JIT, SQLite statements) before the first measurement.
  await play(port, { kind: 'warm-up', data: 'HELO w\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n', writes: 'whole', finish: 'wait' });
  collectGarbage();
  const before = memory();

  const started = Date.now();
  let lines = 0;
  let resets = 0;
  const problems: string[] = [];
  const kinds = new Map<string, number>();
  const round = async () => {
    let next = 0;
    const worker = async () => {
      while (next < scenarios.length) {
        const i = next++;
        const s = scenarios[i]!;
        kinds.set(s.kind, (kinds.get(s.kind) ?? 0) + 1);
        lines += s.data.split(/\r\n|\n|\r/).length;
        const out = await play(port, s);
        if (out.error) resets++;
        const what = `seed ${SEED}, scenario ${i} (${s.kind}, ${s.data.length} bytes, ${Array.isArray(s.writes) ? 'pieces' : s.writes}, ${s.finish})`;
        // A reset may only cut the transcript between two replies; it cannot garble one.
        const text = out.error ? out.text.slice(0, out.text.lastIndexOf('\r\n') + 2) : out.text;
        if (!TRANSCRIPT.test(text)) problems.push(`${what}: malformed transcript ${JSON.stringify(out.text.slice(0, 300))}`);
        if (out.stuck) problems.push(`${what}: the tarpit never ended the session`);
        if (s.noops !== undefined && !out.error) {
          const replies = out.text.split('\r\n').slice(1, -1);
          const ok = replies.length === s.noops + 1 && replies.slice(0, -1).every((r) => `${r}\r\n` === REPLY.noop) &&
            replies[s.noops] === '221 tarpit.test';
          if (!ok) problems.push(`${what}: ${replies.length} replies to ${s.noops} NOOPs and a QUIT`);
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    await eventually(() => daemon.tarpit.clients === 0, 'every connection released');
    await daemon.greylister!.settle();
    await daemon.store!.flush();
    collectGarbage();
    return memory();
  };
  // The same connections twice: whatever the first round leaves behind (pools, JIT, caches)
  // it leaves once; a leak would grow again with the second round.
  const first = await round();
  const second = await round();
  t.log(`seed ${SEED}: ${CONNECTIONS} connections twice, ${lines} input lines in ${Date.now() - started} ms, ${resets} reset; ` +
    [...kinds].map(([k, n]) => `${n} ${k}`).join(', '));
  t.deepEqual(problems.slice(0, 5), [], `${problems.length} problems`);
  t.true(lines >= 6000, `${lines} input lines`);
  t.log(`heap + buffers: ${(before / 2 ** 20).toFixed(1)} MB before, ${(first / 2 ** 20).toFixed(1)} MB after one round, ` +
    `${(second / 2 ** 20).toFixed(1)} MB after two`);
  t.true(second - first < 4 * 2 ** 20, `the second round grew memory from ${first} to ${second} bytes: a leak`);

  // Every connection released, the daemon still answers, nothing crashed.
  await eventually(() => daemon.tarpit.clients === 0, 'every connection released');
  const fresh = await RawClient.connect(port);
  t.teardown(() => fresh.destroy());
  await fresh.waitFor('\r\n');
  t.regex(fresh.text, /^220 tarpit\.test ESMTP /);
  fresh.destroy();
  t.false(log.lines.some((l) => /internal error|uncaught/i.test(l)));
  await daemon.greylister!.settle();
  await daemon.store!.flush();

});
