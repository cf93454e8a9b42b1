// Parses and builds the lists of one config-port connection off the main thread. A list of
// hundreds of thousands of blocks takes a few hundred milliseconds to parse, check, sort and
// merge; done here, the tarpit's event loop keeps stuttering meanwhile. The result is the same
// as ConfigPort.applyText's: per line, a built list, a clear, or the reason it was refused.
// The connection's bytes come in as they arrive (gathering 30 MB on the main thread and handing
// it over took 90 ms there, most of it the first touch of the fresh memory), and only what the
// main thread needs goes back: the built lists' typed arrays (moved, not copied) and a bounded
// number of refusals, so the main thread's share stays small however large or bad the input.

import { parentPort, workerData } from 'node:worker_threads';
import { describe } from '../errors.js';
import { parseConfigLine } from './config-line.js';
import { build, type List } from './lists.js';

export type WorkerResult =
  | { line: number; kind: 'list'; list: List }
  | { line: number; kind: 'clear'; tag: string }
  | { line: number; kind: 'error'; text: string; reason: string };

export interface BuildLimits {
  /** Lines parsed; any after them are refused unread. */
  maxLines: number;
  /** Bad lines returned with their reasons; the rest are only counted. */
  maxBadLines: number;
}

export interface Built {
  /** In line order: each line's list or clear, and the first maxBadLines refusals. */
  results: WorkerResult[];
  /** Bad lines beyond those in `results`. */
  moreBad: number;
}

/**
 * Frames and builds one connection's bytes. LF ends a line and one CR before it is dropped; a
 * line shorter than two bytes is skipped. Every sender ends its lines with LF, so text after
 * the last one is a line that was cut off (`198.51.100.0/24` cut to `/2` would blacklist a
 * quarter of IPv4): it is refused. The bytes are read as latin1, one character a byte.
 */
export function buildAll(data: Uint8Array, limits: BuildLimits): Built {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const results: WorkerResult[] = [];
  let bad = 0;
  const refuse = (line: number, text: () => string, reason: string) => {
    if (++bad <= limits.maxBadLines) results.push({ line, kind: 'error', text: text().slice(0, 40), reason });
  };
  const head = (from: number, to: number) => () => buf.toString('latin1', from, Math.min(to, from + 40));
  let line = 0;
  let taken = 0;
  let start = 0;
  for (let nl = buf.indexOf(0x0a); nl >= 0; start = nl + 1, nl = buf.indexOf(0x0a, start)) {
    line += 1;
    const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl;
    if (end - start < 2) continue;
    if (++taken > limits.maxLines) {
      refuse(line, head(start, end), `past the ${limits.maxLines} lines one connection may carry`);
      continue;
    }
    const text = buf.toString('latin1', start, end);
    try {
      const parsed = parseConfigLine(text);
      if (parsed.kind === 'clear') results.push({ line, kind: 'clear', tag: parsed.tag });
      else results.push({ line, kind: 'list', list: build(parsed.tag, parsed.message, parsed.v4, parsed.v6) });
    } catch (err) {
      refuse(line, () => text, describe(err));
    }
  }
  if (buf.length - start >= 2) refuse(line + 1, head(start, buf.length), 'it has no end of line (cut off?)');
  return { results, moreBad: Math.max(0, bad - limits.maxBadLines) };
}

/** Marks the worker ConfigPort starts; this module is also imported by the main thread. */
export const LIST_WORKER = 'pfgrey-list-worker';

/** What ConfigPort sends the worker: a connection's bytes as they arrive, then its end. */
export type WorkerMessage = { chunk: Uint8Array } | { end: BuildLimits };

// Only as that worker: the module is imported elsewhere too, where parentPort may be another
// program's (a test runner's worker thread).
if (workerData === LIST_WORKER) {
  const chunks: Uint8Array[] = [];
  parentPort?.on('message', (m: WorkerMessage) => {
    if ('chunk' in m) {
      chunks.push(m.chunk);
      return;
    }
    const built = buildAll(Buffer.concat(chunks), m.end);
    chunks.length = 0;
    // The typed arrays move to the main thread instead of being copied.
    const transfer = built.results.flatMap((r) => (r.kind === 'list' ? [r.list.v4, r.list.v6] : []))
      .flatMap((set) => [set.starts.buffer, set.ends.buffer])
      .filter((b, i, all) => b.byteLength > 0 && all.indexOf(b) === i) as ArrayBuffer[];
    parentPort!.postMessage(built, transfer);
  });
}
