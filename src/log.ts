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

/** How a string is escaped by controlEscaper. */
export interface EscapeRule {
  /**
   * The string is a byte string (one character per byte, latin1) that is written out as those
   * bytes, not text written as UTF-8. This decides what a C1 control is: see controlEscaper.
   */
  bytes?: boolean;
  /** Write a backslash as `\\` too, so that unescapeBytes gives back exactly the original. */
  reversible?: boolean;
  /** Further characters to write as `\xHH` (the listing's field separator '|'). */
  also?: string;
  /** C0 characters to leave as they are (the log keeps tabs). */
  keep?: string;
}

const hex = (c: string): string => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
const C0_AND_DEL = [...Array(32).keys(), 0x7f].map((n) => String.fromCharCode(n));

/**
 * The one escaper for text that comes from clients or from the database: control characters
 * (C0, DEL and C1) become `\xHH`, so nothing written to a log, a terminal or a listing line
 * can split the line or drive the terminal (retitle it, clear it).
 *
 * What counts as C1 depends on how the result is written out:
 * - text written as UTF-8 (the log): each character U+0080–U+009F. Log messages carry client
 *   bytes read as latin1, so there every byte 0x80–0x9F is such a character and is escaped:
 *   the byte 0x9b would reach the terminal as U+009B, which is CSI.
 * - a byte string written as bytes (`pfgrey db`'s listing, the tarpit's tuples): a byte
 *   0x80–0x9F is CSI, NEL… to a terminal in an 8-bit mode, but in UTF-8 it is also the second
 *   byte of many non-ASCII letters (ā is C4 81, р is D1 80). So bytes inside a well-formed
 *   UTF-8 sequence stay as they are, and UTF-8 HELOs print readably; a stray byte 0x80–0x9F
 *   and the UTF-8 form of a C1 code point (C2 80–C2 9F, which a UTF-8 terminal obeys) are
 *   escaped. Bytes 0xA0 and above are never controls and are left alone.
 */
export function controlEscaper(rule: EscapeRule = {}): (s: string) => string {
  const singles = [...C0_AND_DEL.filter((c) => !(rule.keep ?? '').includes(c)), ...(rule.reversible ? '\\' : ''), ...(rule.also ?? '')]
    .map(hex).join('') + '\\x80-\\x9f';
  const one = (c: string): string => (c === '\\' ? '\\\\' : hex(c));
  if (!rule.bytes) {
    const re = new RegExp(`[${singles}]`, 'g');
    return (s) => s.replace(re, one);
  }
  // In order: a C1 code point in UTF-8 (escaped), any other well-formed UTF-8 sequence of two
  // to four bytes (kept), one byte to escape (C0, DEL, a stray 0x80–0x9F, what the rule adds).
  const re = new RegExp(
    '(\\xc2[\\x80-\\x9f])' +
    '|([\\xc2-\\xdf][\\x80-\\xbf]|\\xe0[\\xa0-\\xbf][\\x80-\\xbf]|[\\xe1-\\xef][\\x80-\\xbf]{2}' +
    '|\\xf0[\\x90-\\xbf][\\x80-\\xbf]{2}|[\\xf1-\\xf3][\\x80-\\xbf]{3}|\\xf4[\\x80-\\x8f][\\x80-\\xbf]{2})' +
    `|[${singles}]`,
    'g');
  return (s) => s.replace(re, (m: string, c1?: string, utf8?: string) => {
    if (utf8 !== undefined) return utf8;
    if (c1 !== undefined) return hex(c1[0]!) + hex(c1[1]!);
    return one(m);
  });
}

/**
 * The inverse of a reversible escaper: `\\` is a backslash and `\xHH` the byte HH. Any other
 * backslash stands for itself, so text from something that does not escape (spamdb prints keys
 * raw) reads the same unless it holds a literal `\\` or `\xHH`.
 */
export function unescapeBytes(s: string): string {
  return s.replace(/\\(\\|x[0-9a-fA-F]{2})/g, (_m, e: string) => (e === '\\' ? '\\' : String.fromCharCode(parseInt(e.slice(1), 16))));
}

const logEscape = controlEscaper({ keep: '\t' });

/**
 * Messages carry text from clients (HELO names, addresses, -v header lines). Control bytes are
 * written as `\xHH` (a line break of our own as a space), so a client can neither split a
 * message into a forged second log line nor send escape sequences to an operator's terminal.
 */
export function logSafe(msg: string): string {
  return logEscape(msg.replace(/\n/g, ' '));
}

/** What coalesced writers still hold; written out when the process exits. */
const unwritten = new Set<() => void>();
let exitHook = false;

/** Past this many characters a coalesced writer writes at once rather than at the turn's end. */
const COALESCE_MAX = 64 * 1024;

/**
 * A writer that gathers the lines written by one piece of work (a task and the promise
 * reactions it sets off) and writes them out together as it ends (a microtask). A busy door logs
 * a line per request (postgrey does too): the policy door answers a batch of requests in one
 * such piece of work, and one write, a system call and a wake-up of whatever reads the pipe, per
 * batch costs far less than one per line (on Linux a write to a pipe on stderr is synchronous,
 * and waits while the pipe is full). A request's line is still written before its answer, which
 * is sent from a later reaction. Lines keep their order; what is still gathered when the process
 * exits is written then.
 */
export function coalesced(write: (text: string) => void): (line: string) => void {
  let gathered = '';
  const flush = () => {
    unwritten.delete(flush);
    if (gathered === '') return;
    const text = gathered;
    gathered = '';
    write(text);
  };
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const f of [...unwritten]) f();
    });
  }
  return (line) => {
    if (gathered === '') {
      unwritten.add(flush);
      queueMicrotask(flush);
    }
    gathered += line;
    if (gathered.length > COALESCE_MAX) flush();
  };
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
  /** daemon (spamd's) unless given: the policy door logs to mail, as postgrey and Postfix do. */
  facility?: 'daemon' | 'mail';
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
        spawned = spawn(tool, ['-t', opts.ident, '-p', `${opts.facility ?? 'daemon'}.${SYSLOG_PRIORITY[level]}`], {
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
  facility?: 'daemon' | 'mail';
  /** Where syslog's lines go when logger(1) cannot run (default: stderr). */
  fallback?: (line: string) => void;
}): Logger {
  const level: Level = opts.debug ? 'debug' : 'info';
  const toStderr = opts.target === 'stderr' || (opts.target === 'auto' && (opts.debug || opts.stderr.isTTY === true));
  if (toStderr) return createLogger({ level, ident: opts.ident, write: coalesced((text) => opts.stderr.write(text)) });
  return createSyslogLogger({ ident: opts.ident, level, facility: opts.facility, fallback: opts.fallback });
}

export function parseLogTarget(v: string): LogTarget | undefined {
  return v === 'auto' || v === 'stderr' || v === 'syslog' ? v : undefined;
}
