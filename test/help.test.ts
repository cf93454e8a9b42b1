// `pfgrey --help` and `pfgrey COMMAND --help`: every flag in one line, with the first sentence of
// its man page entry (src/cli/help-text.ts is made from man/pfgrey.8 and must stay in step with
// it), and one style for a mistake on any subcommand's command line.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HELP } from '../src/cli/help-text.js';
import { runCli } from './helpers/cli.js';
import { COMMANDS, optionsOf, SPREAD_TABLES, spreadsOf } from './helpers/options.js';
import { required } from './helpers/require.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const haveMandoc = spawnSync('mandoc', ['-V'], { stdio: 'ignore' }).error === undefined;
if (!haveMandoc && !required) console.log('# skipping the check of src/cli/help-text.ts against the man page: mandoc is not installed');

(haveMandoc || required ? test : test.skip)('src/cli/help-text.ts is what scripts/gen-help.js makes of the man page (npm run gen:help)', (t) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts/gen-help.js'), '--check'], { encoding: 'utf8' });
  t.is(r.stderr, '');
  t.is(r.status, 0, 'run npm run gen:help after editing man/pfgrey.8');
});

/** The flags an entry's text names: `-C file, -K file` → -C, -K; `--x[=n]` → --x. */
const flagsOf = (spec: string) => spec.split(', ').map((f) => /^-[^\s[=]+/.exec(f)?.[0] ?? f);

for (const { command, module, documentedIn = {}, hidden = [] } of COMMANDS) {
  test(`pfgrey ${command} --help has a line for every option it takes`, async (t) => {
    const options = [...optionsOf(`cli/${module}`)];
    for (const table of spreadsOf(`cli/${module}`)) {
      if (documentedIn[table] === undefined) options.push(...optionsOf(SPREAD_TABLES[table]!, table));
    }
    const listed = new Set((HELP[command] ?? []).flatMap(([spec]) => flagsOf(spec)));
    for (const o of options.filter((x) => !hidden.includes(x.name))) {
      const flags = [o.name.length === 1 ? `-${o.name}` : `--${o.name}`, ...(o.short !== undefined && o.short !== o.name ? [`-${o.short}`] : [])];
      for (const f of flags) t.true(listed.has(f), `${f} in pfgrey ${command} --help`);
    }
    const r = await runCli([command, '--help']);
    t.is(r.code, 0);
    t.is(r.stderr, '');
    for (const [spec, text] of HELP[command]!) {
      t.true(r.stdout.split('\n').some((l) => l.startsWith(`  ${spec} `) && l.trimEnd().endsWith(text)), `${spec}: one line`);
    }
  });
}

test('pfgrey --help names every command and how to see its options', async (t) => {
  const r = await runCli(['--help']);
  t.is(r.code, 0);
  for (const { command } of COMMANDS) t.regex(r.stdout, new RegExp(`^  ${command} `, 'm'));
  t.regex(r.stdout, /pfgrey COMMAND --help/);
  t.regex(r.stdout, /-V, --version/);
});

test('a mistake on any command line is said in one style: the clause, then the usage, exit 1', async (t) => {
  for (const { command } of COMMANDS) {
    const r = await runCli([command, '--no-such-option']);
    t.is(r.code, 1, command);
    t.is(r.stderr.split('\n')[0], `pfgrey ${command}: unknown option --no-such-option`);
    t.regex(r.stderr.split('\n')[1]!, new RegExp(`^usage: pfgrey ${command} `));
  }
  t.is((await runCli(['run', '-c'])).stderr.split('\n')[0], 'pfgrey run: option -c needs a value (-c maxcon)');
  t.is((await runCli(['db', '--json=yes'])).stderr.split('\n')[0], 'pfgrey db: option --json takes no value');
  t.is((await runCli(['stats', 'extra'])).stderr.split('\n')[0], 'pfgrey stats: unexpected argument "extra"');
});

test('pfgrey run -h without a value says -h takes a host name, and where the usage is', async (t) => {
  const r = await runCli(['run', '-h']);
  t.is(r.code, 1);
  t.is(r.stderr.split('\n')[0], 'pfgrey run: option -h needs a value (-h hostname); for the usage, --help');
});
