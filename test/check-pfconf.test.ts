// pfgrey check's pf side as pure functions: the pf.conf / pfctl-output parser and the rule
// checks, over the fixture files in test/fixtures/pf. Every test names the exact finding lines.

import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkRules, didYouMean, editDistance, exitStatus, formatFinding, type CheckOptions, type CheckOs,
} from '../src/check/checks.js';
import { fdescfsMounted, parseServices } from '../src/check/facts.js';
import { parsePfConf, parsePfctlRules, parsePfctlTables } from '../src/check/pfconf.js';

/** .build/test → test/fixtures/pf */
const PF = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/pf');
const SERVICES = parseServices(readFileSync(path.join(PF, 'services'), 'utf8'));

function options(over: Partial<CheckOptions> = {}): CheckOptions {
  return {
    table: 'spamd-white', blackTable: 'spamd', listen: '127.0.0.1', port: 8025, configPort: 8026,
    user: '_pfgrey', dbPath: '/var/db/pfgrey/pfgrey.db', os: 'openbsd', pfctl: '/sbin/pfctl', pfDevice: '/dev/pf',
    ...over,
  };
}

/** The finding lines and exit status for a pf.conf text, shown under the name `file`. */
function judge(file: string, text: string, over: Partial<CheckOptions> = {}): { lines: string[]; status: number } {
  const findings = checkRules({ kind: 'file', file, ruleset: parsePfConf(text) }, options(over), SERVICES);
  return { lines: findings.map(formatFinding), status: exitStatus(findings) };
}

function judgeFixture(name: string, over: Partial<CheckOptions> = {}) {
  return judge(name, readFileSync(path.join(PF, name), 'utf8'), over);
}

const NO_EXEMPTION = 'no rule exempts <spamd-white> from this redirect, so whitelisted hosts are tarpitted again and their mail never reaches the MTA';
const MYWHITE = (file: string) => `<spamd-mywhite> is never filled: pfgrey fills <spamd-white> (and <spamd> with pfgrey setup -b), and ${file} declares it without file "…" or { addresses }; did you mean <spamd-white>?`;

test('a correct OpenBSD divert-to pf.conf gives only ok lines and exit 0', (t) => {
  t.deepEqual(judgeFixture('openbsd-divert.conf'), {
    lines: [
      'ok: openbsd-divert.conf:6: table <spamd-white> is persist',
      'ok: openbsd-divert.conf:8: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
      'ok: openbsd-divert.conf:10: smtp from <spamd-white> reaches the MTA',
    ],
    status: 0,
  });
});

test('a correct FreeBSD rdr pf.conf gives only ok lines, the exemption at its no rdr rule', (t) => {
  t.deepEqual(judgeFixture('freebsd-rdr.conf', { os: 'freebsd' }), {
    lines: [
      'ok: freebsd-rdr.conf:4: table <spamd-white> is persist',
      'ok: freebsd-rdr.conf:9: smtp goes to the tarpit 127.0.0.1 port 8025 (rdr)',
      'ok: freebsd-rdr.conf:7: smtp from <spamd-white> reaches the MTA',
    ],
    status: 0,
  });
});

test('the seed mistake with rdr: no rdr and pass name <spamd-mywhite>, pfgrey fills <spamd-white>', (t) => {
  t.deepEqual(judgeFixture('seed-freebsd.conf', { os: 'freebsd' }), {
    lines: [
      `error: seed-freebsd.conf:4: ${MYWHITE('seed-freebsd.conf')}`,
      `error: seed-freebsd.conf:6: ${MYWHITE('seed-freebsd.conf')}`,
      'ok: seed-freebsd.conf:5: smtp goes to the tarpit 127.0.0.1 port 8025 (rdr)',
      `error: seed-freebsd.conf:5: ${NO_EXEMPTION} (line 4 exempts <spamd-mywhite> instead); add before it: no rdr inet proto tcp from <spamd-white> to any port smtp`,
    ],
    status: 1,
  });
});

test('the seed mistake with divert-to: the pass for whitelisted hosts names <spamd-mywhite>', (t) => {
  t.deepEqual(judgeFixture('seed-openbsd.conf'), {
    lines: [
      'ok: seed-openbsd.conf:3: table <spamd-white> is persist',
      `error: seed-openbsd.conf:6: ${MYWHITE('seed-openbsd.conf')}`,
      'ok: seed-openbsd.conf:5: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
      `error: seed-openbsd.conf:5: ${NO_EXEMPTION} (line 6 exempts <spamd-mywhite> instead); add after it: pass in on egress proto tcp from <spamd-white> to any port smtp`,
    ],
    status: 1,
  });
});

