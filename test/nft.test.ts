import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isPfgreyError } from '../src/errors.js';
import {
  nftFirewall, nftNameProblem, nftTableProblem, parseNftSetJson, shippedRuleset, splitAddresses,
} from '../src/firewall/nft.js';
import { chooseFirewall } from '../src/firewall/select.js';
import { WhitelistSync } from '../src/firewall/sync.js';
import { memoryLogger } from '../src/log.js';
import { runCli } from './helpers/cli.js';
import { configPortStandIn } from './helpers/config-port.js';
import { eventually } from './helpers/wait.js';

// These tests drive the real nft, always inside a network namespace of their own, never the
// host's ruleset: `nft` below is a wrapper that enters the namespace.

const NFT = '/usr/sbin/nft';
const execFileP = promisify(execFile);
/** .build/test → test/fixtures */
const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures');
const RULESET = shippedRuleset();

function e2eUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync(NFT)) return `no ${NFT}`;
  const name = `pfgrey-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.error !== undefined || add.status !== 0) {
    return `cannot make a network namespace: ${add.error?.message ?? add.stderr.trim()}`;
  }
  spawnSync('ip', ['netns', 'delete', name]);
  return undefined;
}

const unavailable = e2eUnavailable();
if (unavailable !== undefined) {
  if (process.env.PFGREY_REQUIRE_E2E === '1') {
    test('nftables tests can run here (PFGREY_REQUIRE_E2E=1)', (t) => {
      t.fail(`they cannot: ${unavailable}`);
    });
  } else {
    console.log(`skipping the nftables tests that need root and network namespaces: ${unavailable}`);
  }
}
const e2e = unavailable === undefined ? test : test.skip;

function run(file: string, args: readonly string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

async function must(file: string, args: readonly string[], input?: string): Promise<string> {
  const r = await run(file, args, input);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')}: status ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

let serial = 0;

/**
 * Writes an executable script. Synchronously: a file still open for writing in a child forked
 * meanwhile (async writes run on another thread) makes exec fail with ETXTBSY.
 */
function script(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o755 });
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pfgrey-nft-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A fresh network namespace, deleted when the test ends however it ends. */
async function netns(t: ExecutionContext): Promise<string> {
  const name = `pfgrey-t${process.pid}-${++serial}`;
  await must('ip', ['netns', 'add', name]);
  t.teardown(() => must('ip', ['netns', 'delete', name]));
  return name;
}

interface Ns {
  name: string;
  /** The wrapper pfgrey calls as its nft. It keeps each `-f -` script as dir/script.N. */
  nft: string;
  dir: string;
  /** nft inside the namespace, for checking what pfgrey did. */
  nft$(args: readonly string[], input?: string): Promise<string>;
  /** The elements of a set, sorted. */
  elements(set: string): Promise<string[]>;
  /** The `-f -` scripts pfgrey has run, oldest first. */
  scripts(): Promise<string[]>;
}

async function nftNs(t: ExecutionContext, opts: { ruleset?: string | false; wrapper?: string } = {}): Promise<Ns> {
  const name = await netns(t);
  const dir = await tempDir(t);
  const nft = join(dir, 'nft');
  script(nft, opts.wrapper ?? `#!/bin/sh
if [ "$2" = - ] && [ "$1" = -f ]; then
  n=$(( $(cat "${dir}/count" 2>/dev/null || echo 0) + 1 )); echo $n > "${dir}/count"
  cat > "${dir}/script.$n"
  exec ip netns exec ${name} ${NFT} "$@" < "${dir}/script.$n"
