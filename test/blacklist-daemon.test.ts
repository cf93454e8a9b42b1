import test from 'ava';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ConfigPort } from '../src/blacklist/config-port.js';
import { BlackLists } from '../src/blacklist/lists.js';
import { memoryLogger } from '../src/log.js';
import { formatEntry } from '../src/grey/spamdb-format.js';
import { REPLY } from '../src/tarpit/replies.js';
import { runCli, spawnDaemon } from './helpers/cli.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { attemptToData, eventually, RawClient, sendConfig } from './helpers/smtp.js';
import { lacking } from './helpers/require.js';

const NIXSPAM = 'nixspam;"Your address %A is in the nixspam list\\n\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details";inet;1;127.0.0.0/8\n';
const NIXSPAM_REPLY = '450-Your address 127.0.0.1 is in the nixspam list\r\n450 \tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details\r\n';

/** Milliseconds between the arrival of the n-th last byte and the last one. */
function spanOfLast(c: RawClient, n: number): number {
  let seen = 0;
  for (let i = c.arrivals.length - 1; i >= 0; i--) {
    seen += c.arrivals[i]!.bytes.length;
    if (seen >= n) return c.arrivals[c.arrivals.length - 1]!.at - c.arrivals[i]!.at;
  }
  return 0;
}

/** A blacklisted client's session up to the end of DATA; resolves with the whole transcript. */
async function spamSession(port: number, body: string[]): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.waitFor('\r\n', 60_000);
  c.send(`HELO spammer.example\r\nMAIL FROM:<s@spammer.example>\r\nRCPT TO:<v@us.example>\r\nDATA\r\n`);
  await c.waitFor(REPLY.data, 60_000);
  c.send(body.map((l) => `${l}\r\n`).join(''));
  await c.waitClosed(60_000);
  return c;
}

test('a listed client gets the list message as 450 after DATA, stuttered throughout', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['--stutter', '5ms', '--grey-stutter', '0']);
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  const c = await spamSession(port, ['Subject: buy', '', 'now', '.']);
  t.true(c.text.endsWith(REPLY.rcpt + REPLY.data + NIXSPAM_REPLY), c.text);
  // Stuttered to the last byte: the final reply's bytes arrived at least one stutter apart
  // (measured as a span, since a busy machine may coalesce a few bytes into one read).
  const n = NIXSPAM_REPLY.length;
  t.true(spanOfLast(c, n) >= (n - 1) * 5 * 0.9, `final reply of ${n} bytes took ${spanOfLast(c, n)} ms`);
  t.true(log.lines.some((l) => l === 'info: 127.0.0.1: connected (1/1), lists: nixspam'), log.lines.join('\n'));
  await eventually(() => log.lines.some((l) => /127\.0\.0\.1: disconnected after \d+ seconds\. lists: nixspam/.test(l)), 'disconnect line');
  t.is(await daemon.store!.get('127.0.0.1\nspammer.example\n<s@spammer.example>\n<v@us.example>'), undefined,
    'a blacklisted client is not greylisted');
});

test('with -5 the code is 550, every matching list is shown, and the body is cut after ten lines', async (t) => {
  const { port, daemon } = await testDaemon(t, ['-5', '--stutter', '0']);
  await sendConfig(daemon.configAddress.port, `${NIXSPAM}local;"Also listed here: %A";inet;2;10.0.0.0/8;127.0.0.1/32\n`);
  await eventually(() => daemon.lists.lookup('127.0.0.1')?.tags.length === 2, 'two lists loaded');
  const body = ['Subject: x', '', ...Array.from({ length: 12 }, (_, i) => `line ${i + 1}`)];
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send('DATA\r\n');
  await c.waitFor(REPLY.data);
  c.send(body.slice(0, 12).map((l) => `${l}\r\n`).join(''));
  await c.waitClosed();
  t.true(c.text.endsWith(`${REPLY.data}550-Your address 127.0.0.1 is in the nixspam list\r\n` +
    '550-\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details\r\n550 Also listed here: 127.0.0.1\r\n'), c.text);
});

