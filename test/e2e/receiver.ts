// The receiving MTA of the end-to-end suite: an smtp-server that accepts every message and
// stores it as one JSON file (envelope, peer, raw data) in a directory, so the test can tell
// from outside which host got through and whether the message arrived intact.
//
//   node .build/test/e2e/receiver.js --dir DIR [--host 0.0.0.0] [--port 25] [--name mx.example.test]
//
// Prints "receiver listening on HOST:PORT" once it accepts connections, one line per
// connection and per stored message, and exits 0 on SIGTERM.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SMTPServer } from 'smtp-server';

/** What the test reads back; one file per accepted message. */
export interface StoredMessage {
  remoteAddress: string;
  helo: string;
  mailFrom: string;
  rcptTo: string[];
  /** The DATA bytes as received (dot-unstuffed), latin1 so every byte survives JSON. */
  data: string;
  receivedAt: number;
}

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    host: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '25' },
    name: { type: 'string', default: 'mx.example.test' },
  },
});
if (!values.dir) {
  process.stderr.write('receiver: --dir is required\n');
  process.exit(2);
}
const dir = values.dir;
fs.mkdirSync(dir, { recursive: true });
let count = 0;

const server = new SMTPServer({
  name: values.name,
  banner: 'receiver',
  logger: false,
  // Nothing in the test namespaces answers DNS; a reverse lookup would only add delay.
  disableReverseLookup: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  onConnect(session, callback) {
    process.stdout.write(`connect ${session.remoteAddress}\n`);
    callback();
  },
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', (err) => callback(err));
    stream.on('end', () => {
      const from = session.envelope.mailFrom;
      const message: StoredMessage = {
        remoteAddress: session.remoteAddress,
        helo: session.hostNameAppearsAs,
        mailFrom: from === false ? '' : from.address,
        rcptTo: session.envelope.rcptTo.map((r) => r.address),
        data: Buffer.concat(chunks).toString('latin1'),
        receivedAt: Date.now(),
      };
      const name = `${Date.now()}-${process.pid}-${++count}.json`;
      // Written aside and renamed, so a polling reader never sees half a message.
      fs.writeFileSync(path.join(dir, `.${name}`), JSON.stringify(message));
      fs.renameSync(path.join(dir, `.${name}`), path.join(dir, name));
      process.stdout.write(`stored ${name} from ${session.remoteAddress}\n`);
      callback(null, `OK: stored as ${name}`);
    });
  },
});

server.on('error', (err) => process.stderr.write(`receiver: ${err.message}\n`));
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`receiver listening on ${values.host}:${values.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