fi
exec ip netns exec ${name} ${NFT} "$@"
`);
  const nft$ = (args: readonly string[], input?: string) => must('ip', ['netns', 'exec', name, NFT, ...args], input);
  if (opts.ruleset !== false) await nft$(['-f', opts.ruleset ?? RULESET]);
  return {
    name, nft, dir, nft$,
    async elements(set) {
      return parseNftSetJson(await nft$(['-j', 'list', 'set', 'inet', 'pfgrey', set])).sort();
    },
    async scripts() {
      const names = (await readdir(dir)).filter((f) => f.startsWith('script.'));
      names.sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
      return Promise.all(names.map((f) => readFile(join(dir, f), 'utf8')));
    },
  };
}

const V4_ONLY = `table inet pfgrey {
  set spamd-white { type ipv4_addr; }
}
`;

// ---- the shipped ruleset ----------------------------------------------------------------

e2e('the shipped ruleset passes nft -c, loads, and declares the sets pfgrey fills', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  await ns.nft$(['-c', '-f', RULESET]);
  await ns.nft$(['-f', RULESET]);
  const listed = JSON.parse(await ns.nft$(['-t', '-j', 'list', 'table', 'inet', 'pfgrey'])) as { nftables: Record<string, Record<string, unknown>>[] };
  const sets = new Map(listed.nftables.filter((o) => o.set).map((o) => [o.set!.name, o.set!]));
  t.is(sets.get('spamd-white')?.type, 'ipv4_addr');
  t.is(sets.get('spamd-white6')?.type, 'ipv6_addr');
  t.is(sets.get('nospamd')?.type, 'ipv4_addr');
  t.deepEqual(sets.get('nospamd')?.flags, ['interval']);
  const rules = await ns.nft$(['list', 'chain', 'inet', 'pfgrey', 'prerouting']);
  t.regex(rules, /tcp dport 25 ip saddr @spamd-white return/);
  t.regex(rules, /dnat ip to ip daddr:8025/);
  // The header names the flags that go with it.
  t.regex(await readFile(RULESET, 'utf8'), /^#\s+pfgrey run --firewall nft -l 0\.0\.0\.0$/m);
});

e2e('loading the shipped ruleset again keeps the whitelist and does not double the rules', async (t) => {
  const ns = await nftNs(t);
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1', '2001:db8::1']);
  const before = await ns.nft$(['list', 'table', 'inet', 'pfgrey']);
  await ns.nft$(['-f', RULESET]);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1']);
  t.deepEqual(await ns.elements('spamd-white6'), ['2001:db8::1']);
  t.is(await ns.nft$(['list', 'table', 'inet', 'pfgrey']), before);
});

// ---- nftFirewall against the real nft ----------------------------------------------------

e2e('nft replace makes the set exactly the list in one flush-and-add transaction', async (t) => {
  const ns = await nftNs(t);
  await ns.nft$(['add', 'element', 'inet', 'pfgrey', 'spamd-white', '{ 198.51.100.1, 198.51.100.2 }']);
  const fw = nftFirewall({ nft: ns.nft });
  t.is(fw.name, 'nft');
  await fw.replace('spamd-white', ['192.0.2.1', '198.51.100.2', '192.0.2.3', '192.0.2.1']);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1', '192.0.2.3', '198.51.100.2']);
  const scripts = await ns.scripts();
  t.is(scripts.length, 1);
  t.is(scripts[0],
    'flush set inet pfgrey spamd-white\n' +
    'add element inet pfgrey spamd-white { 192.0.2.1, 198.51.100.2, 192.0.2.3 }\n' +
    'flush set inet pfgrey spamd-white6\n');
  t.deepEqual((await fw.show('spamd-white')).sort(), ['192.0.2.1', '192.0.2.3', '198.51.100.2']);
});

e2e('nft replace with an empty list empties the sets', async (t) => {
  const ns = await nftNs(t);
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1', '2001:db8::1']);
  await fw.replace('spamd-white', []);
  t.deepEqual(await ns.elements('spamd-white'), []);
  t.deepEqual(await ns.elements('spamd-white6'), []);
  t.deepEqual(await fw.show('spamd-white'), []);
});

e2e('nft replace of a large list is one transaction and the set holds all of it', async (t) => {
  const ns = await nftNs(t);
  const many = Array.from({ length: 20_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  await nftFirewall({ nft: ns.nft }).replace('spamd-white', many);
  t.is((await ns.scripts()).length, 1);
  t.is((await ns.elements('spamd-white')).length, many.length);
});

e2e('nft add and delete change only the addresses named, and deleting an absent one is no error', async (t) => {
  const ns = await nftNs(t);
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1', '192.0.2.2']);
  await fw.add('spamd-white', ['192.0.2.3', '192.0.2.2']);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
  await fw.delete('spamd-white', ['192.0.2.1', '203.0.113.9']);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.2', '192.0.2.3']);
  await fw.add('spamd-white', []);
  await fw.delete('spamd-white', []);
  t.is((await ns.scripts()).length, 3, 'empty changes run no nft');
  t.false((await ns.scripts()).slice(1).some((s) => s.includes('flush')));
});

e2e('nft puts IPv6 addresses in the set named with a 6', async (t) => {
  const ns = await nftNs(t);
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1', '2001:db8::1', '2001:db8::2']);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1']);
  t.deepEqual(await ns.elements('spamd-white6'), ['2001:db8::1', '2001:db8::2']);
  await fw.add('spamd-white', ['2001:db8::3']);
  await fw.delete('spamd-white', ['2001:db8::1']);
  t.deepEqual(await ns.elements('spamd-white6'), ['2001:db8::2', '2001:db8::3']);
  t.deepEqual((await fw.show('spamd-white')).sort(), ['192.0.2.1', '2001:db8::2', '2001:db8::3']);
});

e2e('nft without an IPv6 set still fills the IPv4 set and reports the IPv6 addresses', async (t) => {
  const dir = await tempDir(t);
  const v4only = join(dir, 'v4only.nft');
  await writeFile(v4only, V4_ONLY);
  const ns = await nftNs(t, { ruleset: v4only });
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1']);
  const err = await t.throwsAsync(fw.replace('spamd-white', ['192.0.2.2', '2001:db8::1']));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
  t.regex(err?.message ?? '', /^table inet pfgrey has no set spamd-white6 for IPv6: 1 address left out \(2001:db8::1\); declare it as `set spamd-white6 \{ type ipv6_addr; \}`/);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.2']);
  await t.throwsAsync(fw.add('spamd-white', ['2001:db8::1']), { message: /no set spamd-white6 for IPv6/ });
});

e2e('nft with the table absent fails with the hint to load the ruleset', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  const fw = nftFirewall({ nft: ns.nft });
  for (const attempt of [() => fw.replace('spamd-white', ['192.0.2.1']), () => fw.show('spamd-white')]) {
    const err = await t.throwsAsync(attempt());
    t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
    t.is(err?.message,
      `${ns.nft} -t -j list sets table inet pfgrey: exited with status 1: Error: No such file or directory; ` +
      `table inet pfgrey is not loaded: load the ruleset first: nft -f ${RULESET}`);
  }
  t.is((await ns.scripts()).length, 0);
});

e2e('nft with the table loaded but the set missing names the set', async (t) => {
  const ns = await nftNs(t);
  const err = await t.throwsAsync(nftFirewall({ nft: ns.nft }).replace('other-white', []));
  t.is(err?.message, `table inet pfgrey has no set other-white: load the ruleset first: nft -f ${RULESET}`);
});

e2e('nft tells when the table disappears under a push that had seen it', async (t) => {
  const ns = await nftNs(t);
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1']);
  await ns.nft$(['delete', 'table', 'inet', 'pfgrey']);
  const err = await t.throwsAsync(fw.add('spamd-white', ['192.0.2.2']));
  t.regex(err?.message ?? '', /table inet pfgrey is not loaded: load the ruleset first: nft -f /);
});

e2e('nft without CAP_NET_ADMIN fails with nft\'s message and what pfgrey needs', async (t) => {
  const name = await netns(t);
  await must('ip', ['netns', 'exec', name, NFT, '-f', RULESET]);
  const dir = await tempDir(t);
  const nft = join(dir, 'nft');
  // The real nft, run by nobody: its own "Operation not permitted" messages.
  script(nft, `#!/bin/sh\nexec ip netns exec ${name} setpriv --reuid=65534 --regid=65534 --clear-groups ${NFT} "$@"\n`);
  const err = await t.throwsAsync(nftFirewall({ nft }).replace('spamd-white', ['192.0.2.1']));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
  t.regex(err?.message ?? '', /^.*list sets table inet pfgrey: exited with status 1: .*Operation not permitted.*; pfgrey needs CAP_NET_ADMIN to change nftables sets: run it as root, or give it that capability/);
  t.false((err?.message ?? '').includes('\n'));
});

