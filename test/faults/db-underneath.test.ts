// A database changed underneath the running daemon — truncated, replaced by another file,
// removed, or overwritten with garbage — is noticed at the next scan, logged as an error, and
// recovered as at start: the file moved aside, what can still be read of it copied into a
// fresh one, the writes still queued replayed, and greylisting goes on (tuples recorded,
// promotions made) instead of every scan failing for as long as the daemon runs.

import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli } from '../helpers/cli.js';
import { testDaemon } from '../helpers/daemon.js';
import { attemptToData, eventually } from '../helpers/smtp.js';

const attempt = (port: number, to: string) =>
  attemptToData(port, { hello: 'EHLO mta.sender.example', from: '<a@sender.example>', to });

const damages: Record<string, (db: string) => Promise<void>> = {
  'truncated to nothing': (db) => fs.truncate(db, 0),
  'replaced by another file': async (db) => {
    await fs.writeFile(`${db}.new`, '');
    await fs.rename(`${db}.new`, db);
  },
  'removed': (db) => fs.rm(db),
  'overwritten with garbage in place': async (db) => {
    const fh = await fs.open(db, 'r+');
    const { size } = await fh.stat();
    await fh.write(Buffer.alloc(size, 0xab), 0, size, 0);
    await fh.close();
  },
};

for (const [how, damage] of Object.entries(damages)) {
  test(`a database ${how} underneath the daemon is recovered at the next scan, and greylisting goes on`, async (t) => {
    const { port, daemon, dbPath, dir, log } = await testDaemon(t, [
      '--stutter', '0', '--passtime', '300ms', '--scan-interval', '200ms',
    ]);
    // A history worth keeping: 40 WHITE entries, committed and checkpointed into the main file.
    const white = Array.from({ length: 40 }, (_, i) => `192.0.2.${i + 1}`);
    t.is((await runCli(['db', '--db', dbPath, '-a', ...white])).code, 0);
    await eventually(() => daemon.lastScan?.whitelist.length === 40, 'the entries scanned');

    await damage(dbPath);
    const line = await eventually(
      () => log.lines.find((l) => l.startsWith('error: ') && l.includes(`database ${dbPath} changed underneath pfgrey: `)),
      'the recovery line', 30_000);
    t.regex(line!, /; moved it to .*pfgrey\.db\.corrupt-\d{8}T\d{6}Z(-\d+)?\b/);
    const moved = /moved it to (\S+?)(?: \(with|,)/.exec(line!)![1]!;
    t.true((await fs.readdir(dir)).includes(path.basename(moved)) || how === 'removed', 'the old file kept for the operator');
    t.is(log.lines.filter((l) => l.includes('changed underneath pfgrey')).length, 1, 'one recovery, one line');

    // Greylisting goes on in the fresh database: a new tuple is recorded and passes on its retry.
    await attempt(port, '<after@us.example>');
    await new Promise((r) => setTimeout(r, 400));
    await attempt(port, '<after@us.example>');
    await eventually(() => daemon.lastScan?.whitelist.includes('127.0.0.1'), '127.0.0.1 promoted in the fresh database');
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

test('writes queued when the file is found truncated are replayed into the fresh database', async (t) => {
  const { daemon, dbPath } = await testDaemon(t, ['--scan-interval', '1h']);
  const store = daemon.store!;
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
