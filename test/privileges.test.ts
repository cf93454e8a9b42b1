import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { lookupUser } from '../src/privileges.js';
import { CLI, runCli, spawnDaemon } from './helpers/cli.js';
import { tempDir } from './helpers/daemon.js';
import { eventually, RawClient } from './helpers/smtp.js';
import { lacking, required } from './helpers/require.js';

const root = process.getuid?.() === 0;
const asRoot = root || required ? test : test.skip;
if (!root && !required) console.log('# skipping privilege-separation tests: they need root');

test('users are looked up in the passwd file', async (t) => {
  const dir = await tempDir(t);
  const passwd = path.join(dir, 'passwd');
  await fs.writeFile(passwd, 'root:*:0:0::/root:/bin/sh\n_pfgrey:*:871:871:pfgrey:/var/empty:/sbin/nologin\n');
  t.deepEqual(lookupUser('_pfgrey', passwd), { name: '_pfgrey', uid: 871, gid: 871 });
  t.is(lookupUser('_spamd', passwd), undefined);
});

asRoot('started as root, pfgrey run drops to the user while pfctl still gets the /dev/pf descriptor', async (t) => {
  const dir = await tempDir(t);
  const device = path.join(dir, 'pf');
  await fs.writeFile(device, 'PFDEV');
  await fs.chmod(device, 0o600); // only root may open it, as /dev/pf
  const record = path.join(dir, 'record');
  await fs.mkdir(record, { mode: 0o777 });
  await fs.chmod(record, 0o777);
  const pfctl = path.join(dir, 'pfctl');
  // Records who runs it, its argv, and what it reads from the descriptor it inherited as fd 3.
  await fs.writeFile(pfctl, `#!/bin/sh
id -u > '${record}/uid'
echo "$*" > '${record}/argv'
head -c 5 <&3 > '${record}/fd3'
cat > /dev/null
`, { mode: 0o755 });
  const db = path.join(dir, 'pfgrey.db');
  const d = await spawnDaemon(t, ['--db', db, '--user', 'nobody', '--firewall', 'pf', '--pfctl', pfctl,
    '--pf-device', device, '--stutter', '0', '--scan-interval', '1h']);
  t.regex(d.stderr(), /dropped privileges to nobody \(uid 65534, gid 65534\)/);
  const status = await fs.readFile(`/proc/${d.child.pid}/status`, 'utf8');
  t.regex(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m, 'real, effective, saved and fs uid');
  t.regex(status, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m);
  t.regex(status, /^Groups:\s*65534\s*$/m, 'no supplementary group of root is kept');

  await eventually(async () => (await fs.readFile(path.join(record, 'fd3'), 'utf8').catch(() => '')) === 'PFDEV', 'pfctl read /dev/pf through fd 3');
  t.is((await fs.readFile(path.join(record, 'uid'), 'utf8')).trim(), '65534', 'pfctl ran unprivileged');
  t.is((await fs.readFile(path.join(record, 'argv'), 'utf8')).trim(), '-p /dev/fd/3 -q -t spamd-white -T replace -f -');

  // The database stays writable after the drop.
  const c = await RawClient.connect(d.port);
  await c.waitFor('\r\n');
  c.send('HELO h.example\r\nMAIL FROM:<a@h.example>\r\nRCPT TO:<b@us.example>\r\nDATA\r\n');
  await c.waitClosed();
  t.is(await d.stop(), 0);
  t.regex((await runCli(['db', '--db', db])).stdout, /^GREY\|127\.0\.0\.1\|h\.example\|<a@h\.example>\|<b@us\.example>\|/m);
});

asRoot('a --user that does not exist stops pfgrey run before it opens anything', async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(['run', '-p', '0', '--config-port', '0', '--db', path.join(dir, 'db'), '--user', 'no_such_user_here']);
  t.is(r.code, 1);
  t.regex(r.stderr, /no such user no_such_user_here/);
  await t.throwsAsync(fs.access(path.join(dir, 'db')));
});

asRoot('blacklist-only mode drops root even with --firewall nft: pfgrey setup -b, not the daemon, fills the set', async (t) => {
  const d = await spawnDaemon(t, ['-b', '--firewall', 'nft', '--nft', path.join(await tempDir(t), 'no-nft'), '--user', 'nobody']);
  t.regex(d.stderr(), /dropped privileges to nobody/);
  t.notRegex(d.stderr(), /staying root/);
  t.regex(await fs.readFile(`/proc/${d.child.pid}/status`, 'utf8'), /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
  t.is(await d.stop(), 0);
});

asRoot('not started as root, pfgrey run says what it cannot do and runs as the current user', async (t) => {
  const dir = path.join(await tempDir(t), 'own');
  await fs.mkdir(dir);
  await fs.chown(dir, 65534, 65534);
  const db = path.join(dir, 'db');
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI,
    'run', '-p', '0', '--config-port', '0', '--db', db, '--firewall', 'none', '--help'], { encoding: 'utf8' });
  if (r.error) {
    lacking(t, `setpriv is not available (${r.error.message})`);
    return;
  }
  t.is(r.status, 0, r.stderr);
  // A real start as nobody: it must say it is not root, then listen.
  const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups',
    process.execPath, CLI, 'run', '--log', 'stderr', '-p', '0', '--config-port', '0', '--db', db, '--firewall', 'none'],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise((r) => child.on('exit', r));
  await eventually(() => /listening for incoming connections on 127\.0\.0\.1:\d+\./.test(stderr), 'the daemon listening', 30_000);
  t.regex(stderr, /not started as root: running as uid 65534 without privilege separation/);
  child.kill('SIGTERM');
  await exited;
});

asRoot('without --user, a missing default user is a loud warning, not a failure (a first run from the README)', async (t) => {
  const dir = await tempDir(t);
  const { accountToBecome } = await import('../src/privileges.js');
  const { memoryLogger } = await import('../src/log.js');
  const log = memoryLogger();
  t.is(accountToBecome('no_such_default_user', log, false), undefined);
  t.regex(log.lines.join('\n'), /warning: user no_such_default_user does not exist: running as root WITHOUT privilege separation/);
  t.throws(() => accountToBecome('no_such_default_user', log, true), { message: /no such user no_such_default_user/ });
  t.truthy(dir);
});

test('reserved ports are ours to bind as root, or with CAP_NET_BIND_SERVICE in the effective set', async (t) => {
  const { mayBindReserved } = await import('../src/privileges.js');
  const status = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;
  t.true(mayBindReserved(0, status('0000000000000000')), 'root');
  t.true(mayBindReserved(998, status('0000000000000400')), 'CAP_NET_BIND_SERVICE alone');
  t.true(mayBindReserved(998, status('0000000000003400')), 'with CAP_NET_ADMIN, as the systemd unit gives');
  t.false(mayBindReserved(998, status('0000000000001000')), 'CAP_NET_ADMIN alone');
  t.false(mayBindReserved(998, 'Name:\tnode\n'), 'no capability line');
});

test('a system that lets any user bind ports below 1024 is recognised, so the daemon can warn', async (t) => {
  const { unprivilegedPortStart } = await import('../src/privileges.js');
  t.is(unprivilegedPortStart('1024\n'), undefined, 'the default: reserved ports are reserved');
  t.is(unprivilegedPortStart('0\n'), 0, 'as container runtimes set it');
  t.is(unprivilegedPortStart('80\n'), 80);
  t.is(unprivilegedPortStart('garbage'), undefined);
});
