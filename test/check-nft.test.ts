// `pfgrey check` on nftables: the findings on rulesets as nft lists them (test/fixtures/nft,
// made by loading the shipped pf/linux/pfgrey.nft and variants of it, each broken by one edit),
// the order of flush ruleset, tables and includes in the file a reload loads, the command line,
// and, as root, the whole command against rulesets loaded in network namespaces the tests make
// and delete (and the fixtures checked against what nft lists there).

import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { formatFinding, type CheckOptions } from '../src/check/checks.js';
import { analyseNftConf, checkNftConf, checkNftRules } from '../src/check/nftchecks.js';
import { scanNftConf } from '../src/check/nftconf.js';
import { parseNftRuleset } from '../src/check/nftrules.js';
import { check } from './helpers/check.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/daemon.js';
import { listed, NFT, NFT_FIXTURES, run, SHIPPED_FILE, VARIANTS, variant } from './helpers/nft-rulesets.js';
import { lacking } from './helpers/require.js';
import { freePort } from './helpers/ports.js';

const OPTS: CheckOptions = {
  table: 'spamd-white', blackTable: 'spamd', listen: '0.0.0.0', port: 8025, configPort: 8026, user: '_pfgrey',
  dbPath: '/var/lib/pfgrey/pfgrey.db', os: 'linux', pfctl: '/sbin/pfctl', pfDevice: '/dev/pf',
  firewall: 'nft', nft: NFT, nftTable: 'inet pfgrey',
};

async function fixture(name: string) {
  return parseNftRuleset(
    await fs.readFile(path.join(NFT_FIXTURES, `${name}.json`), 'utf8'),
    await fs.readFile(path.join(NFT_FIXTURES, `${name}.txt`), 'utf8'),
  );
}

async function judge(name: string, over: Partial<CheckOptions> = {}): Promise<string[]> {
  return checkNftRules({ kind: 'loaded', ruleset: await fixture(name) }, { ...OPTS, ...over }).map(formatFinding);
}

const DNAT = 'chain inet pfgrey prerouting, rule "meta nfproto ipv4 tcp dport 25 fib daddr type local counter dnat ip to ip daddr:8025"';
const EXEMPT = 'chain inet pfgrey prerouting, rule "tcp dport 25 ip saddr @spamd-white return"';
const DROP = 'chain inet pfgrey input, rule "tcp dport { 8025, 8026 } counter drop"';
const SHIPPED_OK = [
  'ok: nft list ruleset: table inet pfgrey has the sets spamd-white (ipv4_addr) and spamd-white6 (ipv6_addr)',
  `ok: ${DNAT}: smtp goes to the tarpit, port 8025 of the address it was sent to (dnat)`,
  `ok: ${EXEMPT}: smtp from @spamd-white reaches the MTA`,
  `ok: ${DROP}: connections to port 8025 that were not redirected from port 25 are dropped`,
];

/** The one line each variant gets that the shipped ruleset does not (and the ok lines it loses). */
const MISTAKES: Record<string, string> = {
  'no-redirect': 'error: nft list ruleset: no rule sends smtp (tcp port 25) to the tarpit (port 8025), so no host is greylisted; add to the prerouting chain of table inet pfgrey, after tcp dport 25 ip saddr @spamd-white return: tcp dport 25 fib daddr type local dnat ip to ip daddr:8025 (as pf/linux/pfgrey.nft does)',
  'wrong-set': 'error: nft list ruleset: table inet pfgrey has no set spamd-white, so pfgrey cannot fill it; did you mean spamd-whitelist? then run pfgrey with --table spamd-whitelist',
  'no-exemption': `error: ${DNAT}: no rule exempts @spamd-white from this redirect, so whitelisted hosts are tarpitted again and their mail never reaches the MTA; add before it: tcp dport 25 ip saddr @spamd-white return`,
  'open-port': 'warning: nft list ruleset: port 8025 is open to every host: pfgrey listens on 0.0.0.0 and no input rule drops connections to it that were not redirected from port 25, so any host can reach the tarpit directly; add to an input chain: tcp dport 8025 ct status dnat ct original proto-dst 25 accept, then: tcp dport 8025 drop (as pf/linux/pfgrey.nft does)',
  'loopback-dnat': 'error: chain inet pfgrey prerouting, rule "meta nfproto ipv4 tcp dport 25 fib daddr type local counter dnat ip to 127.0.0.1:8025": smtp is sent to 127.0.0.1 port 8025, and Linux drops a connection from outside sent to a loopback address, so it never reaches pfgrey; send it to port 8025 of the address it was sent to: dnat ip to ip daddr:8025, and run pfgrey with -l 0.0.0.0 (as pf/linux/pfgrey.nft does)',
};

