import test from 'ava';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isPfgreyError, PfgreyError } from '../src/errors.js';
import { executableProblem, runProgram } from '../src/exec.js';
import { tempDir } from './helpers/daemon.js';

async function script(dir: string, name: string, body: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

test('arguments reach the program as they are, never through a shell', async (t) => {
  const dir = await tempDir(t);
  const echo = await script(dir, 'args', 'for a in "$@"; do printf "%s\\n" "$a"; done');
  const out = await runProgram({ file: echo, args: ['$(touch pwned)', 'a b', ';', '*'], cwd: dir });
  t.is(out, '$(touch pwned)\na b\n;\n*\n');
  await t.throwsAsync(readFile(join(dir, 'pwned')), { code: 'ENOENT' });
});

test('stdin gets the input text and is closed after it', async (t) => {
  const dir = await tempDir(t);
  const cat = await script(dir, 'cat', 'cat');
  t.is(await runProgram({ file: cat, args: [], input: 'one\ntwo\n' }), 'one\ntwo\n');
});

test('a failure is one line naming the command, its status and the first lines of stderr', async (t) => {
  const dir = await tempDir(t);
  const fail = await script(dir, 'fail', 'printf "first\\n\\nsecond\\nthird\\nfourth\\n" >&2; exit 4');
  const err = await t.throwsAsync(runProgram({ file: fail, args: ['-x'] }), { instanceOf: PfgreyError });
  t.is(err?.code, 'E_COMMAND');
  t.is(err?.message, `${fail} -x: exited with status 4: first; second; third; …`);
});

test('a program that cannot be started is reported as cannot run, with the caller\'s code', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'missing');
  const err = await t.throwsAsync(runProgram({ file: missing, args: [], code: 'E_FETCH' }));
  t.true(isPfgreyError(err) && err.code === 'E_FETCH');
  t.is(err?.message, `cannot run ${missing}: no such file or directory (ENOENT)`);
});

test('a program past its deadline gets SIGTERM, and the promise settles as soon as it exits', async (t) => {
  const dir = await tempDir(t);
  const hang = await script(dir, 'hang', `trap 'echo TERM > "${dir}/got"; exit 0' TERM\nwhile :; do sleep 0.05; done`);
  const started = Date.now();
  const err = await t.throwsAsync(runProgram({ file: hang, args: [], what: 'hang', timeout: 300, killGrace: 60_000 }));
  t.true(isPfgreyError(err) && err.code === 'E_COMMAND_TIMEOUT');
  t.is(err?.message, 'hang: no answer after 300ms; killed it');
  t.is(await readFile(join(dir, 'got'), 'utf8'), 'TERM\n');
  t.true(Date.now() - started < 30_000, 'settled on exit, not after the grace');
});

test('a program that ignores SIGTERM is killed with SIGKILL after the grace', async (t) => {
  const dir = await tempDir(t);
  const stubborn = await script(dir, 'stubborn', `trap 'echo TERM > "${dir}/got"' TERM\nwhile :; do sleep 0.05; done`);
  const started = Date.now();
  const err = await t.throwsAsync(runProgram({ file: stubborn, args: [], what: 'stubborn', timeout: 200, killGrace: 500 }));
  t.true(isPfgreyError(err) && err.code === 'E_COMMAND_TIMEOUT');
  t.is(err?.message, 'stubborn: no answer after 200ms; killed it');
  t.true(Date.now() - started >= 700, 'waited out the grace');
  t.is(await readFile(join(dir, 'got'), 'utf8'), 'TERM\n', 'SIGTERM came first');
});

test('with idle, a program that keeps writing outlives the deadline, and one that falls silent does not', async (t) => {
  const dir = await tempDir(t);
  const chatty = await script(dir, 'chatty', 'for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.4; done');
  const chunks: string[] = [];
  const out = await runProgram({ file: chatty, args: [], timeout: 2000, idle: true, onStdout: (c) => chunks.push(c.toString()) });
  t.is(out, '', 'stdout went to onStdout');
  t.is(chunks.join(''), '1\n2\n3\n4\n5\n6\n7\n8\n');

  const silent = await script(dir, 'silent', 'echo hello; exec sleep 1000');
  const err = await t.throwsAsync(runProgram({ file: silent, args: [], what: 'silent', timeout: 300, idle: true, onStdout: () => {} }));
  t.is(err?.message, 'silent: sent nothing for 300ms; killed it');
});

test('an error thrown by onStdout stops the program and is what the caller gets', async (t) => {
  const dir = await tempDir(t);
  const endless = await script(dir, 'endless', 'while :; do echo data; done');
  const tooMuch = new PfgreyError('E_FETCH', 'list x: larger than 10 bytes');
  let seen = 0;
  const err = await t.throwsAsync(runProgram({
    file: endless, args: [], onStdout: (c) => {
      seen += c.length;
      if (seen > 10) throw tooMuch;
    },
  }));
  t.is(err, tooMuch);
});

test('executableProblem names the path and says what is wrong with it', async (t) => {
  const dir = await tempDir(t);
  const ok = await script(dir, 'ok', 'exit 0');
  const plain = join(dir, 'plain');
  await writeFile(plain, '');
  await chmod(plain, 0o644);
  const sub = join(dir, 'sub');
  await mkdir(sub);
  t.is(await executableProblem(ok), undefined);
  t.is(await executableProblem(join(dir, 'none')), `${join(dir, 'none')} does not exist`);
  t.is(await executableProblem(join(plain, 'x')), `${join(plain, 'x')} does not exist`);
  t.is(await executableProblem(sub), `${sub} is not a file`);
  t.is(await executableProblem(plain), `${plain} is not executable`);
});
