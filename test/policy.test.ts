// pfgrey policy as Postfix and Exim use it: requests over a socket (one connection reused for
// many), a half-closed connection answered and then ended (Exim's readsocket), spawn(8)'s
// stdin/stdout, and the fail-safe DUNNO for whatever cannot be greylisted.

import test from 'ava';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { CLI, runCli } from './helpers/cli.js';
import { ask, startPolicy } from './helpers/policy.js';
import { tempDir } from './helpers/daemon.js';
import { eventually } from './helpers/wait.js';

const request = (to = 'b@us.example', state = 'RCPT') =>
  `request=smtpd_access_policy\nprotocol_state=${state}\nprotocol_name=ESMTP\nclient_address=192.0.2.1\n` +
  `client_name=mx.example\nhelo_name=mx.example\nsender=a@example.org\nrecipient=${to}\n\n`;

test('a new tuple is deferred with the seconds left, its retry after the delay passes with DUNNO, on one reused connection', async (t) => {
  const dir = await tempDir(t);
  const { port } = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--delay', '1s']);
  const first = await ask(port, [request(), request()]);
  t.deepEqual(first.answers, ['action=DEFER_IF_PERMIT Greylisted by pfgrey, try again in 1 seconds', 'action=DEFER_IF_PERMIT Greylisted by pfgrey, try again in 1 seconds']);
  await new Promise((r) => setTimeout(r, 1200)); // the delay, on purpose
  const retry = await ask(port, [request()]);
  t.deepEqual(retry.answers, ['action=DUNNO']);
  // pfgrey db lists the triplet as postgrey keys it: the client's /24, sender, recipient.
  const listed = await runCli(['db', '--db', path.join(dir, 'p.db')]);
  t.regex(listed.stdout, /^POLICY\|192\.0\.2\.0\/a@example\.org\/b@us\.example\|\d+\|\d+\|\d+\|3\|1$/m);
});

test('a client that half-closes gets its answer and then EOF, as Exim\'s readsocket waits for', async (t) => {
  const dir = await tempDir(t);
  const { port } = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--greylist-text', 'wait %s s for %r']);
  // Exim's request may lack the final empty line: the end of input ends it.
  const { answers, ended } = await ask(port, [request('x@dom.example').replace(/\n\n$/, '\n')], true);
  t.deepEqual(answers, ['action=DEFER_IF_PERMIT wait 300 s for dom.example']);
  t.true(ended);
});

test('requests that cannot be greylisted get DUNNO, and junk lines are ignored and said once', async (t) => {
  const dir = await tempDir(t);
  const { port, stderr } = await startPolicy(t, ['--db', path.join(dir, 'p.db')]);
  const { answers } = await ask(port, ['request=junk\n\n', request('b@us.example', 'DATA'), `garbage\nmore garbage\n${request()}`]);
  t.deepEqual(answers.slice(0, 2), ['action=DUNNO', 'action=DUNNO']);
  t.regex(answers[2]!, /^action=DEFER_IF_PERMIT /);
  await eventually(() => stderr().includes('policy client sent 2 lines without "="'), 'the junk noted');
  t.is(stderr().split('lines without').length, 2, 'said once for the connection');
});

test('--no-reuse closes after each answer', async (t) => {
  const dir = await tempDir(t);
  const { port } = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--no-reuse']);
  const s = net.connect({ port, host: '127.0.0.1' });
  let text = '';
  let ended = false;
  s.setEncoding('latin1').on('data', (d: string) => (text += d)).on('end', () => (ended = true));
  s.write(request() + request('c@us.example'));
  await eventually(() => ended, 'the server closing');
  s.destroy();
  t.is(text.split('\n\n').filter((a) => a !== '').length, 1);
});