test('the shipped ruleset, as nft lists it, gets only ok lines', async (t) => {
  t.deepEqual(await judge('shipped'), SHIPPED_OK);
});

test('each broken variant of the shipped ruleset is reported once, with where and how to fix', async (t) => {
  for (const [name, line] of Object.entries(MISTAKES)) {
    const lines = await judge(name);
    t.deepEqual(lines.filter((l) => !l.startsWith('ok:')), [line], name);
  }
});

test('an input chain that drops by policy: redirected smtp and whitelisted smtp are both reported', async (t) => {
  t.deepEqual((await judge('input-drop')).filter((l) => !l.startsWith('ok:')), [
    `error: ${DROP}: smtp redirected to the tarpit (port 8025) is dropped here, so connections never reach pfgrey; accept it before this rule: tcp dport 8025 ct status dnat ct original proto-dst 25 accept`,
    'error: chain inet pfgrey input (policy drop): smtp from @spamd-white is dropped here, so whitelisted hosts never reach the MTA; accept it in this chain: tcp dport 25 accept',
  ]);
});

test('a redirect in another table exempts that table\'s set, which pfgrey never fills; jumps are followed', async (t) => {
  const lines = await judge('other-table');
  t.deepEqual(lines.filter((l) => !l.startsWith('ok:')), [
    'error: chain inet mail prerouting, rule "tcp dport 25 fib daddr type local dnat ip to ip daddr:8025": no rule exempts @spamd-white from this redirect, so whitelisted hosts are tarpitted again and their mail never reaches the MTA: this rule is in table inet mail, where @spamd-white is not pfgrey\'s set (sets belong to their table); move the redirect into table inet pfgrey, after: tcp dport 25 ip saddr @spamd-white return',
  ]);
  // The input chain drops by policy; its jump to chain tarpit accepts the redirected smtp.
  t.true(lines.includes('ok: chain inet mail input (policy drop): connections to port 8025 that were not redirected from port 25 are dropped'));
});

test('pfgrey on 127.0.0.1 with the shipped dnat to the dialled address: never reached; no exposure to judge', async (t) => {
  const lines = await judge('shipped', { listen: '127.0.0.1' });
  t.deepEqual(lines.filter((l) => !l.startsWith('ok:')), [
    `error: ${DNAT}: smtp is sent to port 8025 of the address it was sent to, but pfgrey listens on 127.0.0.1 only, so connections never reach it; run pfgrey with -l 0.0.0.0 (as pf/linux/pfgrey.nft says)`,
  ]);
  t.false(lines.some((l) => l.includes('are dropped')), 'a loopback listener is not reachable from outside');
});

test('a -p the ruleset does not redirect to, and --nft-table naming a table not loaded', async (t) => {
  t.true((await judge('shipped', { port: 2525 })).includes(
    `error: ${DNAT}: smtp is sent to port 8025 of the address it was sent to, but pfgrey listens on port 2525 (-p), so connections never reach it; dnat to port 2525, or run pfgrey with -p 8025`,
  ));
  t.deepEqual(await judge('shipped', { nftTable: 'ip pfgrey' }), [
    'error: nft list ruleset: table ip pfgrey is not loaded, so pfgrey has no sets to fill and nothing is greylisted; table inet pfgrey has a set spamd-white: run pfgrey with --nft-table \'inet pfgrey\'',
  ]);
});

test('a ruleset without pfgrey\'s table is one error that says how to load it', (t) => {
  const rs = parseNftRuleset('{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"table": {"family": "inet", "name": "filter", "handle": 1}}]}');
  t.deepEqual(checkNftRules({ kind: 'loaded', ruleset: rs }, OPTS).map(formatFinding), [
    'error: nft list ruleset: table inet pfgrey is not loaded, so pfgrey has no sets to fill and nothing is greylisted; load it: nft -f pf/linux/pfgrey.nft',
  ]);
  t.throws(() => parseNftRuleset('table inet filter {'), { message: /not JSON/ });
});

// ---- the file a reload loads --------------------------------------------------------------