test('a whitelist table without persist is a warning, and exit 0', (t) => {
  t.deepEqual(judgeFixture('no-persist.conf'), {
    lines: [
      'warning: no-persist.conf:1: table <spamd-white> is not persist: pf removes it, and what pfgrey run put in it, when no loaded rule refers to it; declare it "table <spamd-white> persist"',
      'ok: no-persist.conf:2: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
      'ok: no-persist.conf:3: smtp from <spamd-white> reaches the MTA',
    ],
    status: 0,
  });
});

test('no rule sending smtp to the tarpit is an error, with the rule to add for the OS', (t) => {
  const start = 'error: no-redirect.conf: no rule sends smtp (tcp port 25) to the tarpit 127.0.0.1 port 8025, so no host is greylisted; add: ';
  t.deepEqual(judgeFixture('no-redirect.conf'), {
    lines: [
      'ok: no-redirect.conf:2: table <spamd-white> is persist',
      `${start}pass in on egress proto tcp to any port smtp divert-to 127.0.0.1 port 8025`,
    ],
    status: 1,
  });
  t.is(judgeFixture('no-redirect.conf', { os: 'freebsd', port: 9025 }).lines[1],
    'error: no-redirect.conf: no rule sends smtp (tcp port 25) to the tarpit 127.0.0.1 port 9025, so no host is greylisted; ' +
    'add: rdr pass on $ext_if inet proto tcp from any to any port smtp -> 127.0.0.1 port 9025');
});

test('a redirect to another port than -p is an error naming both ports', (t) => {
  t.deepEqual(judgeFixture('wrong-port.conf'), {
    lines: [
      'ok: wrong-port.conf:1: table <spamd-white> is persist',
      'error: wrong-port.conf:2: smtp is sent to 127.0.0.1 port 2525, but pfgrey listens on port 8025 (-p), so connections never reach it; send them to 127.0.0.1 port 8025, or run pfgrey with -p 2525',
      'ok: wrong-port.conf:3: smtp from <spamd-white> reaches the MTA',
    ],
    status: 1,
  });
  // The same file is right for a pfgrey started with -p 2525.
  t.is(judgeFixture('wrong-port.conf', { port: 2525 }).status, 0);
});

test('a redirect to another address than -l is an error naming the address', (t) => {
  const { lines } = judge('pf.conf', 'pass in proto tcp to port smtp rdr-to 10.0.0.5 port 8025\n');
  t.is(lines[0], 'error: pf.conf:1: smtp is sent to 10.0.0.5 port 8025, but pfgrey listens on 127.0.0.1 (-l), so connections never reach it; send them to 127.0.0.1 port 8025, or run pfgrey with -l 10.0.0.5');
});

test('a port name /etc/services lacks is an error: pfctl could not load the rule', (t) => {
  const { lines, status } = judge('pf.conf', 'pass in proto tcp to port smtp divert-to 127.0.0.1 port spamd-tarpit\n');
  t.deepEqual(lines.slice(0, 1), ['error: pf.conf:1: smtp is sent to port "spamd-tarpit", which /etc/services does not name, so pfctl cannot load this rule; write port 8025']);
  t.is(status, 1);
});

test('macros, brace lists and continuation lines are followed; findings name a statement\'s first line', (t) => {
  t.deepEqual(judgeFixture('macros.conf'), {
    lines: [
      'ok: macros.conf:8: table <spamd-white> is persist',
      'ok: macros.conf:10: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
      'ok: macros.conf:13: smtp from <spamd-white> reaches the MTA',
    ],
    status: 0,
  });
});

test('--table names the whitelist the rules must exempt, and suggests it for a near miss', (t) => {
  const conf = [
    'table <mywhite> persist',
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
    'pass in log on egress proto tcp from <mywhite> to port smtp',
  ].join('\n');
  t.deepEqual(judge('pf.conf', conf, { table: 'mywhite' }).lines, [
    'ok: pf.conf:1: table <mywhite> is persist',
    'ok: pf.conf:2: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
    'ok: pf.conf:3: smtp from <mywhite> reaches the MTA',
  ]);
  const other = judge('pf.conf', conf.replace(/mywhite/g, 'mywhites'), { table: 'mywhite' });
  t.is(other.lines[0], 'error: pf.conf:3: <mywhites> is never filled: pfgrey fills <mywhite> (and <spamd> with pfgrey setup -b), and pf.conf declares it without file "…" or { addresses }; did you mean <mywhite>?');
  t.is(other.status, 1);
});

