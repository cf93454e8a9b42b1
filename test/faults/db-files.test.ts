// What pfgrey checks about its database files, tried as the unprivileged user and as a careless
// operator would: a symbolic link planted in the database's place or a companion's, a file
// another user pre-created world-writable, another program's SQLite file, a second daemon on
// the same file, a start that cannot bind its port, and a mistyped --db directory.

import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { isPfgreyError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import { openStore } from '../../src/store/sqlite.js';
import { CLI, runCli, spawnDaemon } from '../helpers/cli.js';
import { tempDir, testDaemon } from '../helpers/daemon.js';

const root = process.getuid?.() === 0;
const NOBODY = 65534;

// Root plays the unprivileged user here and hands files to it; CI runs as root.
const asRoot = root || process.env.PFGREY_REQUIRE_E2E === '1' ? test : test.skip;
if (!root) console.log('# skipping the tests that play the unprivileged user: they need root');

/** A directory belonging to nobody, as the README asks the database's directory to be. */
async function nobodysDir(parent: string): Promise<string> {
  const dir = path.join(parent, 'db');
  await fs.mkdir(dir, { mode: 0o755 });
  await fs.chown(dir, NOBODY, NOBODY);
  return dir;
}

/** A root-owned file only root may read, the kind of file a planted link would aim at. */
async function rootSecret(dir: string): Promise<string> {
  const secret = path.join(dir, 'secret');
  await fs.writeFile(secret, '', { mode: 0o600 });
  return secret;
}

async function unchanged(t: ExecutionContext, secret: string): Promise<void> {
  const st = await fs.stat(secret);
  t.is(st.size, 0, 'nothing was written into the target');
  t.is(st.uid, 0, 'the target still belongs to root');
  t.is(st.mode & 0o777, 0o600);
  for (const sfx of ['-wal', '-shm', '-journal']) {
    await t.throwsAsync(fs.lstat(secret + sfx), { code: 'ENOENT' }, `no ${sfx} beside the target`);
  }
}

function runArgs(db: string): string[] {
  return ['run', '-p', '0', '--config-port', '0', '--db', db, '--user', 'nobody', '--firewall', 'none', '--log', 'stderr'];
}

asRoot('a database link the unprivileged user planted is refused as root: its target is neither written nor handed over', async (t) => {
  const dir = await tempDir(t);
  const secret = await rootSecret(dir);
  const db = path.join(await nobodysDir(dir), 'pfgrey.db');
  await fs.symlink(secret, db);
  await fs.lchown(db, NOBODY, NOBODY);
  const r = await runCli(runArgs(db));
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`${db}: is a symbolic link, which pfgrey never follows for its database; refusing to open it`));
  await unchanged(t, secret);
});

asRoot('a -wal or -shm link planted beside a real database is refused, and its target stays as it was', async (t) => {
  for (const sfx of ['-wal', '-shm']) {
    const dir = await tempDir(t);
    const secret = await rootSecret(dir);
    const db = path.join(await nobodysDir(dir), 'pfgrey.db');
    const store = await openStore(db, { create: true });
    store.put({ key: '192.0.2.1', first: 1, pass: 1, expire: 2 ** 40, bcount: 0, pcount: 0 });
    await store.close();
    await fs.rm(db + sfx, { force: true });
    await fs.symlink(secret, db + sfx);
    const r = await runCli(runArgs(db));
    t.is(r.code, 1, r.stderr);
    t.true(r.stderr.includes(`${db}${sfx}: is a symbolic link`), r.stderr);
    await unchanged(t, secret);
    // pfgrey db, as root, refuses it too.
    const listed = await runCli(['db', '--db', db]);
    t.is(listed.code, 1);
    t.true(listed.stderr.includes(`${db}${sfx}: is a symbolic link`), listed.stderr);
  }
});

