// `--db postgres://…` end to end: every command on one PostgreSQL database (a throwaway cluster,
// test/helpers/postgres.ts), and two `pfgrey run` daemons sharing it as two MX hosts would. The
// daemons are separate processes on loopback (each its own port; clients from addresses of
// 127.0.0.0/8), which is all the story needs: they meet only in the database.

import test from 'ava';
import { greyKey } from '../src/grey/entry.js';
import { runCli, spawnDaemon } from './helpers/cli.js';
import { attemptFrom } from './helpers/http.js';
import { ask, policyRequest, startPolicy } from './helpers/policy.js';
import { rawPg, testDatabase } from './helpers/postgres.js';
import { eventually } from './helpers/wait.js';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { tempDir } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { writePflogPcap } from './helpers/pcap.js';
import { lacking } from './helpers/require.js';

const entry = async (url: string, key: string) =>
  (await rawPg(url, 'SELECT first, pass, expire, bcount, pcount FROM pfgrey_entries WHERE key = $1', [Buffer.from(key, 'utf8')]))[0];

test('pfgrey db adds, lists, imports and deletes in a PostgreSQL database, also named by the PG* variables', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const add = await runCli(['db', '--db', url, '-a', '192.0.2.1']);
  t.is(add.code, 0, add.stderr);
  t.is(add.stderr, '', 'no "created it": the database was there');
  const imported = await runCli(['db', '--db', url, '--import', '-'], { input: 'TRAPPED|198.51.100.7|1999999999\n' });
  t.is(imported.code, 0, imported.stderr);
  const list = await runCli(['db', '--db', url]);
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /^WHITE\|192\.0\.2\.1\|\|\|\d+\|\d+\|\d+\|1\|0$/m);
  t.regex(list.stdout, /^TRAPPED\|198\.51\.100\.7\|1999999999$/m);
  // postgresql:// alone: everything else from libpq's variables.
  const { hostname, port, pathname } = new URL(url);
  const env = { PGHOST: hostname, PGPORT: port, PGUSER: 'postgres', PGDATABASE: pathname.slice(1) };
  const json = await runCli(['db', '--db', 'postgresql://', '--json', '192.0.2.1'], { env });
  t.is(json.code, 0, json.stderr);
  t.like(JSON.parse(json.stdout)[0], { type: 'WHITE', ip: '192.0.2.1' });
  const del = await runCli(['db', '-d', '192.0.2.1'], { env: { ...env, PFGREY_DB: 'postgresql://' } });
  t.is(del.code, 0, del.stderr);
  t.falsy(await entry(url, '192.0.2.1'));
});

test('a server that refuses is one line naming the URL without its password', async (t) => {
  const r = await runCli(['db', '--db', 'postgres://pfgrey:hunter2@127.0.0.1:1/pfgrey']);
  t.is(r.code, 1);
  t.false(r.stderr.includes('hunter2'));
  t.regex(r.stderr, /^pfgrey db: cannot open postgres:\/\/pfgrey:\*\*\*@127\.0\.0\.1:1\/pfgrey for reading: connect ECONNREFUSED 127\.0\.0\.1:1\n$/);
});

test('a library\'s warning (node-postgres on sslmode=require) is one line, before the command\'s own', async (t) => {
  const r = await runCli(['db', '--db', 'postgres://pfgrey:hunter2@127.0.0.1:1/pfgrey?sslmode=require']);
  t.is(r.code, 1);
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, 2, r.stderr);
  t.regex(lines[0]!, /^pfgrey: warning: SECURITY WARNING: The SSL modes 'prefer', 'require', and 'verify-ca' are treated as aliases for 'verify-full'\. /);
  t.regex(lines[1]!, /^pfgrey db: cannot open postgres:\/\/pfgrey:\*\*\*@127\.0\.0\.1:1\/pfgrey\?sslmode=require for reading: /);
  t.false(r.stderr.includes('hunter2'));
});

test('pfgrey check says whether the PostgreSQL database answers, without the password', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const up = await runCli(['check', '--db', url]);
  t.regex(up.stdout + up.stderr, new RegExp(`^ok: ${url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} answers; pfgrey makes its tables there on first use$`, 'm'));
  const down = await runCli(['check', '--db', 'postgres://pfgrey:hunter2@127.0.0.1:1/pfgrey']);
  t.false((down.stdout + down.stderr).includes('hunter2'));
  t.regex(down.stdout + down.stderr, /^error: cannot open postgres:\/\/pfgrey:\*\*\*@127\.0\.0\.1:1\/pfgrey for reading: connect ECONNREFUSED/m);
  t.not(down.code, 0);
});

