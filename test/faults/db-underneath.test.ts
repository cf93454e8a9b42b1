// A database changed underneath the running daemon — truncated, replaced by another file,
// removed, or overwritten with garbage — is noticed at the next scan, logged as an error, and
// recovered as at start: the file moved aside, what can still be read of it copied into a
// fresh one, the writes still queued replayed, and greylisting goes on (tuples recorded,
// promotions made) instead of every scan failing for as long as the daemon runs.

import test from 'ava';
import fs from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../helpers/cli.js';
import { testDaemon } from '../helpers/daemon.js';
import { attemptToData, eventually } from '../helpers/smtp.js';

const attempt = (port: number, to: string) =>
  attemptToData(port, { hello: 'EHLO mta.sender.example', from: '<a@sender.example>', to });

interface Damage {
  damage: (db: string) => Promise<void>;
  /** What the recovery line says after `changed underneath pfgrey: `. */
  says: RegExp;
  /** The WHITE addresses the database holds afterwards. */
  keeps: (history: string[]) => string[];
}

const REPLACEMENT = ['203.0.113.1', '203.0.113.2', '203.0.113.3'];

const damages: Record<string, Damage> = {
  'truncated to nothing': {
    damage: (db) => fs.truncate(db, 0),
    says: /the file was truncated from \d+ to 0 bytes; moved it to .*pfgrey\.db\.corrupt-\d{8}T\d{6}Z\b.*, started a fresh database and copied into it the 40 entries the open connection still read$/,
    keeps: (history) => history,
  },
  'overwritten with garbage in place': {
    damage: async (db) => {
      const fh = await fs.open(db, 'r+');
      const { size } = await fh.stat();
      await fh.write(Buffer.alloc(size, 0xab), 0, size, 0);
      await fh.close();
    },
    says: /the file's header is no longer an SQLite header; moved it to .*pfgrey\.db\.corrupt-.*, started a fresh database and copied into it the 40 entries/,
    keeps: (history) => history,
  },
  'removed': {
    damage: (db) => fs.rm(db),
    says: /the file was removed; moved its -wal, -shm to .*pfgrey\.db\.removed-\d{8}T\d{6}Z-\*, started a fresh database and copied into it the 40 entries the open connection still read$/,
    keeps: (history) => history,
  },
  // An administrator restoring a backup: that file is the database from now on.
  'replaced by another file': {
    damage: async (db) => {
      const other = `${db}.restored`;
      const r = await runCli(['db', '--db', other, '-a', ...REPLACEMENT]);
      if (r.code !== 0) throw new Error(r.stderr);
      await fs.rename(other, db);
    },
    says: /the file was replaced by another one; pfgrey now uses that file, as at a start; moved its -wal, -shm to .*pfgrey\.db\.replaced-/,
    keeps: () => REPLACEMENT,
  },
};

function whiteIn(listing: string): string[] {
  return [...listing.matchAll(/^WHITE\|([^|]+)\|/gm)].map((m) => m[1]!).filter((ip) => ip !== '127.0.0.1').sort();
}

for (const [how, { damage, says, keeps }] of Object.entries(damages)) {
  test(`a database ${how} underneath the daemon is recovered at the next scan, keeps what it held, and greylisting goes on`, async (t) => {
    const { port, daemon, dbPath, log } = await testDaemon(t, [
      '--stutter', '0', '--passtime', '300ms', '--scan-interval', '200ms',
    ]);
    // A history worth keeping: 40 WHITE entries, committed by another process.
    const history = Array.from({ length: 40 }, (_, i) => `192.0.2.${i + 1}`);
    t.is((await runCli(['db', '--db', dbPath, '-a', ...history])).code, 0);
    await eventually(() => daemon.lastScan?.whitelist.length === 40, 'the entries scanned');

    await damage(dbPath);
    const line = await eventually(
      () => log.lines.find((l) => l.startsWith('error: ') && l.includes(`database ${dbPath} changed underneath pfgrey: `)),
      'the recovery line', 30_000);
    t.regex(line!, says);
    t.is(log.lines.filter((l) => l.includes('changed underneath pfgrey')).length, 1, 'one recovery, one line');

    // What the database held is still there (or, replaced, what the new file holds).
    await eventually(async () => whiteIn((await runCli(['db', '--db', dbPath])).stdout).length === keeps(history).length, 'the entries kept');
    t.deepEqual(whiteIn((await runCli(['db', '--db', dbPath])).stdout), [...keeps(history)].sort());

    // Greylisting goes on in the recovered database: a new tuple is recorded and passes on its retry.
    await attempt(port, '<after@us.example>');
    await sleep(400); // waits out the 300 ms pass time on purpose
    await attempt(port, '<after@us.example>');
    await eventually(() => daemon.lastScan?.whitelist.includes('127.0.0.1'), '127.0.0.1 promoted in the recovered database');
    const listed = await runCli(['db', '--db', dbPath]);
    t.is(listed.code, 0, listed.stderr);
    t.regex(listed.stdout, /^WHITE\|127\.0\.0\.1\|\|\|/m);
    t.regex(listed.stdout, /^GREY\|127\.0\.0\.1\|mta\.sender\.example\|<a@sender\.example>\|<after@us\.example>\|/m);
    // Later scans succeed: no scan failure after the recovery.
    const after = log.lines.length;
    const scans = daemon.lastScan;
    await eventually(() => daemon.lastScan !== scans, 'another scan');
    t.deepEqual(log.lines.slice(after).filter((l) => l.includes('scan of')), []);
  });
}

