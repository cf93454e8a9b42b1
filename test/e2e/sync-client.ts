// Run inside a test's network namespace by test/e2e/sync.test.ts (as `ip netns exec NS node
// sync-client.js ...`), so that its traffic has the namespace's addresses:
//
//   smtp HOST PORT LOCAL HELO FROM TO   one attempt up to DATA (and "." if the tarpit asks for
//                                       a body), from address LOCAL; prints the transcript
//   udp HOST PORT HEX...                sends each packet (hex) as one datagram

import dgram from 'node:dgram';
import net from 'node:net';

const [mode, host, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);

if (mode === 'smtp') {
  const [local, helo, from, to] = rest as [string, string, string, string];
  let text = '';
  let sent = false;
  const s = net.connect({ host, port, localAddress: local });
  const timer = setTimeout(() => s.destroy(), 20_000);
  s.setEncoding('latin1');
  s.on('data', (d: string) => {
    text += d;
    if (!sent && text.includes('\r\n')) {
      sent = true;
      s.write(`HELO ${helo}\r\nMAIL FROM:${from}\r\nRCPT TO:${to}\r\nDATA\r\n`);
    }
    if (/^354 /m.test(text) && !text.includes('.sent')) {
      text += '.sent\n';
      s.write('.\r\n');
    }
  });
  s.on('error', (err) => {
    text += `error: ${err.message}\n`;
  });
  s.on('close', () => {
    clearTimeout(timer);
    process.stdout.write(text);
  });
} else if (mode === 'udp') {
  const sock = dgram.createSocket('udp4');
  for (const hex of rest) await new Promise<void>((resolve) => sock.send(Buffer.from(hex, 'hex'), port, host, () => resolve()));
  sock.close();
} else {
  process.stderr.write('usage: sync-client.js smtp|udp HOST PORT ...\n');
  process.exit(2);
}