test('past maxblack, blacklisted clients are served without stutter', async (t) => {
  const { port, daemon } = await testDaemon(t, ['-c', '50', '-B', '1', '--stutter', '30ms']);
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  const first = await RawClient.connect(port);
  t.teardown(() => first.destroy());
  await eventually(() => daemon.tarpit.clients === 1, 'first client');
  const second = await RawClient.connect(port);
  t.teardown(() => second.destroy());
  await second.waitFor('\r\n');
  t.is(second.arrivals.length, 1, 'the second blacklisted client got its banner in one write');
  t.false(first.text.endsWith('\r\n'), 'the first is still being stuttered');
});

test('a bad config line is logged and leaves the lists in force unchanged', async (t) => {
  const { daemon, log } = await testDaemon(t);
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  await sendConfig(daemon.configAddress.port, 'nixspam;"msg";inet;3;192.0.2.0/24\nnixspam;"old format";192.0.2.0/24\n');
  await eventually(() => log.lines.filter((l) => l.startsWith('error: config from')).length === 2, 'two errors logged');
  t.deepEqual(daemon.lists.lookup('127.0.0.1')?.tags, ['nixspam']);
  t.is(daemon.lists.lookup('192.0.2.1'), undefined);
  await sendConfig(daemon.configAddress.port, 'nixspam;\n');
  await eventually(() => daemon.lists.lookup('127.0.0.1') === undefined, 'list cleared');
  t.pass();
});

test('as root, a config connection from an unprivileged source port is refused', async (t) => {
  if (process.getuid?.() !== 0) {
    lacking(t, 'not root: the reserved-port rule only applies to a daemon running as root');
    return;
  }
  const { daemon, log } = await testDaemon(t);
  await new Promise<void>((resolve) => {
    const s = net.connect({ port: daemon.configAddress.port, host: '127.0.0.1' }, () => s.end(NIXSPAM));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
  await eventually(() => log.lines.some((l) => l.includes('refused: source port is not reserved')), 'refusal logged');
  t.is(daemon.lists.lookup('127.0.0.1'), undefined);
});

test('a config port that requires a reserved source port resets any other sender, which so learns its list was refused', async (t) => {
  const lists = new BlackLists();
  const log = memoryLogger();
  const port = new ConfigPort({ host: '127.0.0.1', port: 0, lists, log, requireReservedPort: true });
  const { port: p } = await port.listen();
  t.teardown(() => port.close());
  // The sender writes nothing: a plain close would then end the connection cleanly, so only a
  // reset gives ECONNRESET.
  const outcome = await new Promise<string>((resolve) => {
    const s = net.connect({ port: p, host: '127.0.0.1' });
    s.resume();
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.on('close', (hadError) => hadError || resolve('closed cleanly'));
  });
  t.is(outcome, 'ECONNRESET');
  t.is(lists.lookup('127.0.0.1'), undefined);
  t.true(log.lines.some((l) => l.includes('refused: source port is not reserved')));
});

test('a whitelisted address that becomes blacklisted leaves the whitelist at the next scan', async (t) => {
  const { daemon, dbPath } = await testDaemon(t, ['--scan-interval', '100ms']);
  t.is((await runCli(['db', '--db', dbPath, '-a', '127.0.0.1'])).code, 0);
  await eventually(() => daemon.lastScan?.whitelist.includes('127.0.0.1'), 'whitelisted');
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lastScan?.whitelist.length === 0, 'dropped from the whitelist');
  await eventually(async () => (await daemon.store!.get('127.0.0.1')) === undefined, 'WHITE entry deleted');
  t.pass();
});

const attempt = (port: number, to: string) =>
  attemptToData(port, { hello: 'HELO mta.example', from: '<a@mta.example>', to });

test('mailing a spamtrap traps the client: TRAPPED in pfgrey db, and tarpitted on its next connection', async (t) => {
  const { port, daemon, dbPath, log } = await testDaemon(t, ['--stutter', '0', '--trapexp', '2h']);
  const added = await runCli(['db', '--db', dbPath, '-T', '-a', 'Trap@US.example']);
  t.is(added.code, 0, added.stderr);
  t.true((await attempt(port, '<TRAP@us.example>')).endsWith(REPLY.greylisted));
  await daemon.greylister!.settle();
  const trapped = (await daemon.store!.get('127.0.0.1'))!;
  t.is(trapped.pcount, -1);
  t.true(Math.abs(trapped.expire - trapped.first - 2 * 3_600_000) < 1000, 'trapped for --trapexp');
  t.regex(formatEntry(trapped), /^TRAPPED\|127\.0\.0\.1\|\d+$/);
  t.true(log.lines.some((l) => l.startsWith('info: Trapping 127.0.0.1 for tuple 127.0.0.1 mta.example <a@mta.example> <TRAP@us.example>')));
  await daemon.store!.flush();
  const listed = await runCli(['db', '--db', dbPath]);
  t.regex(listed.stdout, /^TRAPPED\|127\.0\.0\.1\|\d+$/m);

  const c = await spamSession(port, ['.']);
  t.true(c.text.endsWith(`${REPLY.data}450 Your address 127.0.0.1 has mailed to spamtraps here\r\n`), c.text);
  t.deepEqual(daemon.lists.lookup('127.0.0.1')?.tags, ['spamd-greytrap']);

  // The scan keeps the trap list and never whitelists a trapped host.
  const plan = await daemon.scanner!.scanOnce();
  t.deepEqual(plan?.traps, ['127.0.0.1']);
  t.deepEqual(plan?.whitelist, []);
});

test('a recipient outside the allowed domains traps the sender; SIGHUP reloads the file', async (t) => {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, 'alloweddomains'), '# our domains\n  us.example  \n\n');
  const { port, daemon } = await testDaemon(t, ['--stutter', '0'], dir);
  await attempt(port, '<someone@us.example>');
  await daemon.greylister!.settle();
  t.is(await daemon.store!.get('127.0.0.1'), undefined, 'an allowed domain is greylisted as usual');
  t.is((await daemon.store!.tuplesOf('127.0.0.1')).length, 1);

  await fs.writeFile(path.join(dir, 'alloweddomains'), 'us.example\nother.example\n');
  await daemon.reload();
  await attempt(port, '<x@other.example>');
  await daemon.greylister!.settle();
  t.is(await daemon.store!.get('127.0.0.1'), undefined, 'after the reload other.example is allowed');

  await attempt(port, '<x@elsewhere.example>');
  await daemon.greylister!.settle();
  t.is((await daemon.store!.get('127.0.0.1'))?.pcount, -1);
});

