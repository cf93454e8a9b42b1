// The database's file system fills up while the daemon runs (a small tmpfs, filled): the failed
// commits are logged in clear lines naming the database and the cause, the tarpit goes on
// answering clients, the tuples stay queued, and once space returns they are written.
//
// Needs root (mount). Without root it is skipped with the reason, unless PFGREY_REQUIRE_E2E=1.

import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { openStore } from '../../src/store/sqlite.js';
import { REPLY } from '../../src/tarpit/replies.js';
import { tempDir, testDaemon } from '../helpers/daemon.js';
import { required } from '../helpers/require.js';
import { eventually, RawClient } from '../helpers/smtp.js';

const run = promisify(execFile);
const root = process.getuid?.() === 0;
const rootTest = root || required ? test : test.skip;
if (!root && !required) console.log('# skipping the disk-full fault test: it mounts a tmpfs, which needs root');

/** A greylisted dialogue to its 451; resolves with the transcript. */
async function dialogue(port: number, rcpt: string): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await c.waitFor('\r\n');
    for (const [send, reply] of [['HELO full.example\r\n', REPLY.helo], ['MAIL FROM:<a@full.example>\r\n', REPLY.mail],
      [`RCPT TO:<${rcpt}>\r\n`, REPLY.rcpt]] as const) {
      c.send(send);
      await c.waitFor(reply);
    }
    c.send('DATA\r\n');
    await c.waitClosed();
    return c.text;
  } finally {
    c.destroy();
  }
}

/** Writes `file` until the file system says ENOSPC. */
async function fill(file: string): Promise<number> {
  const fh = await fs.open(file, 'w');
  const block = Buffer.alloc(16 * 1024, 0x55);
  let written = 0;
  try {
    for (;;) written += (await fh.write(block)).bytesWritten;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
  return written;
}

rootTest('a full disk: a clear error, the tarpit keeps answering, and the queued tuples are written once space returns', async (t) => {
  const dir = await tempDir(t);
  const mnt = path.join(dir, 'db');
  await fs.mkdir(mnt);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'pfgrey-fault', mnt]);
  // Teardowns run last-registered first: the daemon (registered below) stops before this.
  t.teardown(async () => {
    await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]));
  });
  const { port, daemon, log, dbPath } = await testDaemon(t, ['--stutter', '0', '--scan-interval', '1h'], mnt);
  t.true(dbPath.startsWith(mnt));

  t.true((await dialogue(port, 'before@us.example')).endsWith(REPLY.greylisted));
  await daemon.greylister!.settle();
  await daemon.store!.flush();

  const filler = path.join(mnt, 'filler');
  const filled = await fill(filler);
  t.true(filled > 0);

  // While the disk is full: every client is still served to its 451.
  const during = ['full1@us.example', 'full2@us.example', 'full3@us.example'];
  for (const rcpt of during) t.true((await dialogue(port, rcpt)).endsWith(REPLY.greylisted));
  const failed = await eventually(() => log.lines.find((l) => l.startsWith('error:') && l.includes('cannot commit')),
    'the failed commit logged');
  t.true(failed!.startsWith(`error: ${dbPath}: cannot commit `), failed);
  t.regex(failed!, /: cannot commit \d+ writes, keeping them queued: database or disk is full$/);
  t.true(daemon.store!.pendingWrites >= during.length);
  t.true((await dialogue(port, 'full4@us.example')).endsWith(REPLY.greylisted), 'a client after the first failure is served too');
  during.push('full4@us.example');
  const errorsWhileFull = log.lines.filter((l) => l.startsWith('error:')).length;

  // Space returns: the store's timer retries, and everything queued reaches the file.
  await fs.rm(filler);
  await eventually(() => daemon.store!.pendingWrites === 0, 'the queued writes committed');
  t.log(`${errorsWhileFull} error lines while the disk was full`);
  const reader = await openStore(dbPath, { readonly: true });
  t.teardown(() => reader.close().catch(() => undefined));
  const recipients = (await reader.tuplesOf('127.0.0.1')).map((e) => e.key.split('\n')[3]);
  await reader.close();
  t.deepEqual(recipients.sort(), ['<before@us.example>', ...during.map((r) => `<${r}>`)].sort());
  t.true((await dialogue(port, 'after@us.example')).endsWith(REPLY.greylisted));
});
