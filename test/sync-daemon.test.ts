// Two daemons in this process, synced over loopback as `pfgrey run -y ADDR` and `-Y HOST:PORT`
// set them up: a tuple greylisted at one is known to the other, a trap at one is tarpitted at the
// other, and nothing the second learnt comes back. A missing key file stops the start.

import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { greyKey } from '../src/grey/entry.js';
import { isPfgreyError } from '../src/errors.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { freeUdpPort } from './helpers/ports.js';
import { attemptToData, eventually, RawClient } from './helpers/smtp.js';

test('a tuple seen at A is known at B; a trap at A is tarpitted at B; B sends nothing back', async (t) => {
  const dir = await tempDir(t);
  const key = path.join(dir, 'spamd.key');
  await fs.writeFile(key, 'shared secret\n', { mode: 0o600 });
  const [pa, pb] = [await freeUdpPort(), await freeUdpPort()];
  await fs.mkdir(path.join(dir, 'a'));
  await fs.mkdir(path.join(dir, 'b'));
  const b = await testDaemon(t, ['-s', '0', '-y', '127.0.0.1', '--sync-port', String(pb), '--sync-key', key, '-Y', `127.0.0.1:${pa}`], path.join(dir, 'b'));
  const a = await testDaemon(t, ['-s', '0', '-y', '127.0.0.1', '--sync-port', String(pa), '--sync-key', key, '-Y', `127.0.0.1:${pb}`], path.join(dir, 'a'));
  t.true(b.log.lines.some((l) => l === `warning: listening for sync packets on 127.0.0.1:${pb}.`), b.log.lines.join('\n'));
  t.true(a.log.lines.some((l) => l === `info: sending sync packets to 127.0.0.1:${pb}`));

  const env = { hello: 'HELO mx.example', from: '<a@example.org>', to: '<b@us.example>' };
  await attemptToData(a.port, env);
  const k = greyKey('127.0.0.1', 'mx.example', '<a@example.org>', '<b@us.example>');
  await eventually(async () => (await b.daemon.store!.get(k)) !== undefined, 'the tuple at B');
  t.like(await b.daemon.store!.get(k), { bcount: 1, pcount: 0 });

  // A trap at A (its spamtrap): B tarpits the client as spamd-greytrap from its next connection.
  await a.daemon.greylister!.handle({ kind: 'add', type: 'SPAMTRAP', key: 'trap@us.example' });
  await attemptToData(a.port, { ...env, to: '<trap@us.example>' });
  await eventually(async () => (await b.daemon.store!.get('127.0.0.1'))?.pcount === -1, 'the trap at B');
  const c = await RawClient.connect(b.port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send(`${env.hello}\r\nMAIL FROM:${env.from}\r\nRCPT TO:${env.to}\r\nDATA\r\n`);
  await c.waitFor('354 ');
  c.send('.\r\n');
  t.regex(await c.waitFor(/spamtraps/), /450 Your address 127\.0\.0\.1 has mailed to spamtraps here/);

  // What B learnt is not sent back: A received nothing.
  t.is(a.daemon.syncPeers!.counts.received, 0);
  t.is(b.daemon.syncPeers!.counts.sent, 0);
  t.is(b.daemon.syncPeers!.counts.received, 2);
  // /metrics says the same.
  const metrics = await b.daemon.activity.registry.metrics();
  t.regex(metrics, /^pfgrey_sync_packets_total\{result="received"\} 2$/m);
  t.regex(metrics, /^pfgrey_sync_packets_total\{result="sent"\} 0$/m);
  t.regex(metrics, /^pfgrey_sync_dropped_records_total 0$/m);
  t.regex(await a.daemon.activity.registry.metrics(), /^pfgrey_sync_packets_total\{result="sent"\} 2$/m);
});

test('a missing key file stops the start with the way to make one', async (t) => {
  const dir = await tempDir(t);
  const err = await t.throwsAsync(testDaemon(t, ['-Y', '127.0.0.1', '--sync-key', path.join(dir, 'spamd.key')], dir));
  t.true(isPfgreyError(err) && err.code === 'E_SYNC_KEY', err?.message);
  t.regex(err!.message, /spamd\.key: no such file; create one and copy it to every peer/);
});
