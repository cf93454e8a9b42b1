// The "done when", with the real swaks as the client: a stuttered banner, 451 at DATA,
// and after the pass time a retry makes `pfgrey db` print the WHITE line and the pfctl
// stand-in receive 127.0.0.1/32.

import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli, spawnDaemon } from './helpers/cli.js';
import { tempDir } from './helpers/daemon.js';
import { pfctlStandIn } from './helpers/pfctl.js';
import { required } from './helpers/require.js';
import { eventually } from './helpers/smtp.js';

const haveSwaks = spawnSync('swaks', ['--version'], { stdio: 'ignore' }).status === 0;
const e2e = haveSwaks || required ? test : test.skip;
if (!haveSwaks && !required) console.log('# skipping swaks tests: swaks is not installed (apt-get install swaks)');

function swaks(t: ExecutionContext, port: number, to: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('swaks', ['--server', `127.0.0.1:${port}`, '--to', to, '--from', 'sender@example.org',
      '--helo', 'mta.example.org', '--timeout', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // A test that fails half-way must not leave swaks waiting out its 60 s.
    t.teardown(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

e2e('swaks is greylisted, then whitelisted after the pass time, and pf receives its address', async (t) => {
  const dir = await tempDir(t);
  const pfctl = await pfctlStandIn(dir);
  await fs.writeFile(path.join(dir, 'pf'), '');
  const db = path.join(dir, 'pfgrey.db');
  const daemon = await spawnDaemon(t, ['--db', db, '--firewall', 'pf', '--pfctl', pfctl.path,
    '--pf-device', path.join(dir, 'pf'), '--stutter', '20ms', '--passtime', '2s', '--scan-interval', '300ms']);

  const first = await swaks(t, daemon.port, 'a@b.example');
  t.regex(first.out, /<-\s+220 \S+ ESMTP spamd IP-based SPAM blocker; /);
  t.regex(first.out, /<\*\*\s+451 Temporary failure, please try again later\./);
  const grey = await runCli(['db', '--db', db]);
  t.regex(grey.stdout, /^GREY\|127\.0\.0\.1\|mta\.example\.org\|<sender@example\.org>\|<a@b\.example>\|(\d+)\|\d+\|\d+\|1\|0$/m);

  await sleep(2200); // waits out the 2 s pass time on purpose
  const second = await swaks(t, daemon.port, 'a@b.example');
  t.regex(second.out, /451 Temporary failure/);

  const listing = await eventually(async () => {
    const r = await runCli(['db', '--db', db]);
    return /^WHITE\|/m.test(r.stdout) ? r.stdout : undefined;
  }, 'WHITE entry');
  const white = /^WHITE\|127\.0\.0\.1\|\|\|(\d+)\|(\d+)\|(\d+)\|(\d+)\|(\d+)$/m.exec(listing!);
  t.truthy(white, listing);
  const [, firstSeen, pass, expire, bcount, pcount] = white!.map(Number);
  t.true(pass! >= firstSeen! + 2);
  t.true(expire! >= pass! + 36 * 86400 - 5);
  t.is(bcount, 2);
  t.is(pcount, 0);

  await eventually(async () => (await pfctl.calls()).some((c) => c.stdin === '127.0.0.1/32\n'), 'pfctl received 127.0.0.1/32');
  t.is(await daemon.stop(), 0);
});
