// The daemon's end of spamd's config channel (spamd(8), spamd-setup(8)): `pfgrey setup` (or
// OpenBSD's own spamd-setup) connects, sends one line per list and closes. Each line replaces
// one list atomically; a bad line is logged and changes nothing.
//
// What one sender may cost the daemon is bounded, since any local process may connect (any
// root one, when a reserved source port is required): connections at once, bytes from one
// connection and from all together, time without input, lines a connection, log lines a
// connection, and the time the event loop is held (large connections are parsed in a worker
// thread). The limits are in src/config/defaults.ts, each with the reason for its number. A
// connection refused for one of them is reset, not closed: pfgrey setup and spamd-setup take a
// clean close as "list taken".

import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { plainAddress } from '../address.js';
import { systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import { CoarseTimer, resolutionFor, type Due } from '../timers.js';
import { buildAll, LIST_WORKER, type BuildLimits, type Built, type WorkerMessage } from './list-worker.js';
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
  /** Most bytes one connection may send (DEFAULTS.configMaxBytes). */
  maxBytes?: number;
  /** Most bytes held for all connections together until installed (DEFAULTS.configMaxBytesInFlight). */
  maxBytesInFlight?: number;
  /** Most connections open or being parsed at once (DEFAULTS.configMaxConnections). */
  maxConnections?: number;
  /** A connection that completes no line for this long is reset, ms (DEFAULTS.configIdleTimeout). */
  idleTimeout?: number;
  /** Most lines one connection may carry (DEFAULTS.configMaxLines). */
  maxLines?: number;
  /** Bad lines of one connection logged one by one (DEFAULTS.configMaxBadLinesLogged). */
  maxBadLinesLogged?: number;
  /** Connections of at least this many bytes are parsed in a worker thread (DEFAULTS.configOffThreadBytes). */
  offThreadBytes?: number;
}

function isLoopback(addr: string): boolean {
  const plain = plainAddress(addr);
  return plain === '::1' || (net.isIPv4(plain) && plain.startsWith('127.'));
}

/**
 * A worker thread that is given one connection's bytes as they arrive and builds its lists.
 * Each chunk is copied into the message (some µs for a socket read); handing over the socket's
 * own buffer instead would rely on Node never reusing it.
 */
export class OffThread {
  private readonly worker = new Worker(new URL('./list-worker.js', import.meta.url), { workerData: LIST_WORKER });
  private readonly result: Promise<Built>;

  constructor() {
    this.result = new Promise<Built>((resolve, reject) => {
      this.worker.once('message', resolve);
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`list worker exited with status ${code}`)));
    });
    // Stopped before the end, nobody waits for the result.
    this.result.catch(() => {});
  }

  /** `own`: the chunk is the whole of an ArrayBuffer nobody else uses; it is moved, not copied. */
  push(chunk: Uint8Array, own = false): void {
    this.worker.postMessage({ chunk } satisfies WorkerMessage, own ? [chunk.buffer as ArrayBuffer] : []);
  }

  async finish(limits: BuildLimits): Promise<Built> {
    this.worker.postMessage({ end: limits } satisfies WorkerMessage);
    try {
      return await this.result;
    } finally {
      this.stop();
    }
  }

  stop(): void {
    void this.worker.terminate();
  }
}

/** One accepted connection: its bytes so far and its wait for more. */
class Incoming implements Due {
  /** Bytes received, until there are offThreadBytes; from then on they go to `worker`. */
  chunks: Buffer[] = [];
  worker: OffThread | undefined;
  size = 0;
  /** Line ends received, counted up to the most lines a connection may carry. */
  lines = 0;
  idleAt: number;
  /** Its bytes and its place no longer count against the limits. */
  released = false;

  constructor(readonly socket: net.Socket, readonly from: string, idleAt: number, readonly onDue: (now: number) => void) {
    this.idleAt = idleAt;
  }
}

export class ConfigPort {
  private readonly server: net.Server;
  private readonly timer: CoarseTimer;
  private readonly limits: Required<Omit<ConfigPortOptions, 'host' | 'port' | 'lists' | 'log' | 'requireReservedPort'>>;
  /** Connections being read, for close(). */
  private readonly reading = new Set<Incoming>();
  private active = 0;
  private held = 0;
  /**
   * Connections' parses run one after another: a worker parsing takes some fifteen times the
   * text's size (about 400 MB for 30 MB), so two at once would double the peak.
   */
  private parsing: Promise<unknown> = Promise.resolve();
  /** Connections are being refused for being over maxConnections (logged once a burst). */
  private refusing = false;

  constructor(private readonly opts: ConfigPortOptions) {
    this.limits = {
      maxBytes: opts.maxBytes ?? DEFAULTS.configMaxBytes,
      maxBytesInFlight: opts.maxBytesInFlight ?? DEFAULTS.configMaxBytesInFlight,
      maxConnections: opts.maxConnections ?? DEFAULTS.configMaxConnections,
      idleTimeout: opts.idleTimeout ?? DEFAULTS.configIdleTimeout,
      maxLines: opts.maxLines ?? DEFAULTS.configMaxLines,
      maxBadLinesLogged: opts.maxBadLinesLogged ?? DEFAULTS.configMaxBadLinesLogged,
      offThreadBytes: opts.offThreadBytes ?? DEFAULTS.configOffThreadBytes,
    };
    // One timer for every connection's idle deadline, as the tarpit's connections share one.
    this.timer = new CoarseTimer(resolutionFor(this.limits.idleTimeout));
    this.server = net.createServer((s) => this.accept(s));
  }

  /** Connections open or being parsed. */
  get connections(): number {
    return this.active;
  }

