// Accepts tarpit connections: enforces maxcon (a full server closes new sockets at once, with no
// banner, as spamd does), decides each connection's stutter, and hands tuples to the greylister.

import net from 'node:net';
import { plainAddress } from '../address.js';
import type { BlackMatch } from '../blacklist/lists.js';
import { type Clock, systemClock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import type { Envelope, Tuple } from '../grey/types.js';
import { listenError } from '../listen-error.js';
import type { Logger } from '../log.js';
import { CoarseTimer, resolutionFor, type Due } from '../timers.js';
import { Connection, type ConnectionHost } from './connection.js';
import { bannerReply } from './replies.js';
import { Session } from './session.js';

export interface TarpitOptions {
  host: string;
  port: number;
  hostname: string;
  bannerName: string;
  greylist: boolean;
  stutter: number;
  greyStutter: number;
  idleTimeout: number;
  maxCon: number;
  maxBlack: number;
  stutterOffMargin: number;
  blackCode: number;
  maxLine: number;
  verbose: boolean;
}

export interface TarpitDeps {
  log: Logger;
  clock?: Clock;
  onTuple: (tuple: Tuple) => void;
  lookup?: (ip: string) => BlackMatch | undefined;
  /** True while the database is behind (see ConnectionHost.backlogged). */
  backlogged?: () => boolean;
}

export class Tarpit {
  private readonly server: net.Server;
  private readonly timer: CoarseTimer;
  private readonly clock: Clock;
  private readonly connections = new Set<Connection>();
  /** Sockets past their last reply, ending; no longer counted against maxcon. */
  private readonly lingering = new Set<net.Socket>();
  private blackCount = 0;
  private readonly host: ConnectionHost;
  /** Whether each connection is stuttered for its whole life (blacklisted, stutter kept). */
  private readonly stutterAlways = new WeakSet<Connection>();

  constructor(private readonly opts: TarpitOptions, private readonly deps: TarpitDeps) {
    this.clock = deps.clock ?? systemClock;
    const shortest = Math.min(...[opts.stutter, opts.idleTimeout].filter((d) => d > 0), 1000);
    this.timer = new CoarseTimer(resolutionFor(shortest), this.clock);
    this.host = {
      now: () => this.clock.now(),
      timer: this.timer,
      idleTimeout: opts.idleTimeout,
      maxLine: opts.maxLine,
      stutterFor: (c) => this.stutterFor(c),
      byteAtATime: () => this.connections.size < this.opts.maxCon - this.opts.stutterOffMargin,
      onTuple: (c, t) => this.tuple(c, t),
      onVerbose: (level, message) => {
        if (this.opts.verbose) this.deps.log[level](message);
      },
      onClose: (c) => this.closed(c),
      linger: (s) => this.linger(s),
      backlogged: () => deps.backlogged?.() ?? false,
      backlogPause: Math.max(this.timer.resolution, 20),
    };
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.accept(s));
  }

  get clients(): number {
    return this.connections.size;
  }

  /**
   * The connections held now, by kind: on the greytrap list (trapped hosts), on another
   * blacklist, or neither (greylisted). A walk over at most maxcon connections, for the status
   * page and /metrics, which ask a few times a minute.
   */
  held(): { grey: number; black: number; trapped: number } {
    const held = { grey: 0, black: 0, trapped: 0 };
    for (const c of this.connections) {
      if (c.lists.includes(DEFAULTS.greytrapTag)) held.trapped++;
      else if (c.session.blacklisted) held.black++;
      else held.grey++;
    }
    return held;
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(listenError('SMTP connections', this.opts.host, this.opts.port, err));
      };
      this.server.once('error', onError);
      this.server.listen({ host: this.opts.host, port: this.opts.port, backlog: DEFAULTS.listenBacklog }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.deps.log.error(`listener: ${err.message}`));
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /** Stops accepting and drops every connection. */
  async close(): Promise<void> {
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of [...this.connections]) c.close();
    for (const s of this.lingering) s.destroy();
    this.timer.stop();
    await done;
  }

  private accept(socket: net.Socket): void {
    if (this.connections.size >= this.opts.maxCon) {
      socket.destroy();
      return;
    }
    socket.on('error', () => {});
    const ip = plainAddress(socket.remoteAddress);
    const match = this.deps.lookup?.(ip);
    const session = new Session({
      hostname: this.opts.hostname,
      greylist: this.opts.greylist,
      blackMessages: match?.messages ?? [],
      blackCode: this.opts.blackCode,
      ip,
    });
    const conn = new Connection(socket, ip, plainAddress(socket.localAddress), session, match?.tags ?? [], this.host);
    this.connections.add(conn);
    if (match) {
      this.blackCount += 1;
      // Past maxblack spamd still serves blacklisted clients, just without stutter.
      if (this.blackCount <= this.opts.maxBlack || !this.opts.greylist) this.stutterAlways.add(conn);
    }
    this.deps.log.info(`${ip}: connected (${this.connections.size}/${this.blackCount})` +
      (match ? `, lists:${listText(match.tags)}` : ''));
    conn.start(bannerReply(this.opts.hostname, this.opts.bannerName, this.clock.now()));
  }

  private stutterFor(conn: Connection): number {
    const s = this.opts.stutter;
    if (s === 0) return 0;
    if (conn.session.blacklisted) return this.stutterAlways.has(conn) ? s : 0;
    if (!this.opts.greylist) return s;
    if (this.opts.greyStutter === 0) return 0;
    // Greylisted clients are stuttered only while the connection is young (-S).
    return this.clock.now() - conn.startedAt <= this.opts.greyStutter ? s : 0;
  }

  private tuple(conn: Connection, t: Envelope): void {
    this.deps.onTuple({ ...t, ip: conn.ip, localAddress: conn.localAddress });
  }

  private linger(socket: net.Socket): void {
    this.lingering.add(socket);
    // A peer that never reads (or reads a byte now and then) would keep the socket in its
    // final write for ever; spamd gives a stuck write the idle timeout, and so do we, counted
    // from now, on the shared timer.
    const deadline: Due = { onDue: () => socket.destroy() };
    this.timer.schedule(deadline, this.clock.now() + this.opts.idleTimeout);
    socket.once('close', () => {
      this.lingering.delete(socket);
      this.timer.cancel(deadline);
    });
    socket.end(() => socket.destroy());
  }

  private closed(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    if (conn.session.blacklisted) this.blackCount -= 1;
    this.deps.log.info(`${conn.ip}: disconnected after ${conn.ageSeconds()} seconds.` +
      (conn.lists.length ? ` lists:${listText(conn.lists)}` : ''));
  }
}

/** ` tag1 tag2`, capped at 76 characters as spamd does, with ` ...` for the rest. */
function listText(tags: readonly string[]): string {
  let out = '';
  for (const t of tags) {
    if (out.length + 1 + t.length > 76) return `${out} ...`;
    out += ` ${t}`;
  }
  return out;
}
