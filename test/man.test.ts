// man/pfgrey.8: mandoc finds nothing to warn about, and every option the subcommands' parsers
// accept has an entry in the subcommand's section, so the page cannot silently fall behind the
// code. The options are read from each CLI module's OPTIONS table in src/cli/.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

interface Option {
  name: string;
  short?: string;
}

/** The keys (and short letters) of `const OPTIONS = { … } as const` in a CLI module. */
function optionsOf(module: string): Option[] {
  const source = fs.readFileSync(path.join(ROOT, 'src/cli', module), 'utf8');
  const table = /^const OPTIONS = \{\n([\s\S]*?)\n\} as const;$/m.exec(source);
  if (!table) throw new Error(`no OPTIONS table in src/cli/${module}`);
  return [...table[1]!.matchAll(/^\s*(?:'([^']+)'|(\w+)):\s*\{([^}]*)\}/gm)].map((m) => ({
    name: (m[1] ?? m[2])!,
    short: /short:\s*'(.)'/.exec(m[3]!)?.[1],
  }));
}

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

const COMMANDS: Array<[string, string]> = [['run', 'run.ts'], ['db', 'db.ts'], ['setup', 'setup.ts'], ['logd', 'logd.ts']];

for (const [command, module] of COMMANDS) {
  test(`every option of pfgrey ${command} (src/cli/${module}) has an entry in the man page`, (t) => {
    const text = section(command);
    t.not(text, '', `a subsection .Ss pfgrey ${command}`);
    const options = optionsOf(module);
    t.true(options.length > 3, 'the OPTIONS table was read');
    for (const o of options) {
      for (const flag of [o.name, ...(o.short !== undefined && o.short !== o.name ? [o.short] : [])]) {
        t.true(documents(text, flag), `${flag.length === 1 ? '-' : '--'}${flag}`);
      }
    }
  });
}

test('the man page has a section for every subcommand, and the sections a manual needs', (t) => {
  for (const command of ['run', 'db', 'setup', 'logd', 'check']) t.not(section(command), '', command);
  for (const sh of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'ENVIRONMENT', 'FILES', 'EXIT STATUS', 'EXAMPLES', 'SEE ALSO']) {
    t.regex(page, new RegExp(`^\\.Sh ${sh}$`, 'm'), sh);
  }
  t.regex(page, /^\.It Ev PFGREY_DB$/m);
  for (const file of ['/var/db/pfgrey/pfgrey.db', '/etc/mail/spamd.conf', '/etc/mail/spamd.alloweddomains', '/etc/mail/nospamd']) {
    t.regex(page, new RegExp(`^\\.It Pa ${file.replaceAll('.', '\\.')}$`, 'm'), file);
  }
  for (const xr of ['spamd 8', 'pf.conf 5', 'pfctl 8']) t.true(page.includes(`.Xr ${xr}`), xr);
});

test('a flag the parser gains without a man page entry is noticed', (t) => {
  t.false(documents(section('run'), 'no-such-option'));
  t.false(documents(section('run'), 'e'));
  t.true(documents(section('run'), 'b'));
  t.true(documents(section('run'), 'db'));
});
