// A throwaway PostgreSQL cluster from Debian's packaged server (`postgresql`): initdb into a
// temporary directory as the unprivileged `postgres` user (initdb and the server refuse root),
// the server on 127.0.0.1 at a free port with its socket in that directory. Nothing in /etc or
// /var is read or written. The tests (postgres.ts) and bench/pg.ts start theirs from here.

import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

/** The newest packaged server's programs (Debian 12: /usr/lib/postgresql/15/bin). */
function binDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  const found = versions.map((v) => path.join(root, v, 'bin')).find((d) => existsSync(path.join(d, 'initdb')));
  return found;
}

const BIN = binDir();

/** Why no cluster can be started here, or undefined when one can. */
export function postgresMissing(): string | undefined {
  if (!BIN) return 'PostgreSQL is not installed (apt-get install postgresql)';
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'there is no postgres user to run initdb as';
  return undefined;
}

export interface Cluster {
  port: number;
  dir: string;
  /** The URL of database `db` on it, as the superuser postgres, over TCP. */
  url(db?: string): string;
  /** Runs one statement as the superuser in `db`. */
  sql(statement: string, params?: unknown[], db?: string): Promise<Array<Record<string, unknown>>>;
  /** Stops the server (pg_ctl stop -m fast: every connection is dropped); `up` starts it again. */
  down(): Promise<void>;
  up(): Promise<void>;
  stop(): Promise<void>;
}

/** As `postgres` when running as root (initdb and the server refuse root), else as ourselves. */
function asPostgres(): SpawnOptions {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

function run(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...asPostgres(), cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(cmd)} exited ${code}: ${out.trim().slice(-2000)}`))));
  });
}

export interface ClusterOptions {
  fsync?: boolean;
  /**
   * Run the server inside this network namespace (as root: `ip netns exec NS runuser -u
   * postgres`), listening on `listen` at port 5432, and let `trust` (a CIDR) connect: the MX
   * hosts of an end-to-end test reach it from namespaces of their own.
   */
  netns?: { name: string; listen: string; trust: string };
}

/**
 * Starts a cluster of its own; the caller must stop() it. fsync is off unless asked for: the
 * tests need no durability against a power cut, the benchmark measures with it.
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const missing = postgresMissing();
  if (missing) throw new Error(missing);
  const bin = BIN!;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pfgrey-pg-'));
  const owner = asPostgres();
  if (owner.uid !== undefined) await chown(dir, owner.uid, owner.gid!);
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'log');
  // A stop at process exit as well, in case the test file never reaches its teardown.
  const stopNow = () => {
    spawnSync(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], { ...asPostgres(), cwd: '/', stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopNow);
  try {
    await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-N', '-E', 'UTF8', '--locale=C']);
    const ns = opts.netns;
    if (ns) await appendFile(path.join(data, 'pg_hba.conf'), `host all all ${ns.trust} trust\n`);
    const host = ns?.listen ?? '127.0.0.1';
    const pgCtl = (args: string[]) => (ns
      ? run('ip', ['netns', 'exec', ns.name, 'runuser', '-u', 'postgres', '--', path.join(bin, 'pg_ctl'), ...args], { uid: undefined, gid: undefined })
      : run(path.join(bin, 'pg_ctl'), args));
    const pgCtlStart = (port: number) => pgCtl(['-D', data, '-l', logFile, '-w', '-o',
      `-p ${port} -k ${dir} -c listen_addresses=${host} ${opts.fsync ? '' : '-c fsync=off -c full_page_writes=off'}`, 'start']);
    let port = 0;
    for (let attempt = 0; ; attempt++) {
      // A namespace of the test's own has every port free.
      port = ns ? 5432 : await freePort();
      try {
        await pgCtlStart(port);
        break;
      } catch (err) {
        // Another process took the port between the probe and the bind.
        if (attempt >= 2) throw new Error(`${(err as Error).message}\n${await readFile(logFile, 'utf8').catch(() => '')}`);
      }
    }
    const url = (db = 'postgres') => `postgres://postgres@${host}:${port}/${db}`;
    const sql = (statement: string, params: unknown[] = [], db = 'postgres') => rawPg(url(db), statement, params);
    let stopped: Promise<void> | undefined;
    return {
      port, dir, url, sql,
      down: () => run(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']),
      up: () => pgCtlStart(port),
      stop: () => (stopped ??= (async () => {
        await run(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
        process.removeListener('exit', stopNow);
      })()),
    };
  } catch (err) {
    stopNow();
    process.removeListener('exit', stopNow);
    throw err;
  }
}

/** Runs one statement on a connection of its own (another process, for the test's purpose). */
export async function rawPg(url: string, statement: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(statement, params)).rows as Array<Record<string, unknown>>;
  } finally {
    await c.end();
  }
}

