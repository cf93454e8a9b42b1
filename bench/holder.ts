// A load generator for bench/held: opens `count` connections to the tarpit, a few hundred at a
// time, keeps every one reading, and reports when all are open and how many bytes arrived.

import net from 'node:net';

const [portText, countText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const sockets: net.Socket[] = [];
let bytes = 0;
let failed = 0;

function open(): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve());
    s.on('data', (b) => (bytes += b.length));
    s.on('error', () => {
      failed += 1;
      resolve();
    });
    sockets.push(s);
  });
}

for (let i = 0; i < count; i += 250) {
  await Promise.all(Array.from({ length: Math.min(250, count - i) }, open));
}
process.send!({ ready: true, failed });
process.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'bytes') process.send!({ bytes });
  if (m.cmd === 'close') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