asRoot('handing the database to the unprivileged user never follows a link put there after it was opened', async (t) => {
  const dir = await tempDir(t);
  const secret = await rootSecret(dir);
  const link = path.join(await nobodysDir(dir), 'pfgrey.db-wal');
  await fs.symlink(secret, link);
  // In a child: had the chown gone through, it would have become nobody next.
  const privileges = path.resolve(path.dirname(CLI), '../privileges.js');
  const log = path.resolve(path.dirname(CLI), '../log.js');
  const script = `const { becomeUser } = await import(${JSON.stringify(privileges)});
const { memoryLogger } = await import(${JSON.stringify(log)});
try { becomeUser({ name: 'nobody', uid: ${NOBODY}, gid: ${NOBODY} }, [${JSON.stringify(link)}], memoryLogger()); console.log('handed over'); }
catch (err) { console.log(err.code + ': ' + err.message); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(r.stdout.trim(), `E_PRIVILEGES: cannot hand ${link} to nobody: it is a symbolic link`);
  await unchanged(t, secret);
});

asRoot('a world-writable database another user pre-created is refused, and so is a directory everyone may write', async (t) => {
  const dir = await tempDir(t);
  // A directory every user may write, without the sticky bit: anyone could swap the file.
  const open = path.join(dir, 'open');
  await fs.mkdir(open);
  await fs.chmod(open, 0o777);
  const r1 = await runCli(['db', '--db', path.join(open, 'pfgrey.db'), '-a', '192.0.2.1']);
  t.is(r1.code, 1);
  t.regex(r1.stderr, /its directory .*\/open may be written by every user, who could replace the database/);
  t.deepEqual(await fs.readdir(open), [], 'nothing was created there');

  // /tmp-like (sticky): the file another user placed there is refused for its owner and mode.
  const sticky = path.join(dir, 'sticky');
  await fs.mkdir(sticky);
  await fs.chmod(sticky, 0o1777);
  const planted = path.join(sticky, 'pfgrey.db');
  await fs.writeFile(planted, '');
  await fs.chmod(planted, 0o666);
  await fs.chown(planted, 12345, 12345);
  const r2 = await runCli(['db', '--db', planted, '-a', '192.0.2.1']);
  t.is(r2.code, 1);
  t.regex(r2.stderr, /pfgrey\.db: belongs to uid 12345, neither root, this user \(uid 0\) nor the directory's owner \(uid 0\), so someone else placed it; refusing to open it/);
  t.is((await fs.stat(planted)).size, 0, 'not written');

  // In a directory of its own, a world-writable database is refused all the same.
  const own = path.join(dir, 'own');
  await fs.mkdir(own, { mode: 0o700 });
  const lax = path.join(own, 'pfgrey.db');
  await fs.writeFile(lax, '');
  await fs.chmod(lax, 0o666);
  const r3 = await runCli(['db', '--db', lax, '-a', '192.0.2.1']);
  t.is(r3.code, 1);
  t.regex(r3.stderr, /pfgrey\.db: may be written by every user \(chmod o-w it once you trust its contents\); refusing to open it/);
});

test('a database in a sticky world-writable directory opens with a warning that says where to keep it', async (t) => {
  const dir = await tempDir(t);
  const sticky = path.join(dir, 'sticky');
  await fs.mkdir(sticky);
  await fs.chmod(sticky, 0o1777);
  const log = memoryLogger();
  const store = await openStore(path.join(sticky, 'pfgrey.db'), { create: true, log });
  await store.close();
  t.true(log.lines.some((l) => /warning: .*pfgrey\.db: its directory .*sticky may be written by every user; keep the database in a directory of pfgrey's own/.test(l)), log.lines.join('\n'));
});

function header(file: string): Promise<Buffer> {
  return fs.readFile(file).then((b) => b.subarray(0, 100));
}

test('another program\'s SQLite file is refused as it was found, never switched to WAL mode first', async (t) => {
  const dir = await tempDir(t);
  const foreign = path.join(dir, 'photos.sqlite');
  await new Promise<void>((resolve, reject) => {
    const db = new sqlite3.Database(foreign, (err) => {
      if (err) return reject(err);
      db.exec('CREATE TABLE photos(id INTEGER PRIMARY KEY); INSERT INTO photos VALUES (1)', (e) => db.close(() => (e ? reject(e) : resolve())));
    });
  });
  const before = await fs.readFile(foreign);
  // Bytes 18 and 19 of the header are 1 in rollback-journal mode and 2 in WAL mode.
  t.deepEqual([...(await header(foreign)).subarray(18, 20)], [1, 1]);
  const r = await runCli(['db', '--db', foreign, '-a', '192.0.2.1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /not a pfgrey database: it has tables photos/);
  t.deepEqual(await fs.readFile(foreign), before, 'the file is byte for byte what it was');
  t.deepEqual((await fs.readdir(dir)).sort(), ['photos.sqlite'], 'no -wal or -shm was made');
});

test('a second daemon on the same database is refused, naming the pid of the one that holds it; a dead one\'s lock is taken over', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const first = await spawnDaemon(t, ['--db', db, '--firewall', 'none']);
  const second = await runCli(['run', '-p', '0', '--config-port', '0', '--db', db, '--firewall', 'none', '--log', 'stderr',
    ...(root ? ['--user', 'nobody'] : [])]);
  t.is(second.code, 1);
  t.true(second.stderr.includes(`${db} is in use by another pfgrey daemon (pid ${first.child.pid}), which holds ${db}.lock: ` +
    'stop it first, or give this one a --db of its own'), second.stderr);
  // The first one never noticed.
  t.true(first.child.exitCode === null);

  // A daemon killed outright leaves its lock file, but the kernel dropped its lock: the next
  // start takes it.
  t.is(await first.stop('SIGKILL'), null);
  t.true((await fs.lstat(`${db}.lock`)).isFile());
  const third = await spawnDaemon(t, ['--db', db, '--firewall', 'none']);
  t.false(third.stderr().includes('in use'), third.stderr());
  t.is(await third.stop(), 0);
});

test('of daemons started at the same moment on one database, exactly one gets it', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const lockModule = path.resolve(path.dirname(CLI), '../store/lock.js');
  const logModule = path.resolve(path.dirname(CLI), '../log.js');
  // Each child takes the lock as the daemon does and says whether it got it; the one that got it
  // keeps it until its stdin closes, which is once every child has answered.
  const script = `const { lockDatabase } = await import(${JSON.stringify(lockModule)});
const { memoryLogger } = await import(${JSON.stringify(logModule)});
try { await lockDatabase(${JSON.stringify(db)}, memoryLogger()); console.log('got it'); await new Promise((r) => process.stdin.on('end', r).resume()); }
catch (err) { console.log(err.code); }`;
  for (let round = 0; round < 3; round++) {
    const children = Array.from({ length: 4 }, () =>
      spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const closed = children.map((child) => new Promise<void>((resolve) => child.on('close', () => resolve())));
    const answers = children.map((child) => new Promise<string>((resolve) => {
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('\n')) resolve(out.trim());
      });
      child.on('close', () => resolve(out.trim()));
    }));
    const said = (await Promise.all(answers)).sort();
    for (const child of children) child.stdin.end();
    await Promise.all(closed);
    t.deepEqual(said, ['E_DB_LOCKED', 'E_DB_LOCKED', 'E_DB_LOCKED', 'got it'], `round ${round}`);
  }
});

test('in one process too, a second daemon on a database is refused, and the first one\'s stop frees it', async (t) => {
  const dir = await tempDir(t);
  const first = await testDaemon(t, [], dir);
  const err = await t.throwsAsync(testDaemon(t, [], dir));
  t.true(isPfgreyError(err) && err.code === 'E_DB_LOCKED', String(err));
  t.regex(err!.message, new RegExp(`\\(pid ${process.pid}\\)`));
  await first.daemon.stop();
  const again = await testDaemon(t, [], dir);
  t.truthy(again.daemon.store);
});

test('a start that cannot bind its port says which address, who may hold it, and leaves no database behind', async (t) => {
  const dir = await tempDir(t);
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const db = path.join(dir, 'new', 'pfgrey.db');
  const r = await runCli(['run', '-p', String(port), '--config-port', '0', '--db', db, '--firewall', 'none', '--log', 'stderr',
    ...(root ? ['--user', 'nobody'] : [])]);
  t.is(r.code, 1);
  t.true(r.stderr.includes(`cannot listen for SMTP connections on 127.0.0.1:${port}: address already in use (EADDRINUSE): another program holds it; find it with `), r.stderr);
  t.is(r.stderr.trim().split('\n').filter((l) => /error|cannot/.test(l)).length, 1, r.stderr);
  // The lock file stays (removing it would let two daemons lock two files of one name); it is
  // not a database and holds no lock once the process is gone.
  t.deepEqual(await fs.readdir(path.dirname(db)), ['pfgrey.db.lock'], 'neither the database nor its companions stay');
});

test('the spamd ports named in a bind failure point at spamd', async (t) => {
  const { listenError } = await import('../../src/listen-error.js');
  const err = listenError('SMTP connections', '127.0.0.1', 8025, Object.assign(new Error('x'), { code: 'EADDRINUSE', errno: -98 }));
  t.regex(err.message, /^cannot listen for SMTP connections on 127\.0\.0\.1:8025: .*another program holds it; spamd listens on 8025 and 8026: stop and disable spamd and spamlogd first; find it with /);
  t.regex(listenError('the config port', '::1', 8026, Object.assign(new Error('x'), { code: 'EADDRINUSE' })).message, /on \[::1\]:8026: /);
});

test('pfgrey db -a with --db in a directory that does not exist is refused, naming it, and creates nothing', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'var', 'db', 'pfgrey', 'pfgrey.db');
  for (const args of [['-a', '192.0.2.1'], ['--import', '-']]) {
    const r = await runCli(['db', '--db', db, ...args], { input: 'WHITE|192.0.2.1|||1|1|2000000000|0|0\n' });
    t.is(r.code, 1);
    t.true(r.stderr.includes(`cannot open ${db}: directory ${path.dirname(db)} does not exist`), r.stderr);
  }
  t.deepEqual(await fs.readdir(dir), [], 'no directory was made');
});

test('a hard link in the database\'s place or a companion\'s is refused: it may be another file under a second name', async (t) => {
  const dir = await tempDir(t);
  const secret = await rootSecret(dir);
  await fs.writeFile(secret, 'x'.repeat(900));
  const db = path.join(dir, 'db', 'pfgrey.db');
  await fs.mkdir(path.dirname(db));
  for (const sfx of ['', '-shm']) {
    if (sfx !== '') {
      const store = await openStore(db, { create: true });
      await store.close();
    }
    await fs.link(secret, db + sfx);
    const r = await runCli(['db', '--db', db, ...(sfx === '' ? [] : ['-a', '192.0.2.1'])]);
    t.is(r.code, 1);
    t.true(r.stderr.includes(`${db}${sfx}: has 2 names (hard links), so it may be another file as well; refusing to open it`), r.stderr);
    t.is(await fs.readFile(secret, 'utf8'), 'x'.repeat(900), 'the linked file is untouched');
    await fs.rm(db + sfx);
  }
});

test('salvaging a damaged database never writes through a link planted under the copy\'s name', async (t) => {
  const dir = await tempDir(t);
  const secret = await rootSecret(dir);
  const db = path.join(dir, 'pfgrey.db');
  const store = await openStore(db, { create: true, commitDelay: 3_600_000 });
  for (let i = 0; i < 3000; i++) store.put({ key: `192.0.2.${i % 250}\nh${i}\n<a@b>\n<c${i}@d>`, first: i, pass: i, expire: 2 ** 40, bcount: 0, pcount: 0 });
  await store.close();
  const { size } = await fs.stat(db);
  await fs.truncate(db, Math.floor(size / 2)); // shorter than its header says: salvage pads a copy
  const NOW = Date.UTC(2024, 0, 2, 3, 4, 5);
  const moved = `${db}.corrupt-20240102T030405Z`;
  await fs.symlink(secret, `${moved}.salvage`);
  await fs.symlink(secret, `${moved}.salvage-wal`);
  const { openStoreRecovering } = await import('../../src/store/recover.js');
  const log = memoryLogger();
  const { store: fresh, movedTo } = await openStoreRecovering(db, { now: () => NOW }, log);
  await fresh.close();
  t.is(movedTo, moved);
  await unchanged(t, secret);
});
