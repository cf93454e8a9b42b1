import test from 'ava';
import { closeSync, openSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ManualClock } from '../src/clock.js';
import { isPfgreyError, PfgreyError } from '../src/errors.js';
import { noneFirewall } from '../src/firewall/none.js';
import { parseShow, pfFirewall } from '../src/firewall/pf.js';
import { chooseFirewall } from '../src/firewall/select.js';
import { WhitelistSync } from '../src/firewall/sync.js';
import { memoryLogger } from '../src/log.js';
import { eventually } from './helpers/wait.js';

// A pfctl stand-in. Each run records call.N.argv (one argument a line), call.N.stdin,
// call.N.pid and, when given `-p PATH`, what PATH reads as (call.N.device), so a test can check
// that the descriptor really reached the child. Control files in its directory steer it:
//   mode   hang (exec sleep, never answers) | half (reads a little stdin, exits 1) |
//          signal (kills itself with SIGTERM); anything else or absent: normal
//   status exit status of a normal run (default 0); non-zero also writes two stderr lines
//   hold   while it exists, a normal run waits before exiting
//   show   printed on stdout by a normal run
const STAND_IN = `#!/bin/sh
d=$(dirname "$0")
n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$d/count"
c="$d/call.$n"
: > "$c.argv"
for a in "$@"; do printf '%s\\n' "$a" >> "$c.argv"; done
echo $$ > "$c.pid"
if [ "$1" = "-p" ]; then cat "$2" > "$c.device" 2>&1 || echo "cannot read $2" >> "$c.device"; fi
mode=$(cat "$d/mode" 2>/dev/null)
case "$mode" in
  hang) exec sleep 1000 ;;
  half) head -c 100 > "$c.stdin"; echo "pfctl: stopped reading" >&2; exit 1 ;;
  signal) cat > "$c.stdin"; kill -TERM $$; sleep 5 ;;
esac
cat > "$c.stdin"
while [ -e "$d/hold" ]; do sleep 0.05; done
[ -f "$d/show" ] && cat "$d/show"
status=$(cat "$d/status" 2>/dev/null || echo 0)
if [ "$status" != 0 ]; then printf 'pfctl: Table does not exist.\\nsecond line\\n' >&2; fi
exit "$status"
`;

interface StandIn {
  dir: string;
  pfctl: string;
  set(name: 'mode' | 'status' | 'hold' | 'show', content: string): Promise<void>;
  clear(name: 'mode' | 'status' | 'hold' | 'show'): Promise<void>;
  count(): Promise<number>;
  call(n: number): Promise<{ argv: string[]; stdin: string; device: string | undefined; pid: number }>;
}

const dirs: string[] = [];
const pids: number[] = [];

async function standIn(): Promise<StandIn> {
  const dir = await mkdtemp(join(tmpdir(), 'pfgrey-fw-'));
  dirs.push(dir);
  const pfctl = join(dir, 'pfctl');
  await writeFile(pfctl, STAND_IN, { mode: 0o755 });
  const read = async (name: string): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, name), 'utf8');
    } catch {
      return undefined;
    }
  };
  return {
    dir,
    pfctl,
    set: (name, content) => writeFile(join(dir, name), content),
    clear: (name) => unlink(join(dir, name)).catch(() => {}),
    count: async () => Number((await read('count')) ?? 0),
    call: async (n) => {
      const pid = Number(await read(`call.${n}.pid`));
      if (pid > 0) pids.push(pid);
      return {
        argv: ((await read(`call.${n}.argv`)) ?? '').split('\n').filter((l) => l !== ''),
        stdin: (await read(`call.${n}.stdin`)) ?? '',
        device: await read(`call.${n}.device`),
        pid,
      };
    },
  };
}

test.after.always(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone, as it should be.
    }
  }
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const REPLACE = ['-q', '-t', 'spamd-white', '-T', 'replace', '-f', '-'];

// ---- pf ---------------------------------------------------------------------------------

test('pf replace runs pfctl with spamd argv and one /32 or /128 line per address on stdin', async (t) => {
  const s = await standIn();
  const fw = pfFirewall({ pfctl: s.pfctl });
  t.is(fw.name, 'pf');
  await fw.replace('spamd-white', ['192.0.2.1', '198.51.100.20', '2001:db8::7']);
  t.is(await s.count(), 1);
  const c = await s.call(1);
  t.deepEqual(c.argv, REPLACE);
  t.is(c.stdin, '192.0.2.1/32\n198.51.100.20/32\n2001:db8::7/128\n');
});