// ---- without nft ---------------------------------------------------------------------------

test('nft that is not there is reported as cannot run', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'no-nft');
  const err = await t.throwsAsync(nftFirewall({ nft: missing }).replace('spamd-white', ['192.0.2.1']));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
  t.regex(err?.message ?? '', new RegExp(`^cannot run ${missing}: .*ENOENT`));
});

test('nft that cannot be executed just now (ETXTBSY, as during an upgrade) is reported as cannot run', async (t) => {
  const dir = await tempDir(t);
  const nft = join(dir, 'nft');
  // Held open for writing, the file cannot be executed; spawn throws rather than emitting.
  const fd = openSync(nft, 'w', 0o755);
  t.teardown(() => closeSync(fd));
  writeSync(fd, '#!/bin/sh\nexit 0\n');
  const err = await t.throwsAsync(nftFirewall({ nft }).show('spamd-white'));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
  t.is(err?.message, `cannot run ${nft}: text file is busy (ETXTBSY)`);
});

test('nft permission errors from the tool get the capability hint', async (t) => {
  const dir = await tempDir(t);
  const nft = join(dir, 'nft');
  script(nft, '#!/bin/sh\necho "Operation not permitted (you must be root)" >&2\n' +
    'echo "netlink: Error: cache initialization failed: Operation not permitted" >&2\nexit 1\n');
  const err = await t.throwsAsync(nftFirewall({ nft }).replace('spamd-white', []));
  t.is(err?.message, `${nft} -t -j list sets table inet pfgrey: exited with status 1: ` +
    'Operation not permitted (you must be root); netlink: Error: cache initialization failed: Operation not permitted; ' +
    'pfgrey needs CAP_NET_ADMIN to change nftables sets: run it as root, or give it that capability ' +
    '(AmbientCapabilities=CAP_NET_ADMIN)');
});

test('nft that hangs is killed after the timeout', async (t) => {
  const dir = await tempDir(t);
  const nft = join(dir, 'nft');
  script(nft, `#!/bin/sh\necho $$ > '${dir}/pid'\nexec sleep 1000\n`);
  // Long enough for the stand-in to have written its pid, even on a loaded machine.
  const err = await t.throwsAsync(nftFirewall({ nft, timeout: 2000 }).show('spamd-white'));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL_TIMEOUT');
  t.regex(err?.message ?? '', /list sets table inet pfgrey: no answer after 2s; killed it$/);
  const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  t.true(pid > 0);
  const gone = () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  await eventually(gone, 'the hung nft to be killed');
  t.true(gone(), 'the hung nft was killed');
});

