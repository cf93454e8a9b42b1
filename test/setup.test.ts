// `pfgrey setup` against an in-test web server and a stand-in for the daemon's config port
// (a TCP server that records what each connection sent), and once against the real daemon.

import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import pty from 'node-pty';
import { readSpamdConf } from '../src/blacklist/spamd-conf.js';
import { SETUP_USAGE, setupCommand } from '../src/cli/setup.js';
import { tableLines } from '../src/firewall/pf.js';
import { CLI, runCli } from './helpers/cli.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { configPortStandIn } from './helpers/config-port.js';
import { pfctlStandIn } from './helpers/pfctl.js';
import { eventually } from './helpers/smtp.js';
import { lacking } from './helpers/require.js';
import { helpText } from '../src/cli/args.js';

/** .build/test → test/fixtures */
const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures');

const PLAIN = '# a plain list\n192.0.2.0/24\n198.51.100.1 - 198.51.100.6\n  203.0.113.9  trailing words\n';
const WHITE = '192.0.2.128/25\n198.51.100.3\n';
const GZ = '10/8\n192.0.2.200\n';

/** What the first blacklist becomes once the whitelist after it is applied. */
const PLAIN_LINE = 'plain;"Your address %A is in plain\\n\tSee http://example.org/ for details";inet;6;' +
  '192.0.2.0/25;198.51.100.1/32;198.51.100.2/32;198.51.100.4/31;198.51.100.6/32;203.0.113.9/32\n';
const GZ_LINE = 'gz;"Listed in gz";inet;2;10.0.0.0/8;192.0.2.200/32\n';

interface Web {
  port: number;
  url(p: string): string;
}

