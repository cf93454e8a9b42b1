// Benchmark: tuple ingest into the store, with the database on disk.
//   1. through the greylister's API directly;
//   2. through full SMTP sessions (stutter off) from many parallel clients in other processes.
// Target: ≥ 20,000 tuples/s into the store.
//
//   npm run bench:ingest [-- --quick]

import { fork } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseRunArgs } from '../src/cli/run.js';
import { startDaemon } from '../src/daemon.js';
import { Greylister } from '../src/grey/greylister.js';
import { silentLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import { printTable, quick, withTempDir } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));

async function countEntries(dbPath: string): Promise<number> {
  const store = await openStore(dbPath, { readonly: true });
  let n = 0;
  for await (const chunk of store.chunks(10_000)) n += chunk.length;
  await store.close();
  return n;
}

async function viaApi(dir: string, total: number) {
  const dbPath = path.join(dir, 'api.db');
  const store = await openStore(dbPath, { create: true, log: silentLogger });
  const g = new Greylister({
    store, log: silentLogger,
    times: { passTime: 1_500_000, greyExpiry: 14_400_000, whiteExpiry: 3_110_400_000, trapExpiry: 86_400_000 },
  });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const batch = 1000;
  for (let i = 0; i < total; i += batch) {
    const work: Promise<void>[] = [];
    for (let j = i; j < Math.min(total, i + batch); j++) {
      const ip = `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`;
      work.push(g.tuple({ ip, helo: 'mx.example', from: `<s${j}@example.org>`, to: '<r@example.net>' }));
    }
    await Promise.all(work);
  }
  await g.settle();
  await store.close();
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const stored = await countEntries(dbPath);
  return { secs, rate: total / secs, stored, cpu: (cpu.user + cpu.system) / 1e6 };
}

async function viaSmtp(dir: string, clients: number, sessionsPerClient: number, rcptsPerSession: number) {
  const dbPath = path.join(dir, 'smtp.db');
  const { config } = parseRunArgs(['-p', '0', '--config-port', '0', '--db', dbPath, '--firewall', 'none',
    '--stutter', '0', '-c', String(clients + 50), '--scan-interval', '1h', '--alloweddomains', path.join(dir, 'none')], {});
  const daemon = await startDaemon(config, silentLogger);
  const t0 = performance.now();
  const workers = Array.from({ length: clients }, (_, w) => new Promise<number>((resolve, reject) => {
    const child = fork(path.join(here, 'smtp-client.js'), [
      String(daemon.address.port), String(sessionsPerClient), String(rcptsPerSession), String(w),
    ]);
    child.on('message', (m) => resolve(Number(m)));
    child.on('error', reject);
    child.on('exit', (code) => code === 0 || reject(new Error(`client ${w} exited ${code}`)));
  }));
  const sent = (await Promise.all(workers)).reduce((a, b) => a + b, 0);
  await daemon.greylister!.settle();
  await daemon.store!.flush();
  const secs = (performance.now() - t0) / 1000;
  await daemon.stop();
  const stored = await countEntries(dbPath);
  return { secs, sent, stored, rate: stored / secs };
}

await withTempDir(async (dir) => {
  const total = quick ? 50_000 : 300_000;
  const api = await viaApi(dir, total);
  printTable(`Tuple ingest through the greylister API (${total.toLocaleString('en')} distinct tuples, db on disk)`, [
    ['wall time', `${api.secs.toFixed(2)} s`],
    ['tuples per second', `${Math.round(api.rate).toLocaleString('en')} (target ≥ 20,000)`],
    ['CPU time', `${api.cpu.toFixed(2)} s`],
    ['entries stored', api.stored.toLocaleString('en')],
  ]);
  const clients = quick ? 4 : 8;
  const sessions = quick ? 200 : 1000;
  const rcpts = 10;
  const smtp = await viaSmtp(dir, clients, sessions, rcpts);
  printTable(`Tuple ingest through SMTP (${clients} client processes × ${sessions} sessions × ${rcpts} RCPT, stutter off)`, [
    ['wall time', `${smtp.secs.toFixed(2)} s`],
    ['tuples sent / stored', `${smtp.sent.toLocaleString('en')} / ${smtp.stored.toLocaleString('en')}`],
    ['tuples per second', `${Math.round(smtp.rate).toLocaleString('en')}`],
  ]);
});
