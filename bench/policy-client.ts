// A load-generating Postfix policy client for bench/ingest's postgrey comparison: one
// connection, one request at a time, each a distinct (client, sender, recipient) at RCPT, as
// Postfix's smtpd asks its policy server. Reports how many requests were answered.

import net from 'node:net';

const [portText, requestsText, idText] = process.argv.slice(2);
const port = Number(portText);
const requests = Number(requestsText);
const id = Number(idText);

function request(n: number): string {
  const ip = `10.${id & 255}.${(n >> 8) & 255}.${n & 255}`;
  return 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=SMTP\n' +
    `client_address=${ip}\nclient_name=unknown\nhelo_name=client${id}.example\n` +
    `sender=c${id}s${n}@example.org\nrecipient=r${n % 10}@example.net\n\n`;
}

const s = net.connect({ port, host: '127.0.0.1' });
let answered = 0;
let buffered = '';
s.setEncoding('utf8');
s.on('connect', () => s.write(request(0)));
s.on('data', (chunk: string) => {
  buffered += chunk;
  // Each answer is `action=…` and a blank line.
  let end: number;
  while ((end = buffered.indexOf('\n\n')) >= 0) {
    const answer = buffered.slice(0, end);
    buffered = buffered.slice(end + 2);
    // Every tuple is new, so every answer must be a deferral: anything else means the peer did
    // not greylist it and the comparison would be unfair to pfgrey.
    if (!answer.startsWith('action=DEFER')) {
      console.error(`policy client ${id}: expected a deferral, got ${JSON.stringify(answer)}`);
      process.exit(1);
    }
    answered += 1;
    if (answered === requests) {
      s.end();
      return;
    }
    s.write(request(answered));
  }
});
s.on('close', () => {
  process.send!(answered);
  process.exit(0);
});
s.on('error', (err) => {
  console.error(`policy client ${id}: ${err.message}`);
  process.exit(1);
});