async function webServer(t: ExecutionContext): Promise<Web> {
  const routes: Record<string, [number, Buffer]> = {
    '/plain.txt': [200, Buffer.from(PLAIN)],
    '/white.txt': [200, Buffer.from(WHITE)],
    '/list.gz': [200, gzipSync(GZ)],
    '/fail': [500, Buffer.from('oops\n')],
    '/moved': [302, Buffer.alloc(0)],
  };
  const server = http.createServer((req, res) => {
    const [status, body] = routes[req.url ?? ''] ?? [404, Buffer.from('not found\n')];
    if (status === 302) res.setHeader('Location', '/plain.txt');
    res.writeHead(status, { 'Content-Type': 'application/octet-stream' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const port = (server.address() as net.AddressInfo).port;
  // spamd.conf splits capabilities at ':', so a port is written with getcap's \C escape.
  return { port, url: (p) => `127.0.0.1\\C${port}${p}` };
}

function config(web: Web, lists = ['plain', 'override', 'gz'], extra = ''): string {
  return `# test configuration
all:\\
\t:${lists.join(':')}:

plain:\\
\t:black:\\
\t:msg="Your address %A is in plain\\n\\
\tSee http://example.org/ for details":\\
\t:method=http:\\
\t:file=${web.url('/plain.txt')}:

override:\\
\t:white:\\
\t:method=http:\\
\t:file=${web.url('/white.txt')}:

gz:\\
\t:black:\\
\t:msg="Listed in gz":\\
\t:method=http:\\
\t:file=${web.url('/list.gz')}:

broken:\\
\t:black:\\
\t:msg="Never seen":\\
\t:method=http:\\
\t:file=${web.url('/fail')}:

brokenwhite:\\
\t:white:\\
\t:method=http:\\
\t:file=${web.url('/fail')}:
${extra}`;
}

async function writeConfig(t: ExecutionContext, text: string): Promise<{ dir: string; file: string }> {
  const dir = await tempDir(t, 'pfgrey-setup-');
  const file = path.join(dir, 'spamd.conf');
  await fs.writeFile(file, text);
  return { dir, file };
}

/** Runs `pfgrey setup` in-process with captured output, as through a pipe. */
async function setup(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  // stdout carries config-port lines byte for byte (latin1); stderr is text for people.
  const sink = (encoding: BufferEncoding, add: (s: string) => void) => new Writable({
    write(chunk: Buffer, _enc, cb) {
      add(chunk.toString(encoding));
      cb();
    },
  });
  const code = await setupCommand(args, {
    stdout: sink('latin1', (s) => (stdout += s)),
    stderr: sink('utf8', (s) => (stderr += s)),
    stdin: Readable.from([]),
    env: process.env,
  });
  return { code, stdout, stderr };
}

/** Writes spamd.conf and the files it names (`!` before a name: executable) into a new directory, then runs `setup -n`. */
async function dryRun(t: ExecutionContext, conf: string, files: Record<string, string | Buffer> = {}) {
  const { dir, file } = await writeConfig(t, conf);
  for (const [name, text] of Object.entries(files)) {
    await fs.writeFile(path.join(dir, name.replace(/^!/, '')), text, { mode: name.startsWith('!') ? 0o755 : 0o644 });
  }
  return setup(['-n', '--config', file]);
}

const isRoot = process.getuid?.() === 0;

test('each blacklist goes on its own connection as one line, minus the whitelists after it', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { file } = await writeConfig(t, config(web));
  const r = await setup(['--config', file, '--config-port', String(daemon.port)]);
  t.deepEqual(r, { code: 0, stdout: '', stderr: '' });
  t.deepEqual(daemon.received.map((c) => c.text), [PLAIN_LINE, GZ_LINE]);
  if (isRoot) {
    for (const c of daemon.received) t.true(c.remotePort >= 600 && c.remotePort <= 1023, `source port ${c.remotePort}`);
  }
});

test('a whitelist applies to the blacklist before it only', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  // The whitelist now follows gz: 192.0.2.200 is spared there, plain keeps all of 192.0.2.0/24.
  const { file } = await writeConfig(t, config(web, ['plain', 'gz', 'override']));
  const r = await setup(['--config', file, '--config-port', String(daemon.port)]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(daemon.received.map((c) => c.text), [
    'plain;"Your address %A is in plain\\n\tSee http://example.org/ for details";inet;6;' +
    '192.0.2.0/24;198.51.100.1/32;198.51.100.2/31;198.51.100.4/31;198.51.100.6/32;203.0.113.9/32\n',
    'gz;"Listed in gz";inet;1;10.0.0.0/8\n',
  ]);
});

test('a whitelist before any blacklist is ignored, with a warning', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { file } = await writeConfig(t, config(web, ['override', 'gz']));
  const r = await setup(['--config', file, '--config-port', String(daemon.port)]);
  t.is(r.code, 0);
  t.is(r.stderr, 'pfgrey setup: whitelist override comes before any blacklist in "all", so it applies to none; ignored\n');
  t.deepEqual(daemon.received.map((c) => c.text), [GZ_LINE]);
});

test('a list that cannot be fetched is not sent, the others are, and the exit status is 1', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { file } = await writeConfig(t, config(web, ['broken', 'gz']));
  const r = await setup(['--config', file, '--config-port', String(daemon.port)]);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey setup: list broken: Can't open http://127.0.0.1:${web.port}/fail by http method: ` +
    'HTTP status 500 Internal Server Error; not sent, spamd keeps its previous list\n');
  t.deepEqual(daemon.received.map((c) => c.text), [GZ_LINE]);
});

test('a blacklist whose whitelist cannot be fetched is not sent', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { file } = await writeConfig(t, config(web, ['plain', 'brokenwhite', 'gz']));
  const r = await setup(['--config', file, '--config-port', String(daemon.port)]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^pfgrey setup: list brokenwhite: .*HTTP status 500.*; blacklist plain not sent, spamd keeps its previous list\n$/);
  t.deepEqual(daemon.received.map((c) => c.text), [GZ_LINE]);
});

