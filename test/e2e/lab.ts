// The end-to-end lab: network namespaces, the processes started in them and a scratch
// directory, all owned by one Lab that can take everything down again synchronously (from a
// process 'exit' hook) as well as from an AVA hook. A detached reaper does the same if this
// process dies without running either, so a killed test run leaves no namespace behind.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Commands run by the lab never see node_modules/.bin, whose `nft` is not nftables. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const NFT = '/usr/sbin/nft';
const systemEnv = (): NodeJS.ProcessEnv => ({ ...process.env, PATH: SYSTEM_PATH, LC_ALL: 'C' });

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Why network namespaces cannot be made here (a probe one is added and deleted), or undefined. */
export function namespaceProblem(): string | undefined {
  const ns = `pfgrey-e2e-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8', env: systemEnv() });
  spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', env: systemEnv() });
  if (add.error || add.status !== 0) return `cannot create network namespaces: ${add.error?.message ?? add.stderr.trim()}`;
  return undefined;
}

/** Runs a command to completion (killed after `timeout` ms) and returns its output. */
export function run(argv: string[], opts: { input?: string; timeout?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: systemEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(' ')}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** As run, but a non-zero exit is an error that quotes the command and its stderr. */
export async function check(argv: string[], opts: { input?: string; timeout?: number } = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${argv.join(' ')} exited ${r.code ?? r.signal}: ${(r.stderr || r.stdout).trim()}`);
  }
  return r;
}

/** A long-running child in its own process group, its output kept in memory and in a file. */
export class Proc {
  output = '';
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined;
  private waiters: Array<() => void> = [];

  constructor(readonly name: string, readonly child: ChildProcess, logFile: string) {
    const log = fs.createWriteStream(logFile);
    const take = (d: string) => {
      this.output += d;
      log.write(d);
      this.wake();
    };
    child.stdout?.setEncoding('utf8').on('data', take);
    child.stderr?.setEncoding('utf8').on('data', take);
    child.on('error', (err) => take(`spawn error: ${err.message}\n`));
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => {
      this.exitCode = code;
      take(`[${name} exited ${code ?? signal}]\n`);
      log.end();
      resolve(code);
    }));
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Waits until the output matches; fails at once if the process exits first. */
  async waitFor(pattern: RegExp, ms: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = pattern.exec(this.output);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} exited before printing ${pattern}:\n${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name} did not print ${pattern} within ${ms} ms:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Signals the whole process group (the child was spawned detached, as its leader). */
  signal(sig: NodeJS.Signals): void {
    if (!this.running || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch {
      // Already gone.
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export class Lab {
  readonly dir: string;
  private readonly namespaces: string[];
  private readonly procs: Proc[] = [];
  private reaper: ChildProcess | undefined;
  private destroyed = false;
  private readonly onExit = () => this.destroySync();

  /** Names the namespaces up front, so the reaper knows them all before any exists. */
  constructor(namespaces: string[]) {
    this.namespaces = namespaces;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pfgrey-e2e-'));
    process.on('exit', this.onExit);
    this.reaper = spawn('sh', ['-c', `
      while kill -0 "$0" 2>/dev/null; do sleep 1; done
      d="$1"; shift
      for ns in "$@"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
      done
      [ "$PFGREY_E2E_KEEP" = 1 ] || rm -rf "$d"`, String(process.pid), this.dir, ...namespaces],
    { detached: true, stdio: 'ignore', env: systemEnv() });
    this.reaper.unref();
  }

  async addNetns(name: string): Promise<void> {
    if (!this.namespaces.includes(name)) throw new Error(`netns ${name} was not declared to the lab`);
    await check(['ip', 'netns', 'add', name]);
    await check(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  }

  /** Runs a command inside a namespace, to completion. */
  exec(ns: string, argv: string[], opts: { input?: string; timeout?: number } = {}): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', ns, ...argv], opts);
  }

  execCheck(ns: string, argv: string[], opts: { input?: string; timeout?: number } = {}): Promise<RunResult> {
    return check(['ip', 'netns', 'exec', ns, ...argv], opts);
  }

  /** Starts a long-running command inside a namespace; its output goes to DIR/<name>.log. */
  spawn(name: string, ns: string, argv: string[], env: NodeJS.ProcessEnv = {}): Proc {
    // `ip netns exec` execs the command itself, so the child pid is the command's.
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
      detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...systemEnv(), ...env },
    });
    const proc = new Proc(name, child, path.join(this.dir, `${name}.log`));
    this.procs.push(proc);
    return proc;
  }

  /** SIGTERM first, so daemons flush and exit as in production; then the sync sweep. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    const running = this.procs.filter((p) => p.running);
    for (const p of running) p.signal('SIGTERM');
    await Promise.race([
      Promise.all(running.map((p) => p.exited)),
      new Promise((r) => setTimeout(r, 3000).unref()),
    ]);
    this.destroySync();
  }

  /** Kills what the lab started, deletes its namespaces and directory; safe to call twice. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    for (const p of this.procs) p.signal('SIGKILL');
    // Whatever else runs in our namespaces (Postfix's master and its children have their
    // own session) was started by this lab too.
    for (const ns of this.namespaces) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', env: systemEnv() });
      for (const pid of (pids.stdout ?? '').split(/\s+/).filter(Boolean).map(Number)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', env: systemEnv() });
    }
    if (process.env.PFGREY_E2E_KEEP === '1') process.stderr.write(`# e2e: kept ${this.dir}\n`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
    if (this.reaper?.pid !== undefined) {
      try {
        process.kill(-this.reaper.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}
