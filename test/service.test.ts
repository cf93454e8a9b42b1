// The service lifecycle `pfgrey run` and `pfgrey logd` share (src/cli/service.ts), with a fake
// service in a child process: the signals go to it, not to the AVA worker.

import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runService } from '../src/cli/service.js';
import { PfgreyError } from '../src/errors.js';
import { eventually } from './helpers/smtp.js';

/** .build/test → .build/test/fixtures/service-child.js */
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'service-child.js');

interface Fake {
  child: ChildProcess;
  lines(): string[];
  /** Waits for a line equal to `line`. */
  sees(line: string): Promise<void>;
  exited: Promise<number | null>;
}

function fake(t: ExecutionContext, modes: string[]): Fake {
  const child = spawn(process.execPath, [CHILD], {
    env: { ...process.env, PFGREY_FAKE: modes.join(',') },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = () => err.split('\n').filter(Boolean);
  return {
    child,
    lines,
    exited,
    sees: async (line) => {
      await eventually(() => lines().includes(line), `the line "${line}" in:\n${err}`);
    },
  };
}

/** `later` comes after `earlier` in the output. */
function after(t: ExecutionContext, lines: string[], earlier: string, later: string): void {
  const a = lines.indexOf(earlier);
  const b = lines.indexOf(later);
  t.true(a >= 0 && b > a, `"${later}" after "${earlier}" in:\n${lines.join('\n')}`);
}

test('a start that fails ends with exit status 1 and its one-line message, and nothing is stopped', async (t) => {
  const f = fake(t, ['start-fails']);
  t.is(await f.exited, 1);
  t.true(f.lines().includes('start failed: cannot open /nowhere/pfgrey.db: no such directory'), f.lines().join('\n'));
  t.false(f.lines().includes('stopping'));
});

test('a start that fails leaves no signal or bug handler behind in the process', async (t) => {
  const before = ['SIGTERM', 'SIGINT', 'SIGHUP', 'uncaughtException'].map((e) => process.listenerCount(e));
  const failing = runService({
    start: async () => {
      throw new PfgreyError('E_DB_OPEN', 'cannot open x');
    },
    stop: async () => t.fail('stopped a service that never started'),
  }, { log: { error() {}, warning() {}, notice() {}, info() {}, debug() {} } });
  await t.throwsAsync(failing, { message: 'cannot open x' });
  t.deepEqual(['SIGTERM', 'SIGINT', 'SIGHUP', 'uncaughtException'].map((e) => process.listenerCount(e)), before);
});

test('SIGTERM stops the service, its writes committed, and the exit status is 0', async (t) => {
  const f = fake(t, []);
  await f.sees('started');
  f.child.kill('SIGTERM');
  t.is(await f.exited, 0, f.lines().join('\n'));
  const lines = f.lines();
  after(t, lines, 'notice: SIGTERM received, flushing and exiting', 'stopping');
  after(t, lines, 'stopping', 'stopped, writes committed');
});

test('SIGINT stops the service as SIGTERM does', async (t) => {
  const f = fake(t, []);
  await f.sees('started');
  f.child.kill('SIGINT');
  t.is(await f.exited, 0);
  t.true(f.lines().includes('notice: SIGINT received, flushing and exiting'));
});

test('a stop that loses writes is one shutdown line and exit status 1', async (t) => {
  const f = fake(t, ['stop-rejects']);
  await f.sees('started');
  f.child.kill('SIGTERM');
  t.is(await f.exited, 1);
  t.true(f.lines().includes('error: shutdown: test.db: 5 queued writes lost: database is locked'), f.lines().join('\n'));
});

test('a bug is one line with its place, the service is stopped with its writes committed, then exit status 70', async (t) => {
  const f = fake(t, ['bug']);
  t.is(await f.exited, 70);
  const lines = f.lines();
  const bug = lines.find((l) => l.startsWith('error: internal error: boom ('));
  t.truthy(bug, lines.join('\n'));
  after(t, lines, bug!, 'stopped, writes committed');
  t.false(lines.some((l) => /^\s+at /.test(l)), 'no stack trace');
});

test('a second SIGTERM during the stop calls the service\'s stop-now, and the stop\'s loss is said', async (t) => {
  const f = fake(t, ['stop-holds']);
  await f.sees('started');
  f.child.kill('SIGTERM');
  await f.sees('stopping');
  f.child.kill('SIGTERM');
  t.is(await f.exited, 1);
  const lines = f.lines();
  after(t, lines, 'notice: SIGTERM received again, giving up the writes not yet committed', 'stopNow');
  after(t, lines, 'stopNow', 'error: shutdown: test.db: 3 queued writes lost: given up');
});

test('SIGTERM during a start\'s wait ends the wait at once and exits 0 with nothing to stop', async (t) => {
  const f = fake(t, ['start-waits']);
  await f.sees('waiting');
  f.child.kill('SIGTERM');
  t.is(await f.exited, 0);
  t.false(f.lines().includes('stopping'));
  t.false(f.lines().includes('started'));
});

test('SIGTERM during a start that cannot be cut short stops the service once it is up', async (t) => {
  const f = fake(t, ['start-on-input']);
  await f.sees('waiting for input');
  f.child.kill('SIGTERM');
  await f.sees('notice: SIGTERM received, flushing and exiting');
  t.false(f.lines().includes('stopping'), 'no stop before the start is over');
  f.child.stdin!.end('go\n');
  t.is(await f.exited, 0);
  after(t, f.lines(), 'started', 'stopped, writes committed');
});

test('SIGHUP reloads a service that has a reload, also one asked for during the start', async (t) => {
  const f = fake(t, ['start-on-input', 'reload']);
  await f.sees('waiting for input');
  f.child.kill('SIGHUP');
  await f.sees('notice: SIGHUP received, reloading');
  t.false(f.lines().includes('reloaded'), 'not before the start is over');
  f.child.stdin!.end('go\n');
  await f.sees('reloaded');
  f.child.kill('SIGHUP');
  await eventually(() => f.lines().filter((l) => l === 'reloaded').length === 2, 'a second reload');
  f.child.kill('SIGTERM');
  t.is(await f.exited, 0);
});

test('SIGHUP to a service without a reload is logged and ignored, not the end of the process', async (t) => {
  const f = fake(t, []);
  await f.sees('started');
  f.child.kill('SIGHUP');
  await f.sees('info: SIGHUP received: nothing to reload');
  f.child.kill('SIGTERM');
  t.is(await f.exited, 0, 'still running until SIGTERM, which it handled');
});

test('a service that ends by itself is stopped and exits 0', async (t) => {
  const f = fake(t, ['ends']);
  t.is(await f.exited, 0);
  after(t, f.lines(), 'started', 'stopped, writes committed');
});
