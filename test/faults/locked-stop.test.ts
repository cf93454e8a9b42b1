// SIGTERM while another process holds the database's write lock: the stop keeps retrying the
// acknowledged tuples still queued until its deadline. A lock released in time loses nothing; a
// lock held past it costs exactly the queued writes, said in one line, and the stop fails.

import test from 'ava';
import path from 'node:path';
import type { Daemon } from '../../src/daemon.js';
import type { PfgreyError } from '../../src/errors.js';
import { openStore } from '../../src/store/sqlite.js';
import { spawnDaemon } from '../helpers/cli.js';
import { tempDir, testDaemon } from '../helpers/daemon.js';
import { holdWriteLock } from '../helpers/raw-sql.js';
import { attemptToData, eventually } from '../helpers/smtp.js';

const TUPLES = 25;
const RETRYING = 'retrying until the stop deadline';

async function feed(port: number, n: number, daemon?: Daemon): Promise<string[]> {
  // The first scan, at start, commits what is queued: the tuples must come after it to stay queued.
  if (daemon) await eventually(() => daemon.lastScan !== undefined, 'the first scan');
  const rcpts: string[] = [];
  for (let i = 0; i < n; i++) {
    const to = `<locked${i}@us.example>`;
    await attemptToData(port, { hello: 'HELO mta.sender.example', from: '<a@sender.example>', to });
    rcpts.push(to);
  }
  return rcpts;
}

async function recipientsIn(dbPath: string): Promise<string[]> {
  const reader = await openStore(dbPath, { readonly: true });
  try {
    return (await reader.tuplesOf('127.0.0.1')).map((e) => e.key.split('\n')[3]!).sort();
  } finally {
    await reader.close();
  }
}

const ARGS = ['--stutter', '0', '--scan-interval', '1h'];

test('a write lock released before the stop deadline loses nothing: every acknowledged tuple is in the database', async (t) => {
  const { daemon, port, dbPath, log } = await testDaemon(t, ARGS, undefined, (c) => {
    c.commitDelay = 3_600_000; // the tuples stay queued until the stop
    c.stopTimeout = 120_000;
  });
  const rcpts = await feed(port, TUPLES, daemon);
  await daemon.greylister!.settle();
  t.is(daemon.store!.pendingWrites, TUPLES);
  const lock = await holdWriteLock(t, dbPath);

  const stopping = daemon.stop();
  await eventually(() => log.lines.some((l) => l.includes(RETRYING)), 'the store retrying at the stop', 60_000);
  await lock.release();
  await t.notThrowsAsync(stopping);
  t.deepEqual(await recipientsIn(dbPath), rcpts.sort());
  t.false(log.lines.some((l) => /keeping them queued|lost/.test(l)), log.lines.join('\n'));
});

test('a write lock held past the stop deadline: the stop fails and says exactly how many queued writes were lost', async (t) => {
  const stopTimeout = 3000;
  const { daemon, port, dbPath, log } = await testDaemon(t, ARGS, undefined, (c) => {
    c.commitDelay = 3_600_000;
    c.stopTimeout = stopTimeout;
  });
  await feed(port, TUPLES, daemon);
  await daemon.greylister!.settle();
  await holdWriteLock(t, dbPath);

  const started = Date.now();
  const err = await t.throwsAsync<PfgreyError>(daemon.stop());
  const took = Date.now() - started;
  // The teardown's stop must not fail the test a second time.
  daemon.stop = async () => {};
  t.is(err?.code, 'E_DB_WRITE');
  t.is(err?.message, `${dbPath}: ${TUPLES} queued writes lost: still not committed when the stop gave up (database is locked)`);
  t.is(daemon.store!.pendingWrites, TUPLES);
  t.true(took >= stopTimeout && took < stopTimeout + 15_000, `the stop took ${took} ms`);
  t.is(log.lines.filter((l) => l.includes(RETRYING)).length, 1, log.lines.join('\n'));
  t.false(log.lines.some((l) => l.includes('keeping them queued')), 'no claim that a retry will come');
  t.deepEqual(await recipientsIn(dbPath), []);
});

test('a second SIGTERM ends a stop held up by a write lock at once, saying how many writes were lost', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const daemon = await spawnDaemon(t, ['--db', db, '--firewall', 'none', ...ARGS]);
  await holdWriteLock(t, db);
  // Acknowledged while the lock is held: the daemon's commits fail, and the writes stay queued.
  await feed(daemon.port, TUPLES);
  await eventually(() => daemon.stderr().includes('keeping them queued'), 'a failed commit', 60_000);

  const exited = daemon.stop('SIGTERM');
  await eventually(() => daemon.stderr().includes(RETRYING), 'the store retrying at the stop', 60_000);
  const second = Date.now();
  daemon.child.kill('SIGTERM');
  const code = await exited;
  const took = Date.now() - second;
  const err = daemon.stderr();
  t.is(code, 1, err);
  t.true(took < 10_000, `exited ${took} ms after the second SIGTERM`);
  t.regex(err, /SIGTERM received again/);
  t.true(err.includes(`shutdown: ${db}: ${TUPLES} queued writes lost: still not committed when the stop gave up (database is locked)`), err);
});