test('-n prints the lines that would be sent and sends nothing', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { file } = await writeConfig(t, config(web));
  const r = await setup(['-n', '--config', file, '--config-port', String(daemon.port)]);
  t.deepEqual(r, { code: 0, stdout: PLAIN_LINE + GZ_LINE, stderr: '' });
  t.is(daemon.received.length, 0);
});

test('-d prints spamd-setup\'s debug lines', async (t) => {
  const web = await webServer(t);
  const { file } = await writeConfig(t, config(web));
  const r = await setup(['-dn', '--config', file]);
  t.is(r.code, 0);
  const base = `http://127.0.0.1:${web.port}`;
  t.is(r.stderr, [
    `Getting ${base}/plain.txt`, 'blacklist plain 3 entries',
    `Getting ${base}/white.txt`, 'whitelist override 2 entries',
    `Getting ${base}/list.gz`, 'blacklist gz 2 entries', '',
  ].join('\n'));
});

test('redirects are followed', async (t) => {
  const web = await webServer(t);
  const { file } = await writeConfig(t, config(web, ['moved']) +
    `moved:black:msg="Listed in gz":method=http:file=${web.url('/moved')}:\n`);
  const r = await setup(['-n', '--config', file]);
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.startsWith('moved;"Listed in gz";inet;'), r.stdout);
});

test('-b replaces pf\'s table <spamd> with the blocks of every blacklist', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { dir, file } = await writeConfig(t, config(web));
  const pfctl = await pfctlStandIn(path.join(dir, 'pf'));
  const r = await setup(['-b', '--firewall', 'pf', '--config', file, '--config-port', String(daemon.port), '--pfctl', pfctl.path]);
  t.deepEqual(r, { code: 0, stdout: '', stderr: '' });
  t.is(daemon.received.length, 2);
  t.deepEqual(await pfctl.calls(), [{
    argv: ['-q', '-t', 'spamd', '-T', 'replace', '-f', '-'],
    stdin: ['192.0.2.0/25', '198.51.100.1/32', '198.51.100.2/32', '198.51.100.4/31', '198.51.100.6/32',
      '203.0.113.9/32', '10.0.0.0/8', '192.0.2.200/32', ''].join('\n'),
  }]);
});

test('-b leaves <spamd> alone when a blacklist failed, and reports a failing pfctl', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { dir, file } = await writeConfig(t, config(web, ['broken', 'gz']));
  const pfctl = await pfctlStandIn(path.join(dir, 'pf'));
  const args = ['-b', '--firewall', 'pf', '--config', file, '--config-port', String(daemon.port), '--pfctl', pfctl.path];
  const failed = await setup(args);
  t.is(failed.code, 1);
  t.true(failed.stderr.endsWith('pfgrey setup: pf table <spamd> left as it was: not every blacklist could be loaded\n'), failed.stderr);
  t.deepEqual(await pfctl.calls(), []);

  await fs.writeFile(file, config(web, ['gz']));
  await pfctl.setStatus(1);
  const refused = await setup(args);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /^pfgrey setup: pfctl failed: .*exited with status 1: pfctl: Operation not permitted/);
});

test('-n -b touches neither the daemon nor pf', async (t) => {
  const web = await webServer(t);
  const { dir, file } = await writeConfig(t, config(web));
  const pfctl = await pfctlStandIn(path.join(dir, 'pf'));
  const r = await setup(['-nb', '--config', file, '--pfctl', pfctl.path]);
  t.is(r.code, 0);
  t.is(r.stdout, PLAIN_LINE + GZ_LINE);
  t.deepEqual(await pfctl.calls(), []);
});

