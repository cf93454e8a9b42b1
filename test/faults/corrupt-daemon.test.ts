import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, spawnDaemon } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { pfctlStandIn } from '../helpers/pfctl.js';
import { RawClient, eventually } from '../helpers/smtp.js';

test('pfgrey run on a corrupt database moves it aside, says so in one line, and starts with a fresh one', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const garbage = 'this is not a database, it is a text file that got here by mistake\n'.repeat(100);
  await fs.writeFile(db, garbage);
  const daemon = await spawnDaemon(t, ['--db', db, '--firewall', 'none', '--stutter', '0', '--scan-interval', '1h']);

  const moved = (await fs.readdir(dir)).filter((n) => /^pfgrey\.db\.corrupt-\d{8}T\d{6}Z$/.test(n));
  t.is(moved.length, 1, (await fs.readdir(dir)).join(' '));
  t.is(await fs.readFile(path.join(dir, moved[0]!), 'utf8'), garbage, 'the old file is kept as it was');
  const lines = daemon.stderr().split('\n').filter((l) => l.includes('cannot be used'));
  t.is(lines.length, 1, daemon.stderr());
  t.true(lines[0]!.includes(db) && lines[0]!.includes(path.join(dir, moved[0]!)), lines[0]);
  t.regex(lines[0]!, /database is corrupt \(file is not a database\)/);

  // The fresh database works: a tuple goes in, and survives a restart.
  const c = await RawClient.connect(daemon.port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send('HELO mta.sender.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<b@us.example>\r\nDATA\r\n');
  await c.waitClosed();
  t.is(await daemon.stop(), 0);
  const listed = await runCli(['db', '--db', db]);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, /^GREY\|127\.0\.0\.1\|mta\.sender\.example\|<a@sender\.example>\|<b@us\.example>\|/);

  // The next start finds a healthy file: nothing more is moved.
  const again = await spawnDaemon(t, ['--db', db, '--firewall', 'none', '--stutter', '0', '--scan-interval', '1h']);
  t.notRegex(again.stderr(), /cannot be used/);
  t.is(await again.stop(), 0);
  t.is((await fs.readdir(dir)).filter((n) => n.includes('.corrupt-')).length, 1);
});

test('pfgrey db never moves a corrupt file: it says so in one line and exits 1', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'bad.db');
  await fs.writeFile(db, 'not sqlite\n'.repeat(200));
  const r = await runCli(['db', '--db', db]);
  t.is(r.code, 1);
  t.regex(r.stderr, /bad\.db: database is corrupt/);
  t.notRegex(r.stderr, /\n\s+at /);
  t.deepEqual(await fs.readdir(dir), ['bad.db']);
});

test('after moving a corrupt database aside, the addresses already in <spamd-white> stay whitelisted', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  await fs.writeFile(db, 'garbage, not a database\n'.repeat(100));
  const pfctl = await pfctlStandIn(dir);
  await fs.writeFile(path.join(dir, 'table'), '192.0.2.10\n198.51.100.7\n');
  await fs.writeFile(path.join(dir, 'pf'), '');
  const daemon = await spawnDaemon(t, ['--db', db, '--firewall', 'pf', '--pfctl', pfctl.path,
    '--pf-device', path.join(dir, 'pf'), '--stutter', '0', '--scan-interval', '1h']);
  const pushed = await eventually(async () => (await pfctl.calls()).find((c) => c.argv.includes('replace')), 'the first push');
  t.deepEqual(pushed!.stdin.trim().split('\n').sort(), ['192.0.2.10/32', '198.51.100.7/32'],
    'the first scan of the fresh database pushes the table as it was, not an empty one');
  t.regex(daemon.stderr(), /kept the 2 addresses of <spamd-white> as WHITE entries/);
  t.is(await daemon.stop(), 0);
  const listed = await runCli(['db', '--db', db]);
  t.regex(listed.stdout, /^WHITE\|192\.0\.2\.10\|\|\|/m);
  t.regex(listed.stdout, /^WHITE\|198\.51\.100\.7\|\|\|/m);
});

/** The first page of a db(3) hash file as spamd's /var/db/spamd starts (magic 0x061561, little-endian). */
function berkeleyHashFile(): Buffer {
  const page = Buffer.alloc(4096);
  page.writeUInt32LE(0x061561, 0); // HASHMAGIC
  page.writeUInt32LE(2, 4); // HASHVERSION
  page.writeUInt32LE(1234, 8); // byte-order marker
  return page;
}

test('pointed at spamd\'s own Berkeley DB file, pfgrey run and pfgrey db refuse it, leave it where it is, and say how to import it', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'spamd');
  await fs.writeFile(db, berkeleyHashFile());
  const run = await runCli(['run', '-p', '0', '--config-port', '0', '--db', db, '--firewall', 'none']);
  t.is(run.code, 1, run.stderr);
  t.regex(run.stderr, /spamd is a Berkeley DB file, as spamd keeps its database; .*spamdb \| pfgrey db --import -/);
  t.notRegex(run.stderr, /\n\s+at /);
  const list = await runCli(['db', '--db', db]);
  t.is(list.code, 1);
  t.regex(list.stderr, /is a Berkeley DB file/);
  t.deepEqual(await fs.readdir(dir), ['spamd'], 'nothing moved, nothing created beside it');
  t.deepEqual(await fs.readFile(db), berkeleyHashFile());
});
