// Benchmark: large blacklists arriving on the config port. Reports how long the event loop is
// held (1) while a list of 400,000 blocks is parsed and installed on the main thread (as spamd
// does) and in pfgrey's worker thread; (2) while lists of growing size are parsed on the main
// thread, to place the size above which pfgrey hands a connection to the worker; (3) while
// whole connections, sent by another thread, go through the real port: the main thread's share
// of the worker path (reading, handing over, installing, logging) for the largest inputs the
// port takes.
//
//   npm run bench:config [-- --quick]     (--quick: 100,000 blocks, and fewer sizes)

import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { ConfigPort } from '../src/blacklist/config-port.js';
import { BlackLists } from '../src/blacklist/lists.js';
import { memoryLogger, silentLogger } from '../src/log.js';
import { loopProbe, ms, printTable, quick } from './common.js';

/** Deterministic pseudo-random 32-bit numbers (xorshift), so every run parses the same text. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** A list line of at least `bytes` bytes: random public IPv4 /32s, as nixspam's are. */
function v4Line(tag: string, bytes: number): string {
  const next = random(bytes);
  const blocks: string[] = [];
  let size = 0;
  while (size < bytes) {
    const n = next();
    const b = `${1 + (n >>> 24) % 223}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}/32`;
    blocks.push(b);
    size += b.length + 1;
  }
  return `${tag};"Your address %A is listed";inet;${blocks.length};${blocks.join(';')}\n`;
}

/** A list line of at least `bytes` bytes of short random IPv6 blocks (the dearest per byte). */
function v6Line(tag: string, bytes: number): string {
  const next = random(bytes + 1);
  const blocks: string[] = [];
  let size = 0;
  while (size < bytes) {
    const b = `${(next() & 0xffff).toString(16)}:${(next() & 0xffff).toString(16)}::/32`;
    blocks.push(b);
    size += b.length + 1;
  }
  return `${tag};"m";inet6;${blocks.length};${blocks.join(';')}\n`;
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 50));
}

// (1) One big line, applied directly.
const n = quick ? 100_000 : 400_000;
const blocks: string[] = [];
for (let i = 0; i < n; i++) blocks.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
const text = `big;"Your address %A is listed";inet;${n};${blocks.join(';')}\n`;

const rows: Array<[string, string]> = [];
for (const mode of ['main thread', 'worker thread'] as const) {
  const lists = new BlackLists();
  const port = new ConfigPort({ host: '127.0.0.1', port: 0, lists, log: silentLogger, requireReservedPort: false });
  const probe = loopProbe();
  await settle();
  const t0 = performance.now();
  if (mode === 'worker thread') await port.applyOffThread(text, 'bench');
  else port.applyText(text, 'bench');
  const wall = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 20));
  const loop = probe.stop();
  if (lists.count('big') !== n) throw new Error(`list not installed in ${mode}`);
  rows.push([mode, `applied in ${ms(wall)}, longest event-loop block ${ms(loop.longest)}`]);
}
printTable(`A config-port line of ${n.toLocaleString('en')} blocks (${(text.length / 1e6).toFixed(1)} MB)`, rows);

// (2) The main thread's cost by size: the longest of six runs and their median.
const sizes = quick ? [32, 64, 256] : [16, 32, 64, 128, 256, 1024];
const byKind: Array<[string, (tag: string, bytes: number) => string]> = [['IPv4 /32s', v4Line], ['short IPv6 blocks', v6Line]];
const sizeRows: Array<[string, string]> = [];
for (const [kind, make] of byKind) {
  for (const kib of sizes) {
    const line = make('sized', kib * 1024);
    const port = new ConfigPort({ host: '127.0.0.1', port: 0, lists: new BlackLists(), log: silentLogger, requireReservedPort: false });
    const times: number[] = [];
    for (let run = 0; run < 6; run++) {
      const t0 = performance.now();
      port.applyText(line, 'bench');
      times.push(performance.now() - t0);
      await settle();
    }
    times.sort((x, y) => x - y);
    sizeRows.push([`${kind}, ${kib} KiB`, `longest of 6: ${ms(times[5]!)}, median ${ms((times[2]! + times[3]!) / 2)}`]);
  }
}
printTable('One list parsed and installed on the main thread, by size', sizeRows);

// (3) Whole connections through the port; another thread sends them.
const SENDER = `
const net = require('node:net');
const { parentPort } = require('node:worker_threads');
parentPort.on('message', ({ port, data }) => {
  const s = net.connect({ port, host: '127.0.0.1' }, () => s.end(data));
  s.resume();
  s.on('error', () => {});
  s.on('close', () => parentPort.postMessage('closed'));
});`;

async function throughPort(data: Uint8Array): Promise<{ longest: number; logged: number }> {
  const log = memoryLogger();
  const port = new ConfigPort({ host: '127.0.0.1', port: 0, lists: new BlackLists(), log, requireReservedPort: false });
  const { port: p } = await port.listen();
  const sender = new Worker(SENDER, { eval: true });
  await settle();
  const probe = loopProbe();
  const closed = new Promise((r) => sender.once('message', r));
  // Moved, not copied: copying 30 MB here would hold this thread for tens of milliseconds.
  sender.postMessage({ port: p, data }, [data.buffer as ArrayBuffer]);
  await closed;
  // Done when something was logged and nothing more for half a second.
  let seen = -1;
  while (log.lines.length === 0 || log.lines.length !== seen) {
    seen = log.lines.length;
    await new Promise((r) => setTimeout(r, 500));
  }
  const loop = probe.stop();
  await sender.terminate();
  await port.close();
  return { longest: loop.longest, logged: log.lines.length };
}

const big = quick ? 8 : 30;
const connections: Array<[string, () => string]> = [
  ['realistic list, 400,000 random IPv4 /32s', () => v4Line('nixspam', 400_000 * 17)],
  [`${big} MB of IPv4 /32s`, () => v4Line('v4', big * 1e6)],
  [`${big} MB of short IPv6 blocks`, () => v6Line('v6', big * 1e6)],
  [`${big} MB of junk lines ("xx")`, () => 'xx\n'.repeat(big * 1e6 / 3)],
  [`${big} MB of clear lines`, () => Array.from({ length: big * 1e6 / 8 }, (_, i) => `t${i % 1000};`).join('\n') + '\n'],
];
const portRows: Array<[string, string]> = [];
for (const [what, make] of connections) {
  const data = Buffer.from(make(), 'latin1');
  const size = data.length;
  const r = await throughPort(data);
  if (process.stdout.isTTY) console.error(`  ${what}: ${ms(r.longest)}`);
  portRows.push([`${what} (${(size / 1e6).toFixed(1)} MB)`, `longest event-loop block ${ms(r.longest)}, ${r.logged.toLocaleString('en')} log lines`]);
}
printTable('Whole connections through the config port (sent from another thread)', portRows);