test('the exec method runs a command without a shell; file and msg paths are taken from spamd.conf\'s directory', async (t) => {
  const r = await dryRun(t, [
    'all:cmd:spare:',
    'cmd:black:msg=message.txt:method=exec:file=./list.sh  script\t192.0.2.0:',
    'spare:white:file=white.txt:',
    '',
  ].join('\n'), {
    '!list.sh': '#!/bin/sh\necho "# from $1"\necho "$2/24"\necho \'$HOME\'\n',
    'message.txt': 'Go away, %A: "blocked"\nBye\n',
    'white.txt': '192.0.2.1\n',
  });
  t.is(r.stderr, 'pfgrey setup: list cmd line 3: skipped "$HOME": not an IPv4 address, range or CIDR block\n');
  t.is(r.code, 0);
  t.is(r.stdout, 'cmd;"Go away, %A: \\"blocked\\"\\nBye\\n";inet;8;192.0.2.0/32;192.0.2.2/31;192.0.2.4/30;' +
    '192.0.2.8/29;192.0.2.16/28;192.0.2.32/27;192.0.2.64/26;192.0.2.128/25\n');
});

test('a command that fails is a failed fetch', async (t) => {
  const r = await dryRun(t, 'all:a:b:\na:black:msg="m":method=exec:file=./bad.sh:\nb:black:msg="m":method=exec:file=/nonexistent/cmd x:\n', {
    '!bad.sh': '#!/bin/sh\necho 10.0.0.0/8\necho "no route" >&2\nexit 3\n',
  });
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.is(r.stderr, [
    'pfgrey setup: list a: Can\'t open ./bad.sh by exec method: ./bad.sh: exited with status 3: no route; not sent, spamd keeps its previous list',
    'pfgrey setup: list b: Can\'t open /nonexistent/cmd x by exec method: cannot run /nonexistent/cmd: no such file or directory (ENOENT); not sent, spamd keeps its previous list',
    '',
  ].join('\n'));
});

test('malformed lines are reported, at most five per list, and skipped', async (t) => {
  const lines = ['10.0.0.0/8', ...Array.from({ length: 8 }, (_, i) => `junk ${i + 1} ${'x'.repeat(i === 0 ? 80 : 0)}`), '; a DROP-style comment', '2001:db8::/32', '10.1.2.3/40', '9.9.9.9 - 9.9.9.1'];
  const r = await dryRun(t, 'all:a:\na:black:msg="m":file=list.txt:\n', { 'list.txt': `${lines.join('\n')}\n` });
  t.is(r.code, 0);
  t.is(r.stdout, 'a;"m";inet;1;10.0.0.0/8\n');
  t.is(r.stderr, [
    `pfgrey setup: list a line 2: skipped "junk 1 ${'x'.repeat(53)}…": not an IPv4 address, range or CIDR block`,
    'pfgrey setup: list a line 3: skipped "junk 2 ": not an IPv4 address, range or CIDR block',
    'pfgrey setup: list a line 4: skipped "junk 3 ": not an IPv4 address, range or CIDR block',
    'pfgrey setup: list a line 5: skipped "junk 4 ": not an IPv4 address, range or CIDR block',
    'pfgrey setup: list a line 6: skipped "junk 5 ": not an IPv4 address, range or CIDR block',
    'pfgrey setup: list a: 6 more malformed lines skipped',
    '',
  ].join('\n'));
});

test('the stock spamd.conf\'s nixspam message reaches the wire as spamd-setup sends it', async (t) => {
  const stock = await fs.readFile(path.join(FIXTURES, 'spamd.conf'), 'latin1');
  const local = stock.replace(':method=https:', ':method=file:').replace('www.openbsd.org/spamd/nixspam.gz', 'nixspam.gz');
  const r = await dryRun(t, local, { 'nixspam.gz': gzipSync('198.51.100.0/24\n203.0.113.9\n') });
  t.deepEqual(r, {
    code: 0, stderr: '',
    stdout: 'nixspam;"Your address %A is in the nixspam list\\n\tSee http://www.heise.de/ix/nixspam/dnsbl_en/ for details"' +
      ';inet;2;198.51.100.0/24;203.0.113.9/32\n',
  });
});

/** The spamd.conf this package ships for /etc/mail. */
const SAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../etc/mail/spamd.conf');

