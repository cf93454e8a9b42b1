// pfgrey stats: the daemon's numbers from its status endpoint, or, with no daemon answering,
// the database's counts, saying which; and SIGUSR1's status line in the daemon's log.

import test from 'ava';
import path from 'node:path';
import { runCli, spawnDaemon } from './helpers/cli.js';
import { tempDir } from './helpers/daemon.js';
import { attemptFrom } from './helpers/http.js';
import { eventually } from './helpers/wait.js';
import { freePort } from './helpers/ports.js';

test('pfgrey stats asks the running daemon at --http and prints its numbers, as lines or as JSON; SIGUSR1 writes them to the log in one line', async (t) => {
  const dir = await tempDir(t);
  const d = await spawnDaemon(t, ['--db', path.join(dir, 'p.db'), '--firewall', 'none', '--stutter', '0', '--http', '127.0.0.1:0']);
  const http = Number(/listening for status requests on 127\.0\.0\.1:(\d+)\./.exec(d.stderr())![1]);
  await attemptFrom(d.port, '127.0.0.2', '<a@us.example>');
  await eventually(async () => (await runCli(['stats', '--http', `127.0.0.1:${http}`, '--json'])).stdout.includes('"tuples":1'), 'the tuple counted');

  const text = await runCli(['stats', '--http', `127.0.0.1:${http}`]);
  t.is(text.code, 0, text.stderr);
  const lines = text.stdout.split('\n');
  t.regex(lines[0]!, new RegExp(`^from the daemon at 127\\.0\\.0\\.1:${http}: pfgrey run \\S+, up \\d+s$`));
  t.is(lines[1], 'held connections: 0 (grey 0, black 0, trapped 0)');
  t.true(lines.includes('since start: tuples 1, promotions 0, traps 0, expiries 0'), text.stdout);
  t.true(lines.some((l) => /^firewall none: last push <spamd-white> ok, replace, 0 addresses, \d+ ms, \d+s ago; \d+ pushes, 0 failed$/.test(l)), text.stdout);
  t.true(lines.includes('lists: none'), text.stdout);

  const json = await runCli(['stats', '--json'], { env: { PFGREY_HTTP: `127.0.0.1:${http}` } });
  const doc = JSON.parse(json.stdout) as Record<string, unknown> & { totals: { tuples: number } };
  t.like(doc, { source: 'daemon', address: `127.0.0.1:${http}`, command: 'run', held: { grey: 0, black: 0, trapped: 0 } });
  t.is(doc.totals.tuples, 1);
  t.false('samples' in doc, 'the plots\' samples are the page\'s');

  d.child.kill('SIGUSR1');
  const line = await eventually(() => d.stderr().split('\n').find((l) => l.includes(': status: ')), 'the status line');
  t.regex(line, /^pfgrey\[\d+\]: status: held 0 \(grey 0, black 0, trapped 0\); entries grey \d+, white 0, trapped 0, spamtraps 0 \(scan \d+s ago\); since start: tuples 1, promotions 0, traps 0, expiries 0; last push <spamd-white> ok, replace, 0 addresses, \d+ ms, \d+s ago; backlog \d+$/);
  t.is(await d.stop(), 0, 'SIGUSR1 left the daemon running; SIGTERM stops it as usual');
});

test('with no daemon answering, pfgrey stats reads the counts from the database and says that is where they come from', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'p.db');
  for (const args of [['-a', '192.0.2.1'], ['-t', '-a', '192.0.2.9'], ['-T', '-a', 'trap@us.example']]) {
    const r = await runCli(['db', '--db', db, ...args]);
    t.is(r.code, 0, r.stderr);
  }
  const port = await freePort();
  const text = await runCli(['stats', '--http', `127.0.0.1:${port}`, '--db', db]);
  t.is(text.code, 0, text.stderr);
  t.is(text.stdout,
    `from the database ${db} (no daemon answered at 127.0.0.1:${port}: connection refused); held connections, pushes and rates need the daemon's --http\n` +
    'entries: grey 0, white 1, trapped 1, spamtraps 1\n');
  const json = await runCli(['stats', '--http', `127.0.0.1:${port}`, '--json'], { env: { PFGREY_DB: db } });
  t.like(JSON.parse(json.stdout), {
    source: 'database', database: db, daemon: { address: `127.0.0.1:${port}`, error: 'connection refused' },
    counts: { grey: 0, white: 1, trapped: 1, spamtraps: 1, policy: 0, awl: 0, good: 0 },
  });
});

test('pfgrey stats refuses a --http that is not loopback, and says in one line when neither a daemon nor the database answers', async (t) => {
  const far = await runCli(['stats', '--http', '192.0.2.1:8027']);
  t.is(far.code, 1);
  t.regex(far.stderr, /^pfgrey stats: --http 192\.0\.2\.1:8027: 192\.0\.2\.1 is not a loopback address; [^\n]+\n$/);
  const dir = await tempDir(t);
  const port = await freePort();
  const none = await runCli(['stats', '--http', `127.0.0.1:${port}`, '--db', path.join(dir, 'missing.db')]);
  t.is(none.code, 1);
  t.regex(none.stderr, new RegExp(`^pfgrey stats: no daemon answered at 127\\.0\\.0\\.1:${port} \\(connection refused\\), and the database cannot be read: [^\\n]+\\n$`));
});