test('pf replace with an empty list sends empty stdin, emptying the table as spamd does', async (t) => {
  const s = await standIn();
  await pfFirewall({ pfctl: s.pfctl }).replace('spamd-white', []);
  const c = await s.call(1);
  t.deepEqual(c.argv, REPLACE);
  t.is(c.stdin, '');
});

test('pf with deviceFd passes the open device as fd 3 and names it with -p /dev/fd/3', async (t) => {
  const s = await standIn();
  const device = join(s.dir, 'fake-pf');
  await writeFile(device, 'FAKE-PF-DEVICE\n');
  const fd = openSync(device, 'r+');
  t.teardown(() => closeSync(fd));
  await pfFirewall({ pfctl: s.pfctl, deviceFd: fd }).replace('spamd-white', ['192.0.2.1']);
  const c = await s.call(1);
  t.deepEqual(c.argv, ['-p', '/dev/fd/3', ...REPLACE]);
  // The child read the device through its own fd 3: the descriptor really was handed down.
  t.is(c.device, 'FAKE-PF-DEVICE\n');
  t.is(c.stdin, '192.0.2.1/32\n');
});

test('pf add and delete use -T add / -T delete with the addresses on stdin', async (t) => {
  const s = await standIn();
  const fw = pfFirewall({ pfctl: s.pfctl });
  await fw.add('spamd', ['192.0.2.9']);
  await fw.delete('spamd', ['192.0.2.9', '2001:db8::1']);
  const add = await s.call(1);
  const del = await s.call(2);
  t.deepEqual(add.argv, ['-q', '-t', 'spamd', '-T', 'add', '-f', '-']);
  t.is(add.stdin, '192.0.2.9/32\n');
  t.deepEqual(del.argv, ['-q', '-t', 'spamd', '-T', 'delete', '-f', '-']);
  t.is(del.stdin, '192.0.2.9/32\n2001:db8::1/128\n');
});

test('pf show runs -T show and strips the indentation and host prefixes', async (t) => {
  const s = await standIn();
  await s.set('show', '   192.0.2.1/32\n   2001:db8::1/128\n   10.0.0.0/8\n   198.51.100.7\n\n');
  const got = await pfFirewall({ pfctl: s.pfctl }).show('spamd-white');
  t.deepEqual(got, ['192.0.2.1', '2001:db8::1', '10.0.0.0/8', '198.51.100.7']);
  t.deepEqual((await s.call(1)).argv, ['-q', '-t', 'spamd-white', '-T', 'show']);
  t.deepEqual(parseShow(''), []);
  t.deepEqual(parseShow('   2001:db8::/32\n   10.1.2.0/32x\n   192.0.2.0/128\n'), ['2001:db8::/32', '10.1.2.0/32x', '192.0.2.0/128'],
    'a network whose prefix happens to be 32 or 128 keeps it');
});

test('pf failure carries the exit status and the first stderr lines in an E_FIREWALL error', async (t) => {
  const s = await standIn();
  await s.set('status', '3');
  const err = await t.throwsAsync(pfFirewall({ pfctl: s.pfctl }).replace('spamd-white', ['192.0.2.1']), {
    instanceOf: PfgreyError,
  });
  t.is(err?.code, 'E_FIREWALL');
  t.is(err?.message,
    `${s.pfctl} -t spamd-white -T replace: exited with status 3: pfctl: Table does not exist.; second line`);
});

test('pf reports a pfctl killed by a signal', async (t) => {
  const s = await standIn();
  await s.set('mode', 'signal');
  const err = await t.throwsAsync(pfFirewall({ pfctl: s.pfctl }).replace('spamd-white', ['192.0.2.1']));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
  t.regex(err?.message ?? '', /-T replace: died on signal SIGTERM/);
});