test('pfgrey stats counts and pfgrey logd renews entries in a PostgreSQL database', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  t.is((await runCli(['db', '--db', url, '-a', '192.0.2.7'])).code, 0);
  const port = await freePort();
  const stats = await runCli(['stats', '--http', `127.0.0.1:${port}`, '--db', url]);
  t.is(stats.code, 0, stats.stderr);
  t.regex(stats.stdout, /^entries: grey 0, white 1, trapped 0, spamtraps 0$/m);
    // logd, reading a capture of one passed inbound SMTP connection, renews 192.0.2.7's entry.
  const tcpdump = ['/usr/sbin/tcpdump', '/usr/bin/tcpdump'].find((p) => spawnSync(p, ['--version'], { stdio: 'ignore' }).status === 0);
  if (!tcpdump) {
    lacking(t, 'tcpdump is not installed (apt-get install tcpdump)');
    return;
  }
  const dir = await tempDir(t);
  const pcap = path.join(dir, 'pflog.pcap');
  await writePflogPcap(pcap, [{ dir: 'in', src: '192.0.2.7', dst: '198.51.100.1' }]);
  const logd = await runCli(['logd', '--log', 'stderr', '--db', url, '--tcpdump', tcpdump, '-r', pcap]);
  t.is(logd.code, 0, logd.stderr);
  t.regex((await runCli(['db', '--db', url, '192.0.2.7'])).stdout, /^WHITE\|192\.0\.2\.7\|\|\|\d+\|\d+\|\d+\|1\|1$/m, 'pcount counted the pass');
});

test('a password in the --db URL is never printed: not by pfgrey stats, text or JSON, nor in pfgrey db -d\'s hint', async (t) => {
  const plain = await testDatabase(t);
  if (!plain) return;
  // The test cluster trusts loopback, so the password is carried but not needed.
  const url = plain.replace('://postgres@', '://postgres:s3cr@t@');
  const now = Math.floor(Date.now() / 1000);
  // A WHITE host with a passed GREY tuple: deleting the host alone prints the hint.
  const lines = `WHITE|192.0.2.8|||${now - 1800}|${now - 60}|${now + 86_400}|2|0\n` +
    `GREY|192.0.2.8|mx.example|<a@example.org>|<b@us.example>|${now - 1800}|${now - 60}|${now + 12_600}|2|0\n`;
  t.is((await runCli(['db', '--db', url, '--import', '-'], { input: lines })).code, 0);
  const port = await freePort();
  const text = await runCli(['stats', '--http', `127.0.0.1:${port}`, '--db', url]);
  const json = await runCli(['stats', '--http', `127.0.0.1:${port}`, '--db', url, '--json']);
  const deleted = await runCli(['db', '--db', url, '-d', '192.0.2.8']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /^from the database postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/\w+ /);
  t.is((JSON.parse(json.stdout) as { database: string }).database, url.replace(':s3cr@t@', ':***@'));
  t.regex(deleted.stderr, /delete them too with: pfgrey db --db 'postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/\w+' -d --passed 192\.0\.2\.8/);
  for (const r of [text, json, deleted]) t.false((r.stdout + r.stderr).includes('s3cr'), r.stdout + r.stderr);
});

test('pfgrey policy answers from a PostgreSQL database that pfgrey db then lists', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const policy = await startPolicy(t, ['--db', url, '--delay', '1']);
  const req = policyRequest({ client_address: '192.0.2.44' });
  t.regex((await ask(policy.port, [req])).answers[0]!, /^action=DEFER_IF_PERMIT /);
  const list = await runCli(['db', '--db', url]);
  t.regex(list.stdout, /^POLICY\|/m, list.stderr);
});

test('two daemons share one database: a tuple greylisted at one MX passes at the other, and a killed maintainer hands over', async (t) => {
  const url = await testDatabase(t);
  if (!url) return;
  const args = ['--db', url, '--firewall', 'none', '-v', '--passtime', '2s', '--scan-interval', '1s', '-s', '0', '-S', '0'];
  const a = await spawnDaemon(t, args);
  await eventually(() => a.stderr().includes('maintenance: this node expires and promotes'), 'A runs maintenance');
  const b = await spawnDaemon(t, args);
  await eventually(() => b.stderr().includes('maintenance: another node expires and promotes'), 'B publishes only');

  // The secondary-MX story: greylisted at A, retried at B once the pass time has passed. One
  // retry: B has never seen the client, so it passes only because B reads A's entry.
  const to = '<rcpt@us.example>';
  t.regex(await attemptFrom(a.port, '127.0.0.5', to), /451/);
  const key = greyKey('127.0.0.5', 'mta.example', '<a@mta.example>', to);
  const seen = await eventually(() => entry(url, key), 'A recorded the tuple');
  t.like(seen, { bcount: '1', pass: seen.expire });
  await eventually(() => Date.now() > Number(seen.first) + 2000, 'the pass time gone by');
  t.regex(await attemptFrom(b.port, '127.0.0.5', to), /451/);
  const retried = await eventually(async () => {
    const e = await entry(url, key);
    return e?.bcount === '2' && e;
  }, 'the retry at B counted on A\'s entry');
  t.true(Number(retried.pass) < Number(retried.expire), 'passed at the retry');
  await eventually(() => entry(url, '127.0.0.5'), 'the address whitelisted (by A, the maintainer) after its retry at B', 30_000);
  // Both publish the whitelist to their own firewall.
  for (const d of [a, b]) {
    await eventually(() => /firewall none: .*table <spamd-white> would now hold 1 address: 127\.0\.0\.5/.test(d.stderr()), 'published');
  }

  // A dies without a word; its connection drops and B takes maintenance at its next scan.
  a.child.kill('SIGKILL');
  await eventually(() => b.stderr().includes('maintenance: took over expiry and promotion'), 'B took over', 30_000);
  t.regex(await attemptFrom(b.port, '127.0.0.6', to), /451/);
  await eventually(async () => {
    await attemptFrom(b.port, '127.0.0.6', to);
    return entry(url, '127.0.0.6');
  }, 'B promotes now', 30_000);
  t.is(await b.stop(), 0);
});
