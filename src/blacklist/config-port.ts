// The daemon's end of spamd's config channel (spec §5): `pfgrey setup` (or OpenBSD's own
// spamd-setup) connects, sends one line per list and closes. Each line replaces one list
// atomically; a bad line is logged and changes nothing.

import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import { Worker } from 'node:worker_threads';
import { plainAddress } from '../tarpit/server.js';
import { buildAll, LIST_WORKER, type WorkerResult } from './list-worker.js';
import type { BlackLists } from './lists.js';

export interface ConfigPortOptions {
  host: string;
  port: number;
  lists: BlackLists;
  log: Logger;
  /**
   * Refuse source ports ≥ 1024. spamd always does: only root can bind a reserved port, so it
   * proves the sender is a privileged process. It only means something when we could bind
   * one ourselves (root, or CAP_NET_BIND_SERVICE: mayBindReserved).
   */
  requireReservedPort: boolean;
  maxBytes?: number;
}

/** Connections sending more than this are parsed in a worker thread (about 50,000 blocks). */
const OFF_THREAD_BYTES = 1024 * 1024;

function isLoopback(addr: string): boolean {
  const plain = plainAddress(addr);
  return plain === '::1' || (net.isIPv4(plain) && plain.startsWith('127.'));
}

export class ConfigPort {
  private readonly server: net.Server;

  constructor(private readonly opts: ConfigPortOptions) {
    this.server = net.createServer((s) => this.accept(s));
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(new PfgreyError('E_LISTEN',
        `cannot listen for configuration on ${this.opts.host}:${this.opts.port}: ${err.code ?? err.message}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.opts.log.error(`config port: ${err.message}`));
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Applies every line of one connection's text; returns how many lists it changed. */
  applyText(text: string, from: string): number {
    return this.install(buildAll(this.lines(text, from)), from);
  }

  /** As applyText, with the parsing and building done in a worker thread. */
  async applyOffThread(text: string, from: string): Promise<number> {
    const lines = this.lines(text, from);
    const worker = new Worker(new URL('./list-worker.js', import.meta.url), { workerData: LIST_WORKER });
    try {
      const results = await new Promise<WorkerResult[]>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`list worker exited with status ${code}`)));
        worker.postMessage(lines);
      });
      return this.install(results, from);
    } finally {
      void worker.terminate();
    }
  }

  /**
   * The connection's lines. Every sender ends its lines with LF; text after the last one is a
   * line that was cut off (`198.51.100.0/24` cut to `/2` would blacklist a quarter of IPv4),
   * so it is left out.
   */
  private lines(text: string, from: string): string[] {
    const lines = text.split('\n');
    const tail = lines.pop()!;
    if (tail.length >= 2) {
      this.opts.log.error(`config from ${from}: line ${lines.length + 1} has no end of line (cut off?) and is ignored`);
    }
    return lines;
  }

  private install(results: readonly WorkerResult[], from: string): number {
    let applied = 0;
    for (const r of results) {
      if (r.kind === 'error') {
        const semi = r.text.indexOf(';');
        this.opts.log.error(`config from ${from}: line ${r.line} (${semi < 0 ? r.text : r.text.slice(0, semi)}) ignored: ${r.reason}`);
        continue;
      }
      applied += 1;
      if (r.kind === 'clear') {
        this.opts.lists.apply({ kind: 'clear', tag: r.tag });
        this.opts.log.info(`config from ${from}: list ${r.tag} cleared`);
      } else {
        this.opts.lists.install(r.list);
        this.opts.log.info(`config from ${from}: list ${r.list.tag} now has ${r.list.count} blocks`);
      }
    }
    return applied;
  }

  private accept(socket: net.Socket): void {
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => {});
    if (!isLoopback(socket.remoteAddress ?? '')) {
      this.opts.log.warning(`config connection from ${from} refused: not loopback`);
      socket.resetAndDestroy();
      return;
    }
    if (this.opts.requireReservedPort && (socket.remotePort ?? 0) >= 1024) {
      this.opts.log.warning(`config connection from ${from} refused: source port is not reserved (< 1024)`);
      // A reset, not a close: the sender must learn its list was not taken.
      socket.resetAndDestroy();
      return;
    }
    const max = this.opts.maxBytes ?? DEFAULTS.configMaxBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    socket.on('data', (b: Buffer) => {
      size += b.length;
      if (size > max) {
        this.opts.log.error(`config connection from ${from} sent more than ${max} bytes; nothing applied`);
        socket.destroy();
        return;
      }
      chunks.push(b);
    });
    // Lines are applied only once the sender has finished, as spamd does: a connection that
    // breaks off (an error, not an orderly close) changes nothing.
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      socket.end();
      if (text.length < OFF_THREAD_BYTES) {
        this.applyText(text, from);
        return;
      }
      this.applyOffThread(text, from).catch((err) => {
        this.opts.log.error(`config from ${from}: ${describe(err)}; nothing applied`);
      });
    });
  }
}
