import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { policyCommand } from '../src/cli/policy.js';
import { parseRunArgs } from '../src/cli/run.js';
import { setupCommand } from '../src/cli/setup.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { lacking } from './helpers/require.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const unit = path.join(root, 'rc.d/linux/pfgrey.service');
const policyUnit = path.join(root, 'rc.d/linux/pfgrey-policy.service');
const setupUnit = path.join(root, 'rc.d/linux/pfgrey-setup.service');
const setupTimer = path.join(root, 'rc.d/linux/pfgrey-setup.timer');
const logdUnit = path.join(root, 'rc.d/linux/pfgrey-logd.service');

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

for (const file of [unit, policyUnit, setupUnit, setupTimer, logdUnit]) {
  test(`systemd-analyze finds nothing wrong with ${path.basename(file)} but the uninstalled binary`, (t) => {
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    if (r.error) {
      lacking(t, `systemd-analyze is not available (${r.error.message})`);
      return;
    }
    const problems = `${r.stdout}${r.stderr}`.split('\n')
      .filter((l) => l.trim() !== '')
      .filter((l) => !/Command pfgrey is not executable|man pfgrey\(8\)/.test(l));
    t.deepEqual(problems, []);
  });
}

test('the README\'s sync drop-in hands the key over as a credential: the unit with it verifies, and its flags parse', async (t) => {
  const readme = await fs.readFile(path.join(root, 'README.md'), 'utf8');
  const m = /```ini\n(\[Service\]\nLoadCredential=spamd\.key:\/etc\/mail\/spamd\.key\n[^`]*)```/.exec(readme);
  if (!m) return t.fail('README: no [Service] drop-in with LoadCredential=spamd.key');
  const dropIn = m[1]!;
  const flags = /^Environment="PFGREY_FLAGS=(.*)"$/m.exec(dropIn)?.[1];
  t.truthy(flags, dropIn);
  // As systemd would run it, %d being the credentials directory.
  const { config } = parseRunArgs(['--db', '/tmp/x.db', ...flags!.replaceAll('%d', '/run/credentials/pfgrey.service').split(' ')], {});
  t.is(config.sync?.keyFile, '/run/credentials/pfgrey.service/spamd.key');
  const dir = await fs.mkdtemp(path.join(root, '.build', 'unit-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const combined = (await fs.readFile(unit, 'utf8')).replace(/^\[Service\]\n/m, dropIn);
  await fs.writeFile(path.join(dir, 'pfgrey.service'), combined);
  const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'pfgrey.service')], { encoding: 'utf8' });
  if (r.error) return lacking(t, `systemd-analyze is not available (${r.error.message})`);
  const problems = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '')
    .filter((l) => !/Command pfgrey is not executable|man pfgrey\(8\)/.test(l));
  t.deepEqual(problems, []);
});

// --- pfgrey-policy.service ---------------------------------------------------------------------

/** A unit's settings in `section` ([Service] unless named), in order, with systemd's own quoting of Environment= undone. */
async function serviceSettings(file: string, section = 'Service'): Promise<Array<[string, string]>> {
  const text = await fs.readFile(file, 'utf8');
  const body = new RegExp(`^\\[${section}\\]\n([\\s\\S]*?)(?=^\\[|(?![\\s\\S]))`, 'm').exec(text)?.[1] ?? '';
  return body.split('\n').filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => {
    const at = l.indexOf('=');
    return [l.slice(0, at), l.slice(at + 1).replace(/^"(.*)"$/, '$1')];
  });
}

function setting(settings: Array<[string, string]>, key: string): string | undefined {
  return settings.filter(([k]) => k === key).at(-1)?.[1];
}

/** The dynamic user a unit runs as: User=, or else named after the unit (systemd.exec(5), DynamicUser=). */
function dynamicUser(file: string, settings: Array<[string, string]>): string {
  return setting(settings, 'User') ?? path.basename(file, '.service');
}

test('the policy unit runs pfgrey policy on the tarpit\'s database, listening where Postfix is told to ask by default', async (t) => {
  const text = await fs.readFile(policyUnit, 'utf8');
  const exec = /^ExecStart=pfgrey (policy .*?) \$PFGREY_POLICY_FLAGS$/m.exec(text);
  t.truthy(exec, 'an ExecStart line that ends with the flags');
  const settings = await serviceSettings(policyUnit);
  const env = setting(settings, 'Environment');
  t.is(env, `PFGREY_POLICY_FLAGS=--inet ${DEFAULTS.policyHost}:${DEFAULTS.policyPort}`);
  const args = [...exec![1]!.split(/\s+/).slice(1), ...env!.replace(/^PFGREY_POLICY_FLAGS=/, '').split(/\s+/)];
  // The arguments parse, as pfgrey policy will parse them (--help stops it after the parse).
  const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough(), env: {} };
  t.is(await policyCommand([...args, '--help'], io), 0);
  const tarpit = /^ExecStart=pfgrey run .*--db (\S+)/m.exec(await fs.readFile(unit, 'utf8'))![1];
  t.is(/--db (\S+)/.exec(exec![1]!)![1], tarpit, 'the database pfgrey.service keeps');
  // The main.cf line the unit's comment gives names that listener.
  t.regex(text, /check_policy_service inet:127\.0\.0\.1:10023$/m);
  t.regex(text, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
});

test('the policy unit runs as pfgrey.service\'s dynamic user, so the two share /var/lib/pfgrey without taking it from each other', async (t) => {
  const tarpit = await serviceSettings(unit);
  const policy = await serviceSettings(policyUnit);
  // Two dynamic users would each be handed the state directory at their start (systemd #7090);
  // one name is one user, shared while either unit runs.
  t.is(setting(policy, 'DynamicUser'), 'yes');
  t.is(setting(tarpit, 'DynamicUser'), 'yes');
  t.is(dynamicUser(policyUnit, policy), dynamicUser(unit, tarpit));
  t.is(setting(policy, 'Group') ?? dynamicUser(policyUnit, policy), setting(tarpit, 'Group') ?? dynamicUser(unit, tarpit));
  for (const key of ['StateDirectory', 'StateDirectoryMode']) t.is(setting(policy, key), setting(tarpit, key), key);
  const db = /--db (\S+)/.exec(setting(policy, 'ExecStart')!)![1]!;
  t.is(path.dirname(db), `/var/lib/${setting(policy, 'StateDirectory')}`);
});

// Settings of pfgrey.service that are about what it runs, not how it is confined.
const NOT_HARDENING = new Set(['Type', 'Environment', 'ExecStart', 'ExecReload', 'Restart', 'RestartSec', 'KillSignal',
  'TimeoutStopSec', 'AmbientCapabilities', 'CapabilityBoundingSet', 'RestrictAddressFamilies']);

test('the policy unit is confined as pfgrey.service is, with no capability and no address family it does not need', async (t) => {
  const tarpit = await serviceSettings(unit);
  const policy = await serviceSettings(policyUnit);
  const hardening = tarpit.filter(([k]) => !NOT_HARDENING.has(k));
  t.true(hardening.length >= 10, hardening.map(([k]) => k).join(' '));
  for (const [key, value] of hardening) t.is(setting(policy, key), value, key);
  t.is(setting(policy, 'CapabilityBoundingSet'), '');
  t.is(setting(policy, 'AmbientCapabilities'), undefined);
  const families = setting(policy, 'RestrictAddressFamilies')!.split(' ');
  t.deepEqual(families.filter((f) => !setting(tarpit, 'RestrictAddressFamilies')!.split(' ').includes(f)), []);
  t.false(families.includes('AF_NETLINK'));
});

test('the policy unit is ordered before the MTA units, and before the one that runs Postfix where Postfix is installed', async (t) => {
  const text = await fs.readFile(policyUnit, 'utf8');
  const before = [...text.matchAll(/^Before=(.*)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  for (const mta of ['postfix.service', 'exim4.service']) t.true(before.includes(mta), mta);
  t.false(/^(After|Requires|BindsTo)=.*\b(postfix|exim)/m.test(text), 'nothing that waits for the MTA');
  // Debian's postfix.service only runs /bin/true; postfix@-.service, ordered before it, runs
  // Postfix. Whichever unit installed here runs Postfix must be named.
  const installed: string[] = [];
  for (const dir of ['/lib/systemd/system', '/usr/lib/systemd/system']) {
    for (const name of ['postfix.service', 'postfix@.service']) {
      const body = await fs.readFile(path.join(dir, name), 'utf8').catch(() => undefined);
      if (body === undefined || installed.includes(name)) continue;
      installed.push(name);
      const start = /^ExecStart=(.*)$/m.exec(body)?.[1] ?? '';
      if (/^\/(usr\/)?bin\/true$/.test(start.trim())) continue;
      const runs = name === 'postfix@.service' ? 'postfix@-.service' : name;
      t.true(before.includes(runs), `${runs} runs Postfix here (${start})`);
    }
  }
  if (installed.length === 0) lacking(t, 'Postfix\'s systemd units are not installed');
});

// --- pfgrey-setup.service and pfgrey-setup.timer -----------------------------------------------

test('the setup unit runs pfgrey setup with arguments it takes, -b too, waiting for a daemon that is still starting', async (t) => {
  const settings = await serviceSettings(setupUnit);
  t.is(setting(settings, 'Type'), 'oneshot');
  const exec = /^pfgrey (setup .*?) \$PFGREY_SETUP_FLAGS$/.exec(setting(settings, 'ExecStart') ?? '');
  t.truthy(exec, 'an ExecStart line that ends with the flags');
  t.is(setting(settings, 'Environment'), 'PFGREY_SETUP_FLAGS=');
  const args = exec![1]!.split(/\s+/).slice(1);
  t.deepEqual(args.slice(0, 2), ['--wait-for-daemon', '30']);
  const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough(), env: {} };
  // --help stops it once the arguments parse, as they will when systemd runs it.
  for (const flags of [[], ['-b']]) t.is(await setupCommand([...args, ...flags, '--help'], io), 0, flags.join(' '));
});

test('the setup unit follows the daemon: ordered after it and started with it, and after the ruleset is loaded', async (t) => {
  const after = (await serviceSettings(setupUnit, 'Unit')).filter(([k]) => k === 'After').flatMap(([, v]) => v.split(/\s+/));
  for (const u of ['pfgrey.service', 'nftables.service']) t.true(after.includes(u), u);
  t.deepEqual((await serviceSettings(setupUnit, 'Install')), [['WantedBy', 'pfgrey.service']]);
  t.false(/^(Requires|Wants|BindsTo)=.*pfgrey\.service/m.test(await fs.readFile(setupUnit, 'utf8')), 'a timer run never starts the daemon');
});

test('the setup timer runs it hourly at a random minute that stays the same, as ~ in OpenBSD\'s crontab', async (t) => {
  const timer = await serviceSettings(setupTimer, 'Timer');
  t.deepEqual(timer, [['OnCalendar', 'hourly'], ['RandomizedDelaySec', '1h'], ['FixedRandomDelay', 'yes']]);
  t.deepEqual(await serviceSettings(setupTimer, 'Install'), [['WantedBy', 'timers.target']]);
  t.is(path.basename(setupTimer, '.timer'), path.basename(setupUnit, '.service'), 'the timer starts the unit of its name');
});

test('the setup unit is confined as pfgrey.service is, with the two capabilities it uses and no state', async (t) => {
  const tarpit = await serviceSettings(unit);
  const setup = await serviceSettings(setupUnit);
  const hardening = tarpit.filter(([k]) => !NOT_HARDENING.has(k) && !k.startsWith('StateDirectory'));
  t.true(hardening.length >= 10, hardening.map(([k]) => k).join(' '));
  for (const [key, value] of hardening) t.is(setting(setup, key), value, key);
  // CAP_NET_BIND_SERVICE: the reserved source port pfgrey run wants lists from; CAP_NET_ADMIN: nft under -b.
  for (const key of ['AmbientCapabilities', 'CapabilityBoundingSet']) {
    t.deepEqual(setting(setup, key)!.split(' ').sort(), ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE'], key);
  }
  t.is(setting(setup, 'RestrictAddressFamilies'), setting(tarpit, 'RestrictAddressFamilies'), 'inet for lists and the config port, netlink for nft');
  t.is(setting(setup, 'StateDirectory'), undefined);
});

test('pfgrey.service with PFGREY_FLAGS=-b runs blacklist-only with the flags pfgrey-blacklist.nft names', async (t) => {
  const exec = /^ExecStart=pfgrey (run .*?) \$PFGREY_FLAGS$/m.exec(await fs.readFile(unit, 'utf8'))![1]!.split(/\s+/);
  const ruleset = await fs.readFile(path.join(root, 'pf/linux/pfgrey-blacklist.nft'), 'utf8');
  const named = /pfgrey (run [^\n]*)/.exec(ruleset)![1]!.trim().split(/\s+/);
  const { config } = parseRunArgs([...exec.slice(1), '-b'], {});
  t.true(config.blacklistOnly);
  const { config: wanted } = parseRunArgs(named.slice(1), {});
  t.is(config.tarpit.host, wanted.tarpit.host);
  t.is(config.tarpit.port, wanted.tarpit.port);
});

// --- pfgrey-logd.service -----------------------------------------------------------------------

test('the logd unit runs pfgrey logd as pfgrey.service\'s user on its database, with flags logd takes', async (t) => {
  const tarpit = await serviceSettings(unit);
  const logd = await serviceSettings(logdUnit);
  t.is(setting(logd, 'DynamicUser'), 'yes');
  t.is(dynamicUser(logdUnit, logd), dynamicUser(unit, tarpit));
  t.is(setting(logd, 'StateDirectory'), setting(tarpit, 'StateDirectory'));
  const exec = /^pfgrey (logd .*?) \$PFGREY_LOGD_FLAGS$/.exec(setting(logd, 'ExecStart')!);
  t.truthy(exec, 'ExecStart=pfgrey logd … $PFGREY_LOGD_FLAGS');
  t.is(/--db (\S+)/.exec(exec![1]!)![1], /--db (\S+)/.exec(setting(tarpit, 'ExecStart')!)![1]);
  // The flags parse: --help after them is honoured only once they are all known.
  const { logdCommand } = await import('../src/cli/logd.js');
  const out = new PassThrough();
  const err = new PassThrough();
  let errText = '';
  err.on('data', (d: Buffer) => (errText += d.toString()));
  const code = await logdCommand([...exec![1]!.split(/\s+/).slice(1), '--help'], { stdin: process.stdin, stdout: out, stderr: err, env: {} } as never);
  t.is(code, 0, errText);
  t.is(setting(logd, 'AmbientCapabilities'), 'CAP_NET_ADMIN');
  t.is(setting(logd, 'CapabilityBoundingSet'), 'CAP_NET_ADMIN');
  t.regex(setting(logd, 'RestrictAddressFamilies')!, /AF_NETLINK/);
  t.regex(setting(await serviceSettings(logdUnit, 'Unit'), 'After')!, /pfgrey\.service/);
});

test('the one capability the logd unit grants is what tcpdump needs to read an nflog group as another user', (t) => {
  const tcpdump = ['/usr/sbin/tcpdump', '/usr/bin/tcpdump'].find((p) => spawnSync('test', ['-x', p]).status === 0);
  if (process.getuid?.() !== 0 || tcpdump === undefined || spawnSync('setpriv', ['--version']).error) {
    lacking(t, 'needs root, tcpdump and setpriv');
    return;
  }
  const as = (caps: string[]) => spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...caps,
    tcpdump, '-n', '-c', '1', '-i', 'nflog:4093'], { encoding: 'utf8', timeout: 3000 });
  const without = as([]);
  t.regex(without.stderr, /Operation not permitted/);
  const granted = as(['--inh-caps=+net_admin', '--ambient-caps=+net_admin']);
  // It listens (and is stopped by the timeout, as no packet comes): no permission error.
  t.regex(granted.stderr, /listening on nflog:4093/);
  t.notRegex(granted.stderr, /not permitted/);
});
