// pfgrey policy with postgrey's meanings, over real sockets: the subnet triplet, sender
// normalisation, the X-Greylist header, the whitelists (reloaded on SIGHUP), the client
// auto-whitelist, --privacy, Unix sockets, and `pfgrey run --policy` sharing one core and store
// with the tarpit.

import test from 'ava';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Greylister } from '../src/grey/greylister.js';
import { memoryLogger } from '../src/log.js';
import { PolicyServer } from '../src/policy/server.js';
import { MemoryStore } from '../src/store/memory.js';
import { runCli } from './helpers/cli.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { ask, policyRequest, startPolicy } from './helpers/policy.js';
import { eventually } from './helpers/wait.js';

/** The delay of these tests, waited for real: the server's clock is the system's. */
const DELAY_MS = 1000;
const afterDelay = () => sleep(DELAY_MS + 150);

const DEFER = /^action=DEFER_IF_PERMIT Greylisted by pfgrey, try again in \d+ seconds$/;

async function db(dir: string): Promise<string> {
  return (await runCli(['db', '--db', path.join(dir, 'p.db')])).stdout;
}

test('a retry from another address of the same /24 passes, as from a server farm; --lookup-by-host makes it new', async (t) => {
  const dir = await tempDir(t);
  const subnet = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--delay', '1']);
  t.regex((await ask(subnet.port, [policyRequest({ client_address: '192.0.2.1' })])).answers[0]!, DEFER);
  await afterDelay();
  t.deepEqual((await ask(subnet.port, [policyRequest({ client_address: '192.0.2.200' })])).answers, ['action=DUNNO']);

  const dir2 = await tempDir(t);
  const byHost = await startPolicy(t, ['--db', path.join(dir2, 'p.db'), '--delay', '1', '--lookup-by-host']);
  await ask(byHost.port, [policyRequest({ client_address: '192.0.2.1' })]);
  await afterDelay();
  t.regex((await ask(byHost.port, [policyRequest({ client_address: '192.0.2.200' })])).answers[0]!, DEFER);
  t.regex(await db(dir2), /^POLICY\|192\.0\.2\.200\/32\/a@example\.org\/b@us\.example\|/m);
});

test('a mailing list\'s senders (VERP numbers, +extensions, BATV tags, case) share one triplet', async (t) => {
  const dir = await tempDir(t);
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--delay', '1']);
  t.regex((await ask(p.port, [policyRequest({ sender: 'List-Bounces+7781@lists.example' })])).answers[0]!, DEFER);
  await afterDelay();
  const { answers } = await ask(p.port, [
    policyRequest({ sender: 'list-bounces+9912@LISTS.example' }),
    policyRequest({ sender: 'prvs=1234567890=list-bounces@lists.example' }),
  ]);
  t.deepEqual(answers, ['action=DUNNO', 'action=DUNNO']);
  t.regex(await db(dir), /^POLICY\|192\.0\.2\.0\/list-bounces@lists\.example\/b@us\.example\|/m);
});

