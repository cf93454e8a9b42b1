// The daemon's status endpoint (--http) for tests: reading it, its metrics, and promtool.

import { spawnSync } from 'node:child_process';
import net from 'node:net';
import type { Daemon } from '../../src/daemon.js';
import { eventually } from './wait.js';

/** GET over a real socket; resolves with the status, the headers and the body. */
export async function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** The value of one series (`name` or `name{label="v"}`) in Prometheus' text format; undefined when absent. */
export function metric(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** promtool from Debian's prometheus package, when installed. */
export const havePromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).error === undefined;

/** `promtool check metrics` of `text`: its exit status and what it said. */
export function promtoolCheck(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/**
 * An SMTP connection to the tarpit from a loopback address of the test's choice (127.0.0.0/8
 * is all loopback on Linux), once its banner has arrived; `received()` is everything so far.
 */
export function connectFrom(port: number, localAddress: string): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let text = '';
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.setEncoding('latin1').on('data', (d: string) => {
      const first = text === '';
      text += d;
      if (first) resolve({ socket, received: () => text, closed });
    });
    socket.once('error', reject);
  });
}

/** One attempt up to DATA from `localAddress`; resolves with the transcript once the tarpit closes. */
export async function attemptFrom(port: number, localAddress: string, to: string): Promise<string> {
  const c = await connectFrom(port, localAddress);
  c.socket.write(`HELO mta.example\r\nMAIL FROM:<a@mta.example>\r\nRCPT TO:${to}\r\nDATA\r\n`);
  await c.closed;
  return c.received();
}

/**
 * Retries the tuple (`localAddress`, mta.example, <a@mta.example>, `to`) until the core has let
 * it pass (a daemon with --passtime 0); the next scan whitelists the address.
 */
export async function passTuple(daemon: Daemon, port: number, localAddress: string, to: string): Promise<void> {
  const key = `${localAddress}\nmta.example\n<a@mta.example>\n${to}`;
  await eventually(async () => {
    await attemptFrom(port, localAddress, to);
    await daemon.greylister!.settle();
    const e = await daemon.store!.get(key);
    return e !== undefined && e.pass < e.expire;
  }, `the retry of ${localAddress} passed`);
}