/** `conf` with every list read from a file of its own name in spamd.conf's directory: nothing is fetched. */
function localLists(conf: string): string {
  return conf.replace(/:method=(?:https?|ftp):/g, ':method=file:').replace(/:file=[^:\n]*\/([^/:\n]+):/g, ':file=$1:');
}

/** A DROP list as Spamhaus publishes it (`;` comments, `; SBL…` after each block), with documentation addresses. */
const DROP = '; Spamhaus DROP List 2024/06/01 - (c) 2024 The Spamhaus Project SLU\n; Last-Modified: Sat, 01 Jun 2024 00:00:00 GMT\n' +
  '198.51.100.0/24 ; SBL000001\n203.0.113.0/25 ; SBL000002\n';

test('the shipped spamd.conf parses, and its list reaches the wire as pfgrey setup sends it', async (t) => {
  const lists = await readSpamdConf(SAMPLE);
  t.deepEqual(lists.map((l) => [l.name, l.kind, l.method, l.file]), [['spamhaus-drop', 'black', 'https', 'www.spamhaus.org/drop/drop.txt']]);
  const r = await dryRun(t, localLists(await fs.readFile(SAMPLE, 'latin1')), { 'drop.txt': DROP });
  t.deepEqual(r, {
    code: 0, stderr: '',
    stdout: 'spamhaus-drop;"Your address %A is in the Spamhaus DROP list\\n\tSee https://www.spamhaus.org/drop/ for details"' +
      ';inet;2;198.51.100.0/24;203.0.113.0/25\n',
  });
});

