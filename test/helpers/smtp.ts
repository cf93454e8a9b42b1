// A raw SMTP client for transcript tests: it records every byte the tarpit sends, with the time
// each arrived, so tests can assert exact bytes and stutter spacing over a real socket.

import net from 'node:net';

export class RawClient {
  readonly arrivals: Array<{ at: number; bytes: Buffer }> = [];
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  readonly closed: Promise<void>;
  readonly connectedAt = Date.now();
  ended = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (b: Buffer) => {
      this.arrivals.push({ at: Date.now(), bytes: b });
      this.buf = Buffer.concat([this.buf, b]);
      this.wake();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => {
      this.ended = true;
      this.wake();
      resolve();
    }));
    socket.on('error', () => {});
  }

  /** `localAddress`: the client's own address (any of 127.0.0.0/8 on Linux's loopback). */
  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host, localAddress }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Everything received so far, as text (latin1: one character per byte). */
  get text(): string {
    return this.buf.toString('latin1');
  }

  send(text: string): void {
    this.socket.write(Buffer.from(text, 'latin1'));
  }

  /** Waits until the received text matches, or the connection closes, or the bound passes. */
  async waitFor(pattern: RegExp | string, ms = 20_000): Promise<string> {
    const test = () => (typeof pattern === 'string' ? this.text.includes(pattern) : pattern.test(this.text));
    const deadline = Date.now() + ms;
    while (!test()) {
      if (this.ended) throw new Error(`connection closed before ${pattern}; got ${JSON.stringify(this.text)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; got ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.text;
  }

  /** Waits for the server to close the connection. */
  async waitClosed(ms = 20_000): Promise<void> {
    await Promise.race([
      this.closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`still open after ${ms} ms; got ${JSON.stringify(this.text)}`)), ms).unref()),
    ]);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

// Most SMTP tests wait for something; they may take eventually from here.
export { eventually } from './wait.js';

/**
 * Sends config-port text as spamd-setup does: one connection, then close. As root the daemon
 * accepts only reserved source ports (as spamd does), so bind one, as rresvport would.
 */
export async function sendConfig(port: number, text: string): Promise<void> {
  const root = process.getuid?.() === 0;
  for (let local = 1023; ; local--) {
    try {
      await new Promise<void>((resolve, reject) => {
        const s = net.connect({ port, host: '127.0.0.1', ...(root ? { localPort: local } : {}) }, () => {
          s.end(text, 'latin1');
        });
        s.on('close', () => resolve());
        s.on('error', reject);
      });
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!root || local <= 600 || (code !== 'EADDRINUSE' && code !== 'EADDRNOTAVAIL')) throw err;
    }
  }
}

/**
 * One attempt up to DATA, as a retrying MTA makes it (greylisted clients are closed after DATA);
 * resolves with the transcript.
 */
export async function attemptToData(port: number, env: { hello: string; from: string; to: string }, localAddress?: string): Promise<string> {
  const c = await RawClient.connect(port, '127.0.0.1', localAddress);
  try {
    await c.waitFor('\r\n');
    c.send(`${env.hello}\r\nMAIL FROM:${env.from}\r\nRCPT TO:${env.to}\r\nDATA\r\n`);
    await c.waitClosed();
    return c.text;
  } finally {
    c.destroy();
  }
}