async function confDir(t: ExecutionContext, files: Record<string, string>): Promise<string> {
  const dir = await tempDir(t, 'pfgrey-nftconf-');
  for (const [name, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), text.replaceAll('DIR', dir));
  }
  return dir;
}

function confLines(file: string, kind: 'file' | 'boot'): string[] {
  return checkNftConf(file, analyseNftConf(scanNftConf(file), OPTS), OPTS, kind).map(formatFinding);
}

const DEBIAN = `#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
}
`;

test('Debian\'s flush ruleset before the include of pfgrey\'s file: a reload empties the sets; delete only the file\'s own tables', async (t) => {
  const dir = await confDir(t, {
    'nftables.conf': `${DEBIAN}include "DIR/nftables.d/*.nft"\n`,
    'nftables.d/pfgrey.nft': await fs.readFile(SHIPPED_FILE, 'utf8'),
  });
  const file = path.join(dir, 'nftables.conf');
  t.deepEqual(confLines(file, 'boot'), [
    `warning: ${file}:3: flush ruleset deletes table inet pfgrey with its sets on every reload (nft -f ${file}), so spamd-white comes back empty and whitelisted hosts are tarpitted again until pfgrey's next full push; delete only this file's own tables instead: table inet filter; delete table inet filter (loading pf/linux/pfgrey.nft again keeps the sets' elements)`,
  ]);
});

test('tables declared and deleted one by one, then pfgrey\'s file included: a reload keeps the sets', async (t) => {
  const dir = await confDir(t, {
    'nftables.conf': `table inet filter\ndelete table inet filter\n${DEBIAN.replace('flush ruleset', '')}include "DIR/pfgrey.nft"\n`,
    'pfgrey.nft': await fs.readFile(SHIPPED_FILE, 'utf8'),
  });
  const file = path.join(dir, 'nftables.conf');
  t.deepEqual(confLines(file, 'boot'), [`ok: ${file}: a reload loads table inet pfgrey and keeps the elements of its sets`]);
});

test('a boot file that flushes and never loads pfgrey\'s table, or does not load it at all, or includes a missing file', async (t) => {
  const dir = await confDir(t, {
    'flush.conf': DEBIAN,
    'plain.conf': DEBIAN.replace('flush ruleset', '# flush ruleset'),
    'missing.conf': `${DEBIAN}include "DIR/nowhere.nft"; table inet pfgrey { }\n`,
  });
  const f = (n: string) => path.join(dir, n);
  t.deepEqual(confLines(f('flush.conf'), 'boot'), [
    `warning: ${f('flush.conf')}:3: flush ruleset deletes table inet pfgrey on every reload (nft -f ${f('flush.conf')}), and nothing after it loads it again, so nothing is greylisted and pfgrey cannot fill its sets until it is loaded; delete only this file's own tables instead: table inet filter; delete table inet filter, and include pfgrey's file at the end: include "/etc/nftables.d/pfgrey.nft"`,
  ]);
  t.deepEqual(confLines(f('plain.conf'), 'boot'), [
    `warning: ${f('plain.conf')}: it does not load table inet pfgrey, so after a reboot nothing is greylisted and pfgrey cannot fill its sets until the table is loaded; add at its end: include "/etc/nftables.d/pfgrey.nft"`,
  ]);
  t.deepEqual(confLines(f('missing.conf'), 'boot').slice(0, 1), [
    `warning: ${f('missing.conf')}:10: include "${dir}/nowhere.nft" reads nothing (no such file), so a reload fails or leaves that part out; fix the path`,
  ]);
  // For a file being checked, nft's own load says what is missing.
  t.deepEqual(confLines(f('flush.conf'), 'file'), []);
});

test('a checked file whose flush ruleset comes after pfgrey\'s table: the missing table names the flush', async (t) => {
  const dir = await confDir(t, { 'late.conf': `include "${SHIPPED_FILE}"\n${DEBIAN}` });
  const file = path.join(dir, 'late.conf');
  const analysis = analyseNftConf(scanNftConf(file), OPTS);
  const rs = parseNftRuleset('{"nftables": [{"table": {"family": "inet", "name": "filter", "handle": 1}}]}');
  t.deepEqual(checkNftRules({ kind: 'file', file, ruleset: rs }, OPTS, analysis).map(formatFinding), [
    `error: ${file}: loading it leaves no table inet pfgrey (flush ruleset at ${file}:4 deletes it after it is declared), so pfgrey has no sets to fill and nothing is greylisted; move the flush before the table, or include pfgrey's file after it`,
  ]);
});

