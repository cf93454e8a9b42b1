// Benchmark: connections held in the tarpit while every one of them stutters at 1 byte/s.
// The daemon runs in this process (so it can be measured from inside); the clients live in
// separate processes, at most 5,000 each. Each size runs in a fresh daemon process of its own, so
// memory a previous size left behind cannot hide in its baseline. Reports RSS and heap per
// connection, event-loop delay and CPU while all connections are held. Target: 15,000 held, ≤ 6 KiB RSS each, p99 < 100 ms.
//
//   npm run bench:held [-- --quick]     (node runs with --expose-gc for steady memory figures)

import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRunArgs } from '../src/cli/run.js';
import { startDaemon } from '../src/daemon.js';
import { silentLogger } from '../src/log.js';
import { kib, loopProbe, ms, printTable, quick, withTempDir } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function settledMemory() {
  gc();
  gc();
  return process.memoryUsage();
}

async function run(n: number, window: number) {
  return withTempDir(async (dir) => {
    const { config } = parseRunArgs(['-p', '0', '--config-port', '0', '--db', path.join(dir, 'db'),
      '--firewall', 'none', '-c', String(n + 100), '--stutter', '1s', '--grey-stutter', '1h',
      '--idle-timeout', '1h', '--scan-interval', '1h', '--alloweddomains', path.join(dir, 'none')], {});
    const daemon = await startDaemon(config, silentLogger);
    await sleep(500);
    const before = settledMemory();
    const per = 5000;
    const holders: ChildProcess[] = [];
    const ready: Promise<{ failed: number }>[] = [];
    for (let left = n; left > 0; left -= per) {
      const child = fork(path.join(here, 'holder.js'), [String(daemon.address.port), String(Math.min(per, left))]);
      holders.push(child);
      ready.push(new Promise((resolve) => child.once('message', (m) => resolve(m as { failed: number }))));
    }
    const failed = (await Promise.all(ready)).reduce((a, r) => a + r.failed, 0);
    // Let every connection reach its steady state: banner bytes going out once a second.
    await sleep(3000);
    const held = daemon.tarpit.clients;
    const bytesOf = async () => (await Promise.all(holders.map((h) => new Promise<number>((resolve) => {
      h.once('message', (m) => resolve((m as { bytes: number }).bytes));
      h.send({ cmd: 'bytes' });
    })))).reduce((a, b) => a + b, 0);
    const bytes0 = await bytesOf();
    const probe = loopProbe();
    const cpu0 = process.cpuUsage();
    const t0 = Date.now();
    await sleep(window);
    const cpu = process.cpuUsage(cpu0);
    const wall = Date.now() - t0;
    const loop = probe.stop();
    const bytes1 = await bytesOf();
    const after = settledMemory();
    for (const h of holders) h.send({ cmd: 'close' });
    await Promise.all(holders.map((h) => new Promise((r) => h.once('exit', r))));
    await daemon.stop();
    return {
      n, held, failed,
      rssPer: (after.rss - before.rss) / held,
      heapPer: (after.heapUsed - before.heapUsed) / held,
      p50: loop.p50, p99: loop.p99, longest: loop.longest,
      cpu: ((cpu.user + cpu.system) / 1000 / wall) * 100,
      bytesPerSec: ((bytes1 - bytes0) / wall) * 1000,
    };
  });
}

const one = process.argv.indexOf('--one');
if (one >= 0) {
  const result = await run(Number(process.argv[one + 1]), quick ? 5000 : 15_000);
  // Run by hand (to try V8 flags, say), it prints the figures instead.
  if (process.send) process.send(result);
  else console.log(JSON.stringify({ ...result, rssPerKiB: +(result.rssPer / 1024).toFixed(2), heapPerKiB: +(result.heapPer / 1024).toFixed(2) }));
  process.exit(0);
}

type Result = Awaited<ReturnType<typeof run>>;

function runInFreshProcess(n: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--one', String(n), ...(quick ? ['--quick'] : [])],
      { execArgv: ['--expose-gc'] });
    child.once('message', (m) => resolve(m as Result));
    child.on('exit', (code) => code === 0 || reject(new Error(`the run with ${n} connections exited ${code}`)));
  });
}

// RSS moves in steps (the young generation grows, malloc keeps arenas), so one run's figure can
// be off by several KiB per connection either way; the median of three runs is steady.
const sizes = quick ? [1000] : [1000, 5000, 15_000];
const reps = quick ? 1 : 3;
for (const n of sizes) {
  const runs: Result[] = [];
  for (let i = 0; i < reps; i++) runs.push(await runInFreshProcess(n));
  const byRss = [...runs].sort((a, b) => a.rssPer - b.rssPer);
  const r = byRss[Math.floor(reps / 2)]!;
  const spread = reps > 1 ? ` (runs: ${runs.map((x) => (x.rssPer / 1024).toFixed(2)).join(', ')})` : '';
  printTable(`Held connections: ${n.toLocaleString('en')} clients, each stuttered at 1 byte/s` +
    `${reps > 1 ? `; median of ${reps} runs by RSS` : ''}`, [
    ['connections held by the daemon (failed to open)', `${r.held.toLocaleString('en')} of ${n.toLocaleString('en')} (${r.failed})`],
    ['RSS per connection', `${kib(r.rssPer)} (target ≤ 6 KiB)${spread}`],
    ['JS heap per connection', kib(r.heapPer)],
    ['event-loop delay p50 / p99', `${ms(r.p50)} / ${ms(r.p99)} (target p99 < 100 ms)`],
    ['longest event-loop block', ms(r.longest)],
    ['daemon CPU', `${r.cpu.toFixed(1)} % of one core`],
    ['bytes delivered per second', `${Math.round(r.bytesPerSec).toLocaleString('en')} (1 per connection expected)`],
  ]);
}