test('the commented lists of the shipped spamd.conf work once uncommented and named in "all"', async (t) => {
  let conf = (await fs.readFile(SAMPLE, 'latin1')).replace(/^#(?=\S)/gm, '');
  const names = [...conf.matchAll(/^([A-Za-z][\w-]*):\\$/gm)].map((m) => m[1]!).filter((n) => n !== 'all');
  t.deepEqual(names, ['spamhaus-drop', 'blocklist-de-mail', 'local', 'override']);
  conf = conf.replace(/^all:\\\n\t:spamhaus-drop:$/m, `all:${names.join(':')}:`);
  const r = await dryRun(t, localLists(conf), {
    'drop.txt': DROP,
    'mail.txt': '192.0.2.1\n2001:db8::1\n',
    'spamd.local': '192.0.2.128/25\n',
    'spamd.override': '192.0.2.129\n',
  });
  t.is(r.code, 0, r.stderr);
  // As the file says: blocklist.de's IPv6 addresses are reported as malformed lines.
  t.regex(r.stderr, /^pfgrey setup: list blocklist-de-mail line 2: skipped "2001:db8::1": /);
  t.deepEqual(r.stdout.split('\n').map((l) => l.replace(/;".*";/, ';')), [
    'spamhaus-drop;inet;2;198.51.100.0/24;203.0.113.0/25',
    'blocklist-de-mail;inet;1;192.0.2.1/32',
    'local;inet;7;192.0.2.128/32;192.0.2.130/31;192.0.2.132/30;192.0.2.136/29;192.0.2.144/28;192.0.2.160/27;192.0.2.192/26',
    '',
  ]);
});

const DRY_RUNS: Array<[string, string, Record<string, string | Buffer>, { code: number; stdout: string; stderr: string }]> = [
  ['a blacklist its whitelist empties is cleared; one with no addresses is not sent',
    'all:a:w:e:\na:black:msg="m":file=black.txt:\nw:white:file=black.txt:\ne:black:msg="m":file=empty.txt:\n',
    { 'black.txt': '192.0.2.0/24\n', 'empty.txt': '# nothing listed today\n' },
    { code: 1, stdout: 'a;\n', stderr: 'pfgrey setup: list e: no addresses in it; not sent, spamd keeps its previous list\n' }],
  ['a blacklist of every address is refused, one starting at 0.0.0.0 is sent',
    'all:every:zero:\nevery:black:msg="m":file=all.txt:\nzero:black:msg="m":file=zero.txt:\n',
    { 'all.txt': '0.0.0.0/1\n128.0.0.0/1\n', 'zero.txt': '0.0.0.0/8\n' },
    { code: 1, stdout: 'zero;"m";inet;1;0.0.0.0/8\n',
      stderr: 'pfgrey setup: list every: covers every IPv4 address (0.0.0.0/0), which spamd refuses; not sent\n' }],
  ['gzip\'d files are inflated, and corrupt gzip data is a failed fetch',
    'all:good:bad:\ngood:black:msg="m":file=good.gz:\nbad:black:msg="m":file=bad.gz:\n',
    { 'good.gz': gzipSync('192.0.2.0/24\n'), 'bad.gz': gzipSync('192.0.2.0/24\n').subarray(0, 15) },
    { code: 1, stdout: 'good;"m";inet;1;192.0.2.0/24\n',
      stderr: 'pfgrey setup: list bad: Can\'t open bad.gz by file method: bad gzip data (unexpected end of file); ' +
        'not sent, spamd keeps its previous list\n' }],
];

for (const [title, conf, files, expected] of DRY_RUNS) {
  test(title, async (t) => {
    t.deepEqual(await dryRun(t, conf, files), expected);
  });
}

test('pf table input takes CIDR blocks only when asked to', (t) => {
  t.is(tableLines(['192.0.2.0/24', '2001:db8::/32', '192.0.2.7'], { cidr: true }), '192.0.2.0/24\n2001:db8::/32\n192.0.2.7/32\n');
  for (const bad of ['192.0.2.0/33', '2001:db8::/129', '192.0.2.0/', '192.0.2.0/8/8', 'x/8', '192.0.2.0/ 8']) {
    t.throws(() => tableLines([bad], { cidr: true }), undefined, bad);
  }
  t.throws(() => tableLines(['192.0.2.0/24']));
});

test('the ftp method needs /usr/bin/ftp and says so when it is missing', async (t) => {
  if (existsSync('/usr/bin/ftp')) {
    t.pass('ftp is installed here');
    return;
  }
  const r = await dryRun(t, 'all:a:\na:black:msg="m":method=ftp:file=ftp.example.org/list:\n');
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey setup: list a: Can\'t open ftp://ftp.example.org/list by ftp method: the ftp method needs ' +
    '/usr/bin/ftp, which is not installed here (http and https work without it); not sent, spamd keeps its previous list\n');
});

test('no daemon on the config port is one line and exit status 1', async (t) => {
  const web = await webServer(t);
  const { file } = await writeConfig(t, config(web));
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const r = await setup(['--config', file, '--config-port', String(port)]);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey setup: Can't connect to spamd on port ${port}: connection refused (ECONNREFUSED)\n`);
});

test('with --wait-for-daemon, a refused config port is retried until the daemon listens', async (t) => {
  const web = await webServer(t);
  const { file } = await writeConfig(t, config(web, ['plain']));
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  // The daemon comes up a second after setup started, as after an rc.d start.
  const received: string[] = [];
  const late = net.createServer((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      received.push(Buffer.concat(chunks).toString('latin1'));
      s.end();
    });
    s.on('error', () => {});
  });
  t.teardown(() => new Promise<void>((r) => late.close(() => r())));
  const timer = setTimeout(() => late.listen(port, '127.0.0.1'), 1000);
  t.teardown(() => clearTimeout(timer));
  const r = await setup(['--config', file, '--config-port', String(port), '--wait-for-daemon', '20']);
  t.deepEqual(r, { code: 0, stdout: '', stderr: '' });
  t.is(received.length, 1);
  t.regex(received[0]!, /^plain;"Your address %A is in plain/);
});