test('nft refuses names and addresses that could change the script before running nft', async (t) => {
  const dir = await tempDir(t);
  const nft = join(dir, 'nft');
  const ran = join(dir, 'ran');
  script(nft, `#!/bin/sh\ntouch ${ran}\nexit 1\n`);
  const fw = nftFirewall({ nft });
  for (const bad of ['192.0.2.1 }\nflush ruleset', '192.0.2.1/32', 'fe80::1%eth0', 'example.org', '', '1.2.3.4; x']) {
    await t.throwsAsync(fw.add('spamd-white', [bad]), { message: /^bad address for an nftables set/ }, bad);
  }
  for (const bad of ['spamd white', 'x;flush ruleset', '6white', 'a{', '', 'x'.repeat(255), 'a\nb']) {
    await t.throwsAsync(fw.replace(bad, []), { message: /^bad nftables set name/ }, JSON.stringify(bad));
  }
  t.false(existsSync(ran));
  for (const bad of ['pfgrey', 'inet', 'inet  pfgrey', 'inet pf grey', 'ipx pfgrey', 'inet pf;grey']) {
    t.not(nftTableProblem(bad), undefined, bad);
    t.throws(() => nftFirewall({ table: bad }), { message: /^bad nftables table/ });
  }
  for (const good of ['inet pfgrey', 'ip filter', 'ip6 mail_2', 'netdev x.y-z']) t.is(nftTableProblem(good), undefined);
  t.is(nftNameProblem('spamd-white'), undefined);
  t.is(nftNameProblem('x'.repeat(254)), undefined);
});

test('nft JSON set listings are read as addresses and blocks', (t) => {
  t.deepEqual(parseNftSetJson(JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { set: { name: 'a', elem: ['192.0.2.1', { prefix: { addr: '10.0.0.0', len: 8 } }, { prefix: { addr: '192.0.2.9', len: 32 } }] } },
      { set: { name: 'b', elem: [{ range: ['192.0.2.10', '192.0.2.20'] }, { elem: { val: '2001:db8::1', timeout: 60 } }] } },
      { set: { name: 'c' } },
    ],
  })), ['192.0.2.1', '10.0.0.0/8', '192.0.2.9', '192.0.2.10-192.0.2.20', '2001:db8::1']);
  t.throws(() => parseNftSetJson('Error: nope'), { message: /not JSON/ });
  t.deepEqual(splitAddresses(['192.0.2.1', '2001:db8::1', '192.0.2.1']), { v4: ['192.0.2.1'], v6: ['2001:db8::1'] });
});

// ---- WhitelistSync and chooseFirewall with nft ----------------------------------------------

e2e('sync with nft keeps retrying until the ruleset is loaded, then the set converges to the list', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  const log = memoryLogger();
  const sync = new WhitelistSync({ firewall: nftFirewall({ nft: ns.nft }), table: 'spamd-white', log, retryMin: 20, retryMax: 100 });
  t.teardown(() => sync.stop());
  sync.update(['192.0.2.1', '192.0.2.2', '2001:db8::5']);
  await eventually(() => log.lines.filter((l) => l.startsWith('error: ')).length >= 2, 'two failed pushes');
  t.false(sync.inSync);
  t.regex(sync.lastError ?? '', /table inet pfgrey is not loaded: load the ruleset first: nft -f .*pfgrey\.nft$/);
  t.regex(log.lines[0]!, /^error: firewall: cannot update table <spamd-white>: .*not loaded: load the ruleset first: .*; retrying in 20ms$/);

  await ns.nft$(['-f', RULESET]);
  await eventually(() => sync.inSync, 'the set to be in sync');
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1', '192.0.2.2']);
  t.deepEqual(await ns.elements('spamd-white6'), ['2001:db8::5']);
  t.true(log.lines.includes('notice: firewall: table <spamd-white> is back in sync with 3 addresses'));
});

e2e('sync with nft pushes a small change as a delete and an add, not a flush', async (t) => {
  const ns = await nftNs(t);
  const sync = new WhitelistSync({ firewall: nftFirewall({ nft: ns.nft }), table: 'spamd-white', log: memoryLogger() });
  t.teardown(() => sync.stop());
  const base = Array.from({ length: 50 }, (_, i) => `198.51.100.${i + 1}`);
  sync.update(base);
  await sync.flush();
  sync.update([...base.slice(1), '203.0.113.7']);
  await sync.flush();
  t.true(sync.inSync);
  const scripts = await ns.scripts();
  t.is(scripts.length, 3);
  t.regex(scripts[0]!, /^flush set inet pfgrey spamd-white\n/);
  t.is(scripts[1], 'add element inet pfgrey spamd-white { 198.51.100.1 }\ndelete element inet pfgrey spamd-white { 198.51.100.1 }\n');
  t.is(scripts[2], 'add element inet pfgrey spamd-white { 203.0.113.7 }\n');
  t.deepEqual(await ns.elements('spamd-white'), [...base.slice(1), '203.0.113.7'].sort());
});