test('pf kills a pfctl that hangs past the timeout and rejects E_FIREWALL_TIMEOUT', async (t) => {
  const s = await standIn();
  await s.set('mode', 'hang');
  const started = Date.now();
  // Long enough for the stand-in to have written its pid, even on a loaded machine.
  const err = await t.throwsAsync(
    pfFirewall({ pfctl: s.pfctl, timeout: 2000 }).replace('spamd-white', ['192.0.2.1']));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL_TIMEOUT');
  t.regex(err?.message ?? '', /spamd-white -T replace: no answer after 2s; killed it/);
  t.true(Date.now() - started >= 1900);
  const { pid } = await s.call(1);
  t.true(pid > 0, 'the stand-in ran');
  await eventually(() => !alive(pid), 'the hung pfctl to die');
});

test('pf reports an absent or non-executable pfctl as cannot run', async (t) => {
  const s = await standIn();
  const missing = join(s.dir, 'no-such-pfctl');
  const e1 = await t.throwsAsync(pfFirewall({ pfctl: missing }).replace('spamd-white', ['192.0.2.1']));
  t.true(isPfgreyError(e1) && e1.code === 'E_FIREWALL');
  t.regex(e1?.message ?? '', new RegExp(`^cannot run ${missing}: .*ENOENT`));

  await chmod(s.pfctl, 0o644);
  const e2 = await t.throwsAsync(pfFirewall({ pfctl: s.pfctl }).show('spamd-white'));
  t.regex(e2?.message ?? '', new RegExp(`^cannot run ${s.pfctl}: .*EACCES`));
});

