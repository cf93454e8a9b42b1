// Benchmark: the periodic scan over a large database. Reports how long the scan takes and the
// longest time the event loop was held during it (target: no block over 50 ms).
//
//   npm run bench:scan              1,000,000 entries
//   npm run bench:scan -- --quick     100,000 entries

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { greyKey } from '../src/grey/entry.js';
import { Scanner } from '../src/grey/scanner.js';
import { silentLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import { loopProbe, quick } from './common.js';

const total = quick ? 100_000 : 1_000_000;
const now = Date.now();
const HOUR = 3_600_000;

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pfgrey-bench-'));
try {
  const dbPath = path.join(dir, 'bench.db');
  const store = await openStore(dbPath, { create: true, commitBatch: 50_000, log: silentLogger });
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const kind = i % 20;
    if (kind === 0) {
      // 5 %: WHITE entries.
      store.put({ key: ip, first: now - HOUR, pass: now - HOUR, expire: now + 30 * 24 * HOUR, bcount: 3, pcount: 1 });
    } else if (kind === 1) {
      // 5 %: expired GREY tuples, deleted by the scan.
      store.put({ key: greyKey(ip, 'h', `<s${i}@x>`, '<r@y>'), first: now - 5 * HOUR, pass: now - HOUR, expire: now - HOUR, bcount: 1, pcount: 0 });
    } else if (kind === 2) {
      // 5 %: passed tuples, promoted to WHITE by the scan.
      store.put({ key: greyKey(ip, 'h', `<s${i}@x>`, '<r@y>'), first: now - HOUR, pass: now - 60_000, expire: now + 3 * HOUR, bcount: 2, pcount: 0 });
    } else {
      store.put({ key: greyKey(ip, 'h', `<s${i}@x>`, '<r@y>'), first: now, pass: now + 4 * HOUR, expire: now + 4 * HOUR, bcount: 1, pcount: 0 });
    }
    if (i % 50_000 === 49_999) await store.flush();
  }
  await store.flush();
  const fill = performance.now() - t0;

  const probe = loopProbe();
  let whitelist = 0;
  const scanner = new Scanner({
    store, log: silentLogger, interval: 60_000, whiteExpiry: 36 * 24 * HOUR, chunk: 2000,
    onResult: (plan) => {
      whitelist = plan.whitelist.length;
    },
  });
  const s0 = performance.now();
  const plan = await scanner.scanOnce();
  const scan = performance.now() - s0;
  const loop = probe.stop();
  await store.close();

  const rows = [
    ['entries', total.toLocaleString('en')],
    ['fill (group commit, 50k per transaction)', `${(fill / 1000).toFixed(1)} s`],
    ['scan duration', `${(scan / 1000).toFixed(2)} s`],
    ['expired / promoted', `${plan?.counts.expired} / ${plan?.counts.promoted}`],
    ['whitelist size', String(whitelist)],
    ['event-loop delay p50 / p99 / max (histogram)', `${loop.p50.toFixed(1)} / ${loop.p99.toFixed(1)} / ${loop.max.toFixed(1)} ms`],
    ['longest gap between 1 ms ticks', `${loop.longest.toFixed(1)} ms (target < 50 ms)`],
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(48)} ${v}`);
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