test('a table that is no near miss of a pfgrey table and that nothing fills is a warning', (t) => {
  const { lines, status } = judge('pf.conf', [
    'table <spamd-white> persist',
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
    'pass in log on egress proto tcp from { <trusted> <spamd-white> } to port smtp',
  ].join('\n'));
  t.deepEqual(lines, [
    'ok: pf.conf:1: table <spamd-white> is persist',
    'warning: pf.conf:3: <trusted> is never filled: pfgrey fills only <spamd-white> and <spamd>, and pf.conf does not declare it; give it addresses: table <trusted> persist file "/etc/mail/trusted"',
    'ok: pf.conf:2: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
    'ok: pf.conf:3: smtp from <spamd-white> reaches the MTA',
  ]);
  t.is(status, 0);
});

test('a catch-all pass after the divert-to rule shadows it: last match wins', (t) => {
  const { lines, status } = judge('pf.conf', [
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
    'pass in on egress proto tcp to port smtp',
  ].join('\n'));
  t.deepEqual(lines, ['error: pf.conf:2: this rule passes smtp from every host and comes after the redirect at line 1, and the last matching rule wins, so nothing reaches the tarpit; move it before line 1 or limit it to a table (from <nospamd>)']);
  t.is(status, 1);
});

test('a quick pass before the redirect shadows it', (t) => {
  const { lines } = judge('pf.conf', [
    'pass in quick on egress proto tcp to port smtp',
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
  ].join('\n'));
  t.deepEqual(lines, ['error: pf.conf:1: this quick rule passes smtp from every host before the redirect at line 2, so nothing reaches the tarpit; remove quick or limit it to a table (from <nospamd>)']);
});

test('a no rdr for the whitelist after the rdr is reported as misplaced', (t) => {
  const { lines } = judge('pf.conf', [
    'rdr pass inet proto tcp from any to any port smtp -> 127.0.0.1 port 8025',
    'no rdr inet proto tcp from <spamd-white> to any port smtp',
  ].join('\n'), { os: 'freebsd' });
  t.deepEqual(lines, [
    'ok: pf.conf:1: smtp goes to the tarpit 127.0.0.1 port 8025 (rdr)',
    `error: pf.conf:1: ${NO_EXEMPTION}; the no rdr rule at line 2 comes after it and translation takes the first match: move it before this rule`,
  ]);
});

test('a pass for the whitelist before the divert-to rule is reported as misplaced', (t) => {
  const { lines } = judge('pf.conf', [
    'pass in on egress proto tcp from <spamd-white> to port smtp',
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
  ].join('\n'));
  t.deepEqual(lines, [
    'ok: pf.conf:2: smtp goes to the tarpit 127.0.0.1 port 8025 (divert-to)',
    `error: pf.conf:2: ${NO_EXEMPTION}; the pass rule at line 1 comes before it and the last matching rule wins: move it after this rule`,
  ]);
});

test('a match rdr-to sticks: the whitelist has to be excluded in the match rule itself', (t) => {
  const bad = judge('pf.conf', [
    'match in on egress proto tcp to port smtp rdr-to 127.0.0.1 port 8025',
    'pass in on egress proto tcp from <spamd-white> to port smtp',
  ].join('\n'));
  t.deepEqual(bad.lines, [
    'ok: pf.conf:1: smtp goes to the tarpit 127.0.0.1 port 8025 (rdr-to)',
    `error: pf.conf:1: ${NO_EXEMPTION}; match rules keep their rdr-to, so exclude the whitelist in this rule: from ! <spamd-white>`,
  ]);
  const good = judge('pf.conf', [
    'match in on egress proto tcp from ! <spamd-white> to port smtp rdr-to 127.0.0.1 port 8025',
    'pass in log on egress proto tcp to port smtp',
  ].join('\n'));
  t.deepEqual(good.lines, [
    'ok: pf.conf:1: smtp goes to the tarpit 127.0.0.1 port 8025 (rdr-to)',
    'ok: pf.conf:2: smtp from <spamd-white> reaches the MTA',
  ]);
});

test('a rule blocking whitelisted hosts is an error', (t) => {
  const { lines } = judge('pf.conf', [
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
    'block in on egress proto tcp from <spamd-white> to port smtp',
  ].join('\n'));
  t.is(lines[1], 'error: pf.conf:2: this rule blocks smtp from <spamd-white>, so whitelisted hosts never reach the MTA; pass them after it: pass in proto tcp from <spamd-white> to any port smtp');
});

