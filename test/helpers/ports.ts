// A TCP port nothing listens on at this moment, for a test that must name one before the
// program binds it (a server started with its own --http, a client told to expect a refusal).

import net from 'node:net';

/** A port free on `host` (bound, then let go). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, host, () => resolve()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
