// Benchmark: tuples/s through the greylist core into PostgreSQL, beside SQLite, in one run.
//   1. SQLite, the daemon's group commit (the baseline: bench:ingest's API row);
//   2. PostgreSQL, the same group commit (one transaction per commit, a statement per kind of write);
//   3. PostgreSQL, each batch of the core as one atomic update: what a daemon sharing the
//      database with other MX hosts does (src/daemon.ts), so that none loses another's update.
// The server is a throwaway cluster of Debian's PostgreSQL on this machine (loopback, fsync on),
// as the tests start it. Target: ≥ 10,000 tuples/s into PostgreSQL.
//
//   npm run bench:pg [-- --quick]

import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Greylister } from '../src/grey/greylister.js';
import { silentLogger } from '../src/log.js';
import { openPostgresStore } from '../src/store/postgres.js';
import { openStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/types.js';
import { postgresMissing, rawPg, startCluster } from '../test/helpers/pg-cluster.js';
import { feedTuples, printTable, quick, withTempDir } from './common.js';

const TIMES = { passTime: 1_500_000, greyExpiry: 14_400_000, whiteExpiry: 3_110_400_000, trapExpiry: 86_400_000 };

async function countEntries(store: Store): Promise<number> {
  let n = 0;
  for await (const chunk of store.chunks(10_000)) n += chunk.length;
  return n;
}

/** `total` distinct tuples through the core, 1,000 handed in per turn (bench:ingest's load). */
async function ingest(store: Store, total: number, atomic: boolean) {
  const g = new Greylister({ store, log: silentLogger, times: TIMES, atomic });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await feedTuples(g, total);
  await store.flush();
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const stored = await countEntries(store);
  await store.close();
  return { secs, rate: total / secs, stored, cpu: (cpu.user + cpu.system) / 1e6 };
}

const row = (r: { secs: number; rate: number; stored: number; cpu: number }) =>
  `${r.stored.toLocaleString('en')} stored, ${r.secs.toFixed(2)} s (${r.cpu.toFixed(2)} s CPU here), ` +
  `${Math.round(r.rate).toLocaleString('en')} tuples/s`;

async function main(): Promise<void> {
  const missing = postgresMissing();
  if (missing) {
    console.log(`bench:pg skipped: ${missing}`);
    return;
  }
  const total = quick ? 20_000 : 200_000;
  const cluster = await startCluster({ fsync: true });
  try {
    for (const db of ['commit', 'atomic']) await rawPg(cluster.url(), `CREATE DATABASE ${db}`);
    const lite = await withTempDir(async (dir) => ingest(await openStore(path.join(dir, 'bench.db'), { create: true }), total, false));
    const grouped = await ingest(await openPostgresStore(cluster.url('commit')), total, false);
    const atomic = await ingest(await openPostgresStore(cluster.url('atomic')), total, true);
    const version = String((await rawPg(cluster.url(), 'SHOW server_version'))[0]!.server_version);
    printTable(`${total.toLocaleString('en')} distinct tuples through the greylist core (PostgreSQL ${version}, loopback, fsync on)`, [
      ['SQLite, group commit', row(lite)],
      ['PostgreSQL, group commit', row(grouped)],
      ['PostgreSQL, atomic batches (shared database)', row(atomic)],
    ]);
  } finally {
    await cluster.stop();
  }
}

await main();