test('a missing or broken spamd.conf is one clear line', async (t) => {
  const missing = await runCli(['setup', '--config', '/nonexistent/spamd.conf']);
  t.deepEqual([missing.code, missing.stdout, missing.stderr], [1, '', 'pfgrey setup: cannot read /nonexistent/spamd.conf: no such file\n']);
  const { file } = await writeConfig(t, 'all:a:\n\na:black:file=/x:\n');
  const broken = await setup(['--config', file]);
  t.deepEqual(broken, { code: 1, stdout: '', stderr: `pfgrey setup: ${file}:3: No msg for blacklist "a"\n` });
  await fs.writeFile(file, 'all:a:\na:black:msg=nomsg.txt:file=/x:\n');
  const noMessage = await setup(['--config', file]);
  t.is(noMessage.stderr, `pfgrey setup: ${file}:2: Can't open message from nomsg.txt: no such file or directory (ENOENT)\n`);
});

test('bad arguments print the usage', async (t) => {
  const extra = await setup(['now']);
  t.deepEqual(extra, { code: 1, stdout: '', stderr: `pfgrey setup: unexpected argument "now"\n${SETUP_USAGE}\n` });
  t.true(SETUP_USAGE.startsWith('usage: pfgrey setup [-bDdn] [--config file] [--config-port port] [--firewall auto|pf|nft|none]\n'));
  const unknown = await setup(['-x']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^pfgrey setup: unknown option -x\nusage: pfgrey setup/);
  const help = await setup(['-h']);
  t.deepEqual(help, { code: 0, stdout: helpText('setup', SETUP_USAGE), stderr: '' });
  const port = await setup(['--config-port', '70000']);
  t.deepEqual([port.code, port.stderr], [1, 'pfgrey setup: --config-port 70000: too large (maximum 65535)\n']);
  const firewall = await setup(['--firewall', 'ipfw']);
  t.deepEqual([firewall.code, firewall.stderr], [1, `pfgrey setup: --firewall ipfw: expected auto, pf, nft or none\n${SETUP_USAGE}\n`]);
  const table = await setup(['--nft-table', 'pfgrey']);
  t.is(table.code, 1);
  t.true(table.stderr.startsWith('pfgrey setup: --nft-table pfgrey: expected FAMILY NAME'), table.stderr);
});

test('-D returns at once and sends the lists from the background', async (t) => {
  const web = await webServer(t);
  const daemon = await configPortStandIn(t);
  const { file } = await writeConfig(t, config(web));
  const r = await runCli(['setup', '-D', '--config', file, '--config-port', String(daemon.port)]);
  t.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
  await eventually(() => daemon.received.length === 2, 'both lists');
  t.deepEqual(daemon.received.map((c) => c.text), [PLAIN_LINE, GZ_LINE]);
});

test('-D reports a broken spamd.conf before going to the background', async (t) => {
  const { file } = await writeConfig(t, 'nothing:\n');
  const r = await runCli(['setup', '-D', '--config', file]);
  t.deepEqual([r.code, r.stderr], [1, `pfgrey setup: ${file}: Can't find "all" in spamd config\n`]);
});

test('the daemon takes the lists and then blacklists their addresses', async (t) => {
  const web = await webServer(t);
  const { daemon } = await testDaemon(t);
  const { file } = await writeConfig(t, config(web));
  const r = await setup(['--config', file, '--config-port', String(daemon.configAddress.port)]);
  t.deepEqual(r, { code: 0, stdout: '', stderr: '' });
  t.deepEqual(daemon.lists.lookup('192.0.2.5'), {
    tags: ['plain'], messages: ['"Your address %A is in plain\\n\tSee http://example.org/ for details"'],
  });
  t.is(daemon.lists.lookup('192.0.2.129'), undefined, 'whitelisted');
  t.deepEqual(daemon.lists.lookup('192.0.2.200')?.tags, ['gz']);
  t.deepEqual(daemon.lists.lookup('10.9.8.7')?.tags, ['gz']);
});