test('with -M, a new tuple that came in to the low-priority MX traps its sender', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['--stutter', '0', '-M', '127.0.0.1'], undefined, (c) => {
    c.mxGrace = 0;
  });
  await attempt(port, '<b@us.example>');
  await daemon.greylister!.settle();
  t.is((await daemon.store!.get('127.0.0.1'))?.pcount, -1);
  t.true(log.lines.some((l) => l.includes('Trapping 127.0.0.1 for trying 127.0.0.1 first')));
});

test('-M does not trap during the first minute after start', async (t) => {
  const { port, daemon } = await testDaemon(t, ['--stutter', '0', '-M', '127.0.0.1']);
  await attempt(port, '<b@us.example>');
  await daemon.greylister!.settle();
  t.is(await daemon.store!.get('127.0.0.1'), undefined);
  t.is((await daemon.store!.tuplesOf('127.0.0.1')).length, 1);
});

test('blacklist-only mode tarpits listed clients and lets others through DATA to a 451', async (t) => {
  const { port, daemon } = await testDaemon(t, ['-b', '--stutter', '0']);
  t.is(daemon.store, undefined, 'no database in blacklist-only mode');
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send('DATA\r\n');
  await c.waitFor(REPLY.data);
  c.send('Subject: hi\r\n\r\nbody\r\n.\r\n');
  await c.waitClosed();
  t.true(c.text.endsWith(REPLY.data + REPLY.greylisted));
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  const s = await spamSession(port, ['.']);
  t.true(s.text.endsWith(NIXSPAM_REPLY));
});