test('the scanner skips what is inside braces, comments and quoted text, and follows continued lines', async (t) => {
  const dir = await confDir(t, {
    'a.conf': [
      'define x = "flush ruleset" # flush ruleset',
      'table ip filter { chain c { flush ruleset; } }',
      'add \\',
      '  table inet pfgrey',
      'table inet pfgrey { set spamd-white { type ipv4_addr; } }; flush table inet pfgrey',
      '',
    ].join('\n'),
  });
  t.deepEqual(scanNftConf(path.join(dir, 'a.conf')).events.map((e) => `${e.line} ${e.kind} ${'name' in e ? e.name : ''}`), [
    '2 table filter', '3 table pfgrey', '5 table pfgrey', '5 flush-table pfgrey',
  ]);
});

// ---- the command line -----------------------------------------------------------------------

interface Sandbox {
  dir: string;
  tarpitPort: number;
  configPort: number;
  /** Options naming the sandbox's password file, database directory and ports. */
  args: string[];
}

async function sandbox(t: ExecutionContext): Promise<Sandbox> {
  const dir = await tempDir(t, 'pfgrey-check-nft-');
  const uid = process.getuid!() === 0 ? 4242 : process.getuid!();
  const gid = process.getuid!() === 0 ? 4242 : process.getgid!();
  const passwd = path.join(dir, 'passwd');
  await fs.writeFile(passwd, `_pfgrey:*:${uid}:${gid}:pfgrey:/var/empty:/usr/sbin/nologin\n`);
  const db = path.join(dir, 'db');
  await fs.mkdir(db, { mode: 0o750 });
  if (process.getuid!() === 0) await fs.chown(db, uid, gid);
  const tarpitPort = await freePort('0.0.0.0');
  const configPort = await freePort('0.0.0.0');
  return {
    dir, tarpitPort, configPort,
    args: ['--os', 'linux', '--passwd', passwd, '--services', '/dev/null', '--db', path.join(db, 'pfgrey.db'),
      '-l', '0.0.0.0', '-p', String(tarpitPort), '--config-port', String(configPort)],
  };
}

test('on Linux an nft that is missing is one error, and nothing about pfctl or the pf device', async (t) => {
  const s = await sandbox(t);
  const nope = path.join(s.dir, 'sbin', 'nft');
  const r = await check([...s.args, '--nft', nope]);
  t.deepEqual(r.lines.filter((l) => !l.startsWith('ok:')), [
    `error: ${nope} does not exist, so pfgrey can neither read the ruleset nor fill its sets; install nftables (apt-get install nftables), or give its path with --nft`,
  ]);
  t.false(r.lines.some((l) => /pfctl|\/dev\/pf/.test(l)), r.lines.join('\n'));
  t.is(r.status, 1);
});

test('nft refusing a user: one error naming CAP_NET_ADMIN and --nft-conf', async (t) => {
  const s = await sandbox(t);
  const nft = path.join(s.dir, 'nft');
  await fs.writeFile(nft, '#!/bin/sh\necho "Operation not permitted (you must be root)" >&2\nexit 1\n', { mode: 0o755 });
  const r = await check([...s.args, '--nft', nft]);
  t.deepEqual(r.lines.filter((l) => !l.startsWith('ok:')), [
    `error: cannot read the loaded ruleset: ${nft} -t -j list ruleset: exited with status 1: Operation not permitted (you must be root); nft needs CAP_NET_ADMIN to read it: give check that capability, or check a file instead: --nft-conf /etc/nftables.conf`,
  ]);
  t.is(r.status, 1);
});

test('usage: pf and nft options do not mix; --table and --nft-table are checked as nftables names', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--pf-conf', 'a', '--nft-conf', 'b'], '--pf-conf and --nft-conf: one is for pf, the other for nftables'],
    [['--firewall', 'nft', '--pfctl', '/sbin/pfctl'], '--pfctl is not for --firewall nft'],
    [['--firewall', 'pf', '--nft', '/usr/sbin/nft'], '--nft is not for --firewall pf'],
    [['--firewall', 'ipfw'], '--firewall ipfw: expected pf or nft'],
    [['--os', 'linux', '--table', 'spamd:white'], '--table spamd:white: not an nftables name'],
    [['--nft-table', 'pfgrey'], '--nft-table pfgrey: expected FAMILY NAME'],
  ];
  for (const [argv, why] of cases) {
    const r = await runCli(['check', ...argv]);
    t.is(r.code, 1, argv.join(' '));
    t.true(r.stderr.startsWith(`pfgrey check: ${why}`), r.stderr);
  }
});

