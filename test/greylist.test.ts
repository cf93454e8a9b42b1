import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatEntry } from '../src/grey/spamdb-format.js';
import { REPLY } from '../src/tarpit/replies.js';
import { spawnDaemon, runCli } from './helpers/cli.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { pfctlStandIn } from './helpers/pfctl.js';
import { attemptToData, eventually } from './helpers/smtp.js';

const attempt = (port: number, to = '<b@us.example>') =>
  attemptToData(port, { hello: 'EHLO mta.sender.example', from: '<a@sender.example>', to });

test('a tuple retried after the pass time becomes WHITE and its ip reaches the pf table', async (t) => {
  const dir = await tempDir(t);
  const pfctl = await pfctlStandIn(dir);
  await fs.writeFile(path.join(dir, 'pf'), '');
  const { port, daemon } = await testDaemon(t, [
    '--stutter', '0', '--passtime', '1s', '--scan-interval', '200ms',
    '--firewall', 'pf', '--pfctl', pfctl.path, '--pf-device', path.join(dir, 'pf'),
  ], dir);
  const store = daemon.store!;
  const key = '127.0.0.1\nmta.sender.example\n<a@sender.example>\n<b@us.example>';

  t.true((await attempt(port)).endsWith(REPLY.greylisted));
  await daemon.greylister!.settle();
  const grey = await store.get(key);
  t.truthy(grey);
  t.is(grey!.bcount, 1);
  t.is(grey!.pass, grey!.expire, 'a new tuple has pass = expire');

  t.true((await attempt(port)).endsWith(REPLY.greylisted), 'an early retry is still greylisted');
  await daemon.greylister!.settle();
  t.is((await store.get(key))!.bcount, 2);
  t.is(await store.get('127.0.0.1'), undefined, 'an early retry does not whitelist');

  await sleep(1200); // waits out the 1 s pass time on purpose
  t.true((await attempt(port)).endsWith(REPLY.greylisted), 'the passing retry itself still gets 451');
  const white = (await eventually(() => store.get('127.0.0.1'), 'WHITE entry'))!;
  const tuple = (await store.get(key))!;
  t.is(white.first, tuple.first);
  t.is(white.pass, tuple.pass);
  t.is(white.bcount, 3);
  t.regex(formatEntry(white), /^WHITE\|127\.0\.0\.1\|\|\|\d+\|\d+\|\d+\|3\|0$/);

  const call = (await eventually(async () => (await pfctl.calls()).find((c) => c.stdin === '127.0.0.1/32\n'), 'pfctl push'))!;
  t.deepEqual(call.argv.slice(-7), ['-q', '-t', 'spamd-white', '-T', 'replace', '-f', '-']);
});

test('pfgrey db can add a WHITE entry while the daemon runs, and the next scan pushes it', async (t) => {
  const dir = await tempDir(t);
  const pfctl = await pfctlStandIn(dir);
  const { daemon, dbPath } = await testDaemon(t, [
    '--scan-interval', '200ms', '--firewall', 'pf', '--pfctl', pfctl.path, '--pf-device', path.join(dir, 'none'),
  ], dir);
  const added = await runCli(['db', '--db', dbPath, '-a', '192.0.2.10']);
  t.is(added.code, 0, added.stderr);
  await eventually(async () => (await pfctl.calls()).some((c) => c.stdin === '192.0.2.10/32\n'), 'push of 192.0.2.10');
  t.deepEqual(daemon.lastScan?.whitelist, ['192.0.2.10']);
  const deleted = await runCli(['db', '--db', dbPath, '-d', '192.0.2.10']);
  t.is(deleted.code, 0, deleted.stderr);
  await eventually(async () => {
    const calls = await pfctl.calls();
    return calls[calls.length - 1]?.stdin === '';
  }, 'the table emptied again');
  t.pass();
});

test('GREY and WHITE entries are deleted by the scan once they expire', async (t) => {
  const { port, daemon } = await testDaemon(t, [
    '--stutter', '0', '--passtime', '300ms', '--greyexp', '1500ms', '--whiteexp', '2s', '--scan-interval', '100ms',
  ]);
  const store = daemon.store!;
  await attempt(port);
  await sleep(400); // waits out the 300 ms pass time on purpose
  await attempt(port);
  await eventually(() => store.get('127.0.0.1'), 'WHITE entry');
  await eventually(async () => (await store.tuplesOf('127.0.0.1')).length === 0, 'GREY tuple expiry');
  await eventually(async () => (await store.get('127.0.0.1')) === undefined, 'WHITE expiry');
  await eventually(() => daemon.lastScan?.whitelist.length === 0, 'empty whitelist');
  t.pass();
});

test('a failing pfctl is retried until the table matches the database', async (t) => {
  const dir = await tempDir(t);
  const pfctl = await pfctlStandIn(dir);
  await pfctl.setStatus(1);
  const { port, daemon, log } = await testDaemon(t, [
    '--stutter', '0', '--passtime', '200ms', '--scan-interval', '5s',
    '--firewall', 'pf', '--pfctl', pfctl.path, '--pf-device', path.join(dir, 'no-such-device'),
  ], dir);
  await attempt(port);
  await sleep(300); // waits out the 200 ms pass time on purpose
  await attempt(port);
  await daemon.greylister!.settle();
  const plan = await daemon.scanner!.scanOnce();
  t.deepEqual(plan?.whitelist, ['127.0.0.1']);
  await eventually(() => log.lines.some((l) => l.startsWith('error:') && l.includes('Operation not permitted')), 'pfctl error logged');
  await pfctl.setStatus(0);
  const ok = await eventually(async () => (await pfctl.calls()).length > 0 && daemon.sync!.inSync, 'convergence', 30_000);
  t.true(ok);
  const calls = await pfctl.calls();
  t.is(calls[calls.length - 1]!.stdin, '127.0.0.1/32\n');
});

test('entries survive a restart of the daemon, and SIGTERM flushes pending writes', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'var', 'pfgrey.db');
  const first = await spawnDaemon(t, ['--db', db, '--firewall', 'none', '--stutter', '0', '--scan-interval', '1h']);
  t.regex(first.stderr(), /database .*pfgrey\.db; firewall none/);
  await attempt(first.port, '<kept@us.example>');
  t.is(await first.stop(), 0);
  t.regex(first.stderr(), /SIGTERM received/);
  const mode = (await fs.stat(db)).mode & 0o777;
  t.true(mode === 0o600 || mode === 0o640, `db mode ${mode.toString(8)}`);

  const listed = await runCli(['db', '--db', db]);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, /^GREY\|127\.0\.0\.1\|mta\.sender\.example\|<a@sender\.example>\|<kept@us\.example>\|\d+\|\d+\|\d+\|1\|0\n$/);

  const second = await spawnDaemon(t, ['--db', db, '--firewall', 'none', '--stutter', '0', '--scan-interval', '1h']);
  await attempt(second.port, '<kept@us.example>');
  t.is(await second.stop(), 0);
  const again = await runCli(['db', '--db', db]);
  t.regex(again.stdout, /\|2\|0\n$/, 'the second attempt updated the same entry');
});