test('a recovery that fails keeps the writes it could not place, and the next scan recovers them', async (t) => {
  const { daemon, dbPath, log } = await testDaemon(t, ['--scan-interval', '1h']);
  const store = daemon.store!;
  await eventually(() => daemon.lastScan, 'the first scan');
  // Replaced by something that cannot be opened: the recovery fails.
  await fs.rm(dbPath);
  await fs.mkdir(dbPath);
  store.put({ key: '198.51.100.9', first: 1, pass: 1, expire: Date.now() + 3_600_000, bcount: 0, pcount: 0 });
  await daemon.scanner!.scanOnce();
  t.true(log.lines.some((l) => l.startsWith('error: cannot recover') && l.includes('it is a directory')), log.lines.join('\n'));
  t.is(store.pendingWrites, 1, 'the write is held, and counted for the backlog check');
  store.put({ key: '198.51.100.10', first: 1, pass: 1, expire: Date.now() + 3_600_000, bcount: 0, pcount: 0 });
  await t.throwsAsync(store.get('198.51.100.9'), { message: /no usable database since its recovery failed/ });

  await fs.rmdir(dbPath);
  await daemon.scanner!.scanOnce();
  await store.flush();
  const listed = await runCli(['db', '--db', dbPath]);
  t.regex(listed.stdout, /^WHITE\|198\.51\.100\.9\|/m);
  t.regex(listed.stdout, /^WHITE\|198\.51\.100\.10\|/m);
});

test('writes queued when the file is found truncated are replayed into the fresh database', async (t) => {
  const { daemon, dbPath } = await testDaemon(t, ['--scan-interval', '1h']);
  const store = daemon.store!;
  await eventually(() => daemon.lastScan, 'the first scan');
  store.put({ key: '198.51.100.7', first: 1, pass: 1, expire: Date.now() + 3_600_000, bcount: 0, pcount: 0 });
  await store.flush();
  await fs.truncate(dbPath, 0);
  // Queued, not committed, when the scan finds the damage.
  store.put({ key: '198.51.100.8', first: 2, pass: 2, expire: Date.now() + 3_600_000, bcount: 0, pcount: 0 });
  await daemon.scanner!.scanOnce();
  t.truthy(await store.get('198.51.100.8'));
  await store.flush();
  const listed = await runCli(['db', '--db', dbPath]);
  t.regex(listed.stdout, /^WHITE\|198\.51\.100\.8\|/m);
});

test('a scan that finds the database damaged says so as an error and hands it to the recovery', async (t) => {
  const { Scanner } = await import('../../src/grey/scanner.js');
  const { PfgreyError } = await import('../../src/errors.js');
  const { memoryLogger } = await import('../../src/log.js');
  const log = memoryLogger();
  const damaged = new PfgreyError('E_DB_CORRUPT', '/db: database is corrupt (database disk image is malformed)');
  const recovered: string[] = [];
  const store = {
    path: '/db', pendingWrites: 0,
    flush: async () => undefined,
    chunks: async function* () {
      throw damaged;
    },
  } as unknown as import('../../src/store/types.js').Store;
  const scanner = new Scanner({
    store, log, interval: 3_600_000, whiteExpiry: 1, chunk: 10, onResult: () => t.fail('no result from a failed scan'),
    onCorrupt: async (err) => void recovered.push(err.message),
  });
  t.is(await scanner.scanOnce(), undefined);
  t.deepEqual(recovered, [damaged.message]);
  t.deepEqual(log.lines, ['error: scan of /db failed: /db: database is corrupt (database disk image is malformed)']);
});
