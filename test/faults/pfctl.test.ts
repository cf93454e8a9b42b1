// A pfctl that fails, hangs, or dies after reading half of its input: the daemon logs why,
// kills a hung one after --firewall-timeout, retries with doubling backoff, keeps the tarpit
// answering meanwhile, and the table converges to the database once pfctl works again.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openStore } from '../../src/store/sqlite.js';
import { REPLY } from '../../src/tarpit/replies.js';
import { tempDir, testDaemon } from '../helpers/daemon.js';
import { eventually, RawClient } from '../helpers/smtp.js';

/** Enough addresses that pfctl's input (≈ 90 kB) is larger than a pipe holds. */
const WHITE = 6000;
const RETRY_MIN = 200;
const RETRY_MAX = 1600;

// The stand-in: `mode` says how it misbehaves. Every call appends `start-ms mode pid` to
// `calls`; a normal `-T replace` stores its input as `table`, what pf would then hold.
//   fail  reads its input, says why on stderr, exits 1
//   hang  reads nothing and never exits
//   half  reads the first `half` bytes of its input, exits 1
const STAND_IN = `#!/bin/sh
d=$(dirname "$0")
mode=$(cat "$d/mode" 2>/dev/null)
echo "$(date +%s%3N) \${mode:-ok} $$" >> "$d/calls"
case "$mode" in
  fail) cat > /dev/null; echo "pfctl: DIOCRSETTABLES: Operation not permitted" >&2; exit 1 ;;
  hang) exec sleep 1000 ;;
  half) head -c "$(cat "$d/half")" > /dev/null; echo "pfctl: short read" >&2; exit 1 ;;
esac
for a in "$@"; do [ "$a" = replace ] && op=replace; done
if [ "$op" = replace ]; then cat > "$d/table.tmp" && mv "$d/table.tmp" "$d/table"; else cat > /dev/null; fi
`;

interface Call {
  at: number;
  mode: string;
  pid: number;
}

async function calls(dir: string): Promise<Call[]> {
  const text = await fs.readFile(path.join(dir, 'calls'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l !== '').map((l) => {
    const [at, mode, pid] = l.split(' ');
    return { at: Number(at), mode: mode!, pid: Number(pid) };
  });
}

/** The pids among `cs` whose process still exists. */
function stillRunning(cs: readonly Call[]): number[] {
  return cs.map((c) => c.pid).filter((pid) => {
    try {
      return process.kill(pid, 0);
    } catch {
      return false;
    }
  });
}

const addr = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** A daemon whose database whitelists WHITE addresses, pushing through a stand-in in `mode`. */
async function faultyPf(t: ExecutionContext, mode: string) {
  const dir = await tempDir(t);
  const fw = path.join(dir, 'fw');
  await fs.mkdir(fw);
  await fs.writeFile(path.join(fw, 'pfctl'), STAND_IN, { mode: 0o755 });
  await fs.writeFile(path.join(fw, 'mode'), mode);
  const now = Date.now();
  const seed = await openStore(path.join(dir, 'pfgrey.db'), { create: true });
  for (let i = 1; i <= WHITE; i++) {
    seed.put({ key: addr(i), first: now, pass: now, expire: now + 86_400_000, bcount: 1, pcount: 1 });
  }
  await seed.close();
  const expected = Array.from({ length: WHITE }, (_, i) => `${addr(i + 1)}/32`).sort();
  await fs.writeFile(path.join(fw, 'half'), String(Math.floor((expected.join('\n').length + 1) / 2)));
  t.teardown(async () => {
    // Only a hung stand-in (`exec sleep 1000`) can outlive its call; a pid is checked to still
    // be that sleep before it is killed, as pids get reused.
    for (const pid of stillRunning((await calls(fw)).filter((c) => c.mode === 'hang'))) {
      const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '');
      if (cmd.startsWith('sleep\x001000')) process.kill(pid, 'SIGKILL');
    }
  });
  const d = await testDaemon(t, [
    '--stutter', '0', '--scan-interval', '2s', '--firewall', 'pf', '--pfctl', path.join(fw, 'pfctl'),
    '--pf-device', path.join(dir, 'no-such-device'), '--firewall-timeout', '500ms',
  ], dir, (c) => {
    c.firewallRetryMin = RETRY_MIN;
    c.firewallRetryMax = RETRY_MAX;
  });
  return { ...d, fw, expected };
}

