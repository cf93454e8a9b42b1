import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { coalesced, commandLogger, createLogger, createSyslogLogger, logSafe } from '../src/log.js';
import { tempDir } from './helpers/daemon.js';
import { eventually } from './helpers/smtp.js';

test('foreground lines look like syslog\'s and respect the level', (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => lines.push(l) });
  log.info('127.0.0.1: connected (1/0)');
  log.debug('not shown');
  t.deepEqual(lines, [`pfgrey[${process.pid}]: 127.0.0.1: connected (1/0)\n`]);
});

test('control bytes from clients are written as \\xHH, so a message is one line and cannot drive a terminal', (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => lines.push(l) });
  log.info('127.0.0.1: Subject: a\rforged\x1b[2J\x7f\tend');
  t.deepEqual(lines, [`pfgrey[${process.pid}]: 127.0.0.1: Subject: a\\x0dforged\\x1b[2J\\x7f\tend\n`]);
  t.is(logSafe('two\nlines'), 'two lines', 'a line break in one of our own messages becomes a space');
  t.is(logSafe('héllo wörld'), 'héllo wörld', '8-bit text is left alone');
  t.is(logSafe('a\x9b2Jb\x85c'), 'a\\x9b2Jb\\x85c', 'but not the 8-bit control codes (CSI, NEL)');
});

test('where logger(1) cannot be run, lines go to stderr after one line saying so, none lost', async (t) => {
  const dir = await tempDir(t);
  const lines: string[] = [];
  const log = createSyslogLogger({ ident: 'pfgrey', level: 'info', logger: path.join(dir, 'no-logger'), fallback: (l) => lines.push(l) });
  log.error('first');
  await eventually(() => lines.length >= 2, 'the fallback');
  log.info('second');
  t.deepEqual(lines.map((l) => l.replace(/^pfgrey\[\d+\]: /, '')), [
    `cannot run ${path.join(dir, 'no-logger')} to log to syslog (no such file or directory (ENOENT)); logging to stderr\n`,
    'first\n',
    'second\n',
  ]);
});

test('background lines go to syslog, facility daemon, through logger(1), one process per priority', async (t) => {
  const dir = await tempDir(t);
  const stand = path.join(dir, 'logger');
  // Records its arguments and every line it is fed, one file per priority.
  await fs.writeFile(stand, `#!/bin/sh\nf="${dir}/$(echo "$4" | tr . _)"\necho "$*" > "$f.args"\ncat >> "$f.lines"\n`, { mode: 0o755 });
  const log = createSyslogLogger({ ident: 'pfgrey', level: 'info', logger: stand });
  log.info('listening');
  log.info('second\nline');
  log.error('scan failed');
  log.debug('hidden');
  log.close();
  await eventually(async () => {
    try {
      return (await fs.readFile(path.join(dir, 'daemon_info.lines'), 'utf8')) === 'listening\nsecond line\n' &&
        (await fs.readFile(path.join(dir, 'daemon_err.lines'), 'utf8')) === 'scan failed\n';
    } catch {
      return false;
    }
  }, 'lines at logger');
  t.is((await fs.readFile(path.join(dir, 'daemon_info.args'), 'utf8')).trim(), '-t pfgrey -p daemon.info');
  await t.throwsAsync(fs.access(path.join(dir, 'daemon_debug.lines')));
});

test('commands log to stderr with -d or on a terminal, and to syslog in the background', async (t) => {
  const lines: string[] = [];
  const pipe = { write: (l: string) => lines.push(l), isTTY: false } as unknown as NodeJS.WritableStream;
  const tty = { write: (l: string) => lines.push(l), isTTY: true } as unknown as NodeJS.WritableStream;
  commandLogger({ target: 'auto', debug: true, ident: 'pfgrey', stderr: pipe }).info('a');
  commandLogger({ target: 'auto', debug: false, ident: 'pfgrey', stderr: tty }).info('b');
  commandLogger({ target: 'stderr', debug: false, ident: 'pfgrey', stderr: pipe }).info('c');
  // Lines written by one piece of work are written out together as it ends.
  await Promise.resolve();
  t.deepEqual(lines.map((l) => l.split(': ')[1]), ['a\n', 'b\n', 'c\n']);
  const background = commandLogger({ target: 'auto', debug: false, ident: 'pfgrey', stderr: pipe }) as ReturnType<typeof createSyslogLogger>;
  t.is(typeof background.close, 'function', 'a syslog logger');
  background.close();
});

test('a coalesced writer writes the lines of one piece of work at once, in order, before the work it sets off', async (t) => {
  const writes: string[] = [];
  const write = coalesced((text) => writes.push(text));
  write('a\n');
  write('b\n');
  t.deepEqual(writes, [], 'nothing before the work ends');
  await Promise.resolve();
  t.deepEqual(writes, ['a\nb\n'], 'written before a reaction queued after the lines');
  write('c\n');
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(writes, ['a\nb\n', 'c\n']);
});
