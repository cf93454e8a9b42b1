// Benchmark: a large blacklist arriving on the config port. Reports how long the event loop is
// held while a list of 400,000 blocks is parsed and installed, on the main thread (as spamd
// does) and in the worker thread pfgrey uses for connections over a megabyte.
//
//   npm run bench:config [-- --quick]     (--quick: 100,000 blocks)

import { performance } from 'node:perf_hooks';
import { ConfigPort } from '../src/blacklist/config-port.js';
import { BlackLists } from '../src/blacklist/lists.js';
import { silentLogger } from '../src/log.js';
import { loopProbe, ms, printTable, quick } from './common.js';

const n = quick ? 100_000 : 400_000;
const blocks: string[] = [];
for (let i = 0; i < n; i++) blocks.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
const text = `big;"Your address %A is listed";inet;${n};${blocks.join(';')}\n`;

const rows: Array<[string, string]> = [];
for (const mode of ['main thread', 'worker thread'] as const) {
  const lists = new BlackLists();
  const port = new ConfigPort({ host: '127.0.0.1', port: 0, lists, log: silentLogger, requireReservedPort: false });
  const probe = loopProbe();
  await new Promise((r) => setTimeout(r, 50));
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
