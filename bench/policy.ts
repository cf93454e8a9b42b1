// Benchmark: Postfix policy requests through the protocol, `pfgrey policy` against postgrey
// (when installed) in the same run, each on a fresh database on disk. Several connections each
// send one request and wait for its answer, as Postfix's smtpd processes do, from client
// processes of their own (bench/policy-load.ts); both servers get the same stream: a warm-up of
// new tuples, the delay, then the measured half new tuples and half repeats (half of those
// still greylisted, half passed). Requests/s, latency percentiles, the CPU of the server and of
// the clients, and the answers by action.
// Target: ≥ 10× postgrey's requests/s.
//
//   npm run bench:policy [-- --quick] [-- --cpu-prof DIR] [-- --no-postgrey]
//
// --cpu-prof DIR runs pfgrey under `node --cpu-prof` and leaves its profiles in DIR (its
// figures are then slower than without). --no-postgrey runs pfgrey alone, to compare two
// builds of it. Its CPU time per request is printed too: it depends on the batch sizes the
// timing gives and, on a machine busy with other work, varies almost as much as the rate.

import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { printTable, quick } from './common.js';
import type { Counts, LoadReport } from './policy-load.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '../src/cli/main.js');

/**
 * The greylisting delay of both servers, in seconds. postgrey counts whole seconds, so with 1 s
 * a tuple repeated a few milliseconds after its first request passes whenever a second
 * boundary falls in between; with 2 s a repeat within a second is always still greylisted.
 */
const DELAY = 2;
/**
 * Connections. Each of Postfix's smtpd processes (at most 100 by default) keeps one connection
 * to the policy server, but has a request in flight only while it is at RCPT, a small part of
 * a session: 8 stands for a small MX, 32 for a busy one.
 */
const LEVELS = quick ? [8] : [8, 32];
/** Measured requests per level and server (a multiple of 4 × every level), so pfgrey's runs last seconds. */
const REQUESTS = quick ? 6_400 : 51_200;
/**
 * Client processes per level, the connections shared out between them: one per core. Four
 * took half as much CPU again for the same requests (more processes to wake per answer) and
 * one process cannot use the second core when the server leaves it free.
 */
const CLIENT_PROCS = 2;
/** How long a server may take to start listening. */
const START_DEADLINE = 30_000;

const cpuProfIndex = process.argv.indexOf('--cpu-prof');
const cpuProfDir = cpuProfIndex >= 0 ? path.resolve(process.argv[cpuProfIndex + 1] ?? 'cpu-prof') : undefined;
const withPostgrey = !process.argv.includes('--no-postgrey');

interface Server {
  name: string;
  pid: number;
  port: number;
  stop(): Promise<void>;
}

interface Result {
  requests: number;
  secs: number;
  rate: number;
  p50: number;
  p99: number;
  max: number;
  /** CPU seconds during the measured phase: the server's (all threads, and its main thread), the clients'. */
  serverCpu: number;
  serverMainCpu: number;
  clientCpu: number;
  counts: Counts;
  warmCounts: Counts;
}

/** User + system CPU seconds from a /proc stat file. */
async function statCpu(file: string): Promise<number> {
  const stat = await fs.readFile(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, utime 14 and stime 15 (proc(5)), in clock ticks of
  // 1/100 s (USER_HZ, 100 on every Linux port Node runs on).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds of a process (all its threads) and of its main thread alone. */
async function processCpu(pid: number): Promise<{ all: number; main: number }> {
  return { all: await statCpu(`/proc/${pid}/stat`), main: await statCpu(`/proc/${pid}/task/${pid}/stat`) };
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

/** The end of a server's stderr, for the line that says why it failed. */
const lastLines = (text: string) => text.trim().split('\n').slice(-5).join(' | ');

/** Ends a server: SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The name of the filesystem a directory is on, to show the database is on disk. */
async function filesystem(dir: string): Promise<string> {
  const types: Record<number, string> = { 0xef53: 'ext4', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x01021994: 'tmpfs (not on disk)' };
  const { type } = await fs.statfs(dir);
  return types[type] ?? `filesystem 0x${type.toString(16)}`;
}

/** The options that turn auto-whitelisting off, if this pfgrey has them (postgrey's is off too). */
function pfgreyAwlOff(): string[] {
  const usage = execFileSync(process.execPath, [CLI, 'policy', '--help'], { encoding: 'utf8' });
  return usage.includes('--auto-whitelist-clients') ? ['--auto-whitelist-clients=0'] : [];
}

/** `pfgrey policy` on its own database in `dir`, on a port of its choosing. */
async function startPfgrey(dir: string): Promise<Server> {
  const prof = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
  const child = spawn(process.execPath, [...prof, CLI, 'policy', '--inet', '127.0.0.1:0', '--db', path.join(dir, 'pfgrey.db'),
    '--delay', String(DELAY), '--log', 'stderr', ...pfgreyAwlOff()], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-10_000);
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('pfgrey policy did not start listening')), START_DEADLINE);
      const look = () => {
        const m = /listening for policy requests on 127\.0\.0\.1:(\d+)\./.exec(stderr);
        if (!m) return;
        clearTimeout(timer);
        child.stderr!.off('data', look);
        resolve(Number(m[1]));
      };
      child.stderr!.on('data', look);
      exited.then(() => reject(new Error(`pfgrey policy exited: ${lastLines(stderr)}`)));
    });
    return {
      name: 'pfgrey policy', pid: child.pid!, port,
      stop: async () => {
        await terminate(child, exited);
        if (child.exitCode !== 0) throw new Error(`pfgrey policy exited ${child.exitCode ?? child.signalCode}: ${lastLines(stderr)}`);
      },
    };
  } catch (err) {
    await terminate(child, exited);
    throw err;
  }
}

