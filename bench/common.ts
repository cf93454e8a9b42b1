// Shared pieces of the benchmarks: argument flags, a temp dir, a table printer, and a probe of
// the event loop's longest block.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Greylister } from '../src/grey/greylister.js';

export const quick = process.argv.includes('--quick');

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pfgrey-bench-'));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export function printTable(title: string, rows: Array<[string, string]>): void {
  console.log(`\n${title}`);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
}

/** Measures event-loop delay (histogram) and the longest gap between 1 ms ticks. */
export function loopProbe() {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let longest = 0;
  const ticker = setInterval(() => {
    const t = performance.now();
    longest = Math.max(longest, t - last);
    last = t;
  }, 1);
  histogram.enable();
  return {
    stop() {
      clearInterval(ticker);
      histogram.disable();
      return {
        p50: histogram.percentile(50) / 1e6,
        p99: histogram.percentile(99) / 1e6,
        max: histogram.max / 1e6,
        longest,
      };
    },
  };
}

export const ms = (n: number) => `${n.toFixed(1)} ms`;
export const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;

/** Hands `total` distinct tuples to the core, 1,000 per event-loop turn, and waits for them all. */
export async function feedTuples(g: Greylister, total: number): Promise<void> {
  const batch = 1000;
  for (let i = 0; i < total; i += batch) {
    const work: Array<Promise<unknown>> = [];
    for (let j = i; j < Math.min(total, i + batch); j++) {
      const ip = `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`;
      work.push(g.tuple({ ip, helo: 'mx.example', from: `<s${j}@example.org>`, to: '<r@example.net>' }));
    }
    await Promise.all(work);
  }
  await g.settle();
}
