import { spawn, type ChildProcess } from 'node:child_process';
import { systemErrorText } from './errors.js';

// The one logger. Lines look like syslog's (`pfgrey[pid]: message`) so that spamd's message
// texts, which users grep for, come out the same; in the foreground they go to stderr.

export type Level = 'error' | 'warning' | 'notice' | 'info' | 'debug';
const ORDER: Record<Level, number> = { error: 0, warning: 1, notice: 2, info: 3, debug: 4 };

export interface Logger {
  error(msg: string): void;
  warning(msg: string): void;
  notice(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export interface LoggerOptions {
  /** Most verbose level written; spamd logs info by default and debug with -d. */
  level?: Level;
  ident?: string;
  write?: (line: string) => void;
}

/**
 * Messages carry text from clients (HELO names, addresses, -v header lines). Control bytes are
 * written as `\xHH` (a line break of our own as a space), so a client can neither split a
 * message into a forged second log line nor send escape sequences to an operator's terminal.
 */
export function logSafe(msg: string): string {
  // C1 codes too: client bytes are read as latin1, so 0x9b is CSI once written out as UTF-8.
  // eslint-disable-next-line no-control-regex
  return msg.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g,
    (c) => (c === '\n' ? ' ' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const max = ORDER[opts.level ?? 'info'];
  const ident = opts.ident ?? 'pfgrey';
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: Level) => (msg: string) => {
    if (ORDER[level] <= max) write(`${ident}[${process.pid}]: ${logSafe(msg)}\n`);
  };
  return {
    error: emit('error'),
    warning: emit('warning'),
    notice: emit('notice'),
    info: emit('info'),
    debug: emit('debug'),
  };
}

/** A logger that remembers its lines; for tests. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: Level) => (msg: string) => void lines.push(`${level}: ${msg}`);
  return {
    lines,
    error: push('error'),
    warning: push('warning'),
    notice: push('notice'),
    info: push('info'),
    debug: push('debug'),
  };
}

export const silentLogger: Logger = {
  error() {}, warning() {}, notice() {}, info() {}, debug() {},
};

const SYSLOG_PRIORITY: Record<Level, string> = {
  error: 'err', warning: 'warning', notice: 'notice', info: 'info', debug: 'debug',
};

/**
 * A logger that writes to syslog (facility daemon) through logger(1), which every BSD and Linux
 * has: Node cannot open the datagram socket syslogd listens on, and logger knows each system's
 * way in (/dev/log, /var/run/log, sendsyslog(2)). One logger process per priority in use, each
 * fed a line at a time; one that dies is started again on the next line. Where logger cannot be
 * run at all, lines go to `fallback` (stderr) instead, after one line saying so: a daemon
 * must not fall silent, errors included, because syslog's door is missing.
 */
export function createSyslogLogger(opts: {
  ident: string; level?: Level; logger?: string; fallback?: (line: string) => void;
}): Logger & { close(): void } {
  const max = ORDER[opts.level ?? 'info'];
  const tool = opts.logger ?? 'logger';
  const children = new Map<Level, ChildProcess>();
  let stderr: Logger | undefined;
  const fallBack = (why: string, lines: readonly string[], level: Level) => {
    if (!stderr) {
      stderr = createLogger({ level: opts.level ?? 'info', ident: opts.ident, write: opts.fallback ?? ((l) => process.stderr.write(l)) });
      stderr.error(`cannot run ${tool} to log to syslog (${why}); logging to stderr`);
    }
    for (const l of lines) stderr[level](l);
  };
  const send = (level: Level) => (msg: string) => {
    if (ORDER[level] > max) return;
    if (stderr) {
      stderr[level](msg);
      return;
    }
    let child = children.get(level);
    if (!child || child.exitCode !== null || child.signalCode !== null || !child.stdin?.writable) {
      let spawned: ChildProcess;
      try {
        spawned = spawn(tool, ['-t', opts.ident, '-p', `daemon.${SYSLOG_PRIORITY[level]}`], {
          stdio: ['pipe', 'ignore', 'ignore'],
        });
      } catch (err) {
        fallBack(systemErrorText(err), [msg], level);
        return;
      }
      spawned.on('error', () => children.delete(level));
      spawned.stdin?.on('error', () => children.delete(level));
      // No pid: the spawn failed (logger missing, not executable); Node reports why in a moment.
      if (spawned.pid === undefined) {
        spawned.once('error', (err) => fallBack(systemErrorText(err), [msg], level));
        return;
      }
      spawned.unref();
      (spawned.stdin as unknown as { unref?: () => void } | null)?.unref?.();
      children.set(level, spawned);
      child = spawned;
    }
    child.stdin?.write(`${logSafe(msg)}\n`);
  };
  return {
    error: send('error'),
    warning: send('warning'),
    notice: send('notice'),
    info: send('info'),
    debug: send('debug'),
    close() {
      for (const c of children.values()) c.stdin?.end();
      children.clear();
    },
  };
}

export type LogTarget = 'auto' | 'stderr' | 'syslog';

/**
 * The logger a command runs with. `auto` is spamd's rule, made for how rc.d and systemd start
 * daemons: with -d (debug, foreground) or on a terminal, stderr; in the background, syslog.
 */
export function commandLogger(opts: {
  target: LogTarget; debug: boolean; ident: string; stderr: NodeJS.WritableStream & { isTTY?: boolean };
}): Logger {
  const level: Level = opts.debug ? 'debug' : 'info';
  const toStderr = opts.target === 'stderr' || (opts.target === 'auto' && (opts.debug || opts.stderr.isTTY === true));
  if (toStderr) return createLogger({ level, ident: opts.ident, write: (l) => opts.stderr.write(l) });
  return createSyslogLogger({ ident: opts.ident, level });
}

export function parseLogTarget(v: string): LogTarget | undefined {
  return v === 'auto' || v === 'stderr' || v === 'syslog' ? v : undefined;
}
