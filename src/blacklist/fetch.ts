// Fetching a spamd.conf list and reading its addresses (spamd.conf(5), spamd-setup(8)).
//
// Methods: file (a path), http/https (Node's fetch, redirects followed), ftp (/usr/bin/ftp,
// as spamd-setup runs it for every URL), exec (a command line split on spaces and tabs, run
// without a shell). Gzip'd data is recognised by its magic bytes and inflated; anything else
// is taken as text, as zlib's gzread does for spamd-setup.
//
// Where we differ from spamd-setup, and why:
// - A command (exec, ftp) that exits non-zero fails the fetch, so a half-written list is
//   never sent; spamd-setup does not look at the exit status.
// - Relative paths and commands run from the directory the caller names (setup: the one of
//   spamd.conf); spamd-setup runs from /.
// - In a CIDR line the host bits are masked off (10.1.2.3/8 is 10.0.0.0/8); spamd-setup
//   counts 2^(32−nn) addresses from 10.1.2.3 on. A range whose end is below its start is
//   malformed; spamd-setup's check compares two pointers and lets it through.
// - Lines starting with `;` are comments too (Spamhaus DROP's format), not malformed lines,
//   and leading tabs are skipped as well as spaces.
// - Malformed lines are reported to the caller; spamd-setup skips them silently.

import { createReadStream } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError, systemErrorText } from '../errors.js';
import { executableProblem, runProgram } from '../exec.js';
import { cidrToRange, parseNetV4, type Range } from './cidr.js';
import type { Method } from './spamd-conf.js';


export interface ListSource {
  name: string;
  method: Method;
  file: string;
}

export interface FetchOptions {
  /** Directory relative paths (file, exec) are taken from; the process's own by default. */
  cwd?: string;
  idleTimeout?: number;
  maxBytes?: number;
  ftp?: string;
  /** Called as data arrives, with the bytes received so far (before gunzip). */
  onProgress?: (bytes: number) => void;
}

/** The URL spamd-setup builds for http, https and ftp lists. */
export function sourceUrl(src: ListSource): string {
  return `${src.method}://${src.file}`;
}

/**
 * The list's contents, inflated when gzip'd. Throws PfgreyError E_FETCH naming the list, the
 * method and the reason.
 */
export async function fetchList(src: ListSource, opts: FetchOptions = {}): Promise<Buffer> {
  const max = opts.maxBytes ?? DEFAULTS.maxListBytes;
  const what = src.method === 'file' || src.method === 'exec' ? src.file : sourceUrl(src);
  const fail = (reason: string, cause?: unknown) =>
    new PfgreyError('E_FETCH', `list ${src.name}: Can't open ${what} by ${src.method} method: ${reason}`, { cause });
  const sink = new Sink(max, opts.onProgress, fail);
  switch (src.method) {
    case 'file':
      await readFileStream(path.resolve(opts.cwd ?? '.', src.file), sink, fail);
      break;
    case 'http':
    case 'https':
      await httpGet(sourceUrl(src), sink, opts.idleTimeout ?? DEFAULTS.fetchIdleTimeout, fail);
      break;
    case 'ftp': {
      const ftp = opts.ftp ?? DEFAULTS.ftp;
      if (await executableProblem(ftp) !== undefined) {
        throw fail(`the ftp method needs ${ftp}, which is not installed here (http and https work without it)`);
      }
      await runCommand([ftp, '-V', '-o', '-', sourceUrl(src)], opts.cwd, sink, opts.idleTimeout ?? DEFAULTS.fetchIdleTimeout, fail);
      break;
    }
    case 'exec': {
      const argv = src.file.split(/[ \t]+/).filter((a) => a !== '');
      if (argv.length === 0) throw fail('no command given');
      await runCommand(argv, opts.cwd, sink, undefined, fail);
      break;
    }
  }
  return inflate(sink.data(), max, fail);
}

type Fail = (reason: string, cause?: unknown) => PfgreyError;

/** Collects a fetch's bytes, enforcing the size cap and reporting progress. */
class Sink {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly max: number, private readonly onProgress: ((bytes: number) => void) | undefined,
    private readonly fail: Fail) {}

  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    if (this.bytes > this.max) throw this.fail(`larger than ${this.max} bytes`);
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.onProgress?.(this.bytes);
  }

  data(): Buffer {
    return Buffer.concat(this.chunks, this.bytes);
  }
}

