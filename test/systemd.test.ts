import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRunArgs } from '../src/cli/run.js';
import { lacking } from './helpers/require.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const unit = path.join(root, 'rc.d/linux/pfgrey.service');

test('the systemd unit runs pfgrey with the flags the nftables ruleset names', async (t) => {
  const text = await fs.readFile(unit, 'utf8');
  const exec = /^ExecStart=pfgrey (run .*?) \$PFGREY_FLAGS$/m.exec(text);
  t.truthy(exec, 'an ExecStart line');
  const ruleset = await fs.readFile(path.join(root, 'pf/linux/pfgrey.nft'), 'utf8');
  const named = /pfgrey (run [^\n]*)/.exec(ruleset)![1]!.trim();
  for (const flag of named.split(/\s+/)) t.true(exec![1]!.split(/\s+/).includes(flag), `ExecStart carries ${flag}`);
  // The flags parse, as pfgrey run will parse them.
  const { config } = parseRunArgs(exec![1]!.split(/\s+/).slice(1), {});
  t.is(config.firewall, 'nft');
  t.is(config.tarpit.host, '0.0.0.0');
  t.regex(text, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  t.regex(text, /^AmbientCapabilities=.*CAP_NET_ADMIN/m);
});

test('systemd-analyze finds nothing wrong with the unit but the uninstalled binary', (t) => {
  const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
  if (r.error) {
    lacking(t, `systemd-analyze is not available (${r.error.message})`);
    return;
  }
  const problems = `${r.stdout}${r.stderr}`.split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/Command pfgrey is not executable|man pfgrey\(8\)/.test(l));
  t.deepEqual(problems, []);
});
