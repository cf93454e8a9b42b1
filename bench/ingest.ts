// Benchmark: tuple ingest into the store, with the database on disk.
//   1. through the greylister's API directly;
//   2. through full SMTP sessions (stutter off) from many parallel clients in other processes;
//   3. for comparison, postgrey (when installed) answering the same number of distinct tuples
//      as Postfix asks it, one policy request per RCPT, from as many client processes.
// Target: ≥ 20,000 tuples/s into the store.
//
//   npm run bench:ingest [-- --quick]

import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseRunArgs } from '../src/cli/run.js';
import { startDaemon } from '../src/daemon.js';
import { Greylister } from '../src/grey/greylister.js';
import { silentLogger } from '../src/log.js';
import { openStore } from '../src/store/sqlite.js';
import { feedTuples, printTable, quick, withTempDir } from './common.js';

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
  await feedTuples(g, total);
  await store.close();
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const stored = await countEntries(dbPath);
  return { secs, rate: total / secs, stored, cpu: (cpu.user + cpu.system) / 1e6 };
}

async function viaSmtp(dir: string, clientCount: number, sessionsPerClient: number, rcptsPerSession: number) {
  const dbPath = path.join(dir, 'smtp.db');
  const { config } = parseRunArgs(['-p', '0', '--config-port', '0', '--db', dbPath, '--firewall', 'none',
    '--stutter', '0', '-c', String(clientCount + 50), '--scan-interval', '1h', '--alloweddomains', path.join(dir, 'none')], {});
  const daemon = await startDaemon(config, silentLogger);
  const t0 = performance.now();
  const sent = await clients('smtp-client.js', clientCount, (w) => [
    String(daemon.address.port), String(sessionsPerClient), String(rcptsPerSession), String(w),
  ]);
  await daemon.greylister!.settle();
  await daemon.store!.flush();
  const secs = (performance.now() - t0) / 1000;
  await daemon.stop();
  const stored = await countEntries(dbPath);
  return { secs, sent, stored, rate: stored / secs };
}

/** The runs of several client processes of one kind; resolves with what each reported. */
function clients(script: string, n: number, args: (w: number) => string[]): Promise<number> {
  return Promise.all(Array.from({ length: n }, (_, w) => new Promise<number>((resolve, reject) => {
    const child = fork(path.join(here, script), args(w));
    child.on('message', (m) => resolve(Number(m)));
    child.on('error', reject);
    child.on('exit', (code) => code === 0 || reject(new Error(`${script} ${w} exited ${code}`)));
  }))).then((counts) => counts.reduce((a, b) => a + b, 0));
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number, deadline: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * postgrey as Debian packages it, on a database of its own in `dir`, greylisting by host (not by
 * /24) so that every tuple is distinct, with the same 25-minute delay as pfgrey.
 */
async function viaPostgrey(binary: string, clientCount: number, perClient: number) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pfgrey-bench-postgrey-'));
  const port = await freePort();
  const root = process.getuid?.() === 0;
  // As root postgrey drops to its own user, which must own the database directory.
  if (root) execFileSync('chown', ['postgrey:postgrey', dir]);
  const user = root ? [] : [`--user=${os.userInfo().username}`];
  const child = spawn(binary, [`--inet=127.0.0.1:${port}`, `--dbdir=${dir}`, `--pidfile=${dir}/pid`, '--lookup-by-host',
    '--delay=1500', '--quiet', ...user], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    await Promise.race([
      waitForPort(port, Date.now() + 30_000),
      exited.then(() => { throw new Error(`postgrey exited: ${stderr.trim().split('\n').pop() ?? ''}`); }),
    ]);
    const t0 = performance.now();
    const answered = await clients('policy-client.js', clientCount, (w) => [String(port), String(perClient), String(w)]);
    const secs = (performance.now() - t0) / 1000;
    return { secs, answered, rate: answered / secs };
  } finally {
    child.kill('SIGTERM');
    await exited;
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function findPostgrey(): Promise<string | undefined> {
  const candidates = [process.env['PFGREY_BENCH_POSTGREY'], '/usr/sbin/postgrey', '/usr/local/sbin/postgrey'];
  for (const c of candidates) {
    if (c === undefined) continue;
    try {
      await fs.access(c, fs.constants.X_OK);
      return c;
    } catch {
      // not this one
    }
  }
  return undefined;
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
  const procs = quick ? 4 : 8;
  const sessions = quick ? 200 : 1000;
  const rcpts = 10;
  const smtp = await viaSmtp(dir, procs, sessions, rcpts);
  printTable(`Tuple ingest through SMTP (${procs} client processes × ${sessions} sessions × ${rcpts} RCPT, stutter off)`, [
    ['wall time', `${smtp.secs.toFixed(2)} s`],
    ['tuples sent / stored', `${smtp.sent.toLocaleString('en')} / ${smtp.stored.toLocaleString('en')}`],
    ['tuples per second', `${Math.round(smtp.rate).toLocaleString('en')}`],
  ]);

  const postgrey = await findPostgrey();
  if (postgrey === undefined) {
    console.log('\npostgrey: skipped (not installed; `apt-get install postgrey` or set PFGREY_BENCH_POSTGREY)');
    return;
  }
  const peer = await viaPostgrey(postgrey, procs, sessions * rcpts);
  const ratio = (r: number) => `${(r / peer.rate).toFixed(1)}×`;
  printTable(`postgrey (${postgrey}), the same ${(procs * sessions * rcpts).toLocaleString('en')} distinct tuples: ` +
    `${procs} client processes, one policy request per RCPT`, [
    ['wall time', `${peer.secs.toFixed(2)} s`],
    ['tuples answered', peer.answered.toLocaleString('en')],
    ['tuples per second', Math.round(peer.rate).toLocaleString('en')],
    ['pfgrey through SMTP / postgrey', ratio(smtp.rate)],
    ['pfgrey API / postgrey', ratio(api.rate)],
  ]);
});