e2e('chooseFirewall auto picks nft once pfgrey\'s table is loaded, and says why not before', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  const pfctl = join(ns.dir, 'no-pfctl');
  const opts = { pfctl, pfDevice: join(ns.dir, 'no-pf'), nft: ns.nft, log: memoryLogger() };
  const before = await chooseFirewall('auto', opts);
  t.is(before.firewall.name, 'none');
  t.is(before.reason, `none (${pfctl} does not exist; nftables table inet pfgrey is not loaded)`);

  await ns.nft$(['-f', RULESET]);
  const after = await chooseFirewall('auto', opts);
  t.is(after.firewall.name, 'nft');
  t.is(after.reason, `nft (${ns.nft}, table inet pfgrey)`);
  await after.firewall.replace('spamd-white', ['192.0.2.8']);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.8']);
});

e2e('chooseFirewall nft uses nft even before the table is loaded, with a warning', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  const log = memoryLogger();
  const got = await chooseFirewall('nft', { nft: ns.nft, nftTable: 'inet pfgrey', log });
  t.is(got.firewall.name, 'nft');
  t.is(got.reason, `nft (${ns.nft}, table inet pfgrey; nftables table inet pfgrey is not loaded)`);
  t.deepEqual(log.lines, ['warning: firewall nft: nftables table inet pfgrey is not loaded']);
});

test('chooseFirewall nft with no nft says so and still picks nft', async (t) => {
  const dir = await tempDir(t);
  const log = memoryLogger();
  const got = await chooseFirewall('nft', { nft: join(dir, 'no-nft'), log });
  t.is(got.firewall.name, 'nft');
  t.is(got.reason, `nft (${join(dir, 'no-nft')}, table inet pfgrey; ${join(dir, 'no-nft')} does not exist)`);
  t.is(log.lines.length, 1);
});

// ---- the redirect, through a real packet path --------------------------------------------

const SERVER = `
const net = require('node:net');
let up = 0;
for (const port of [25, 8025]) {
  net.createServer((s) => s.end(port + ' ' + s.localAddress + '\\n'))
    .listen(port, '0.0.0.0', () => { if (++up === 2) console.log('ready'); });
}`;

const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let got = '';
s.setTimeout(1500, () => { console.log('no answer'); s.destroy(); });
s.on('data', (c) => { got += c; });
s.on('end', () => console.log(got.trim()));
s.on('error', (e) => console.log(e.code));`;

e2e('the shipped ruleset sends unknown SMTP clients to 8025, whitelisted and nospamd ones to 25', async (t) => {
  const mx = await netns(t);
  const client = await netns(t);
  await must('ip', ['-n', mx, 'link', 'add', 'mx0', 'type', 'veth', 'peer', 'name', 'cl0', 'netns', client]);
  for (const [ns, dev, addrs] of [[mx, 'mx0', ['192.0.2.1/24', '192.0.2.3/24']], [client, 'cl0', ['192.0.2.2/24']]] as const) {
    for (const a of addrs) await must('ip', ['-n', ns, 'addr', 'add', a, 'dev', dev]);
    await must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  await must('ip', ['netns', 'exec', mx, NFT, '-f', RULESET]);

  const server: ChildProcess = spawn('ip', ['netns', 'exec', mx, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    server.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    server.stdout!.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve();
    });
    server.on('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  const connect = async (host: string, port: number) =>
    (await must('ip', ['netns', 'exec', client, process.execPath, '-e', CLIENT, host, String(port)])).trim();

  // Tarpitted, on the address the client dialled: pfgrey sees the MX it was sent to (-M).
  t.is(await connect('192.0.2.1', 25), '8025 192.0.2.1');
  t.is(await connect('192.0.2.3', 25), '8025 192.0.2.3');
  t.is(await connect('192.0.2.1', 8025), 'no answer', 'the tarpit cannot be reached directly');

  const mxNft = join(await tempDir(t), 'nft');
  script(mxNft, `#!/bin/sh\nexec ip netns exec ${mx} ${NFT} "$@"\n`);
  const fw = nftFirewall({ nft: mxNft });
  await fw.replace('spamd-white', ['192.0.2.2']);
  t.is(await connect('192.0.2.1', 25), '25 192.0.2.1', 'whitelisted: the real MTA');

  await fw.replace('spamd-white', []);
  t.is(await connect('192.0.2.1', 25), '8025 192.0.2.1');
  await must('ip', ['netns', 'exec', mx, NFT, 'add', 'element', 'inet', 'pfgrey', 'nospamd', '{ 192.0.2.0/28 }']);
  t.is(await connect('192.0.2.1', 25), '25 192.0.2.1', 'nospamd: never tarpitted');
});

