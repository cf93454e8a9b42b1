// Parses and builds the lists of one config-port connection off the main thread. A list of
// hundreds of thousands of blocks takes a few hundred milliseconds to parse, check, sort and
// merge; done here, the tarpit's event loop keeps stuttering meanwhile. The result is the same
// as ConfigPort.applyText's: per line, a built list, a clear, or the reason it was refused.

import { parentPort, workerData } from 'node:worker_threads';
import { describe } from '../errors.js';
import { parseConfigLine } from './config-line.js';
import { build, type List } from './lists.js';

export type WorkerResult =
  | { line: number; kind: 'list'; list: List }
  | { line: number; kind: 'clear'; tag: string }
  | { line: number; kind: 'error'; text: string; reason: string };

export function buildAll(lines: readonly string[]): WorkerResult[] {
  const out: WorkerResult[] = [];
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.length < 2) return;
    try {
      const parsed = parseConfigLine(line);
      if (parsed.kind === 'clear') out.push({ line: i + 1, kind: 'clear', tag: parsed.tag });
      else out.push({ line: i + 1, kind: 'list', list: build(parsed.tag, parsed.message, parsed.v4, parsed.v6) });
    } catch (err) {
      out.push({ line: i + 1, kind: 'error', text: line.slice(0, 40), reason: describe(err) });
    }
  });
  return out;
}

/** Marks the worker ConfigPort starts; this module is also imported by the main thread. */
export const LIST_WORKER = 'pfgrey-list-worker';

// Only as that worker: the module is imported elsewhere too, where parentPort may be another
// program's (a test runner's worker thread).
if (workerData === LIST_WORKER) parentPort?.on('message', (lines: string[]) => {
  const results = buildAll(lines);
  // The typed arrays move to the main thread instead of being copied.
  const transfer = results.flatMap((r) => (r.kind === 'list' ? [r.list.v4.starts.buffer, r.list.v4.ends.buffer] : []))
    .filter((b, i, all) => b.byteLength > 0 && all.indexOf(b) === i) as ArrayBuffer[];
  parentPort!.postMessage(results, transfer);
});