test('a stock spamd.conf with a file black list loads through pfgrey setup and tarpits a listed client', async (t) => {
  const dir = await tempDir(t);
  const stock = await fs.readFile(new URL('../../test/fixtures/spamd.conf', import.meta.url), 'utf8');
  // The stock file, with its nixspam list read from a local file instead of the web.
  const conf = stock.replace(':method=https:\\', ':method=file:\\')
    .replace(':file=www.openbsd.org/spamd/nixspam.gz', `:file=${path.join(dir, 'nixspam.txt')}`);
  t.not(conf, stock);
  await fs.writeFile(path.join(dir, 'spamd.conf'), conf);
  await fs.writeFile(path.join(dir, 'nixspam.txt'), '# local copy\n127.0.0.0/8\n198.51.100.7\n');
  const { port, daemon } = await testDaemon(t, ['--stutter', '5ms', '--grey-stutter', '0'], dir);
  const r = await runCli(['setup', '--config', path.join(dir, 'spamd.conf'), '--config-port', String(daemon.configAddress.port)]);
  t.is(r.code, 0, r.stderr);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  const c = await spamSession(port, ['Subject: x', '', 'body', '.']);
  t.true(c.text.endsWith(NIXSPAM_REPLY), c.text);
  const n = NIXSPAM_REPLY.length;
  t.true(spanOfLast(c, n) >= (n - 1) * 5 * 0.9, 'stuttered to the end');
});

test('kill -HUP makes a running pfgrey re-read its allowed domains', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'alloweddomains');
  await fs.writeFile(file, 'us.example\n');
  const d = await spawnDaemon(t, ['--db', path.join(dir, 'db'), '--firewall', 'none', '--alloweddomains', file]);
  t.regex(d.stderr(), /got suffix us\.example/);
  await fs.writeFile(file, 'us.example\nthem.example\n');
  d.child.kill('SIGHUP');
  await eventually(() => /reloaded .*alloweddomains: 2 allowed domains/.test(d.stderr()), 'reload line');
  t.is(await d.stop(), 0);
});

test('a config connection of over a megabyte is parsed in a worker thread and applied the same way', async (t) => {
  const { daemon, log } = await testDaemon(t);
  const blocks: string[] = [];
  for (let i = 0; i < 120_000; i++) blocks.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
  const big = `big;"Listed: %A";inet;${blocks.length};${blocks.join(';')}\n`;
  t.true(big.length > 1024 * 1024);
  await sendConfig(daemon.configAddress.port, `${big}bad;"x";inet;2;192.0.2.0/24\n${NIXSPAM}`);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'lists installed', 60_000);
  t.deepEqual(daemon.lists.lookup('10.1.212.191')?.tags, ['big']);
  t.is(daemon.lists.lookup('10.1.212.192'), undefined, 'one past the last block');
  t.is(daemon.lists.count('big'), 120_000);
  t.true(log.lines.some((l) => /config from .*: line 2 \(bad\) ignored: /.test(l)), log.lines.join('\n'));
  t.deepEqual(daemon.lists.tags(), ['big', 'nixspam']);
});

/** Log lines of what a client said, as -v logs them. */
const dialogue = (l: string) => /^\w+: (\((BLACK|GREY)\) |127\.0\.0\.1: (From|To|SUBJECT|Subject|Body):)/.test(l);

test('with -v, spamd\'s (BLACK)/(GREY) lines, the From/To/Subject headers and the body lines are logged', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['-v', '--stutter', '0']);
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  await spamSession(port, ['From: <s@spammer.example>', 'To: you', 'Received: by x', 'SUBJECT: buy\x1b[2J', '', 'now', '', '.']);
  t.deepEqual(log.lines.filter(dialogue), [
    'info: (BLACK) 127.0.0.1: <s@spammer.example> -> <v@us.example>',
    'info: 127.0.0.1: From: <s@spammer.example>',
    'info: 127.0.0.1: To: you',
    'info: 127.0.0.1: SUBJECT: buy\x1b[2J',
    'debug: 127.0.0.1: Body: now',
  ]);
});

test('without -v none of the dialogue is logged', async (t) => {
  const { port, daemon, log } = await testDaemon(t, ['--stutter', '0']);
  await sendConfig(daemon.configAddress.port, NIXSPAM);
  await eventually(() => daemon.lists.lookup('127.0.0.1'), 'list loaded');
  await spamSession(port, ['Subject: buy', '', 'now', '.']);
  t.deepEqual(log.lines.filter(dialogue), []);
});
