// The operators' endpoint (--http HOST:PORT): /metrics in Prometheus' text format, the status
// page (/) with its plots, and /status.json, which the page and `pfgrey stats` read. It has no
// authentication, so it listens on a loopback address only; to see it from elsewhere, publish
// it through a reverse proxy or an SSH tunnel. Every request is small and answered from memory:
// bounded headers, no bodies, short timeouts, few connections.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError } from '../errors.js';
import { listenError } from '../listen-error.js';
import type { Logger } from '../log.js';
import type { Activity, Status } from './activity.js';
import { type Sample, Samples } from './samples.js';

export interface HttpAddress {
  host: string;
  port: number;
}

/** Whether `host` is a loopback address literal (127.0.0.0/8, ::1, or IPv4-mapped 127/8). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (!net.isIPv6(h)) return false;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1]!.startsWith('127.');
}

/**
 * `HOST:PORT`, `[V6]:PORT` or a bare `PORT` (on 127.0.0.1). `localhost` is 127.0.0.1. A host
 * that is not a loopback address is refused: the endpoint answers anyone who reaches it.
 */
export function parseHttpAddress(v: string, flag = '--http'): HttpAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v) ?? /^()()(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new PfgreyError('E_BAD_ADDRESS', `${flag} ${v}: expected HOST:PORT, [IPV6]:PORT or PORT`);
  let host = m[1] || m[2] || DEFAULTS.listenAddress;
  if (host === 'localhost') host = DEFAULTS.listenAddress;
  if (net.isIP(host) === 0) throw new PfgreyError('E_BAD_ADDRESS', `${flag} ${v}: ${host} is not an IP address (give 127.0.0.1 or ::1)`);
  if (!isLoopback(host)) {
    throw new PfgreyError('E_BAD_ADDRESS', `${flag} ${v}: ${host} is not a loopback address; the status endpoint has no ` +
      'authentication and listens on 127.0.0.1 or ::1 only (publish it through a reverse proxy or an SSH tunnel)');
  }
  return { host, port };
}