// ---- blacklists: pfgrey setup -b and pfgrey-blacklist.nft -----------------------------------

const BLACKLIST_RULESET = shippedRuleset('pfgrey-blacklist.nft');

/** A spamd.conf of file lists in a new directory: `lists` maps a list's name to its kind and text. */
async function spamdConf(t: ExecutionContext, lists: Array<[name: string, kind: 'black' | 'white', text: string]>): Promise<string> {
  const dir = await tempDir(t);
  const records = [`all:${lists.map(([name]) => name).join(':')}:`];
  for (const [name, kind, text] of lists) {
    await writeFile(join(dir, `${name}.txt`), text);
    records.push(`${name}:${kind}:${kind === 'black' ? `msg="Listed in ${name}":` : ''}file=${name}.txt:`);
  }
  const file = join(dir, 'spamd.conf');
  await writeFile(file, `${records.join('\n')}\n`);
  return file;
}

e2e('pfgrey setup -b fills the set spamd with every blacklist, overlaps merged, in one transaction', async (t) => {
  const ns = await nftNs(t, { ruleset: BLACKLIST_RULESET });
  await ns.nft$(['add', 'element', 'inet', 'pfgrey', 'spamd', '{ 10.0.0.0/8 }']);
  const daemon = await configPortStandIn(t);
  const conf = await spamdConf(t, [
    ['a', 'black', '192.0.2.0/25\n192.0.2.200\n198.51.100.0/24\n'],
    ['spare', 'white', '198.51.100.128/25\n'],
    // Overlaps a's blocks, which pf's table would take as they are and an interval set refuses.
    ['b', 'black', '192.0.2.64/26\n192.0.2.128/25\n203.0.113.9\n'],
  ]);
  const args = ['setup', '-b', '--config', conf, '--config-port', String(daemon.port), '--nft', ns.nft];
  const r = await runCli([...args, '--firewall', 'nft']);
  t.deepEqual([r.code, r.stderr], [0, '']);
  t.is(daemon.received.length, 2, 'both lists still go to the daemon');
  t.deepEqual(await ns.elements('spamd'), ['192.0.2.0/24', '198.51.100.0/25', '203.0.113.9']);
  const scripts = await ns.scripts();
  t.is(scripts.length, 1);
  t.true(scripts[0]!.startsWith('flush set inet pfgrey spamd\nadd element inet pfgrey spamd { '), scripts[0]);

  // --firewall auto (the default) finds the table where there is no pf, as pfgrey run does.
  await writeFile(join(conf, '../b.txt'), '203.0.113.0/24\n');
  const auto = await runCli([...args, '--pfctl', join(ns.dir, 'no-pfctl'), '-d']);
  t.is(auto.code, 0, auto.stderr);
  t.regex(auto.stderr, new RegExp(`^firewall nft \\(${ns.nft}, table inet pfgrey\\)$`, 'm'));
  t.regex(auto.stderr, /^nftables set spamd in table inet pfgrey: 4 blocks$/m);
  t.deepEqual(await ns.elements('spamd'), ['192.0.2.0/25', '192.0.2.200', '198.51.100.0/25', '203.0.113.0/24']);
});

e2e('pfgrey setup -b with no pf and pfgrey\'s table not loaded says so, and still sends the lists', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  const daemon = await configPortStandIn(t);
  const conf = await spamdConf(t, [['a', 'black', '192.0.2.0/24\n']]);
  const pfctl = join(ns.dir, 'no-pfctl');
  const r = await runCli(['setup', '-b', '--config', conf, '--config-port', String(daemon.port), '--nft', ns.nft, '--pfctl', pfctl]);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey setup: -b: no packet filter to load spamd into: none (${pfctl} does not exist; nftables table inet pfgrey is not loaded)\n`);
  t.is(daemon.received.length, 1);
  // --firewall none asks for no table at all.
  t.deepEqual((await runCli(['setup', '-b', '--firewall', 'none', '--config', conf, '--config-port', String(daemon.port)])).code, 0);
  t.is((await ns.scripts()).length, 0);
});

e2e('nft refuses CIDR blocks for a set that is not an interval set, naming the set and what to declare', async (t) => {
  const dir = await tempDir(t);
  const plain = join(dir, 'plain.nft');
  await writeFile(plain, 'table inet pfgrey {\n  set spamd { type ipv4_addr; }\n}\n');
  const ns = await nftNs(t, { ruleset: plain });
  const err = await t.throwsAsync(nftFirewall({ nft: ns.nft, cidr: true }).replace('spamd', ['192.0.2.0/24']));
  t.is(err?.message, `set spamd in table inet pfgrey takes no CIDR blocks: declare it as \`set spamd { type ipv4_addr; flags interval; }\` (see ${BLACKLIST_RULESET})`);
  t.is((await ns.scripts()).length, 0);
  // Without cidr a block is no address at all.
  await t.throwsAsync(nftFirewall({ nft: ns.nft }).replace('spamd', ['192.0.2.0/24']), { message: /bad address for an nftables set: "192\.0\.2\.0\/24"/ });
});