test('--x-greylist-header prepends the header on the first pass, once per message; Postfix 2.3+ gets 4.2.0 in the deferral', async (t) => {
  const dir = await tempDir(t);
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--delay', '1', '--x-greylist-header', '--hostname', 'mx.us.example']);
  const first = await ask(p.port, [policyRequest({ instance: 'm1', etrn_domain: '' })]);
  t.regex(first.answers[0]!, /^action=DEFER_IF_PERMIT 4\.2\.0 Greylisted by pfgrey, try again in \d+ seconds$/);
  await afterDelay();
  const { answers } = await ask(p.port, [
    policyRequest({ instance: 'm2' }),
    // The same message's second recipient: its triplet passes for the first time, no second header.
    policyRequest({ instance: 'm2', recipient: 'c@us.example' }),
    policyRequest({ instance: 'm3' }),
  ]);
  t.regex(answers[0]!, /^action=PREPEND X-Greylist: delayed [12] seconds by pfgrey-\d+\.\d+\.\d+; [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/);
  t.regex(answers[1]!, DEFER, 'a new triplet is deferred, header or not');
  t.is(answers[2], 'action=DUNNO', 'a triplet that has passed before gets no header');
  const custom = await startPolicy(t, ['--db', path.join(dir, 'q.db'), '--delay', '1', '--x-greylist-header=X-Grey: %t s at %h']);
  await ask(custom.port, [policyRequest()]);
  await afterDelay();
  t.regex((await ask(custom.port, [policyRequest()])).answers[0]!, /^action=PREPEND X-Grey: [12] s at \S+$/);
});

test('postgrey\'s whitelist files let clients and recipients by without an entry, and SIGHUP reloads them', async (t) => {
  const dir = await tempDir(t);
  const clients = path.join(dir, 'whitelist_clients');
  const recipients = path.join(dir, 'whitelist_recipients');
  await fs.writeFile(clients, '# postgrey format\nfriendly.example\n198.51.100.0/24\n/^mail\\d+\\.big\\.example$/\n');
  await fs.writeFile(recipients, 'postmaster@\nabuse@us.example\n');
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--whitelist-clients', clients, '--whitelist-recipients', recipients]);
  const { answers } = await ask(p.port, [
    policyRequest({ client_name: 'out.friendly.example' }),
    policyRequest({ client_address: '198.51.100.9' }),
    policyRequest({ client_name: 'mail12.big.example' }),
    policyRequest({ recipient: 'postmaster@anything.example' }),
    policyRequest({ recipient: 'abuse+x@us.example' }),
    policyRequest({ client_name: 'stranger.example' }),
  ]);
  t.deepEqual(answers.slice(0, 5), Array(5).fill('action=DUNNO'));
  t.regex(answers[5]!, DEFER);
  t.regex(p.stderr(), /action=pass, reason=client whitelist, client_name=out\.friendly\.example/);
  t.regex(p.stderr(), /action=pass, reason=recipient whitelist/);
  t.is((await db(dir)).split('\n').filter((l) => l.startsWith('POLICY|')).length, 1, 'only the stranger was recorded');

  await fs.writeFile(clients, 'stranger.example\nthis is not a line\n');
  process.kill(p.pid, 'SIGHUP');
  await eventually(() => p.stderr().includes('whitelists reloaded'), 'the reload');
  t.regex(p.stderr(), /whitelist_clients:2: /, 'a bad line is named by file and line');
  t.deepEqual((await ask(p.port, [policyRequest({ client_name: 'stranger.example', recipient: 'new@us.example' })])).answers, ['action=DUNNO']);
});

test('a client auto-whitelisted after its passes becomes WHITE: pfgrey db lists it and its new triplets pass at once', async (t) => {
  const dir = await tempDir(t);
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--delay', '1', '--auto-whitelist-clients=1']);
  await ask(p.port, [policyRequest({ client_address: '192.0.2.77' })]);
  await afterDelay();
  await ask(p.port, [policyRequest({ client_address: '192.0.2.77' })]);
  t.regex(await db(dir), /^WHITE\|192\.0\.2\.77\|\|\|/m);
  t.deepEqual((await ask(p.port, [policyRequest({ client_address: '192.0.2.77', sender: 'new@else.example' })])).answers, ['action=DUNNO']);
  t.regex(p.stderr(), /whitelisted: 192\.0\.2\.77 after 1 pass \(auto-whitelist\)/);
  t.regex(p.stderr(), /reason=client WHITE/);
});

test('--privacy keeps only hashes: no address, sender or recipient is stored', async (t) => {
  const dir = await tempDir(t);
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--delay', '1', '--privacy', '--auto-whitelist-clients=1']);
  await ask(p.port, [policyRequest()]);
  await afterDelay();
  t.deepEqual((await ask(p.port, [policyRequest()])).answers, ['action=DUNNO']);
  const listed = await db(dir);
  t.regex(listed, /^POLICY\|[0-9a-f]{40}\|/m);
  t.regex(listed, /^AWL\|[0-9a-f]{40}\|\d+\|\d+\|\d+\|1$/m);
  t.notRegex(listed, /192\.0\.2|example/);
  t.deepEqual((await ask(p.port, [policyRequest({ sender: 'x@new.example' })])).answers, ['action=DUNNO'], 'the hashed count whitelists the client');
});

test('--unix gets --socketmode; a socket left by a dead server is replaced, anything else in the way is refused', async (t) => {
  const dir = await tempDir(t);
  const sock = path.join(dir, 'policy.sock');
  // A stale socket: bound, then its server gone without removing it.
  const stale = net.createServer().listen(sock);
  await new Promise((r) => stale.once('listening', r));
  // Closing would remove the file: take the fd away instead, as a kill -9 would.
  await new Promise<void>((resolve) => {
    (stale as unknown as { _handle: { close(cb: () => void): void } })._handle.close(() => resolve());
  });
  const started = await runUnix(t, sock, dir, ['--socketmode', '0660']);
  t.is((await fs.stat(sock)).mode & 0o777, 0o660);
  t.regex(await started.askOnce(policyRequest()), DEFER);

  const file = path.join(dir, 'not-a-socket');
  await fs.writeFile(file, 'keep me');
  const refused = await runCli(['policy', '--unix', file, '--db', path.join(dir, 'q.db'), '--log', 'stderr']);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /not-a-socket: it exists and is not a socket \(not removed\)/);
  t.is(await fs.readFile(file, 'utf8'), 'keep me');
});

