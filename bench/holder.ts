// A load generator for bench/held: opens `count` connections to the tarpit, a hundred at a
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

// 100 at a time: three holders at once stay under the listen backlog (511), so no connection
// is left completed by the kernel but never accepted.
for (let i = 0; i < count; i += 100) {
  await Promise.all(Array.from({ length: Math.min(100, count - i) }, open));
}
process.send!({ ready: true, failed });
process.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'bytes') process.send!({ bytes });
  if (m.cmd === 'close') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