test('a const whitelist table is an error: pfctl could not replace it', (t) => {
  const { lines, status } = judge('pf.conf', 'table <spamd-white> persist const\n');
  t.is(lines[0], 'error: pf.conf:1: table <spamd-white> is const, so pfgrey run cannot change it and whitelisted hosts never reach the MTA; remove const');
  t.is(status, 1);
});

test('a blacklist-only set-up (divert from <spamd>) is recognised, and <spamd> must be persist', (t) => {
  const { lines, status } = judge('pf.conf', [
    'table <spamd>',
    'pass in on egress inet proto tcp from <spamd> to any port smtp divert-to 127.0.0.1 port spamd',
  ].join('\n'));
  t.deepEqual(lines, [
    'warning: pf.conf:1: table <spamd> is not persist: pf removes it, and what pfgrey setup -b put in it, when no loaded rule refers to it; declare it "table <spamd> persist"',
    'ok: pf.conf:2: only hosts in <spamd> go to the tarpit 127.0.0.1 port 8025: this is blacklist-only, for pfgrey run -b (nothing is greylisted)',
  ]);
  t.is(status, 0);
});

test('an undefined macro is an error; an include is a warning', (t) => {
  const { lines } = judge('pf.conf', 'include "/etc/pf.local"\npass in on $ext_if proto tcp to port smtp divert-to 127.0.0.1 port 8025\n');
  t.deepEqual(lines.slice(0, 2), [
    'warning: pf.conf:1: pfgrey check does not follow include "/etc/pf.local"; check that file too, or check the loaded rules (without --pf-conf)',
    'error: pf.conf:2: macro $ext_if is not defined, so pfctl refuses this file; define it (ext_if = "…") before this line',
  ]);
});

test('pfctl -sr and -sn lines parse into rules: ports, tables, divert-to and rdr targets', (t) => {
  const [noRdr, rdr, pass] = parsePfctlRules(
    'no rdr inet proto tcp from <spamd-white> to any port = smtp\n' +
    'rdr pass on em0 inet proto tcp from any to any port = smtp -> 127.0.0.1 port 8025\n',
    '@3 pass in log on egress inet proto tcp from ! <spamd-white> to any port = 25 flags S/SA divert-to 127.0.0.1 port 8025\n' +
    '  [ Evaluations: 10  Packets: 0  Bytes: 0  States: 0 ]\n',
  );
  t.like(noRdr, { action: 'no-rdr', family: 'inet', protos: ['tcp'], from: { hosts: [{ negated: false, table: 'spamd-white' }] }, to: { ports: [{ op: '=', a: 'smtp' }] } });
  t.like(rdr, { action: 'rdr', pass: true, interfaces: ['em0'], redirect: { kind: 'rdr', address: '127.0.0.1', port: '8025' } });
  t.like(pass, {
    action: 'pass', direction: 'in', interfaces: ['egress'], from: { hosts: [{ negated: true, table: 'spamd-white' }] },
    to: { hosts: [{ any: true }], ports: [{ op: '=', a: '25' }] }, redirect: { kind: 'divert-to', address: '127.0.0.1', port: '8025' },
    text: 'pass in log on egress inet proto tcp from ! <spamd-white> to any port = 25 flags S/SA divert-to 127.0.0.1 port 8025',
  });
});

test('table declarations: persist, const, file and addresses', (t) => {
  const { tables } = parsePfConf([
    'table <spamd-white> persist',
    'table <nospamd> persist file "/etc/mail/nospamd" file "/etc/mail/more"',
    'table <local> const { 192.0.2.0/24, !192.0.2.5 }',
    'table <empty> { }',
  ].join('\n'));
  t.deepEqual([...tables.values()], [
    { name: 'spamd-white', persist: true, const: false, files: [], hasAddresses: false, line: 1 },
    { name: 'nospamd', persist: true, const: false, files: ['/etc/mail/nospamd', '/etc/mail/more'], hasAddresses: false, line: 2 },
    { name: 'local', persist: false, const: true, files: [], hasAddresses: true, line: 3 },
    { name: 'empty', persist: false, const: false, files: [], hasAddresses: false, line: 4 },
  ]);
});

test('pfctl -vsT flag columns give persist and const; anchors\' tables are left out', (t) => {
  t.deepEqual(parsePfctlTables('-pa-r--\tspamd-white\nc-a-r--\tlocal\n--a----\tspamd\n-pa-r--\tother\tsome/anchor\n-pa----\tx@a\n'), [
    { name: 'spamd-white', flags: '-pa-r--', persist: true, const: false },
    { name: 'local', flags: 'c-a-r--', persist: false, const: true },
    { name: 'spamd', flags: '--a----', persist: false, const: false },
  ]);
  // Older pfctl prints five columns.
  t.deepEqual(parsePfctlTables('-pa-r\tspamd-white\n'), [{ name: 'spamd-white', flags: '-pa-r', persist: true, const: false }]);
});

