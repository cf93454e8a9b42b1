// One rule for pf table names (src/firewall/pf.ts, pfTableNameProblem), and the three places
// that take a name from the user or hand one to pfctl all follow it: pfgrey run --table,
// pfgrey check --table, and the pf firewall itself (and --firewall none, which refuses what pf
// would).

import test from 'ava';
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCheckArgs } from '../src/cli/check.js';
import { parseRunArgs } from '../src/cli/run.js';
import { describe, isPfgreyError } from '../src/errors.js';
import { noneFirewall } from '../src/firewall/none.js';
import { pfFirewall, pfTableNameProblem } from '../src/firewall/pf.js';
import { memoryLogger } from '../src/log.js';
import { tempDir } from './helpers/daemon.js';

const ACCEPTED = [
  'spamd-white', 'spamd', 'x'.repeat(31), 'white.list', 'white_list:2', '_x', ':x', '1abc', '123',
  'a+b', 'a@b~c', 'a[1]', 'a;b', 'a$b', 'a%b&c', 'a*b?', 'a\'b', 'a"b', 'a\\b', 'a^b|c`',
];
const REFUSED: Array<[string, RegExp]> = [
  ['', /it is empty/],
  ['x'.repeat(32), /it is 32 characters long; pf allows 31/],
  ['has space', /" " cannot be in it/],
  ['tab\tle', /"\\t" cannot be in it/],
  ['a\nb', /"\\n" cannot be in it/],
  ['a\u0000b', /"\\u0000" cannot be in it/],
  ['spamd/white', /"\/" cannot be in it/],
  ['a<b', /"<" cannot be in it/],
  ['a>b', /">" cannot be in it/],
  ['!neg', /"!" cannot be in it/],
  ['a=b', /"=" cannot be in it/],
  ['a#b', /"#" cannot be in it/],
  ['a,b', /"," cannot be in it/],
  ['(x)', /"\(" cannot be in it/],
  ['{x}', /"\{" cannot be in it/],
  ['-dash', /it must start with a letter, a digit, ':' or '_'/],
  ['.dot', /it must start with a letter/],
  ['weiß', /"ß" cannot be in it/],
];

const show = (name: string) => JSON.stringify(name).slice(0, 40);

/** What each place says about `name`: undefined when it takes it, else its message. `--table=NAME`, so `-dash` is a value. */
async function verdicts(name: string, pfctl: string): Promise<{ run?: string; check?: string; pf?: string; none?: string }> {
  const out: { run?: string; check?: string; pf?: string; none?: string } = {};
  try {
    parseRunArgs([`--table=${name}`], {});
  } catch (err) {
    out.run = describe(err);
  }
  try {
    parseCheckArgs([`--table=${name}`, '--firewall', 'pf'], {});
  } catch (err) {
    out.check = describe(err);
  }
  try {
    await pfFirewall({ pfctl }).show(name);
  } catch (err) {
    out.pf = describe(err);
  }
  try {
    await noneFirewall(memoryLogger()).show(name);
  } catch (err) {
    out.none = describe(err);
  }
  return out;
}

for (const name of ACCEPTED) {
  test(`pf table name ${show(name)} is taken by run, check and the pf and none firewalls alike`, async (t) => {
    const dir = await tempDir(t);
    const pfctl = join(dir, 'pfctl');
    await writeFile(pfctl, '#!/bin/sh\nexit 0\n');
    await chmod(pfctl, 0o755);
    t.is(pfTableNameProblem(name), undefined);
    t.deepEqual(await verdicts(name, pfctl), {});
  });
}

for (const [name, why] of REFUSED) {
  test(`pf table name ${show(name)} is refused by run, check and the pf and none firewalls alike, for the same reason`, async (t) => {
    const dir = await tempDir(t);
    // pfctl is never run for a refused name: if it were, this one would fail the test.
    const pfctl = join(dir, 'pfctl');
    await writeFile(pfctl, `#!/bin/sh\ntouch "${dir}/ran"\nexit 0\n`);
    await chmod(pfctl, 0o755);
    const problem = pfTableNameProblem(name);
    t.regex(problem ?? '', /^not a pf table name \(/);
    t.regex(problem ?? '', why);
    const v = await verdicts(name, pfctl);
    t.is(v.run, `--table ${name}: ${problem}`);
    t.true(v.check?.startsWith(`--table ${name}: ${problem}\nusage: pfgrey check`), v.check);
    t.is(v.pf, `${JSON.stringify(name)}: ${problem}`);
    t.is(v.none, v.pf);
    t.false(existsSync(join(dir, 'ran')), 'pfctl did not run');
  });
}

test('the refusals carry each place\'s own error code', async (t) => {
  const codes = [];
  for (const f of [
    () => parseRunArgs(['--table', 'a b'], {}),
    () => parseCheckArgs(['--table', 'a b', '--firewall', 'pf'], {}),
    () => noneFirewall(memoryLogger()).show('a b'),
  ]) {
    try {
      await f();
    } catch (err) {
      codes.push(isPfgreyError(err) ? err.code : 'not a PfgreyError');
    }
  }
  t.deepEqual(codes, ['E_BAD_OPTION', 'E_USAGE', 'E_FIREWALL']);
});

test('with --firewall nft, pfgrey run holds --table to nftables\' rule, not pf\'s', (t) => {
  const long = `white_${'x'.repeat(40)}`;
  t.is(parseRunArgs(['--firewall', 'nft', '--table', long], {}).config.table, long);
  t.throws(() => parseRunArgs(['--table', long], {}), { message: /--table white_x+: not a pf table name \(it is 46 characters long; pf allows 31\)/ });
  t.throws(() => parseRunArgs(['--firewall', 'nft', '--table', 'a:b'], {}), { message: /--table a:b: not an nftables name/ });
});
