import { spawn, type ChildProcess } from 'node:child_process';
import { formatDelay } from '../config/duration.js';
import { PfgreyError, systemErrorText } from '../errors.js';

export interface RunToolOptions {
  /** The executable, run with `args` and no shell. */
  file: string;
  args: readonly string[];
  /** Written to the tool's stdin, which is closed after it; without it stdin is /dev/null. */
  input?: string;
  /** A tool still running after this many ms is killed. */
  timeout: number;
  /** Names the command in error messages: `/sbin/pfctl -t spamd-white -T replace`. */
  what: string;
  /** A descriptor of this process handed to the tool as its fd 3. */
  fd3?: number;
  /** Rewrites stderr for the message (nft echoes its input there); the whole of it otherwise. */
  stderrText?: (stderr: string) => string;
}

/** Enough stderr to explain a failure; the tools' messages are short. */
const STDERR_KEEP = 16 * 1024;
const STDOUT_MAX = 256 * 1024 * 1024;
const STDERR_LINES = 3;

/**
 * Runs a firewall tool once and resolves with its stdout; rejects with a one-line PfgreyError
 * (E_FIREWALL, or E_FIREWALL_TIMEOUT after killing it) that names the command, its exit status
 * and the first lines of its stderr.
 */
export function runTool(opts: RunToolOptions): Promise<string> {
  const { file, input, timeout, what } = opts;
  return new Promise<string>((resolve, reject) => {
    const stdio: ('pipe' | 'ignore' | number)[] = [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    if (opts.fd3 !== undefined) stdio.push(opts.fd3);
    let settled = false;
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';

    let child: ChildProcess;
    try {
      child = spawn(file, opts.args, { stdio, shell: false, windowsHide: true });
    } catch (err) {
      // Some failures (ETXTBSY while the tool is being replaced) throw instead of emitting.
      reject(new PfgreyError('E_FIREWALL', `cannot run ${file}: ${systemErrorText(err)}`, { cause: err }));
      return;
    }

    const finish = (err: PfgreyError | undefined, out?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(out ?? '');
    };
    const tail = () => stderrTail(opts.stderrText ? opts.stderrText(stderr) : stderr);

    const timer = setTimeout(() => {
      // SIGKILL cannot be ignored, so the child is gone; settling now rather than on 'close'
      // keeps a grandchild that holds the pipes open from wedging the caller.
      child.kill('SIGKILL');
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      finish(new PfgreyError('E_FIREWALL_TIMEOUT', `${what}: no answer after ${formatDelay(timeout)}; killed it`));
    }, timeout);

    child.on('error', (err: NodeJS.ErrnoException) => {
      // Also emitted when kill() fails on an already-reaped child; only a failed spawn
      // leaves no pid, and 'close' reports everything else.
      if (child.pid !== undefined) return;
      finish(new PfgreyError('E_FIREWALL', `cannot run ${file}: ${systemErrorText(err)}`, { cause: err }));
    });

    child.stdout?.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes <= STDOUT_MAX) stdout.push(chunk);
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk;
    });

    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      if (signal !== null) {
        finish(new PfgreyError('E_FIREWALL', `${what}: died on signal ${signal}${tail()}`));
      } else if (code !== 0) {
        finish(new PfgreyError('E_FIREWALL', `${what}: exited with status ${code}${tail()}`));
      } else if (stdoutBytes > STDOUT_MAX) {
        finish(new PfgreyError('E_FIREWALL', `${what}: output larger than ${STDOUT_MAX} bytes`));
      } else {
        finish(undefined, Buffer.concat(stdout).toString('utf8'));
      }
    });

    if (child.stdin) {
      // A tool that fails early stops reading; the write then fails with EPIPE, which is
      // not our error to report: the exit status says what went wrong.
      child.stdin.on('error', () => {});
      child.stdin.end(input);
    }
  });
}

/** `: first line; second line; …` from a tool's stderr, or nothing when it said nothing. */
function stderrTail(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0) return '';
  let text = lines.slice(0, STDERR_LINES).join('; ');
  if (lines.length > STDERR_LINES) text += '; …';
  if (text.length > 500) text = `${text.slice(0, 500)}…`;
  return `: ${text}`;
}
