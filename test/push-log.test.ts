// What the log says of firewall pushes: with -v every push, with how many addresses it added
// and removed and how long it took; the `none` backend's line once per change, not at every
// scan's re-assert of an unchanged table.

import test from 'ava';
import { PfgreyError } from '../src/errors.js';
import { noneFirewall } from '../src/firewall/none.js';
import { type PushReport, WhitelistSync } from '../src/firewall/sync.js';
import type { Firewall } from '../src/firewall/types.js';
import { memoryLogger, silentLogger } from '../src/log.js';
import { testDaemon } from './helpers/daemon.js';
import { eventually } from './helpers/wait.js';

const addrs = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `192.0.2.${from + i}`);
const withoutTime = (line: string) => line.replace(/, [\d.]+ ms$/, ', N ms');

test('with -v every firewall push is logged: a replace, then a diff with how many it added and removed, and how long each took', async (t) => {
  const log = memoryLogger();
  const pushes: PushReport[] = [];
  const sync = new WhitelistSync({ firewall: noneFirewall(silentLogger), table: 'spamd-white', log, verbose: true, onPush: (p) => pushes.push(p) });
  sync.update(addrs(20));
  await sync.flush();
  sync.change(['198.51.100.1'], ['192.0.2.1']);
  await sync.flush();
  const lines = log.lines.filter((l) => l.includes('firewall:')).map(withoutTime);
  t.deepEqual(lines, [
    'info: firewall: table <spamd-white> replaced (contents were unknown): 20 addresses, N ms',
    'info: firewall: table <spamd-white> updated (added 1, removed 1): 20 addresses, N ms',
  ]);
  t.like(pushes[0], { kind: 'replace', size: 20 });
  t.like(pushes[1], { kind: 'diff', added: 1, removed: 1, size: 20 });
  t.true(pushes.every((p) => p.seconds >= 0 && p.error === undefined));
});

test('without -v the push lines are debug lines', async (t) => {
  const log = memoryLogger();
  const sync = new WhitelistSync({ firewall: noneFirewall(silentLogger), table: 'spamd-white', log });
  sync.update(addrs(2));
  await sync.flush();
  t.true(log.lines.some((l) => l.startsWith('debug: firewall: table <spamd-white> replaced')));
  t.false(log.lines.some((l) => l.startsWith('info: firewall: table')));
});

test('a failed push is reported with its error and how long it took, and the push after it replaces the table', async (t) => {
  let fail = true;
  const none = noneFirewall(silentLogger);
  const flaky: Firewall = {
    ...none,
    name: 'none',
    replace: async (table, list) => {
      if (fail) throw new PfgreyError('E_FIREWALL', 'pfctl: exit status 1: pfctl: Table does not exist.');
      return none.replace(table, list);
    },
  };
  const pushes: PushReport[] = [];
  const sync = new WhitelistSync({ firewall: flaky, table: 'spamd-white', log: memoryLogger(), retryMin: 10, retryMax: 10, onPush: (p) => pushes.push(p) });
  t.teardown(() => sync.stop());
  sync.update(addrs(3));
  await sync.flush();
  t.like(pushes[0], { kind: 'replace', error: 'pfctl: exit status 1: pfctl: Table does not exist.' });
  fail = false;
  await eventually(() => pushes.length >= 2, 'the retry');
  t.like(pushes[1], { kind: 'replace', size: 3, error: undefined });
});

test('the none firewall says its line once per change, not at every re-assert of an unchanged table', async (t) => {
  const log = memoryLogger();
  const fw = noneFirewall(log);
  await fw.replace('spamd-white', addrs(3));
  await fw.replace('spamd-white', addrs(3).reverse());
  await fw.add('spamd-white', ['192.0.2.1']);
  await fw.delete('spamd-white', ['198.51.100.9']);
  t.is(log.lines.length, 1, log.lines.join('\n'));
  await fw.add('spamd-white', ['192.0.2.1', '198.51.100.1']);
  t.is(log.lines.at(-1), 'info: firewall none: added 1 (198.51.100.1); table <spamd-white> would now hold 4 addresses: 192.0.2.1, 192.0.2.2, 192.0.2.3, 198.51.100.1');
  await fw.replace('spamd-white', []);
  t.is(log.lines.length, 3);
});

test('a daemon with --firewall none logs the table once while its scans re-assert an unchanged whitelist', async (t) => {
  const { daemon, log } = await testDaemon(t, ['--scan-interval', '50ms']);
  await eventually(() => daemon.activity.totals.pushes >= 4, 'four pushes');
  t.is(log.lines.filter((l) => l.includes('firewall none:')).length, 1, log.lines.join('\n'));
});