  /** Bytes held for connections not yet installed. */
  get bytesHeld(): number {
    return this.held;
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

  /** Stops listening; connections still sending are reset (their lists are not taken). */
  close(): Promise<void> {
    for (const c of this.reading) this.drop(c);
    this.timer.stop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Applies every line of one connection's text (latin1); returns how many lists it changed. */
  applyText(text: string | Uint8Array, from: string): number {
    return this.install(buildAll(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, this.buildLimits()), from);
  }

  /** As applyText, with the framing, parsing and building done in a worker thread. */
  async applyOffThread(text: string | Uint8Array, from: string): Promise<number> {
    const worker = this.offThread();
    if (typeof text !== 'string') {
      worker.push(text);
    } else {
      const data = Buffer.from(text, 'latin1');
      worker.push(data, data.byteOffset === 0 && data.byteLength === data.buffer.byteLength);
    }
    return this.install(await worker.finish(this.buildLimits()), from);
  }

  /** A worker thread for one connection (a test sees here which connections go to one). */
  protected offThread(): OffThread {
    return new OffThread();
  }

  private buildLimits(): BuildLimits {
    return { maxLines: this.limits.maxLines, maxBadLines: this.limits.maxBadLinesLogged };
  }

  private install(built: Built, from: string): number {
    let applied = 0;
    for (const r of built.results) {
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
    if (built.moreBad > 0) this.opts.log.error(`config from ${from}: ${built.moreBad} more bad lines ignored`);
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
    if (this.active >= this.limits.maxConnections) {
      if (!this.refusing) {
        this.opts.log.warning(`config connection from ${from} refused: ${this.active} connections already, the most at once; ` +
          'more are refused without a log line until one ends');
      }
      this.refusing = true;
      socket.resetAndDestroy();
      return;
    }
    this.active += 1;
    const c: Incoming = new Incoming(socket, from, systemClock.now() + this.limits.idleTimeout, (now) => this.onIdleDue(c, now));
    this.reading.add(c);
    this.timer.schedule(c, c.idleAt);
    socket.on('data', (b: Buffer) => this.onData(c, b));
    // Lines are applied only once the sender has finished, as spamd does: a connection that
    // breaks off (an error, not an orderly close) changes nothing.
    socket.on('end', () => this.onEnd(c));
    socket.on('close', () => {
      if (this.reading.has(c)) this.release(c);
    });
  }

  private onData(c: Incoming, b: Buffer): void {
    if (c.released) return;
    c.size += b.length;
    this.held += b.length;
    if (c.size > this.limits.maxBytes) {
      this.opts.log.error(`config connection from ${c.from} sent more than ${this.limits.maxBytes} bytes, the most one may send; nothing applied`);
      this.drop(c);
      return;
    }
    if (this.held > this.limits.maxBytesInFlight) {
      this.opts.log.error(`config connection from ${c.from} refused at ${c.size} bytes: connections hold more than ` +
        `${this.limits.maxBytesInFlight} bytes together, the most at once; nothing applied`);
      this.drop(c);
      return;
    }
    if (c.worker) {
      c.worker.push(b);
    } else {
      c.chunks.push(b);
      if (c.size >= this.limits.offThreadBytes) {
        c.worker = this.offThread();
        for (const chunk of c.chunks) c.worker.push(chunk);
        c.chunks = [];
      }
    }
    // Only a completed line is activity, as for the tarpit's clients: a sender that trickles
    // bytes without ending a line, or goes on past the lines it may send, is cut all the same.
    let lf = b.indexOf(0x0a);
    if (lf >= 0 && c.lines < this.limits.maxLines) {
      c.idleAt = systemClock.now() + this.limits.idleTimeout;
      for (; lf >= 0 && c.lines < this.limits.maxLines; lf = b.indexOf(0x0a, lf + 1)) c.lines += 1;
    }
  }

  /** Called by the timer: reset a connection that has completed no line for idleTimeout. */
  private onIdleDue(c: Incoming, now: number): void {
    if (c.released || !this.reading.has(c)) return;
    if (now < c.idleAt) {
      this.timer.schedule(c, c.idleAt);
      return;
    }
    this.opts.log.warning(`config connection from ${c.from} reset: no line completed in ${this.limits.idleTimeout / 1000} s; nothing applied`);
    this.drop(c);
  }

  private onEnd(c: Incoming): void {
    if (c.released) return;
    this.reading.delete(c);
    this.timer.cancel(c);
    c.socket.end();
    const worker = c.worker;
    if (!worker) {
      const data = Buffer.concat(c.chunks, c.size);
      c.chunks = [];
      try {
        this.applyText(data, c.from);
      } finally {
        this.release(c);
      }
      return;
    }
    c.worker = undefined;
    const parsed = this.parsing.then(() => worker.finish(this.buildLimits()));
    this.parsing = parsed.catch(() => {});
    parsed
      .then((built) => this.install(built, c.from))
      .catch((err) => this.opts.log.error(`config from ${c.from}: ${describe(err)}; nothing applied`))
      .finally(() => this.release(c));
  }

  /** Resets a connection still being read and forgets its bytes. */
  private drop(c: Incoming): void {
    this.reading.delete(c);
    c.socket.resetAndDestroy();
    this.release(c);
  }

  /** The connection's bytes and place no longer count (idempotent). */
  private release(c: Incoming): void {
    if (c.released) return;
    c.released = true;
    this.reading.delete(c);
    this.timer.cancel(c);
    c.chunks = [];
    c.worker?.stop();
    c.worker = undefined;
    this.held -= c.size;
    this.active -= 1;
    this.refusing = false;
  }
}
