// A database the daemon's user cannot write. In a read-only directory `pfgrey run` stops at once
// with one clear line and leaves the file where it is (it is not corrupt: nothing is moved
// aside). A database file that is itself read-only is refused at start too: SQLite would open
// it read-only without a word and fail every commit until a restart.
//
// Runs the daemon as the user nobody, so it needs root; without root it is skipped with the
// reason, unless PFGREY_REQUIRE_E2E=1.

import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openStore } from '../../src/store/sqlite.js';
import { CLI } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { required } from '../helpers/require.js';
import { eventually } from '../helpers/smtp.js';

const root = process.getuid?.() === 0;
const rootTest = root || required ? test : test.skip;
if (!root && !required) console.log('# skipping the read-only database fault tests: they run the daemon as nobody, which needs root');

function nobody(): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, 'nobody'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** `pfgrey run` as nobody; resolves once it listens (port) or exits (code). */
function runAsNobody(t: ExecutionContext, db: string) {
  const { uid, gid } = nobody();
  const child = spawn(process.execPath, [CLI, 'run', '-p', '0', '--config-port', '0', '--log', 'stderr', '--db', db, '--firewall', 'none',
    '--stutter', '0', '--scan-interval', '1h', '--alloweddomains', '/nonexistent/alloweddomains'], {
    uid, gid, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PFGREY_DB: '' },
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const started = (async () => {
    const port = await eventually(() => /listening for incoming connections on [^ ]+:(\d+)\./.exec(stderr)?.[1]
      ?? (child.exitCode !== null ? 'exited' : undefined), 'the daemon to listen or exit', 30_000);
    return port === 'exited' ? undefined : Number(port);
  })();
  return { child, started, exited, stderr: () => stderr };
}

/** The lines of stderr besides the daemon's own log lines (`pfgrey[pid]: …`). */
function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l !== '' && !/^pfgrey\[\d+\]: /.test(l));
}

/** A directory of nobody's, holding a database of one entry owned by nobody. */
async function nobodysDb(t: ExecutionContext): Promise<{ dbDir: string; db: string }> {
  const dir = await tempDir(t);
  await fs.chmod(dir, 0o755);
  const dbDir = path.join(dir, 'db');
  await fs.mkdir(dbDir, { mode: 0o755 });
  const db = path.join(dbDir, 'pfgrey.db');
  const store = await openStore(db, { create: true });
  store.put({ key: '192.0.2.1', first: 1, pass: 1, expire: Date.now() + 86_400_000, bcount: 0, pcount: 1 });
  await store.close();
  const { uid, gid } = nobody();
  await fs.chown(db, uid, gid);
  await fs.chown(dbDir, uid, gid);
  return { dbDir, db };
}

rootTest('in a read-only database directory, pfgrey run stops with one clear line and leaves the file alone', async (t) => {
  const { dbDir, db } = await nobodysDb(t);
  await fs.chmod(dbDir, 0o555);
  const content = await fs.readFile(db);
  const d = runAsNobody(t, db);
  t.is(await d.started, undefined);
  t.is(await d.exited, 1);
  t.deepEqual(errorLines(d.stderr()), [`pfgrey run: cannot open ${db} for writing: attempt to write a readonly database`]);
  t.deepEqual(await fs.readFile(db), content);
  t.deepEqual(await fs.readdir(dbDir), ['pfgrey.db'], 'nothing moved aside, nothing created');

  // And with no database yet, the reason is the directory's permission.
  const fresh = runAsNobody(t, path.join(dbDir, 'new.db'));
  t.is(await fresh.exited, 1);
  t.deepEqual(errorLines(fresh.stderr()), [`pfgrey run: cannot open ${path.join(dbDir, 'new.db')} for writing: permission denied`]);
});

// A read-only database file: SQLite would quietly open it read-only and fail every commit until
// a restart, so pfgrey run refuses it at start, in one line, and leaves it as it was.
rootTest('a read-only database file stops pfgrey run with one clear line and leaves the file alone', async (t) => {
  const { db } = await nobodysDb(t);
  await fs.chmod(db, 0o444);
  const content = await fs.readFile(db);
  const d = runAsNobody(t, db);
  t.is(await d.started, undefined);
  t.is(await d.exited, 1);
  t.deepEqual(errorLines(d.stderr()), [`pfgrey run: cannot open ${db} for writing: the file is read-only`]);
  t.deepEqual(await fs.readFile(db), content);
});