test('nft CIDR blocks are checked before nft runs, and a host\'s own prefix is dropped', (t) => {
  t.deepEqual(splitAddresses(['192.0.2.0/24', '192.0.2.7/32', '2001:db8::/32', '2001:db8::1/128', '192.0.2.7'], { cidr: true }),
    { v4: ['192.0.2.0/24', '192.0.2.7'], v6: ['2001:db8::/32', '2001:db8::1'] });
  for (const bad of ['192.0.2.0/33', '2001:db8::/129', '192.0.2.0/', '192.0.2.0/8/8', 'x/8', '192.0.2.0/ 8', '192.0.2.0/8 }']) {
    t.throws(() => splitAddresses([bad], { cidr: true }), { message: /bad address or block for an nftables set/ }, bad);
  }
});

e2e('a blacklist of 300,000 blocks replaces the set in one transaction, into an empty set and into a full one', async (t) => {
  const ns = await nftNs(t, { ruleset: BLACKLIST_RULESET });
  // Disjoint blocks, as pfgrey setup hands them over: /32s and /24s 512 addresses apart.
  const blocks = (offset: number) => Array.from({ length: 300_000 }, (_, i) => {
    const n = 0x01000000 + i * 512 + offset;
    const quad = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}`;
    return i % 2 === 0 ? `${quad}.7` : `${quad}.0/24`;
  });
  // nft, not pfgrey, sets the pace here; this bounds a stuck nft, it measures nothing.
  const fw = nftFirewall({ nft: ns.nft, cidr: true, timeout: 300_000 });
  await fw.replace('spamd', blocks(0));
  await fw.replace('spamd', blocks(256));
  // Listing (or looking up in) 300,000 elements costs the kernel seconds: done once, at the end.
  const { stdout } = await execFileP('ip', ['netns', 'exec', ns.name, NFT, '-j', 'list', 'set', 'inet', 'pfgrey', 'spamd'], { maxBuffer: 256 * 1024 * 1024 });
  const listed = parseNftSetJson(stdout);
  t.is(listed.length, 300_000);
  t.true(listed.includes('1.0.1.7') && listed.includes('1.0.3.0/24') && listed.includes('10.39.191.0/24'));
  t.false(listed.includes('1.0.0.7') || listed.includes('1.0.2.0/24'), 'nothing of the first list is left');
  t.is((await ns.scripts()).length, 2, 'one nft -f - each');
});

e2e('loading pfgrey-blacklist.nft again keeps the set spamd, and it and pfgrey.nft replace each other\'s rules', async (t) => {
  const ns = await nftNs(t, { ruleset: false });
  await ns.nft$(['-c', '-f', BLACKLIST_RULESET]);
  await ns.nft$(['-f', BLACKLIST_RULESET]);
  await nftFirewall({ nft: ns.nft, cidr: true }).replace('spamd', ['192.0.2.0/24']);
  await ns.nft$(['-f', BLACKLIST_RULESET]);
  t.deepEqual(await ns.elements('spamd'), ['192.0.2.0/24']);
  const prerouting = () => ns.nft$(['list', 'chain', 'inet', 'pfgrey', 'prerouting']);
  const only = await prerouting();
  t.regex(only, /tcp dport 25 ip saddr @spamd fib daddr type local counter packets \d+ bytes \d+ dnat ip to ip daddr:8025/);
  t.notRegex(only, /spamd-white/);
  await ns.nft$(['-f', RULESET]);
  t.notRegex(await prerouting(), /@spamd /);
  await ns.nft$(['-f', BLACKLIST_RULESET]);
  t.notRegex(await prerouting(), /spamd-white/);
  t.is((await prerouting()).match(/dnat/g)?.length, 1);
  // The header names the flags that go with it.
  const header = await readFile(BLACKLIST_RULESET, 'utf8');
  t.regex(header, /^#\s+pfgrey run -b -l 0\.0\.0\.0$/m);
  t.regex(header, /^#\s+pfgrey setup -b$/m);
});

// ---- Debian 12's nftables layout -----------------------------------------------------------

/**
 * Debian 12's /etc/nftables.conf as the nftables package (1.0.6-2+deb12u2) installs it: `flush
 * ruleset`, one table, no include and no /etc/nftables.d. nftables.service loads it at boot (once
 * enabled) and on `systemctl reload nftables`.
 */
const DEBIAN_CONF = join(FIXTURES, 'debian-12-nftables.conf');

/** The install lines for that layout (README, rc.d/linux/pfgrey.service), run with /etc/ moved into a temporary directory. */
const DEBIAN_INSTALL = [
  'install -D -m 0644 pf/linux/pfgrey.nft /etc/nftables.d/pfgrey.nft',
  'grep -qsF \'include "/etc/nftables.d/*.nft"\' /etc/nftables.conf || echo \'include "/etc/nftables.d/*.nft"\' >> /etc/nftables.conf',
];

e2e('on Debian 12\'s nftables.conf the install lines load pfgrey.nft after its flush; reloading nftables.conf empties the sets until pfgrey refills them', async (t) => {
  const dir = await tempDir(t);
  const conf = join(dir, 'etc/nftables.conf');
  await must('install', ['-D', '-m', '0644', DEBIAN_CONF, conf]);
  const debian = await readFile(conf, 'utf8');
  t.regex(debian, /^flush ruleset$/m);
  t.notRegex(debian, /include/);
  for (let i = 0; i < 2; i++) {
    for (const line of DEBIAN_INSTALL) {
      await must('sh', ['-c', line.replaceAll('/etc/', `${dir}/etc/`).replace('pf/linux/pfgrey.nft', RULESET)]);
    }
  }
  const installed = await readFile(conf, 'utf8');
  t.is(installed, `${debian}include "${dir}/etc/nftables.d/*.nft"\n`, 'the include once, after the flush, however often the lines run');

  const ns = await nftNs(t, { ruleset: conf });
  t.deepEqual((await ns.nft$(['list', 'tables'])).trim().split('\n'), ['table inet filter', 'table inet pfgrey']);
  const fw = nftFirewall({ nft: ns.nft });
  await fw.replace('spamd-white', ['192.0.2.1']);
  // Loading pfgrey's file alone (as after editing it) keeps the whitelist.
  await ns.nft$(['-f', join(dir, 'etc/nftables.d/pfgrey.nft')]);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1']);
  // What `systemctl reload nftables` runs: the flush takes pfgrey's table with it, the include
  // declares it again, empty. The rules are back at once; the addresses come with pfgrey's next push.
  await ns.nft$(['-f', conf]);
  t.deepEqual(await ns.elements('spamd-white'), []);
  t.regex(await ns.nft$(['list', 'chain', 'inet', 'pfgrey', 'prerouting']), /ip saddr @spamd-white return/);
  await fw.replace('spamd-white', ['192.0.2.1']);
  t.deepEqual(await ns.elements('spamd-white'), ['192.0.2.1']);
});

e2e('an include glob that matches nothing is no error, so nftables.conf still loads once pfgrey\'s file is removed', async (t) => {
  const dir = await tempDir(t);
  const conf = join(dir, 'nftables.conf');
  await writeFile(conf, `${await readFile(DEBIAN_CONF, 'utf8')}include "${dir}/nftables.d/*.nft"\n`);
  const ns = await nftNs(t, { ruleset: conf });
  t.deepEqual((await ns.nft$(['list', 'tables'])).trim().split('\n'), ['table inet filter']);
});

e2e('pfgrey-blacklist.nft sends SMTP clients in @spamd to 8025 and everybody else to 25, nospamd ones never to 8025', async (t) => {
  const mx = await netns(t);
  const client = await netns(t);
  await must('ip', ['-n', mx, 'link', 'add', 'mx0', 'type', 'veth', 'peer', 'name', 'cl0', 'netns', client]);
  for (const [ns, dev, addr] of [[mx, 'mx0', '192.0.2.1/24'], [client, 'cl0', '192.0.2.2/24']] as const) {
    await must('ip', ['-n', ns, 'addr', 'add', addr, 'dev', dev]);
    for (const link of [dev, 'lo']) await must('ip', ['-n', ns, 'link', 'set', link, 'up']);
  }
  await must('ip', ['netns', 'exec', mx, NFT, '-f', BLACKLIST_RULESET]);
  const server = spawn('ip', ['netns', 'exec', mx, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    server.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve();
    });
    server.on('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  const connect = async () => (await must('ip', ['netns', 'exec', client, process.execPath, '-e', CLIENT, '192.0.2.1', '25'])).trim();
  const mxNft = join(await tempDir(t), 'nft');
  script(mxNft, `#!/bin/sh\nexec ip netns exec ${mx} ${NFT} "$@"\n`);
  const fw = nftFirewall({ nft: mxNft, cidr: true });

  t.is(await connect(), '25 192.0.2.1', 'on no blacklist: the real MTA, not greylisted');
  await fw.replace('spamd', ['192.0.2.0/30', '198.51.100.0/24']);
  t.is(await connect(), '8025 192.0.2.1', 'blacklisted: the tarpit');
  await must('ip', ['netns', 'exec', mx, NFT, 'add', 'element', 'inet', 'pfgrey', 'nospamd', '{ 192.0.2.2 }']);
  t.is(await connect(), '25 192.0.2.1', 'nospamd wins over a blacklist');
});
