// The daemon's end of spamd's config channel (spec §5): `pfgrey setup` (or OpenBSD's own
// spamd-setup) connects, sends one line per list and closes. Each line replaces one list
// atomically; a bad line is logged and changes nothing.

import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseConfigLine } from './config-line.js';
import type { BlackLists } from './lists.js';

export interface ConfigPortOptions {
  host: string;
  port: number;
  lists: BlackLists;
  log: Logger;
  /**
   * Refuse source ports ≥ 1024. spamd always does: only root can bind a reserved port, so it
   * proves the sender is a privileged process. It only means something when we run as root.
   */
  requireReservedPort: boolean;
  maxBytes?: number;
}

function isLoopback(addr: string): boolean {
  if (addr.startsWith('::ffff:')) addr = addr.slice(7);
  return addr === '::1' || (net.isIPv4(addr) && addr.startsWith('127.'));
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
    let applied = 0;
    const lines = text.split('\n');
    // Every sender ends its lines with LF; text after the last one is a line that was cut off
    // (`198.51.100.0/24` cut to `/2` would blacklist a quarter of IPv4), so it is not applied.
    const tail = lines.pop()!;
    if (tail.length >= 2) {
      this.opts.log.error(`config from ${from}: line ${lines.length + 1} has no end of line (cut off?) and is ignored`);
    }
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.replace(/\r$/, '');
      if (line.length < 2) continue;
      try {
        const parsed = parseConfigLine(line);
        this.opts.lists.apply(parsed);
        applied += 1;
        this.opts.log.info(parsed.kind === 'clear'
          ? `config from ${from}: list ${parsed.tag} cleared`
          : `config from ${from}: list ${parsed.tag} now has ${parsed.v4.length + parsed.v6.length} blocks`);
      } catch (err) {
        const tag = line.slice(0, Math.min(40, line.indexOf(';') < 0 ? 40 : line.indexOf(';')));
        this.opts.log.error(`config from ${from}: line ${i + 1} (${tag}) ignored: ${describe(err)}`);
      }
    }
    return applied;
  }

  private accept(socket: net.Socket): void {
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => {});
    if (!isLoopback(socket.remoteAddress ?? '')) {
      this.opts.log.warning(`config connection from ${from} refused: not loopback`);
      socket.destroy();
      return;
    }
    if (this.opts.requireReservedPort && (socket.remotePort ?? 0) >= 1024) {
      this.opts.log.warning(`config connection from ${from} refused: source port is not reserved (< 1024)`);
      socket.destroy();
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
      this.applyText(Buffer.concat(chunks).toString('latin1'), from);
      socket.end();
    });
  }
}
