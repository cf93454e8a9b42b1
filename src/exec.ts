// Running another program: pfctl and nft for the firewall, mount and pfctl for `pfgrey check`,
// ftp and exec lists for `pfgrey setup`. One way for all of them, so they fail the same way:
// an argument vector and never a shell (a table name or a list URL cannot become a command),
// a deadline after which the program is stopped, output kept within bounds, and one line
// saying what went wrong.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { DEFAULTS } from './config/defaults.js';
import { formatDelay } from './config/duration.js';
import { type ErrorCode, PfgreyError, systemErrorText } from './errors.js';

export interface RunProgramOptions {
  /** The executable, run with `args` and no shell. */
  file: string;
  args: readonly string[];
  /** Names the command in error messages (`/sbin/pfctl -t spamd-white -T replace`); file and args by default. */
  what?: string;
  /** Directory the program runs in; this process's own by default. */
  cwd?: string;
  /** Written to the program's stdin, which is then closed; without it stdin is /dev/null. */
  input?: string;
  /** A descriptor of this process handed to the program as its fd 3. */
  fd3?: number;
  /** A program still running after this many ms is stopped; without it there is no deadline. */
  timeout?: number;
  /** The deadline restarts whenever the program writes to stdout: it is stopped when it falls silent. */
  idle?: boolean;
  /** How long a stopped program has between SIGTERM and SIGKILL (ms); DEFAULTS.killGrace. */
  killGrace?: number;
  /** The code of a failure (E_COMMAND), and of a program stopped at its deadline (E_COMMAND_TIMEOUT). */
  code?: ErrorCode;
  timeoutCode?: ErrorCode;
  /**
   * Takes stdout as it arrives instead of collecting it (the promise then resolves with '').
   * A PfgreyError it throws stops the program and is what the promise rejects with.
   */
  onStdout?: (chunk: Buffer) => void;
  /** Rewrites stderr for the message (nft echoes its input there); the whole of it otherwise. */
  stderrText?: (stderr: string) => string;
}

/** Most stdout collected: a pf table of millions of addresses is some tens of MB. */
export const STDOUT_MAX = 256 * 1024 * 1024;
/** Enough stderr to explain a failure; the programs' messages are short. */
const STDERR_KEEP = 16 * 1024;
const STDERR_LINES = 3;

/**
 * Runs a program once and resolves with its stdout. Rejects with a one-line PfgreyError:
 * `cannot run FILE: why`, `WHAT: exited with status N: first lines of stderr`,
 * `WHAT: died on signal SIG…`, `WHAT: output larger than N bytes; killed it`, or, with the
 * timeout code, `WHAT: no answer after 30s; killed it` (`sent nothing for` when `idle`).
 * A program past its deadline gets SIGTERM, and SIGKILL if it is still there `killGrace`
 * later; the promise settles when it has exited, so a retry never runs beside it.
 */
