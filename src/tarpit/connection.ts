// One tarpit connection: frames input into lines, feeds them one at a time to its Session, and
// writes each reply through the shared coarse timer — one byte per tick while stuttering, the
// whole reply at once otherwise. This is the connection's single write site.

import type { Socket } from 'node:net';
import type { Envelope } from '../grey/types.js';
import type { Due } from '../timers.js';
import { Session } from './session.js';

export interface ConnectionHost {
  readonly now: () => number;
  readonly timer: { schedule(t: Due, due: number): void; cancel(t: Due): void };
  /** Stutter delay (ms) this connection should use right now; 0 means no stutter. */
  stutterFor(conn: Connection): number;
  /** Whether to send one byte per tick (false when the server is nearly full). */
  byteAtATime(): boolean;
  readonly idleTimeout: number;
  readonly maxLine: number;
  onTuple(conn: Connection, tuple: Envelope): void;
  /** A line spamd logs with -v (the host knows whether -v was given). */
  onVerbose(level: 'info' | 'debug', message: string): void;
  onClose(conn: Connection): void;
  /** Takes over a socket whose last reply is still draining, and ends it (bounded in time). */
  linger(socket: Socket): void;
  /**
   * True while the database is behind: commands are then left unanswered for a moment, so a
   * client cannot have more tuples acknowledged than the store has taken (a crash then loses
   * at most one commit window).
   */
  backlogged(): boolean;
  /** How long to wait before looking at the backlog again (ms). */
  readonly backlogPause: number;
}

export class Connection implements Due {
  readonly startedAt: number;
  /** Lines read but not yet answered, from `head` on (Array#shift is linear on long arrays). */
  private lines: string[] = [];
  private head = 0;
  private partial: Buffer[] = [];
  private partialLength = 0;
  private out: Buffer = Buffer.alloc(0);
  private closeAfterWrite = false;
  private lastSentCR = false;
  private eof = false;
  private closed = false;
  private held = false;
  /** A reply is written but sits in our buffer because the peer is not reading. */
  private draining = false;
  /** When the next byte may go out (writing) or when the wait for input ends (idle). */
  private writeAt = 0;
  private idleAt = 0;

  constructor(
    readonly socket: Socket,
    readonly ip: string,
    readonly localAddress: string,
    readonly session: Session,
    readonly lists: readonly string[],
    private readonly host: ConnectionHost,
  ) {
    this.startedAt = host.now();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      this.eof = true;
      this.next();
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Seconds since accept, as spamd logs it. */
  ageSeconds(): number {
    return Math.floor((this.host.now() - this.startedAt) / 1000);
  }

  start(banner: string): void {
    if (this.send(banner, false)) this.next();
  }

  /** Called by the shared timer: send the next byte(s), or give up on an idle client. */
  onDue(now: number): void {
    if (this.closed) return;
    if (this.held) {
      this.held = false;
      this.next();
      return;
    }
    if (this.out.length > 0) {
      if (now < this.writeAt) this.host.timer.schedule(this, this.writeAt);
      else if (this.writeSome(now)) this.next();
      return;
    }
    // Idle, or stuck waiting for a peer that does not read its replies: spamd gives both the
    // same time before it closes.
    if (now >= this.idleAt) {
      this.close();
      return;
    }
    this.host.timer.schedule(this, this.idleAt);
  }

  /** Ends the connection; `graceful` lets the last reply drain before the socket goes. */
  close(graceful = false): void {
    if (this.closed) return;
    this.closed = true;
    this.host.timer.cancel(this);
    if (graceful && this.socket.writable) this.host.linger(this.socket);
    else this.socket.destroy();
    this.host.onClose(this);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const room = this.host.maxLine - this.partialLength;
      const end = nl < 0 ? chunk.length : nl + 1;
      if (end - start > room) {
        // spamd treats a full 8191-byte buffer as a line; the rest starts the next one.
        this.partial.push(chunk.subarray(start, start + room));
        this.partialLength += room;
        this.pushLine();
        start += room;
        continue;
      }
      if (nl < 0) {
        if (start < chunk.length) {
          this.partial.push(chunk.subarray(start));
          this.partialLength += chunk.length - start;
        }
        break;
      }
      this.partial.push(chunk.subarray(start, nl + 1));
      this.partialLength += nl + 1 - start;
      this.pushLine();
      start = nl + 1;
    }
    if (this.head < this.lines.length) {
      // Like spamd, read nothing more while answering; the kernel's buffers hold the rest.
      this.socket.pause();
      this.next();
    }
  }

