// A stand-in for the daemon's config port: a TCP server on 127.0.0.1 that records what each
// connection sent, for `pfgrey setup` to send its lists to.

import type { ExecutionContext } from 'ava';
import net from 'node:net';

export interface ConfigPortStandIn {
  port: number;
  /** What each connection sent, in the order they ended. */
  received: Array<{ text: string; remotePort: number }>;
}

export async function configPortStandIn(t: ExecutionContext): Promise<ConfigPortStandIn> {
  const received: ConfigPortStandIn['received'] = [];
  const server = net.createServer((s) => {
    const chunks: Buffer[] = [];
    const remotePort = s.remotePort ?? 0;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => received.push({ text: Buffer.concat(chunks).toString('latin1'), remotePort }));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, received };
}
