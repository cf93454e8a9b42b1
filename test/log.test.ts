import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createLogger, createSyslogLogger } from '../src/log.js';
import { tempDir } from './helpers/daemon.js';
import { eventually } from './helpers/smtp.js';

test('foreground lines look like syslog\'s and respect the level', (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => lines.push(l) });
  log.info('127.0.0.1: connected (1/0)');
  log.debug('not shown');
  t.deepEqual(lines, [`pfgrey[${process.pid}]: 127.0.0.1: connected (1/0)\n`]);
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