/** `127.0.0.1:8027`, `[::1]:8027`. */
export function formatHttpAddress(a: HttpAddress): string {
  return net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** What /status.json holds: the status, the last hour's samples (and now), the sample interval. */
export interface StatusDocument extends Status {
  samples: Sample[];
  sampleEvery: number;
}

interface Asset {
  type: string;
  body: Buffer;
  /** Static files may be cached; live answers never. */
  cache: boolean;
}

/** The page's files, read once at start: a missing one stops the start, not a request. */
function loadAssets(): Map<string, Asset> {
  // Beside this module: `npm run build` copies them into dist/ (scripts/copy-assets.js). The
  // tests' build (.build/src/, tsconfig.test.json) reads them from the source tree instead, so
  // a test always sees them as they are now.
  const dir = /\/\.build\/src\/http\/[^/]+$/.test(import.meta.url) ? '../../../src/http/' : './';
  const here = (name: string) => new URL(`${dir}${name}`, import.meta.url);
  const require = createRequire(import.meta.url);
  const files: Array<[string, string | URL, string]> = [
    ['/', here('status.html'), 'text/html; charset=utf-8'],
    ['/status.js', here('status.js'), 'text/javascript; charset=utf-8'],
    ['/status.css', here('status.css'), 'text/css; charset=utf-8'],
    // Browsers ask for /favicon.ico whatever the page says; an SVG answers it.
    ['/favicon.ico', here('favicon.svg'), 'image/svg+xml'],
    // uPlot ships with the package (a dependency), served from where npm put it: no CDN.
    ['/uPlot.iife.min.js', 'uplot/dist/uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
    ['/uPlot.min.css', 'uplot/dist/uPlot.min.css', 'text/css; charset=utf-8'],
  ];
  const assets = new Map<string, Asset>();
  for (const [route, where, type] of files) {
    try {
      const path = typeof where === 'string' ? require.resolve(where) : where;
      assets.set(route, { type, body: readFileSync(path), cache: true });
    } catch (err) {
      throw new PfgreyError('E_LISTEN', `cannot serve the status page: ${describe(err)} (is pfgrey installed whole?)`, { cause: err });
    }
  }
  return assets;
}

/** Header bytes a request may send; a browser's are a few hundred. */
const MAX_HEADER_BYTES = 8 * 1024;
const MAX_CONNECTIONS = 32;

/** The Host header names this machine's loopback (an IP literal or localhost), so a DNS-rebound page elsewhere cannot read us. */
function hostAllowed(header: string | undefined): boolean {
  if (header === undefined) return true; // HTTP/1.0 clients (curl -0, promtool's checks) send none
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d{1,5})?$/.exec(header);
  const host = m ? (m[1] ?? m[2]!) : '';
  return host.toLowerCase() === 'localhost' || isLoopback(host);
}

export interface StatusServerOptions {
  address: HttpAddress;
  activity: Activity;
  samples: Samples;
  log: Logger;
}

export class StatusServer {
  private readonly server: http.Server;
  private readonly assets = loadAssets();

  constructor(private readonly opts: StatusServerOptions) {
    this.server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => void this.handle(req, res));
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.headersTimeout = 5_000;
    this.server.requestTimeout = 10_000;
    this.server.keepAliveTimeout = 5_000;
    this.server.maxRequestsPerSocket = 1000;
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  listen(): Promise<net.AddressInfo> {
    const { host, port } = this.opts.address;
    // Checked again here, whoever built the address: this endpoint never listens beyond loopback.
    if (!isLoopback(host)) return Promise.reject(new PfgreyError('E_BAD_ADDRESS', `the status page listens on a loopback address only, not ${host}`));
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(listenError('the status page (--http)', host, port, err));
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.opts.log.error(`status page listener: ${err.message}`));
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** /status.json's document. */
  document(): StatusDocument {
    const { activity, samples } = this.opts;
    return { ...activity.status(), samples: [...samples.list(), samples.current()], sampleEvery: samples.every };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Security-Policy', "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    res.setHeader('Referrer-Policy', 'no-referrer');
    // No request here has a body: one that comes with one is refused unread.
    if (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0) {
      return this.send(res, 413, 'text/plain; charset=utf-8', 'no request body is accepted here\n', { close: true });
    }
    if (!hostAllowed(req.headers.host)) {
      return this.send(res, 421, 'text/plain; charset=utf-8', 'this endpoint answers requests for its loopback address only\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.send(res, 405, 'text/plain; charset=utf-8', 'only GET and HEAD\n');
    }
    const path = (req.url ?? '/').split('?')[0]!;
    try {
      if (path === '/metrics') {
        return this.send(res, 200, this.opts.activity.contentType, await this.opts.activity.metrics());
      }
      if (path === '/status.json') {
        return this.send(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(this.document())}\n`);
      }
      const asset = this.assets.get(path === '/index.html' ? '/' : path);
      if (asset) return this.send(res, 200, asset.type, asset.body, { cache: asset.cache });
      return this.send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /metrics or /status.json\n');
    } catch (err) {
      this.opts.log.error(`status page: ${req.method} ${path}: ${describe(err)}`);
      return this.send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
    }
  }

  private send(res: http.ServerResponse, status: number, type: string, body: string | Buffer, o: { cache?: boolean; close?: boolean } = {}): void {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    res.statusCode = status;
    res.setHeader('Content-Type', type);
    res.setHeader('Content-Length', bytes.length);
    res.setHeader('Cache-Control', o.cache ? 'max-age=3600' : 'no-store');
    if (o.close) res.setHeader('Connection', 'close');
    res.end(res.req.method === 'HEAD' ? undefined : bytes);
  }
}

/** A status endpoint listening, and its minute samples (started by the caller, with the scan). */
export interface StartedStatusPage {
  server: StatusServer;
  samples: Samples;
  address: net.AddressInfo;
  /** `127.0.0.1:8027`: what the "listening for status requests" line names. */
  bound: string;
  close(): Promise<void>;
}

/** --http: /metrics gets the process metrics too, and the page its samples. */
export async function startStatusPage(address: HttpAddress, activity: Activity, log: Logger, sampleEvery?: number): Promise<StartedStatusPage> {
  activity.withProcessMetrics();
  const samples = new Samples(activity, { every: sampleEvery });
  const server = new StatusServer({ address, activity, samples, log });
  const bound = await server.listen();
  return {
    server, samples, address: bound,
    bound: formatHttpAddress({ host: bound.address, port: bound.port }),
    close: async () => {
      samples.stop();
      await server.close();
    },
  };
}