test('under spawn (--stdio) requests come on stdin, answers go to stdout, and EOF ends the process with 0', async (t) => {
  const dir = await tempDir(t);
  const child = spawn(process.execPath, [CLI, 'policy', '--stdio', '--log', 'stderr', '--db', path.join(dir, 'p.db')], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('latin1').on('data', (d: string) => (out += d));
  child.stderr.resume();
  child.stdin.end(request() + request('c@us.example'));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.is(code, 0);
  t.deepEqual(out.split('\n\n').filter((a) => a !== '').map((a) => a.split(' ')[0]), ['action=DEFER_IF_PERMIT', 'action=DEFER_IF_PERMIT']);
});

test('a bad --inet is one clear error', async (t) => {
  const r = await runCli(['policy', '--inet', 'nonsense', '--db', '/nonexistent/p.db']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^pfgrey policy: --inet nonsense: expected \[host:\]port$/m);
});

test('a client that sends requests and never reads its answers is not read further: the queue stays bounded', async (t) => {
  const { PassThrough, Writable } = await import('node:stream');
  const { PolicyServer } = await import('../src/policy/server.js');
  const { memoryLogger } = await import('../src/log.js');
  let asked = 0;
  const core = { handle: async () => (asked++, { kind: 'greylisted', key: 'k', left: 1000 }) } as never;
  const server = new PolicyServer({
    core, log: memoryLogger(), greylistAction: 'DEFER_IF_PERMIT', greylistText: 'x', noReuse: false,
    keys: (q) => ({ triplet: `${q.ip}/${q.sender}/${q.recipient}`, client: q.ip }), privacy: false,
  });
  const input = new PassThrough();
  // A peer that takes one answer and then never reads again.
  const output = new Writable({ highWaterMark: 1, write: () => undefined });
  server.serve(input, output);
  for (let i = 0; i < 1000; i++) input.write(request(`r${i}@us.example`));
  await eventually(() => input.isPaused(), 'reading paused');
  await new Promise((r) => setImmediate(r));
  t.true(asked <= 2, `answered ${asked} while the peer did not read`);
  t.true(input.readableLength > 0, 'the rest is left unread in the stream');
});

test('pfgrey policy logs to syslog\'s mail facility; under spawn (--stdio) only answers are written, even when logger(1) cannot run', async (t) => {
  const dir = await tempDir(t);
  const { writeFile, readFile, mkdir } = await import('node:fs/promises');
  const withLogger = path.join(dir, 'bin');
  const without = path.join(dir, 'empty');
  await mkdir(withLogger);
  await mkdir(without);
  // A logger(1) stand-in: its arguments and lines, one file per facility.priority.
  await writeFile(path.join(withLogger, 'logger'), `#!/bin/sh\nf="${dir}/$(echo "$4" | /usr/bin/tr . _)"\necho "$*" > "$f.args"\n/bin/cat >> "$f.lines"\n`, { mode: 0o755 });
  const stdio = async (pathDirs: string) => {
    const child = spawn(process.execPath, [CLI, 'policy', '--stdio', '--db', path.join(dir, 'p.db')], {
      stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PATH: pathDirs },
    });
    t.teardown(() => child.kill('SIGKILL'));
    let out = '';
    let err = '';
    child.stdout.setEncoding('latin1').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('latin1').on('data', (d: string) => (err += d));
    child.stdin.end(request(`${path.basename(pathDirs)}@us.example`));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    return { code, out, err };
  };
  const logged = await stdio(withLogger);
  t.is(logged.code, 0);
  t.is(logged.err, '');
  t.regex(logged.out, /^action=DEFER_IF_PERMIT [^\n]*\n\n$/);
  await eventually(async () => (await readFile(path.join(dir, 'mail_info.lines'), 'utf8').catch(() => '')).includes('action=greylist'), 'a line at logger');
  t.is((await readFile(path.join(dir, 'mail_info.args'), 'utf8')).trim(), '-t pfgrey-policy -p mail.info');

  const silent = await stdio(without);
  t.deepEqual(silent, { code: 0, out: silent.out, err: '' });
  t.regex(silent.out, /^action=DEFER_IF_PERMIT [^\n]*\n\n$/);
});

test('several spawn processes (--stdio) at once share one database: every answer is right and every triplet is kept', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'shared.db');
  const PROCESSES = 4;
  const EACH = 25;
  const run = (n: number) => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, 'policy', '--stdio', '--log', 'stderr', '--db', db], { stdio: ['pipe', 'pipe', 'pipe'] });
    t.teardown(() => child.kill('SIGKILL'));
    let out = '';
    let err = '';
    child.stdout.setEncoding('latin1').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('latin1').on('data', (d: string) => (err += d));
    // Its own recipients, and one triplet every process asks about.
    child.stdin.end(Array.from({ length: EACH }, (_, i) => request(`p${n}-${i}@us.example`)).join('') + request('all@us.example'));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
  const results = await Promise.all(Array.from({ length: PROCESSES }, (_, n) => run(n)));
  for (const r of results) {
    t.is(r.code, 0, r.err);
    t.false(/error/i.test(r.err), r.err);
    const actions = r.out.split('\n\n').filter((a) => a !== '').map((a) => a.split(' ')[0]);
    t.deepEqual(actions, Array(EACH + 1).fill('action=DEFER_IF_PERMIT'));
  }
  const listed = await runCli(['db', '--db', db]);
  const policy = listed.stdout.split('\n').filter((l) => l.startsWith('POLICY|'));
  t.is(policy.length, PROCESSES * EACH + 1);
  // The shared triplet was asked once by each process: one entry, every request counted.
  const shared = policy.find((l) => l.includes('/all@us.example|'))!.split('|');
  t.is(shared[5], String(PROCESSES));
});