/**
 * postgrey as Debian packages it (its defaults: triplets by client /24, Berkeley DB, a log line
 * per request, which in the foreground goes to stderr, as pfgrey's does), on a database of its
 * own in `dir`, with the same delay as pfgrey and its auto-whitelist off.
 */
async function startPostgrey(binary: string, dir: string): Promise<Server> {
  const port = await freePort();
  const root = process.getuid?.() === 0;
  // As root postgrey drops to its own user, which must own the database directory.
  if (root) execFileSync('chown', ['postgrey:postgrey', dir]);
  const user = root ? [] : [`--user=${os.userInfo().username}`];
  const child = spawn(binary, [`--inet=127.0.0.1:${port}`, `--dbdir=${dir}`, `--pidfile=${dir}/pid`, `--delay=${DELAY}`,
    '--auto-whitelist-clients=0', ...user], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-10_000);
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    await Promise.race([
      waitForPort(port, Date.now() + START_DEADLINE),
      exited.then(() => { throw new Error(`postgrey exited: ${lastLines(stderr)}`); }),
    ]);
  } catch (err) {
    await terminate(child, exited);
    throw err;
  }
  return { name: 'postgrey', pid: child.pid!, port, stop: () => terminate(child, exited) };
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

/** The client processes of one run; each reports once per phase. */
class Clients {
  private readonly children: ChildProcess[] = [];
  private readonly exits: Array<Promise<void>> = [];
  private readonly reports: Array<(r: LoadReport) => void> = [];
  private failed: ((err: Error) => void) | undefined;
  private readonly failure = new Promise<never>((_, reject) => (this.failed = reject));

  constructor(port: number, connections: number) {
    this.failure.catch(() => undefined);
    const per = Math.ceil(connections / CLIENT_PROCS);
    for (let first = 0; first < connections; first += per) {
      const count = Math.min(per, connections - first);
      const child = fork(path.join(here, 'policy-load.js'), [String(port), String(first), String(count), String(REQUESTS / connections)]);
      const i = this.children.length;
      this.children.push(child);
      child.on('message', (m: LoadReport | { phase: 'ready' }) => this.reports[i]?.(m as LoadReport));
      this.exits.push(new Promise((resolve) => child.on('exit', (code) => {
        if (code !== 0) this.failed!(new Error(`policy client ${i} exited ${code}`));
        resolve();
      })));
    }
  }

  /** Sends `phase` (or nothing, to wait for the first report) and resolves with every client's report. */
  async step(phase?: 'warm' | 'measure'): Promise<LoadReport[]> {
    const got = Promise.all(this.children.map((_, i) => new Promise<LoadReport>((resolve) => (this.reports[i] = resolve))));
    if (phase) for (const c of this.children) c.send({ phase });
    return Promise.race([got, this.failure]);
  }

  async end(): Promise<void> {
    for (const c of this.children) if (c.connected) c.send({ phase: 'end' });
    const timer = setTimeout(() => this.children.forEach((c) => c.kill('SIGKILL')), 10_000);
    await Promise.all(this.exits);
    clearTimeout(timer);
  }
}

