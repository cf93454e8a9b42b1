// A TCP or UDP port nothing listens on at this moment, for a test that must name one before the
// program binds it (a server started with its own --http, a client told to expect a refusal,
// a daemon's --sync-port).

import dgram from 'node:dgram';
import net from 'node:net';

/** A port free on `host` (bound, then let go). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, host, () => resolve()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A UDP port free on 127.0.0.1 at this moment (bound, then let go). */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