// --- under a terminal -------------------------------------------------------------------------

function runInTerminal(args: string[]): Promise<{ exitCode: number; output: string }> {
  return new Promise((resolve) => {
    const term = pty.spawn(process.execPath, [CLI, ...args], {
      name: 'xterm', cols: 200, rows: 40, env: { ...process.env } as Record<string, string>,
    });
    let output = '';
    term.onData((d) => (output += d));
    term.onExit(({ exitCode }) => resolve({ exitCode, output }));
  });
}

test('on a terminal each list shows its progress; through a pipe nothing but the result', async (t) => {
  const web = await webServer(t);
  const { file } = await writeConfig(t, config(web));
  const tty = await runInTerminal(['setup', '-n', '--config', file]);
  t.is(tty.exitCode, 0, tty.output);
  t.true(tty.output.includes(`\r\x1b[Kplain: ${PLAIN.length} bytes\r\n`), JSON.stringify(tty.output));
  t.true(tty.output.includes(`\r\x1b[Koverride: ${WHITE.length} bytes\r\n`), JSON.stringify(tty.output));
  t.true(tty.output.includes('\r\x1b[Kgz: '), JSON.stringify(tty.output));
  t.true(tty.output.includes(PLAIN_LINE.replace('\n', '\r\n')), 'the -n lines come out too');

  const piped = await runCli(['setup', '-n', '--config', file]);
  t.deepEqual([piped.code, piped.stdout, piped.stderr], [0, PLAIN_LINE + GZ_LINE, '']);
});

/** Runs `pfgrey setup` as nobody through setpriv (with `caps` as its capabilities) against a root daemon in this process. */
async function setupAsNobody(t: ExecutionContext, caps: string[]) {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, 'black.txt'), '192.0.2.0/24\n');
  const file = path.join(dir, 'spamd.conf');
  await fs.writeFile(file, `all:a:\na:black:msg="m":file=${path.join(dir, 'black.txt')}:\n`);
  const { daemon, log } = await testDaemon(t);
  // Asynchronously: the daemon answering it runs in this process.
  const r = await new Promise<{ status: number | null; stderr: string; error?: Error }>((resolve) => {
    execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...caps, process.execPath, CLI,
      'setup', '--config', file, '--config-port', String(daemon.configAddress.port)], { encoding: 'utf8' },
    (error, _stdout, stderr) => resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr,
      ...(error && typeof error.code !== 'number' ? { error } : {}) }));
  });
  return { r, daemon, log };
}

test('run as another user against a daemon running as root, pfgrey setup is refused and says why', async (t) => {
  if (process.getuid?.() !== 0) {
    lacking(t, 'not root: the reserved-port rule applies only to a daemon that can bind reserved ports');
    return;
  }
  const { r, daemon, log } = await setupAsNobody(t, []);
  if (r.error) {
    lacking(t, `setpriv is not available (${r.error.message})`);
    return;
  }
  t.is(r.status, 1, r.stderr);
  t.regex(r.stderr, /Can't connect to spamd on port \d+: .*reserved source port.*run pfgrey setup as root or with CAP_NET_BIND_SERVICE/);
  t.true(log.lines.some((l) => l.includes('refused: source port is not reserved')));
  t.is(daemon.lists.lookup('192.0.2.1'), undefined, 'nothing was taken');
});

test('run as another user with CAP_NET_BIND_SERVICE, as pfgrey-setup.service runs it, pfgrey setup sends from a reserved port and is heard', async (t) => {
  if (process.getuid?.() !== 0) {
    lacking(t, 'not root: cannot hand another user a capability');
    return;
  }
  const { r, daemon } = await setupAsNobody(t, ['--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service']);
  if (r.error) {
    lacking(t, `setpriv is not available (${r.error.message})`);
    return;
  }
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, '');
  await eventually(() => daemon.lists.lookup('192.0.2.1') !== undefined, 'the daemon took the list');
});