const sum = (counts: Counts[]): Counts => counts.reduce((a, c) => {
  for (const k of Object.keys(a) as Array<keyof Counts>) a[k] += c[k];
  return a;
}, { DEFER: 0, PREPEND: 0, DUNNO: 0, other: 0, malformed: 0, unexpected: 0 });

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One server through one level: warm-up, the delay, the measured phase. */
async function run(start: (dir: string) => Promise<Server>, connections: number): Promise<Result> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pfgrey-bench-policy-'));
  let server: Server | undefined;
  let clients: Clients | undefined;
  try {
    server = await start(dir);
    clients = new Clients(server.port, connections);
    await clients.step();
    const warm = await clients.step('warm');
    const warmEnd = performance.now();
    // Every warm-up tuple must be older than the delay when it is repeated.
    await new Promise((r) => setTimeout(r, Math.max(0, warmEnd + DELAY * 1000 + 200 - performance.now())));
    const cpu0 = await processCpu(server.pid);
    const t0 = performance.now();
    const reports = await clients.step('measure');
    const secs = (performance.now() - t0) / 1000;
    const cpu1 = await processCpu(server.pid);
    await clients.end();
    clients = undefined;
    const latencies = Float64Array.from(reports.flatMap((r) => r.latencies)).sort();
    return {
      requests: latencies.length, secs, rate: latencies.length / secs,
      p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1]!,
      serverCpu: cpu1.all - cpu0.all, serverMainCpu: cpu1.main - cpu0.main, clientCpu: reports.reduce((a, r) => a + r.cpu, 0) / 1e6,
      counts: sum(reports.map((r) => r.counts)), warmCounts: sum(warm.map((r) => r.counts)),
    };
  } finally {
    try {
      await clients?.end();
      await server?.stop();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
}

const int = (n: number) => Math.round(n).toLocaleString('en');
const pct = (cpuSecs: number, wallSecs: number) => `${Math.round((100 * cpuSecs) / wallSecs)} %`;
const us = (cpuSecs: number, requests: number) => ((1e6 * cpuSecs) / requests).toFixed(1);

/** Answers that show the server did not do what greylisting does with the stream. */
const problems = (r: Result) => r.counts.malformed + r.counts.other + r.counts.unexpected +
  r.warmCounts.malformed + r.warmCounts.other + r.warmCounts.unexpected;

function rows(r: Result): Array<[string, string]> {
  const c = r.counts;
  const w = r.warmCounts;
  return [
    ['requests/s', `${int(r.rate)} (${int(r.requests)} in ${r.secs.toFixed(2)} s)`],
    ['latency p50 / p99 / max', `${r.p50.toFixed(2)} / ${r.p99.toFixed(2)} / ${r.max.toFixed(1)} ms`],
    ['CPU: server / clients', `${pct(r.serverCpu, r.secs)} (main thread ${pct(r.serverMainCpu, r.secs)}) / ` +
      `${pct(r.clientCpu, r.secs)} of one core (clients ${Math.round((100 * r.clientCpu) / (r.serverCpu + r.clientCpu))} % of the two)`],
    ['server CPU per request', `${us(r.serverCpu, r.requests)} µs (main thread ${us(r.serverMainCpu, r.requests)} µs)`],
    ['answers: DEFER / PREPEND / DUNNO', `${int(c.DEFER)} / ${int(c.PREPEND)} / ${int(c.DUNNO)}` +
      (problems(r) === 0 ? ', all as expected' : `; other ${c.other + w.other}, malformed ${c.malformed + w.malformed}, ` +
        `unexpected ${c.unexpected + w.unexpected} (warm-up included)`)],
  ];
}

const postgrey = withPostgrey ? await findPostgrey() : undefined;
const tmpFs = await filesystem(os.tmpdir());
const postgreyVersion = postgrey ? execFileSync(postgrey, ['--version'], { encoding: 'utf8' }).trim() : undefined;
let failed = false;
console.log(`Policy requests through the protocol: ${int(REQUESTS)} measured per server and level, after ` +
  `${int(REQUESTS / 4)} new tuples of warm-up and a ${DELAY} s delay; databases in ${os.tmpdir()} (${tmpFs}); ` +
  `${CLIENT_PROCS} client processes; ${os.cpus().length} cores`);
// Other work on the machine makes every figure slower: said, so a run on a busy machine is told apart.
console.log(`load average at the start: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
if (cpuProfDir) console.log(`pfgrey runs under --cpu-prof (profiles in ${cpuProfDir}): its figures are slower than without`);
if (!postgrey) {
  console.log(withPostgrey ? 'postgrey: skipped (not installed; `apt-get install postgrey` or set PFGREY_BENCH_POSTGREY)'
    : 'postgrey: skipped (--no-postgrey)');
}
for (const connections of LEVELS) {
  const peer = postgrey ? await run((dir) => startPostgrey(postgrey, dir), connections) : undefined;
  const ours = await run(startPfgrey, connections);
  const title = `${connections} connections, one request at a time each: half new tuples, a quarter repeated at once, ` +
    `a quarter repeated after the delay`;
  if (peer) printTable(`${title}\n${postgreyVersion} (${postgrey})`, rows(peer));
  printTable(`${peer ? '' : `${title}\n`}pfgrey policy`, [
    ...rows(ours),
    ...(peer ? [['pfgrey / postgrey', `${(ours.rate / peer.rate).toFixed(1)}× (target ≥ 10×)`] as [string, string]] : []),
  ]);
  if ((peer ? [peer, ours] : [ours]).some((r) => problems(r) > 0)) failed = true;
}
console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
if (failed) {
  console.error('\nsome answers were malformed or not what greylisting decides: the servers did not do the same work');
  process.exitCode = 1;
}