/** Fires `onIdle` when `poke` has not been called for `ms`. */
class IdleTimer {
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number, onIdle: () => void) {
    this.timer = setTimeout(onIdle, ms);
  }

  poke(): void {
    this.timer.refresh();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

async function readFileStream(file: string, sink: Sink, fail: Fail): Promise<void> {
  try {
    for await (const chunk of createReadStream(file)) sink.push(chunk as Buffer);
  } catch (err) {
    if (err instanceof PfgreyError) throw err;
    throw fail(systemErrorText(err), err);
  }
}

async function httpGet(url: string, sink: Sink, idleMs: number, fail: Fail): Promise<void> {
  const abort = new AbortController();
  let idle = false;
  const timer = new IdleTimer(idleMs, () => {
    idle = true;
    abort.abort();
  });
  try {
    const res = await fetch(url, { signal: abort.signal, redirect: 'follow' });
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw fail(`HTTP status ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
    }
    if (res.body) {
      for await (const chunk of res.body) {
        timer.poke();
        sink.push(chunk);
      }
    }
  } catch (err) {
    if (err instanceof PfgreyError) throw err;
    if (idle) throw fail(`nothing received for ${idleMs / 1000} s`, err);
    // undici says "fetch failed" and keeps the reason (ECONNREFUSED, a TLS error…) in `cause`.
    const cause = (err as { cause?: unknown }).cause;
    throw fail(systemErrorText(cause ?? err), err);
  } finally {
    timer.stop();
  }
}

/** Runs argv without a shell; its standard output is the list. */
async function runCommand(argv: string[], cwd: string | undefined, sink: Sink, idleMs: number | undefined, fail: Fail): Promise<void> {
  const [cmd, ...args] = argv as [string, ...string[]];
  let sinkError: unknown;
  try {
    await runProgram({
      file: cmd, args, what: cmd, cwd, code: 'E_FETCH', timeoutCode: 'E_FETCH',
      ...(idleMs === undefined ? {} : { timeout: idleMs, idle: true }),
      onStdout: (chunk) => {
        try {
          sink.push(chunk);
        } catch (err) {
          sinkError = err;
          throw err;
        }
      },
    });
  } catch (err) {
    // The sink's errors (too large) already name the list; the program's are named here.
    if (err === sinkError) throw err;
    throw fail(describe(err), err);
  }
}

const gunzipAsync = promisify(gunzip);

async function inflate(data: Buffer, max: number, fail: Fail): Promise<Buffer> {
  if (data.length < 2 || data[0] !== 0x1f || data[1] !== 0x8b) return data;
  try {
    return await gunzipAsync(data, { maxOutputLength: max });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE') throw fail(`larger than ${max} bytes once gunzipped`, err);
    throw fail(`bad gzip data (${e.message})`, err);
  }
}

// --- the list format -------------------------------------------------------------------------

export interface BadLine {
  list: string;
  /** 1-based line number in the (inflated) list. */
  line: number;
  /** The line, cut to 60 characters. */
  text: string;
  reason: string;
}

export interface ParsedList {
  ranges: Range[];
  /** Lines that gave an address or a range (spamd-setup's "N entries"). */
  entries: number;
}

/**
 * The addresses of a list (spamd.conf(5); read as spamd-setup does): one entry per line — `a.b.c.d/nn` (also inet_net_pton
 * forms such as `10/8`), `a.b.c.d - e.f.g.h`, or `a.b.c.d` — with leading blanks skipped and
 * anything after the entry ignored. Blank lines and `#` or `;` comments are skipped; any other
 * line that gives no address goes to `onBad` and is skipped.
 */
export function parseList(data: Buffer | string, name: string, onBad?: (bad: BadLine) => void): ParsedList {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const ranges: Range[] = [];
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const s = raw.replace(/^[ \t]+/, '');
    if (s === '' || s === '\r' || s[0] === '#' || s[0] === ';') continue;
    const r = parseEntry(s);
    if (typeof r !== 'string') {
      ranges.push(r);
    } else if (onBad) {
      // Shown as UTF-8 text, and without control characters that would reach a terminal.
      const shown = Buffer.from(s.replace(/\r$/, ''), 'latin1').toString('utf8').replace(/\p{Cc}/gu, '?');
      onBad({ list: name, line: lineNo, text: shown.length > 60 ? `${shown.slice(0, 60)}…` : shown, reason: r });
    }
  }
  return { ranges, entries: ranges.length };
}

/**
 * One list line as spamd-setup's three sscanf patterns read it, in order: `%15[^/]/%u` (a
 * CIDR: up to 15 characters, a slash, a number), `%15[0-9.]%*[ -]%15[0-9.]` (a range) and
 * `%15[0-9.]` (an address). A range, or a reason the line is malformed.
 */
function parseEntry(s: string): Range | string {
  const cidr = /^([^/]{1,15})\/[ \t\n\r\f\v]*([+-]?)([0-9]+)/.exec(s);
  if (cidr) {
    const addr = parseNetV4(cidr[1]!);
    if (addr === undefined) return `bad address "${cidr[1]}"`;
    const bits = Number(cidr[3]);
    if (cidr[2] === '-' ? bits !== 0 : bits > 32) return `bad mask /${cidr[2]}${cidr[3]}`;
    return cidrToRange({ addr, bits });
  }
  const range = /^([0-9.]{1,15})[ -]+([0-9.]{1,15})/.exec(s);
  if (range) {
    const start = parseNetV4(range[1]!);
    const end = parseNetV4(range[2]!);
    if (start === undefined || end === undefined) return `bad address in range "${range[1]} - ${range[2]}"`;
    if (end < start) return 'the range ends before it starts';
    return { start, end };
  }
  const single = /^[0-9.]{1,15}/.exec(s);
  if (single) {
    const addr = parseNetV4(single[0]);
    if (addr === undefined) return `bad address "${single[0]}"`;
    return { start: addr, end: addr };
  }
  return 'not an IPv4 address, range or CIDR block';
}
