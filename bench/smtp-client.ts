// A load-generating SMTP client for bench/ingest: runs sessions one after another, each with
// pipelined HELO/MAIL/several RCPT/DATA, and reports the number of tuples it offered.

import net from 'node:net';

const [portText, sessionsText, rcptsText, idText] = process.argv.slice(2);
const port = Number(portText);
const sessions = Number(sessionsText);
const rcpts = Number(rcptsText);
const id = Number(idText);

function session(n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let sent = false;
    s.on('data', () => {
      if (sent) return;
      sent = true;
      let text = `HELO client${id}.example\r\nMAIL FROM:<c${id}s${n}@example.org>\r\n`;
      for (let r = 0; r < rcpts; r++) text += `RCPT TO:<r${r}@example.net>\r\n`;
      s.write(`${text}DATA\r\n`);
    });
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}

let offered = 0;
for (let n = 0; n < sessions; n++) {
  await session(n);
  offered += rcpts;
}
process.send!(offered);
process.exit(0);