/** `pfgrey policy --unix sock`, and one request over it. */
async function runUnix(t: import('ava').ExecutionContext, sock: string, dir: string, args: string[]) {
  const { spawn } = await import('node:child_process');
  const { CLI } = await import('./helpers/cli.js');
  const child = spawn(process.execPath, [CLI, 'policy', '--log', 'stderr', '--unix', sock, '--db', path.join(dir, 'p.db'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  await eventually(() => err.includes(`listening for policy requests on ${sock}.`), `listening on ${sock}: ${err}`, 30_000);
  return {
    askOnce: (req: string) => new Promise<string>((resolve, reject) => {
      const s = net.connect({ path: sock });
      let text = '';
      s.setEncoding('latin1').on('data', (d: string) => (text += d)).on('end', () => resolve(text.replace(/\n\n$/, ''))).on('error', reject);
      s.end(req);
    }),
  };
}

test('a connection silent past the idle timeout is closed; one with an answer pending is not cut while it talks', async (t) => {
  const core = new Greylister({ store: new MemoryStore(), log: memoryLogger(), atomic: true });
  t.teardown(() => core.stop());
  const server = new PolicyServer({
    core, log: memoryLogger(), greylistAction: 'DEFER_IF_PERMIT', greylistText: 'x', noReuse: false,
    keys: (q) => ({ triplet: `${q.ip}/${q.sender}/${q.recipient}`, client: q.ip }), privacy: false,
    idleTimeout: 300,
  });
  t.teardown(() => server.close());
  const a = await server.listen({ host: '127.0.0.1', port: 0 });
  const port = typeof a === 'string' ? 0 : a.port;
  const s = net.connect({ port, host: '127.0.0.1' });
  let closed = false;
  let text = '';
  s.setEncoding('latin1').on('data', (d: string) => (text += d)).on('close', () => (closed = true));
  s.write(policyRequest());
  await eventually(() => text.includes('\n\n'), 'the answer');
  await eventually(() => closed, 'the idle connection closed', 10_000);
  t.true(closed);
});

test('postgrey options pfgrey does not take say what to do instead', async (t) => {
  const r = await runCli(['policy', '--dbdir', '/var/lib/postgrey']);
  t.is(r.code, 1);
  t.regex(r.stderr, /--dbdir is postgrey's: pfgrey keeps one database file: use --db FILE/);
  const bad = await runCli(['policy', '--lookup-by-host', '--lookup-by-subnet']);
  t.regex(bad.stderr, /--lookup-by-host and --lookup-by-subnet contradict each other/);
  const short = await runCli(['policy', '-v']);
  t.is(short.stderr, 'pfgrey policy: --verbose is postgrey\'s: pfgrey policy logs every decision, as postgrey --verbose does; -d adds debug lines\n');
  t.regex((await runCli(['policy', '--syslogfacility=local0'])).stderr, /--syslogfacility is postgrey's: pfgrey policy logs to the mail facility/);
});

test('postgrey\'s -i and -u are --inet and --unix', async (t) => {
  const dir = await tempDir(t);
  const sock = path.join(dir, 'policy.sock');
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '-i', '127.0.0.1:0', '-u', sock]);
  t.regex(p.stderr(), new RegExp(`listening for policy requests on ${sock.replaceAll('.', '\\.')}\\.`));
  t.regex((await ask(p.port, [policyRequest()])).answers[0]!, DEFER);
});

test('pfgrey run refuses postgrey options without --policy', async (t) => {
  const r = await runCli(['run', '--max-age', '3', '--firewall', 'none']);
  t.is(r.code, 1);
  t.regex(r.stderr, /--max-age is an option of the policy door: add --policy inet:\[host:\]port or --policy unix:path/);
});

test('pfgrey run --policy: a host the tarpit whitelisted passes at once, and a client the policy door whitelists reaches the firewall\'s whitelist', async (t) => {
  const { daemon, dbPath } = await testDaemon(t, ['--policy', 'inet:127.0.0.1:0', '--delay', '1', '--auto-whitelist-clients=1', '--scan-interval', '200ms']);
  const port = Number(/:(\d+)$/.exec(daemon.policy!.bound[0]!)![1]);
  t.is((await runCli(['db', '--db', dbPath, '-a', '198.51.100.5'])).code, 0);
  t.deepEqual((await ask(port, [policyRequest({ client_address: '198.51.100.5' })])).answers, ['action=DUNNO']);

  t.regex((await ask(port, [policyRequest({ client_address: '192.0.2.44' })])).answers[0]!, DEFER);
  await afterDelay();
  t.deepEqual((await ask(port, [policyRequest({ client_address: '192.0.2.44' })])).answers, ['action=DUNNO']);
  await eventually(() => daemon.lastScan?.whitelist.includes('192.0.2.44'), 'the next scan whitelisting the client', 10_000);
  t.true(daemon.lastScan!.whitelist.includes('198.51.100.5'));
});

test('a database SQLite cannot read is moved aside and the policy service answers from a fresh one', async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, 'p.db'), Buffer.alloc(8192, 0x5a));
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db')]);
  t.regex((await ask(p.port, [policyRequest()])).answers[0]!, DEFER);
  t.true((await fs.readdir(dir)).some((f) => f.startsWith('p.db.corrupt-')));
});

