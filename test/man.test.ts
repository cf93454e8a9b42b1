// man/pfgrey.8: mandoc finds nothing to warn about, and every option the subcommands' parsers
// accept has an entry in the subcommand's section, so the page cannot silently fall behind the
// code. The options are read from each CLI module's OPTIONS table in src/cli/, and from the
// tables it spreads into it (`...POLICY_OPTIONS`, src/policy/door.ts) where the section is the
// one that documents them.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMMANDS, optionsOf, SPREAD_TABLES, spreadsOf } from './helpers/options.js';
import { required } from './helpers/require.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PAGE = path.join(ROOT, 'man/pfgrey.8');
const page = fs.readFileSync(PAGE, 'utf8');

const haveMandoc = spawnSync('mandoc', ['-V'], { stdio: 'ignore' }).error === undefined;
if (!haveMandoc && !required) console.log('# skipping the mandoc lint of man/pfgrey.8: mandoc is not installed');
const withMandoc = haveMandoc || required ? test : test.skip;

withMandoc('mandoc -T lint -W warning finds nothing in man/pfgrey.8', (t) => {
  const r = spawnSync('mandoc', ['-T', 'lint', '-W', 'warning', PAGE], { encoding: 'utf8' });
  t.is(r.error, undefined);
  t.is(r.stdout + r.stderr, '');
  t.is(r.status, 0);
});

/** The text of `.Ss pfgrey COMMAND`, up to the next section or subsection. */
function section(command: string): string {
  const start = page.indexOf(`\n.Ss pfgrey ${command}\n`);
  if (start < 0) return '';
  const end = page.slice(start + 1).search(/\n\.S[sh] /);
  return end < 0 ? page.slice(start) : page.slice(start, start + 1 + end);
}

/** Whether an `.It` line of the section documents the flag: `Fl x` or `Fl \-long`. */
function documents(text: string, flag: string): boolean {
  const escaped = flag.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  const mdoc = flag.length === 1 ? escaped : `\\\\?-${escaped}`;
  return new RegExp(`^\\.It\\b.*\\bFl ${mdoc}(\\s|$)`, 'm').test(text);
}

for (const { command, module, spreads, documentedIn = {}, hidden = [] } of COMMANDS) {
  test(`every option of pfgrey ${command} (src/cli/${module}${spreads.map((s) => `, ${s}`).join('')}) has an entry in the man page`, (t) => {
    const text = section(command);
    t.not(text, '', `a subsection .Ss pfgrey ${command}`);
    const own = optionsOf(`cli/${module}`);
    t.true(own.length >= 3, 'the OPTIONS table was read');
    const options = [...own];
    for (const table of spreadsOf(`cli/${module}`)) {
      const where = documentedIn[table];
      if (where !== undefined) {
        // Documented once, in its own section; this one must point there.
        t.true(text.includes(`.Nm Cm ${where}`), `${table} is documented under pfgrey ${where}, and the ${command} section says so`);
        continue;
      }
      t.true(spreads.includes(table), `${table} is spread into src/cli/${module}'s OPTIONS: document it here or name its section`);
      const file = SPREAD_TABLES[table];
      if (file === undefined) {
        t.fail(`${table}: add the file it is in to SPREAD_TABLES`);
        continue;
      }
      const spread = optionsOf(file, table);
      t.true(spread.length > 3, `the ${table} table was read`);
      options.push(...spread);
    }
    for (const s of spreads) t.true(spreadsOf(`cli/${module}`).includes(s), `src/cli/${module} spreads ${s}`);
    for (const o of options.filter((x) => !hidden.includes(x.name))) {
      for (const flag of [o.name, ...(o.short !== undefined && o.short !== o.name ? [o.short] : [])]) {
        t.true(documents(text, flag), `${flag.length === 1 ? '-' : '--'}${flag}`);
      }
    }
  });
}

test('the man page has a section for every subcommand, and the sections a manual needs', (t) => {
  for (const command of ['run', 'db', 'setup', 'logd', 'check', 'policy', 'stats', 'explain']) t.not(section(command), '', command);
  for (const sh of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'ENVIRONMENT', 'FILES', 'EXIT STATUS', 'EXAMPLES', 'SEE ALSO']) {
    t.regex(page, new RegExp(`^\\.Sh ${sh}$`, 'm'), sh);
  }
  t.regex(page, /^\.It Ev PFGREY_DB$/m);
  for (const file of [
    '/var/db/pfgrey/pfgrey.db', '/etc/mail/spamd.conf', '/etc/mail/spamd.alloweddomains', '/etc/mail/nospamd',
    '/etc/rc.d/pfgrey_policy', '/usr/local/etc/rc.d/pfgrey_policy',
  ]) {
    t.regex(page, new RegExp(`^\\.It Pa ${file.replaceAll('.', '\\.')}$`, 'm'), file);
  }
  for (const xr of ['spamd 8', 'pf.conf 5', 'pfctl 8']) t.true(page.includes(`.Xr ${xr}`), xr);
});

test('a flag the parser gains without a man page entry is noticed', (t) => {
  t.false(documents(section('run'), 'no-such-option'));
  t.false(documents(section('run'), 'e'));
  t.true(documents(section('run'), 'b'));
  t.true(documents(section('run'), 'db'));
  // The policy section is checked against both its tables: one of each is there, a stranger is not.
  t.false(documents(section('policy'), 'no-such-option'));
  t.false(documents(section('policy'), 'dbdir'), 'a postgrey option pfgrey refuses has no entry of its own');
  t.true(documents(section('policy'), 'stdio'));
  t.true(documents(section('policy'), 'exim'));
  t.true(optionsOf('policy/door.ts', 'POLICY_OPTIONS').some((o) => o.name === 'x-greylist-header'));
  t.deepEqual(spreadsOf('cli/policy.ts'), ['POLICY_OPTIONS', 'WEIGHTED_OPTIONS']);
  t.throws(() => optionsOf('policy/door.ts', 'NO_SUCH_TABLE'));
});