export function runProgram(opts: RunProgramOptions): Promise<string> {
  const { file, input, timeout } = opts;
  const what = opts.what ?? [file, ...opts.args].join(' ');
  const code = opts.code ?? 'E_COMMAND';
  const grace = opts.killGrace ?? DEFAULTS.killGrace;
  return new Promise<string>((resolve, reject) => {
    const stdio: ('pipe' | 'ignore' | number)[] = [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    if (opts.fd3 !== undefined) stdio.push(opts.fd3);
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let settled = false;
    /** Why the program is being stopped; reported once it has exited. */
    let stopping: PfgreyError | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let killer: NodeJS.Timeout | undefined;

    let child: ChildProcess;
    try {
      child = spawn(file, opts.args, { cwd: opts.cwd, stdio, shell: false, windowsHide: true });
    } catch (err) {
      // Some failures (ENOTDIR, ETXTBSY while the program is being replaced) throw instead of emitting.
      reject(new PfgreyError(code, `cannot run ${file}: ${systemErrorText(err)}`, { cause: err }));
      return;
    }

    const finish = (err: PfgreyError | undefined, out?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(killer);
      if (err) reject(err);
      else resolve(out ?? '');
    };
    const exited = () => child.exitCode !== null || child.signalCode !== null;
    /** Settles without waiting for 'close': a grandchild holding the pipes open must not wedge the caller. */
    const finishStopped = (): void => {
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      finish(stopping);
    };
    const stop = (why: PfgreyError): void => {
      if (stopping) return;
      stopping = why;
      clearTimeout(deadline);
      if (exited()) {
        finishStopped();
        return;
      }
      child.kill('SIGTERM');
      killer = setTimeout(() => {
        // SIGKILL cannot be caught: the program is gone even if its 'exit' is still to come.
        child.kill('SIGKILL');
        finishStopped();
      }, grace);
    };

    if (timeout !== undefined) {
      const text = opts.idle ? `sent nothing for ${formatDelay(timeout)}` : `no answer after ${formatDelay(timeout)}`;
      deadline = setTimeout(() => stop(new PfgreyError(opts.timeoutCode ?? 'E_COMMAND_TIMEOUT', `${what}: ${text}; killed it`)), timeout);
    }

    child.on('error', (err: NodeJS.ErrnoException) => {
      // Also emitted when kill() fails on an already-reaped child; only a failed spawn
      // leaves no pid, and 'close' reports everything else.
      if (child.pid !== undefined) return;
      finish(new PfgreyError(code, `cannot run ${file}: ${systemErrorText(err)}`, { cause: err }));
    });
    child.on('exit', () => {
      if (stopping) finishStopped();
    });

    child.stdout?.on('data', (chunk: Buffer) => {
      if (stopping) return;
      if (opts.idle) deadline?.refresh();
      if (opts.onStdout) {
        try {
          opts.onStdout(chunk);
        } catch (err) {
          stop(err instanceof PfgreyError ? err : new PfgreyError(code, `${what}: ${String(err)}`));
        }
        return;
      }
      stdoutBytes += chunk.length;
      if (stdoutBytes > STDOUT_MAX) stop(new PfgreyError(code, `${what}: output larger than ${STDOUT_MAX} bytes; killed it`));
      else stdout.push(chunk);
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk;
    });

    child.on('close', (status: number | null, signal: NodeJS.Signals | null) => {
      if (stopping) return finishStopped();
      const tail = stderrTail(opts.stderrText ? opts.stderrText(stderr) : stderr);
      if (signal !== null) finish(new PfgreyError(code, `${what}: died on signal ${signal}${tail}`));
      else if (status !== 0) finish(new PfgreyError(code, `${what}: exited with status ${status}${tail}`));
      else finish(undefined, Buffer.concat(stdout).toString('utf8'));
    });

    if (child.stdin) {
      // A program that fails early stops reading; the write then fails with EPIPE, which is
      // not our error to report: the exit status says what went wrong.
      child.stdin.on('error', () => {});
      child.stdin.end(input);
    }
  });
}

/** `: first line; second line; …` from a program's stderr, or nothing when it said nothing. */
function stderrTail(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0) return '';
  let text = lines.slice(0, STDERR_LINES).join('; ');
  if (lines.length > STDERR_LINES) text += '; …';
  if (text.length > 500) text = `${text.slice(0, 500)}…`;
  return `: ${text}`;
}

/**
 * Why `file` cannot be run (`/sbin/pfctl does not exist`, `… is not a file`, `… is not
 * executable`, `… cannot be used (why)`), or undefined when it can. A directory passes
 * access(X_OK), so it is looked at first.
 */
export async function executableProblem(file: string): Promise<string | undefined> {
  try {
    if (!(await stat(file)).isFile()) return `${file} is not a file`;
    await access(file, constants.X_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `${file} does not exist`;
    if (code === 'EACCES') return `${file} is not executable`;
    return `${file} cannot be used (${systemErrorText(err)})`;
  }
}
