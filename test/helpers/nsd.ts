// A real authoritative DNS server for the DNS layer's tests: Debian's NSD (CI installs the
// package `nsd`), run in the foreground on 127.0.0.1 at a free port, with a configuration and
// zone files of its own in a temporary directory and nothing read from or written to /etc or
// /var. Also a "resolver" that never answers: a UDP socket that takes queries and drops them.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { DnsClient } from '../../src/weighted/dns.js';
import { freeUdpPort } from './ports.js';
import { lacking } from './require.js';
import { eventually } from './wait.js';

export const NSD = '/usr/sbin/nsd';

/** Why nsd cannot be run here, or undefined if it can. */
export function nsdMissing(): string | undefined {
  if (!existsSync(NSD)) return `${NSD} is not installed (apt-get install --no-install-recommends nsd)`;
  const r = spawnSync(NSD, ['-v'], { encoding: 'utf8' });
  if (r.error) return `${NSD} -v: ${r.error.message}`;
  return undefined;
}

export interface RunningNsd {
  /** The resolver address to give DnsClient: `127.0.0.1:PORT`. */
  server: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

function config(dir: string, port: number, zones: string[]): string {
  const q = (p: string) => `"${p}"`;
  return [
    'server:',
    `  ip-address: 127.0.0.1@${port}`,
    '  do-ip6: no',
    '  username: ""',
    '  chroot: ""',
    `  zonesdir: ${q(dir)}`,
    '  database: ""',
    `  zonelistfile: ${q(path.join(dir, 'zone.list'))}`,
    `  xfrdfile: ${q(path.join(dir, 'xfrd.state'))}`,
    `  xfrdir: ${q(dir)}`,
    `  pidfile: ${q(path.join(dir, 'nsd.pid'))}`,
    `  logfile: ${q(path.join(dir, 'nsd.log'))}`,
    '  server-count: 1',
    // Debian builds NSD with response rate limiting (nsd.conf(5): rrl-ratelimit, 200 answers/s
    // per client /24 by default), which drops or truncates answers to one client that asks more:
    // off, so a test or benchmark that asks many names gets every answer.
    '  rrl-ratelimit: 0',
    'remote-control:',
    '  control-enable: no',
    ...zones.flatMap((z) => ['zone:', `  name: "${z}"`, `  zonefile: "${z}.zone"`]),
    '',
  ].join('\n');
}

/**
 * Starts nsd serving `zones` (zone name → zone file text, each with its $ORIGIN, $TTL, SOA and
 * NS) and resolves once it answers the first zone's SOA. The caller must stop() it.
 */
export async function startNsd(zones: Record<string, string>): Promise<RunningNsd> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pfgrey-nsd-'));
  const names = Object.keys(zones);
  for (const z of names) await writeFile(path.join(dir, `${z}.zone`), zones[z]);
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freeUdpPort();
    const conf = path.join(dir, 'nsd.conf');
    await writeFile(conf, config(dir, port, names));
    const child: ChildProcess = spawn(NSD, ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    let exited = false;
    const exit = new Promise<void>((resolve) => {
      child.once('exit', () => {
        exited = true;
        resolve();
      });
      child.once('error', (err) => {
        stderr += err.message;
        exited = true;
        resolve();
      });
    });
    const stop = async (): Promise<void> => {
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exit;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    };
    const r = new Resolver({ timeout: 500, tries: 1 });
    r.setServers([`127.0.0.1:${port}`]);
    try {
      await eventually(
        async () =>
          exited ||
          (await r.resolveSoa(names[0]).then(
            () => true,
            () => false,
          )),
        `nsd answering on 127.0.0.1:${port}`,
        15_000,
      );
    } catch (err) {
      await stop();
      throw err;
    }
    if (!exited) return { server: `127.0.0.1:${port}`, port, dir, stop };
    const log = (await readFile(path.join(dir, 'nsd.log'), 'utf8').catch(() => '')).slice(-2000);
    lastError = `nsd exited at start: ${stderr.trim()} ${log.trim()}`;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(lastError);
}

export interface DeadResolver {
  server: string;
  /** Queries it received (and never answered). */
  received(): number;
  close(): Promise<void>;
}

/** A UDP socket on 127.0.0.1 that reads DNS queries and never replies (nor lets ICMP say no). */
export async function deadResolver(): Promise<DeadResolver> {
  const s = dgram.createSocket('udp4');
  let n = 0;
  s.on('message', () => {
    n++;
  });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    server: `127.0.0.1:${s.address().port}`,
    received: () => n,
    close: () => new Promise<void>((resolve) => s.close(() => resolve())),
  };
}

/**
 * A per-lookup timeout far beyond any budget a test gives, so that against a resolver that never
 * answers only a budget's deadline ends a lookup early; with DnsClient's default 2 s, c-ares
 * ends every lookup soon anyway and hides a budget that does not. (The c-ares of Node 20, 1.34,
 * gives up one try after about 5 s however long it is told to wait: still seconds past any budget.)
 */
export const DEAD_LOOKUP_TIMEOUT = 30_000;

/**
 * How late past its budget a decision may end against a dead resolver: timers firing late on a
 * busy machine, well below DEAD_LOOKUP_TIMEOUT and below twice a test's budget.
 */
export const BUDGET_SLACK = 1000;

/** A resolver that never answers and a DnsClient that asks it with DEAD_LOOKUP_TIMEOUT; both ended with the test. */
export async function deadClient(t: ExecutionContext): Promise<{ dead: DeadResolver; client: DnsClient }> {
  const dead = await deadResolver();
  t.teardown(() => dead.close());
  const client = new DnsClient({ servers: [dead.server], timeout: DEAD_LOOKUP_TIMEOUT });
  t.teardown(() => client.close());
  return { dead, client };
}

/**
 * nsd serving `zones`, stopped when the test ends; undefined, with the test ended as lacking nsd
 * (a failure under PFGREY_REQUIRE_E2E=1), where nsd is missing.
 */
export async function nsdFor(t: ExecutionContext, zones: Record<string, string>): Promise<RunningNsd | undefined> {
  const missing = nsdMissing();
  if (missing) {
    lacking(t, missing);
    return undefined;
  }
  const nsd = await startNsd(zones);
  t.teardown(() => nsd.stop());
  return nsd;
}

/** nsdFor's server and a DnsClient that asks it, both stopped when the test ends (undefined as nsdFor). */
export async function nsdClient(t: ExecutionContext, zones: Record<string, string>): Promise<DnsClient | undefined> {
  const nsd = await nsdFor(t, zones);
  if (!nsd) return undefined;
  const client = new DnsClient({ servers: [nsd.server], timeout: 2000 });
  t.teardown(() => client.close());
  return client;
}