test('--ipv4cidr 0 and --ipv6cidr 0 mean the defaults, as postgrey reads them; other values are bounded', async (t) => {
  const { policySettings } = await import('../src/policy/door.js');
  t.like(policySettings({ ipv4cidr: '0', ipv6cidr: '0' }), { ipv4cidr: 24, ipv6cidr: 64 });
  t.like(policySettings({ ipv4cidr: '16', ipv6cidr: '48' }), { ipv4cidr: 16, ipv6cidr: 48 });
  t.like(policySettings({}), { ipv4cidr: 24, ipv6cidr: 64 });
  t.is(t.throws(() => policySettings({ ipv4cidr: '33' }))?.message, '--ipv4cidr 33: too large (maximum 32)');
  t.is(t.throws(() => policySettings({ ipv6cidr: '/64' }))?.message, '--ipv6cidr /64: not a whole number');
});

test('without --whitelist-clients/--whitelist-recipients postgrey\'s own files are read if there; a named file must exist, a .local one may not', async (t) => {
  const { policySettings } = await import('../src/policy/door.js');
  const { POSTGREY_CLIENT_FILES, POSTGREY_RECIPIENT_FILES } = await import('../src/policy/lists.js');
  t.like(policySettings({}), {
    clients: [...POSTGREY_CLIENT_FILES], recipients: [...POSTGREY_RECIPIENT_FILES],
    optionalLists: [...POSTGREY_CLIENT_FILES, ...POSTGREY_RECIPIENT_FILES],
  });
  t.deepEqual(policySettings({ 'whitelist-clients': ['/x'] }).optionalLists, [...POSTGREY_RECIPIENT_FILES]);

  const dir = await tempDir(t);
  const missing = path.join(dir, 'whitelist_clients');
  const r = await runCli(['policy', '--inet', '127.0.0.1:0', '--log', 'stderr', '--db', path.join(dir, 'p.db'), '--whitelist-clients', missing]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`cannot read client whitelist ${missing.replaceAll('.', '\\.')}: `));
  t.notRegex(r.stderr, /\n\s+at /);
  const local = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--whitelist-clients', `${missing}.local`]);
  t.regex((await ask(local.port, [policyRequest()])).answers[0]!, DEFER);

  // The files Debian's postgrey installs, when it is installed: its lists work unchanged.
  let listed: string | undefined;
  try {
    listed = (await fs.readFile(POSTGREY_CLIENT_FILES[0]!, 'utf8')).split('\n').map((l) => l.replace(/#.*/, '').trim())
      .find((l) => /^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(l) && !/^[\d.]+$/.test(l));
  } catch {
    // no postgrey here
  }
  if (listed === undefined) {
    t.log(`${POSTGREY_CLIENT_FILES[0]} has no host name entry (postgrey not installed): its part is not run`);
    return;
  }
  const p = await startPolicy(t, ['--db', path.join(dir, 'q.db')]);
  const { answers } = await ask(p.port, [
    policyRequest({ client_name: `mx1.${listed}` }),
    policyRequest({ recipient: 'postmaster@us.example' }),
    policyRequest({ client_name: 'stranger.example' }),
  ]);
  t.deepEqual(answers.slice(0, 2), ['action=DUNNO', 'action=DUNNO']);
  t.regex(answers[2]!, DEFER);
});