/** Failed pushes so far, with the retry delay each one announced. */
function retries(lines: readonly string[]): Array<{ line: string; delay: number }> {
  return lines.filter((l) => l.startsWith('error: firewall: cannot update table <spamd-white>')).map((line) => {
    const m = /retrying in (\d+)(ms|s)$/.exec(line);
    return { line, delay: m ? Number(m[1]) * (m[2] === 's' ? 1000 : 1) : NaN };
  });
}

async function faultThenRecovery(t: ExecutionContext, mode: string, why: RegExp) {
  const { daemon, log, fw, expected, port } = await faultyPf(t, mode);
  await eventually(() => retries(log.lines).length >= 4, `four failed pushes in mode ${mode}`, 40_000);
  const failures = retries(log.lines);

  // Each failure is one line naming the command, the cause and the next delay.
  for (const f of failures) {
    t.regex(f.line, why);
    t.false(f.line.includes('\n'));
  }
  // Doubling backoff, capped.
  t.deepEqual(failures.slice(0, 4).map((f) => f.delay), [200, 400, 800, 1600]);
  // No retry starts before its delay is over (the stand-in's clock is the same system clock).
  const cs = (await calls(fw)).filter((c) => c.mode === mode);
  for (let i = 1; i < Math.min(cs.length, 4); i++) {
    const gap = cs[i]!.at - cs[i - 1]!.at;
    t.true(gap >= failures[i - 1]!.delay - 50, `call ${i + 1} came ${gap} ms after call ${i}, delay was ${failures[i - 1]!.delay} ms`);
  }
  t.false(daemon.sync!.inSync);
  t.truthy(daemon.sync!.lastError);

  // The tarpit is not held up by the firewall.
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  await c.waitFor('\r\n');
  c.send('HELO still.served\r\n');
  await c.waitFor(REPLY.helo);

  // pfctl works again: the next retry replaces the table with the whole whitelist.
  await fs.writeFile(path.join(fw, 'mode'), 'ok');
  await eventually(() => daemon.sync!.inSync, 'the table back in sync', 30_000);
  const table = (await fs.readFile(path.join(fw, 'table'), 'utf8')).split('\n').filter((l) => l !== '');
  t.deepEqual(table.sort(), expected);
  t.true(log.lines.some((l) => l === `notice: firewall: table <spamd-white> is back in sync with ${WHITE} addresses`));
  t.is(daemon.sync!.lastError, undefined);
  return { fw, daemon, log };
}

test('a pfctl that fails is retried with doubling backoff, and the table converges once it works', async (t) => {
  await faultThenRecovery(t, 'fail', /-T replace: exited with status 1: pfctl: DIOCRSETTABLES: Operation not permitted; retrying in/);
});

test('a pfctl that hangs is killed after the firewall timeout and retried, and the table converges', async (t) => {
  const { fw } = await faultThenRecovery(t, 'hang', /-T replace: no answer after 500ms; killed it; retrying in/);
  // Every hung pfctl was killed: none is left behind.
  const hung = (await calls(fw)).filter((c) => c.mode === 'hang');
  t.true(hung.length >= 4);
  await eventually(() => stillRunning(hung).length === 0, 'every hung pfctl gone');
  t.pass();
});

test('a pfctl that exits after reading half of its input is retried, and the table converges', async (t) => {
  await faultThenRecovery(t, 'half', /-T replace: exited with status 1: pfctl: short read; retrying in/);
});