  private pushLine(): void {
    const raw = Buffer.concat(this.partial, this.partialLength);
    this.partial = [];
    this.partialLength = 0;
    // A loop rather than /[\r\n]+$/, whose backtracking is quadratic on a line of CRs.
    let end = raw.length;
    while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d)) end -= 1;
    this.lines.push(raw.toString('latin1', 0, end));
  }

  /**
   * Answers queued lines until a reply has to wait (stutter, a peer that is not reading, the
   * database backlog) or none are left. A loop, not recursion: one read can hold tens of
   * thousands of lines that need no reply (DATA) or get one at once (no stutter).
   */
  private next(): void {
    while (!this.closed && this.out.length === 0 && !this.draining) {
      const line = this.lines[this.head];
      if (line === undefined) {
        this.lines = [];
        this.head = 0;
        if (this.eof) {
          this.close();
          return;
        }
        this.socket.resume();
        this.idleAt = this.host.now() + this.host.idleTimeout;
        this.host.timer.schedule(this, this.idleAt);
        return;
      }
      if (this.host.backlogged()) {
        this.held = true;
        this.host.timer.schedule(this, this.host.now() + this.host.backlogPause);
        return;
      }
      this.head += 1;
      const outcome = this.session.line(line);
      if (outcome.verbose) this.host.onVerbose(outcome.verbose.level, outcome.verbose.message);
      if (outcome.tuple) this.host.onTuple(this, outcome.tuple);
      if (outcome.reply === '' && !outcome.close) continue;
      if (!this.send(outcome.reply, outcome.close)) return;
    }
  }

  /** Starts a reply; true when it went out whole and the next line may be answered. */
  private send(reply: string, close: boolean): boolean {
    this.out = Buffer.from(reply, 'latin1');
    this.closeAfterWrite = close;
    const now = this.host.now();
    const delay = this.out.length === 0 ? 0 : this.host.stutterFor(this);
    this.writeAt = now + delay;
    if (delay === 0) return this.writeSome(now);
    this.host.timer.schedule(this, this.writeAt);
    return false;
  }

  /**
   * Writes the next byte (stutter) or the rest of the reply; true when the reply is done and
   * the connection may go on to the next line.
   */
  private writeSome(now: number): boolean {
    const delay = this.host.stutterFor(this);
    let chunk: Buffer;
    if (delay > 0 && this.host.byteAtATime()) {
      // Replies are CRLF already; this keeps a stray bare LF from going out without its CR.
      if (this.out[0] === 0x0a && !this.lastSentCR) chunk = Buffer.from('\r\n', 'latin1');
      else chunk = this.out.subarray(0, 1);
      this.out = this.out.subarray(1);
    } else {
      chunk = this.out;
      this.out = Buffer.alloc(0);
    }
    let flowing = true;
    if (chunk.length > 0) {
      this.lastSentCR = chunk[chunk.length - 1] === 0x0d;
      if (this.socket.writable) flowing = this.socket.write(chunk);
    }
    if (this.out.length > 0) {
      // From the previous deadline, not from now: the shared timer fires up to one resolution
      // late, and counting from now would let that lateness pile up into a slower stutter.
      this.writeAt = Math.max(this.writeAt + delay, now);
      this.host.timer.schedule(this, this.writeAt);
      return false;
    }
    if (this.closeAfterWrite) {
      this.close(true);
      return false;
    }
    if (!flowing) {
      // Like spamd, answer nothing more while a reply is still unsent: a client that pipelines
      // commands and never reads would otherwise grow our write buffer without bound.
      this.draining = true;
      this.idleAt = now + this.host.idleTimeout;
      this.host.timer.schedule(this, this.idleAt);
      this.socket.once('drain', () => {
        this.draining = false;
        if (this.closed) return;
        this.host.timer.cancel(this);
        this.next();
      });
      return false;
    }
    return true;
  }
}