test('pf survives a pfctl that exits without reading all of stdin (EPIPE)', async (t) => {
  const s = await standIn();
  await s.set('mode', 'half');
  // Far more than a pipe buffer, so the write is still going when the reader is gone.
  const many = Array.from({ length: 30_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  const err = await t.throwsAsync(pfFirewall({ pfctl: s.pfctl }).replace('spamd-white', many));
  t.true(isPfgreyError(err) && err.code === 'E_FIREWALL');
  t.regex(err?.message ?? '', /exited with status 1: pfctl: stopped reading$/);
});

test('pf refuses bad table names and bad addresses without running pfctl', async (t) => {
  const s = await standIn();
  const fw = pfFirewall({ pfctl: s.pfctl });
  for (const bad of ['', 'spamd white', 'spamd/white', 'x'.repeat(32), 'tab\tle', 'a\nb']) {
    const err = await t.throwsAsync(fw.replace(bad, ['192.0.2.1']));
    t.true(isPfgreyError(err) && err.code === 'E_FIREWALL', bad);
  }
  for (const bad of ['192.0.2.1\n10.0.0.0/8', '192.0.2.1/32', 'example.org', '']) {
    const err = await t.throwsAsync(fw.add('spamd-white', [bad]));
    t.true(isPfgreyError(err) && err.code === 'E_FIREWALL', bad);
  }
  t.is(await s.count(), 0);
  await fw.replace('x'.repeat(31), []);
  t.is(await s.count(), 1);
});

// ---- none -------------------------------------------------------------------------------

test('none firewall logs what it would push, naming at most ten addresses', async (t) => {
  const log = memoryLogger();
  const fw = noneFirewall(log);
  t.is(fw.name, 'none');
  const addrs = Array.from({ length: 12 }, (_, i) => `192.0.2.${i + 1}`);
  await fw.replace('spamd-white', addrs);
  t.deepEqual(log.lines, [
    'info: firewall none: table <spamd-white> would now hold 12 addresses: ' +
      '192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5, 192.0.2.6, 192.0.2.7, 192.0.2.8, ' +
      '192.0.2.9, 192.0.2.10, … and 2 more',
  ]);
  t.deepEqual(await fw.show('spamd-white'), addrs);

  await fw.replace('spamd-white', ['192.0.2.1', '192.0.2.2', '2001:db8::1']);
  t.is(log.lines.at(-1),
    'info: firewall none: table <spamd-white> would now hold 3 addresses: 192.0.2.1, 192.0.2.2, 2001:db8::1');
  await fw.add('spamd-white', ['198.51.100.1']);
  await fw.delete('spamd-white', ['192.0.2.2']);
  t.deepEqual(await fw.show('spamd-white'), ['192.0.2.1', '2001:db8::1', '198.51.100.1']);
  await fw.replace('spamd-white', []);
  t.is(log.lines.at(-1), 'info: firewall none: table <spamd-white> would now hold 0 addresses');
  t.deepEqual(await fw.show('spamd-white'), []);
  t.deepEqual(await fw.show('never-set'), []);
  await t.throwsAsync(fw.replace('bad name', []), { instanceOf: PfgreyError });
  await t.throwsAsync(fw.add('spamd-white', ['nonsense']), { instanceOf: PfgreyError });
});

// ---- select -----------------------------------------------------------------------------

test('chooseFirewall auto picks none when pfctl is missing', async (t) => {
  const s = await standIn();
  const missing = join(s.dir, 'missing-pfctl');
  const nft = join(s.dir, 'missing-nft');
  const got = await chooseFirewall('auto', { pfctl: missing, pfDevice: join(s.dir, 'pf'), nft, log: memoryLogger() });
  t.is(got.firewall.name, 'none');
  t.is(got.reason, `none (${missing} does not exist; ${nft} does not exist)`);
  t.is(got.deviceFd, undefined);
});

test('chooseFirewall auto picks none when pfctl is not executable or the device will not open', async (t) => {
  const s = await standIn();
  const device = join(s.dir, 'pf');
  await writeFile(device, '');
  await chmod(s.pfctl, 0o644);
  const nft = join(s.dir, 'missing-nft');
  const a = await chooseFirewall('auto', { pfctl: s.pfctl, pfDevice: device, nft, log: memoryLogger() });
  t.is(a.firewall.name, 'none');
  t.is(a.reason, `none (${s.pfctl} is not executable; ${nft} does not exist)`);

  await chmod(s.pfctl, 0o755);
  const missingDevice = join(s.dir, 'no-pf');
  const b = await chooseFirewall('auto', { pfctl: s.pfctl, pfDevice: missingDevice, nft, log: memoryLogger() });
  t.is(b.firewall.name, 'none');
  t.is(b.reason, `none (cannot open ${missingDevice}: ENOENT; ${nft} does not exist)`);
});

test('chooseFirewall auto picks pf with an executable pfctl and an openable device, and hands the device down', async (t) => {
  const s = await standIn();
  const device = join(s.dir, 'pf');
  await writeFile(device, 'FAKE-DEV-PF\n');
  const got = await chooseFirewall('auto', { pfctl: s.pfctl, pfDevice: device, timeout: 10_000, log: memoryLogger() });
  t.teardown(() => {
    if (got.deviceFd !== undefined) closeSync(got.deviceFd);
  });
  t.is(got.firewall.name, 'pf');
  t.is(got.reason, `pf (${s.pfctl}, ${device})`);
  t.is(typeof got.deviceFd, 'number');
  await got.firewall.replace('spamd-white', ['192.0.2.44']);
  const c = await s.call(1);
  t.deepEqual(c.argv, ['-p', '/dev/fd/3', ...REPLACE]);
  t.is(c.device, 'FAKE-DEV-PF\n');
});

test('chooseFirewall pf with an unopenable device still uses pf, letting pfctl open the device', async (t) => {
  const s = await standIn();
  const log = memoryLogger();
  const missingDevice = join(s.dir, 'no-pf');
  const got = await chooseFirewall('pf', { pfctl: s.pfctl, pfDevice: missingDevice, log });
  t.is(got.firewall.name, 'pf');
  t.is(got.deviceFd, undefined);
  t.regex(got.reason, /^pf \(.*cannot open .*no-pf: ENOENT; pfctl will open it itself\)$/);
  t.true(log.lines.some((l) => l.startsWith('warning: firewall pf: cannot open')));
  await got.firewall.replace('spamd-white', []);
  t.deepEqual((await s.call(1)).argv, REPLACE);
});

test('chooseFirewall none is none', async (t) => {
  const got = await chooseFirewall('none', { log: memoryLogger() });
  t.is(got.firewall.name, 'none');
  t.is(got.reason, 'none (as asked)');
});

// ---- WhitelistSync ----------------------------------------------------------------------

test('sync retries a failing pfctl with doubling backoff until it succeeds, and the table ends as the latest list', async (t) => {
  const s = await standIn();
  await s.set('status', '1');
  const log = memoryLogger();
  const sync = new WhitelistSync({
    firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log, retryMin: 20, retryMax: 80,
  });
  t.teardown(() => sync.stop());
  sync.update(['192.0.2.1', '192.0.2.2']);
  await eventually(async () => (await s.count()) >= 4, 'four failed attempts');
  t.false(sync.inSync);
  t.regex(sync.lastError ?? '', /exited with status 1: pfctl: Table does not exist\.; second line/);
  const errors = log.lines.filter((l) => l.startsWith('error: '));
  t.true(errors.length >= 3);
  t.regex(errors[0]!, /^error: firewall: cannot update table <spamd-white>: .*-T replace: exited with status 1: .*; retrying in 20ms$/);
  t.regex(errors[1]!, /retrying in 40ms$/);
  t.regex(errors[2]!, /retrying in 80ms$/);
  if (errors[3] !== undefined) t.regex(errors[3], /retrying in 80ms$/);

  // Changed while failing: the retry must carry the new list, not the one that failed.
  sync.update(['198.51.100.5', '2001:db8::5', '198.51.100.5']);
  await s.set('status', '0');
  await eventually(() => sync.inSync, 'the table to be back in sync');
  const last = await s.call(await s.count());
  t.deepEqual(last.argv, REPLACE);
  t.is(last.stdin, '198.51.100.5/32\n2001:db8::5/128\n');
  t.is(sync.lastError, undefined);
  t.is(sync.pushedCount, 2);
  t.true(log.lines.includes('notice: firewall: table <spamd-white> is back in sync with 2 addresses'));
});

test('sync coalesces updates made during a push and sends only the latest afterwards', async (t) => {
  const s = await standIn();
  await s.set('hold', '');
  const sync = new WhitelistSync({ firewall: pfFirewall({ pfctl: s.pfctl, timeout: 20_000 }), table: 'spamd-white', log: memoryLogger() });
  t.teardown(() => sync.stop());
  sync.update(['192.0.2.1']);
  await eventually(async () => (await s.count()) === 1, 'the first push to start');
  sync.update(['192.0.2.2']);
  sync.update(['192.0.2.3']);
  sync.update(['192.0.2.4', '192.0.2.5']);
  t.false(sync.inSync);
  await s.clear('hold');
  await sync.flush();
  t.is(await s.count(), 2);
  t.is((await s.call(1)).stdin, '192.0.2.1/32\n');
  t.is((await s.call(2)).stdin, '192.0.2.4/32\n192.0.2.5/32\n');
  t.true(sync.inSync);
  t.is(sync.pushedCount, 2);
  t.is(sync.status.pushes, 2);
});

test('sync skips an unchanged list until the refresh interval has passed, then re-asserts it', async (t) => {
  const s = await standIn();
  const clock = new ManualClock(1_000_000);
  const sync = new WhitelistSync({
    firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log: memoryLogger(), refresh: 60_000, clock,
  });
  t.teardown(() => sync.stop());
  t.false(sync.inSync);
  sync.update(['192.0.2.1', '192.0.2.2']);
  await sync.flush();
  t.is(await s.count(), 1);
  t.true(sync.inSync);

  clock.advance(30_000);
  sync.update(['192.0.2.2', '192.0.2.1']);
  await sync.flush();
  t.is(await s.count(), 1, 'same set, fresh: no push');

  clock.advance(30_000);
  sync.update(['192.0.2.1', '192.0.2.2']);
  await sync.flush();
  t.is(await s.count(), 2, 'same set, a scan interval later: pushed again');

  sync.update(['192.0.2.1']);
  await sync.flush();
  t.is(await s.count(), 3, 'changed: pushed at once');
  t.is((await s.call(3)).stdin, '192.0.2.1/32\n');
});

test('sync pushes an empty whitelist, emptying the table', async (t) => {
  const s = await standIn();
  const sync = new WhitelistSync({ firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log: memoryLogger() });
  sync.update([]);
  await sync.flush();
  t.is(await s.count(), 1);
  t.is((await s.call(1)).stdin, '');
  t.true(sync.inSync);
});

test('sync leaves invalid addresses out with a warning instead of wedging the table', async (t) => {
  const s = await standIn();
  const log = memoryLogger();
  const sync = new WhitelistSync({ firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log });
  sync.update(['192.0.2.1', 'bogus\n10.0.0.0/8', '2001:db8::9']);
  await sync.flush();
  t.is((await s.call(1)).stdin, '192.0.2.1/32\n2001:db8::9/128\n');
  t.true(sync.inSync);
  t.true(log.lines.some((l) => l.startsWith('warning: firewall: leaving 1 invalid address out of <spamd-white>')));
});

test('sync flush during a retry delay tries again at once and resolves after the attempt', async (t) => {
  const s = await standIn();
  await s.set('status', '2');
  const sync = new WhitelistSync({
    firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log: memoryLogger(),
    retryMin: 600_000, retryMax: 600_000,
  });
  t.teardown(() => sync.stop());
  sync.update(['192.0.2.1']);
  await sync.flush();
  t.is(await s.count(), 1);
  t.false(sync.inSync);
  await sync.flush();
  t.is(await s.count(), 2, 'a failed flush still resolves');
  await s.set('status', '0');
  await sync.flush();
  t.is(await s.count(), 3);
  t.true(sync.inSync);
});

test('sync stop ends retries', async (t) => {
  const s = await standIn();
  await s.set('status', '1');
  const sync = new WhitelistSync({
    firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log: memoryLogger(), retryMin: 20, retryMax: 20,
  });
  sync.update(['192.0.2.1']);
  await eventually(async () => (await s.count()) >= 2, 'two attempts');
  sync.stop();
  await sync.flush();
  const n = await s.count();
  // Absence takes waiting: 300 ms is fifteen retry intervals in which no retry may come.
  await sleep(300);
  t.is(await s.count(), n);
  sync.update(['192.0.2.2']);
  await sync.flush();
  t.is(await s.count(), n);
});

test('sync against the none firewall converges and reports in sync', async (t) => {
  const log = memoryLogger();
  const fw = noneFirewall(log);
  const sync = new WhitelistSync({ firewall: fw, table: 'spamd-white', log });
  sync.update(['192.0.2.1', '192.0.2.1', '192.0.2.3']);
  await sync.flush();
  t.deepEqual(await fw.show('spamd-white'), ['192.0.2.1', '192.0.2.3']);
  t.true(sync.inSync);
  t.is(sync.pushedCount, 2);
});

// ---- WhitelistSync: diff pushes ---------------------------------------------------------------

const hundred = Array.from({ length: 100 }, (_, i) => `198.51.100.${i + 1}`);

function diffSync(s: StandIn, opts: Partial<ConstructorParameters<typeof WhitelistSync>[0]> = {}): WhitelistSync {
  return new WhitelistSync({
    firewall: pfFirewall({ pfctl: s.pfctl, timeout: 10_000 }), table: 'spamd-white', log: memoryLogger(), ...opts,
  });
}

test('sync pushes a small change as -T delete and -T add of just the changed addresses', async (t) => {
  const s = await standIn();
  const sync = diffSync(s);
  t.teardown(() => sync.stop());
  sync.update(hundred);
  await sync.flush();
  sync.update([...hundred.slice(2), '203.0.113.1', '203.0.113.2', '203.0.113.3']);
  await sync.flush();
  t.true(sync.inSync);
  t.is(sync.pushedCount, 101);
  t.is(await s.count(), 3);
  const del = await s.call(2);
  const add = await s.call(3);
  t.deepEqual(del.argv, ['-q', '-t', 'spamd-white', '-T', 'delete', '-f', '-']);
  t.is(del.stdin, '198.51.100.1/32\n198.51.100.2/32\n');
  t.deepEqual(add.argv, ['-q', '-t', 'spamd-white', '-T', 'add', '-f', '-']);
  t.is(add.stdin, '203.0.113.1/32\n203.0.113.2/32\n203.0.113.3/32\n');

  sync.update([...hundred.slice(2), '203.0.113.1', '203.0.113.2', '203.0.113.3', '203.0.113.4']);
  await sync.flush();
  t.is(await s.count(), 4, 'only additions: no delete');
  t.deepEqual((await s.call(4)).argv, ['-q', '-t', 'spamd-white', '-T', 'add', '-f', '-']);
  sync.update([...hundred.slice(3), '203.0.113.1', '203.0.113.2', '203.0.113.3', '203.0.113.4']);
  await sync.flush();
  t.is(await s.count(), 5, 'only deletions: no add');
  t.is((await s.call(5)).stdin, '198.51.100.3/32\n');
});

test('sync replaces the table when more than a tenth of it or more than diffMax addresses change', async (t) => {
  const s = await standIn();
  const sync = diffSync(s, { diffMax: 5 });
  t.teardown(() => sync.stop());
  sync.update(hundred);
  await sync.flush();
  const twenty = Array.from({ length: 20 }, (_, i) => `203.0.113.${i + 1}`);
  sync.update([...hundred, ...twenty.slice(0, 6)]);
  await sync.flush();
  t.deepEqual((await s.call(2)).argv, REPLACE, 'six changes, over diffMax 5');
  sync.update([...hundred, ...twenty.slice(0, 11)]);
  await sync.flush();
  t.deepEqual((await s.call(3)).argv.slice(-3), ['add', '-f', '-'], 'five changes');

  const ratio = diffSync(s);
  t.teardown(() => ratio.stop());
  ratio.update(hundred);
  await ratio.flush();
  ratio.update([...hundred, ...twenty.slice(0, 11)]);
  await ratio.flush();
  t.deepEqual((await s.call(5)).argv, REPLACE, 'eleven changes to a table of 100');
  t.is((await s.call(5)).stdin.split('\n').length - 1, 111);
});

test('sync falls back to a full replace after a failed diff, and re-asserts an unchanged list with a replace', async (t) => {
  const s = await standIn();
  const clock = new ManualClock(1_000_000);
  const sync = diffSync(s, { clock, refresh: 60_000, retryMin: 600_000, retryMax: 600_000 });
  t.teardown(() => sync.stop());
  sync.update(hundred);
  await sync.flush();

  await s.set('status', '1');
  sync.update([...hundred, '203.0.113.1']);
  await sync.flush();
  t.deepEqual((await s.call(2)).argv.slice(-3), ['add', '-f', '-']);
  t.false(sync.inSync);
  await s.set('status', '0');
  await sync.flush();
  const retry = await s.call(3);
  t.deepEqual(retry.argv, REPLACE, 'the table is unknown after a failure');
  t.is(retry.stdin.split('\n').length - 1, 101);
  t.true(sync.inSync);

  clock.advance(60_000);
  sync.update([...hundred, '203.0.113.1']);
  await sync.flush();
  t.is(await s.count(), 4);
  t.deepEqual((await s.call(4)).argv, REPLACE, 'unchanged, a scan interval later: replaced');
});

test('sync replaces the table every ten refresh intervals even while the list keeps changing', async (t) => {
  const s = await standIn();
  const clock = new ManualClock(1_000_000);
  const sync = diffSync(s, { clock, refresh: 60_000 });
  t.teardown(() => sync.stop());
  sync.update(hundred);
  await sync.flush();
  for (let i = 1; i <= 10; i++) {
    clock.advance(60_000);
    sync.update([...hundred, `203.0.113.${i}`]);
    await sync.flush();
  }
  const ops = [];
  for (let n = 1; n <= (await s.count()); n++) ops.push((await s.call(n)).argv[4]);
  // The first change only adds; each later one swaps the extra address; the tenth is a replace.
  t.deepEqual(ops, ['replace', 'add', ...Array.from({ length: 8 }, () => ['delete', 'add']).flat(), 'replace']);
});

test('sync with diffMax 0 always replaces', async (t) => {
  const s = await standIn();
  const sync = diffSync(s, { diffMax: 0 });
  t.teardown(() => sync.stop());
  sync.update(hundred);
  await sync.flush();
  sync.update(hundred.slice(1));
  await sync.flush();
  t.deepEqual((await s.call(2)).argv, REPLACE);
});

test('sync leaves out IPv6 addresses with a zone id, which no firewall tool takes', async (t) => {
  const log = memoryLogger();
  const fw = noneFirewall(log);
  const sync = new WhitelistSync({ firewall: fw, table: 'spamd-white', log });
  sync.update(['fe80::1%eth0', '2001:db8::1']);
  await sync.flush();
  t.deepEqual(await fw.show('spamd-white'), ['2001:db8::1']);
  t.true(log.lines.some((l) => l.includes('leaving 1 invalid address out of <spamd-white>: "fe80::1%eth0"')));
});