// ---- against real nftables, in namespaces the tests make -----------------------------------

function e2eUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync(NFT)) return `no ${NFT}`;
  const name = `pfgrey-cn-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.error !== undefined || add.status !== 0) return `cannot make a network namespace: ${add.error?.message ?? add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'delete', name]);
  return undefined;
}

const unavailable = e2eUnavailable();
let serial = 0;

/** Runs `body` only where namespaces can be made; elsewhere skips, or fails when required. */
function e2e(title: string, body: (t: ExecutionContext) => Promise<void>): void {
  test.serial(title, async (t) => {
    if (unavailable !== undefined) {
      lacking(t, `${unavailable} (nftables namespaces)`);
      return;
    }
    await body(t);
  });
}

/** A network namespace with `text` loaded, deleted when the test ends; nft run inside it. */
async function loadedNs(t: ExecutionContext, dir: string, text: string): Promise<{ name: string; wrapper: string }> {
  const name = `pfgrey-cn${process.pid}-${++serial}`;
  await run('ip', ['netns', 'add', name]);
  t.teardown(() => run('ip', ['netns', 'delete', name]));
  const file = path.join(dir, `${name}.nft`);
  await fs.writeFile(file, text);
  await run('ip', ['netns', 'exec', name, NFT, '-f', file]);
  const wrapper = path.join(dir, `${name}-nft`);
  await fs.writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${name} ${NFT} "$@"\n`, { mode: 0o755 });
  return { name, wrapper };
}

e2e('the checked-in fixtures are what nft lists for the shipped ruleset and its variants', async (t) => {
  const dir = await tempDir(t, 'pfgrey-check-nft-');
  const names = [...Object.keys(VARIANTS).filter((n) => n !== 'flush'), 'other-table'];
  for (const name of names) {
    const text = name === 'other-table' ? await fs.readFile(path.join(NFT_FIXTURES, 'other-table.nft'), 'utf8') : variant(name);
    const ns = await loadedNs(t, dir, text);
    const now = await listed(ns.name);
    if (process.env.PFGREY_WRITE_NFT_FIXTURES === '1') {
      await fs.writeFile(path.join(NFT_FIXTURES, `${name}.json`), now.json);
      await fs.writeFile(path.join(NFT_FIXTURES, `${name}.txt`), now.text);
    }
    // Findings rather than bytes: another nft version may print the same ruleset differently.
    const fresh = checkNftRules({ kind: 'loaded', ruleset: parseNftRuleset(now.json, now.text) }, OPTS).map(formatFinding);
    t.deepEqual(fresh, await judge(name), `${name} (PFGREY_WRITE_NFT_FIXTURES=1 rewrites the fixtures)`);
  }
});

/** The variant with the sandbox's ports in place of 8025 and 8026. */
function withPorts(text: string, s: Sandbox): string {
  return text.replace(/\b8025\b/g, String(s.tarpitPort)).replace(/\b8026\b/g, String(s.configPort));
}

e2e('pfgrey check --os linux on the loaded shipped ruleset: all ok, exit 0; each broken variant: one finding', async (t) => {
  const s = await sandbox(t);
  const boot = path.join(s.dir, 'nftables.conf');
  await fs.writeFile(boot, `include "${SHIPPED_FILE}"\n`);
  const P = String(s.tarpitPort);
  const expected: Record<string, RegExp | undefined> = {
    shipped: undefined,
    'no-redirect': /^error: nft list ruleset: no rule sends smtp \(tcp port 25\) to the tarpit/,
    'wrong-set': /^error: nft list ruleset: table inet pfgrey has no set spamd-white, so pfgrey cannot fill it; did you mean spamd-whitelist\?/,
    'no-exemption': /^error: chain inet pfgrey prerouting, rule ".*dnat ip to ip daddr:\d+": no rule exempts @spamd-white from this redirect/,
    'open-port': new RegExp(`^warning: nft list ruleset: port ${P} is open to every host`),
    flush: new RegExp(`^warning: ${boot}:1: flush ruleset deletes table inet pfgrey with its sets on every reload`),
  };
  for (const [name, mistake] of Object.entries(expected)) {
    const text = withPorts(variant(name), s);
    const ns = await loadedNs(t, s.dir, text);
    if (name === 'flush') await fs.writeFile(boot, text);
    const r = await runCli(['check', ...s.args, '--nft', ns.wrapper, '--nftables-conf', boot]);
    const lines = Buffer.from(r.stdout, 'latin1').toString('utf8').split('\n').filter((l) => l !== '');
    const bad = lines.filter((l) => !l.startsWith('ok:'));
    t.is(r.stderr, '', name);
    if (mistake === undefined) {
      t.deepEqual(bad, [], name);
      t.true(lines.includes(`ok: ${boot}: a reload loads table inet pfgrey and keeps the elements of its sets`), name);
      t.is(r.code, 0, name);
    } else {
      t.is(bad.length, 1, `${name}: ${bad.join('\n')}`);
      t.regex(bad[0] ?? '', mistake, name);
      t.is(r.code, bad[0]!.startsWith('error:') ? 1 : 0, name);
    }
  }
});

e2e('pfgrey check --nft-conf loads the file in a namespace of its own: the shipped file ok, a flush warned, a wrong set an error', async (t) => {
  const s = await sandbox(t);
  const before = await run(NFT, ['-j', 'list', 'ruleset']);
  for (const [name, want] of [['shipped', undefined], ['flush', /^warning: .*flush\.nft:1: flush ruleset deletes table inet pfgrey/], ['wrong-set', /^error: .*wrong-set\.nft: table inet pfgrey has no set spamd-white/]] as const) {
    const file = path.join(s.dir, `${name}.nft`);
    await fs.writeFile(file, withPorts(variant(name), s));
    const r = await runCli(['check', ...s.args, '--nft-conf', file]);
    const bad = Buffer.from(r.stdout, 'latin1').toString('utf8').split('\n').filter((l) => l !== '' && !l.startsWith('ok:'));
    if (want === undefined) t.deepEqual(bad, [], name);
    else {
      t.is(bad.length, 1, `${name}: ${bad.join('\n')}`);
      t.regex(bad[0] ?? '', want, name);
    }
  }
  const broken = path.join(s.dir, 'broken.nft');
  await fs.writeFile(broken, 'table inet pfgrey {\n\tchain c { iifname "x" tcp dport 25 dnat ip to nowhere }\n}\n');
  const r = await runCli(['check', ...s.args, '--nft-conf', broken]);
  t.regex(r.stdout.split('\n')[0] ?? '', new RegExp(`^error: ${broken}: nft does not load it: .*; a reload would fail the same way$`));
  t.is(r.code, 1);
  t.is(await run(NFT, ['-j', 'list', 'ruleset']), before, 'the host\'s ruleset is left alone');
});

e2e('the blacklist-only ruleset (pfgrey-blacklist.nft) is recognised as such, and a spamd set without flags interval is an error', async (t) => {
  const dir = await tempDir(t, 'pfgrey-check-nft-');
  const shipped = await fs.readFile(path.join(path.dirname(SHIPPED_FILE), 'pfgrey-blacklist.nft'), 'utf8');
  const judgeText = async (text: string) => {
    const ns = await loadedNs(t, dir, text);
    const now = await listed(ns.name);
    return checkNftRules({ kind: 'loaded', ruleset: parseNftRuleset(now.json, now.text) }, OPTS).map(formatFinding);
  };
  const good = await judgeText(shipped);
  t.deepEqual(good.filter((l) => !l.startsWith('ok:')), [], good.join('\n'));
  t.true(good.some((l) => /only hosts in @spamd go to the tarpit, port 8025 of the address it was sent to \(dnat\): this is blacklist-only/.test(l)), good.join('\n'));
  const noInterval = shipped.replace(/(set spamd \{[^}]*?)\s*flags interval;/, '$1');
  t.not(noInterval, shipped, 'the shipped file declares spamd with flags interval');
  const bad = await judgeText(noInterval);
  t.deepEqual(bad.filter((l) => l.startsWith('error:')), [
    'error: nft list ruleset: set spamd in table inet pfgrey has no flags interval, and the blacklists are address blocks; declare it as set spamd { type ipv4_addr; flags interval; } (see pf/linux/pfgrey-blacklist.nft)',
  ]);
});