test('loaded rules: a whitelist table that is not persist, or missing, is a warning', (t) => {
  const rules = parsePfctlRules('', 'pass in on egress inet proto tcp from any to any port = 25 flags S/SA divert-to 127.0.0.1 port 8025\npass in on egress inet proto tcp from <spamd-white> to any port = 25 flags S/SA\n');
  const run = (vsT: string) => checkRules({ kind: 'loaded', rules, tables: parsePfctlTables(vsT), counts: new Map() }, options(), SERVICES).map(formatFinding)[0];
  t.is(run('----r--\tspamd-white\n'), 'warning: pfctl -vsT: table <spamd-white> is not persist (flags ----r--): pf removes it, and what pfgrey run put in it, when no loaded rule refers to it; declare it "table <spamd-white> persist" in pf.conf and reload it (pfctl -f /etc/pf.conf)');
  t.is(run(''), 'warning: pfctl -vsT: table <spamd-white> does not exist yet: pfgrey run creates it when it first fills it; if pfgrey run has run, its messages say why pfctl failed');
});

test('did-you-mean takes near misses only, and never for <nospamd>', (t) => {
  t.is(editDistance('spamd-mywhite', 'spamd-white'), 2);
  t.is(didYouMean('spamd-mywhite', ['spamd-white', 'spamd']), 'spamd-white');
  t.is(didYouMean('spamd-whitelist', ['spamd-white', 'spamd']), 'spamd-white');
  t.is(didYouMean('spamdwhite', ['spamd-white', 'spamd']), 'spamd-white');
  t.is(didYouMean('spam', ['spamd-white', 'spamd']), 'spamd');
  t.is(didYouMean('nospamd', ['spamd-white', 'spamd']), undefined);
  t.is(didYouMean('trusted', ['spamd-white', 'spamd']), undefined);
  t.is(didYouMean('spamd-white', ['spamd-white', 'spamd']), undefined);
});

test('system file parsers: services, mount -p and mount output', (t) => {
  t.is(SERVICES.get('spamd'), 8025);
  t.is(SERVICES.get('mail'), 25);
  t.is(SERVICES.get('spamd-sync'), undefined);
  t.true(fdescfsMounted(readFileSync(path.join(PF, 'mount-p-fdescfs.txt'), 'utf8')));
  t.false(fdescfsMounted(readFileSync(path.join(PF, 'mount-p-no-fdescfs.txt'), 'utf8')));
  t.true(fdescfsMounted('/dev/ada0p2 on / (ufs, local)\nfdescfs on /dev/fd (fdescfs)\n'));
  t.false(fdescfsMounted('fdescfs on /mnt/fd (fdescfs)\n'));
});

for (const os of ['openbsd', 'freebsd'] as CheckOs[]) {
  test(`pf disabled is an error (${os})`, (t) => {
    const findings = checkRules({ kind: 'loaded', rules: [], tables: [], counts: new Map(), disabled: true }, options({ os }), SERVICES);
    t.is(formatFinding(findings[0]!), `error: pfctl -si: pf is disabled, so no rule applies and nothing reaches the tarpit; enable it: pfctl -e (and ${os === 'freebsd' ? 'sysrc pf_enable=YES' : 'rcctl enable pf'})`);
  });
}

test('a rule that passes whitelisted smtp without log is a warning for pfgrey logd, and with log nothing is said', (t) => {
  const conf = (log: string) => [
    'table <spamd-white> persist',
    'pass in on egress proto tcp to port smtp divert-to 127.0.0.1 port 8025',
    `pass in ${log}on egress proto tcp from <spamd-white> to port smtp`,
  ].join('\n');
  const without = judge('pf.conf', conf(''));
  t.true(without.lines.includes('warning: pf.conf:3: this rule passes smtp from <spamd-white> without log, so pfgrey logd never sees it and ' +
    'a whitelisted host that keeps sending is still dropped from <spamd-white> when its entry expires; if you run pfgrey logd, write pass in log …'),
  without.lines.join('\n'));
  t.is(without.status, 0, 'a warning: mail still flows');
  t.false(judge('pf.conf', conf('log ')).lines.some((l) => /without log/.test(l)));
  t.false(judge('pf.conf', conf('log (all) ')).lines.some((l) => /without log/.test(l)), 'log with options counts too');
});
