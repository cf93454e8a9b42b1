// End to end with a real Exim: `pfgrey policy` answers the readsocket ACL postgrey publishes
// for Exim (test/e2e/exim-postgrey.acl, used as printed but for the socket name), and Exim's
// host-checking mode (`exim4 -C CONF -bh 192.0.2.7`) runs that ACL for real on an SMTP
// dialogue: the first RCPT is deferred with 451 and pfgrey's text at once, the retry after
// --delay is accepted, and with --x-greylist-header the first accepted message gets the
// X-Greylist header through the published PREPEND warn. Exim is Debian's exim4-daemon-light,
// unpacked beside Postfix by test/e2e/exim-setup.sh (PFGREY_EXIM names another binary):
//
//   test/e2e/exim-setup.sh && npx tsc -p tsconfig.test.json
//   PFGREY_REQUIRE_E2E=1 npx ava .build/test/e2e/exim-policy.test.js

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { lacking } from '../helpers/require.js';
import { eventually } from '../helpers/wait.js';
import { eximMissing, eximSession, writeEximConfig, type Reply, type SessionResult } from './exim.js';

const CLIENT = '192.0.2.7';
const DELAY_S = 3;
/** The ACL's readsocket timeout. */
const READSOCKET_MS = 5000;
/**
 * A readsocket that returns in under half its timeout returned because pfgrey closed the
 * connection, not because Exim gave up waiting (the last test shows what giving up looks like).
 */
const PROMPT_MS = READSOCKET_MS / 2;
/** Exim's debug output with the ACL's steps (each `set`, its expansion, and headers added). */
const DEBUG = '-all+acl';

/** Each test's Exim sessions, printed when it fails (AVA prints a passing test's t.log too). */
interface Context {
  sessions: Array<[string, SessionResult<unknown>]>;
}
const test = anyTest as TestFn<Context>;
test.beforeEach((t) => {
  t.context.sessions = [];
});
test.afterEach.always((t) => {
  if (t.passed) return;
  for (const [what, s] of t.context.sessions) {
    t.log(`${what}: exim exited ${s.code} after ${s.ms} ms\nstdout:\n${s.stdout}\nstderr:\n${s.stderr}`);
  }
});

const missing = fs.existsSync(CLI) ? eximMissing() : 'not built: run npx tsc -p tsconfig.test.json';

interface Policy {
  /** The ACL's socket name for it: the path, or `inet:127.0.0.1:PORT`. */
  socket: string;
  stderr(): string;
}

/** Starts `pfgrey policy` and waits for its listening line. */
async function startPolicy(t: ExecutionContext, listen: string[], args: string[]): Promise<Policy> {
  const child = spawn(process.execPath, [CLI, 'policy', '--log', 'stderr', ...listen, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const where = await eventually(() => {
    if (child.exitCode !== null) throw new Error(`pfgrey policy exited with ${child.exitCode}: ${err}`);
    return /listening for policy requests on (.+)\.$/m.exec(err)?.[1];
  }, 'pfgrey policy to listen', 30_000);
  return { socket: where.startsWith('/') ? where : `inet:${where}`, stderr: () => err };
}

/** What the ACL's readsocket returned (after its `sg` took "action=" away), from Exim's debug output. */
function readsocketResult(stderr: string): string | undefined {
  return /check set acl_m0 = \$\{sg\{\$\{readsocket\{.*\n\s+= (.*)/.exec(stderr)?.[1];
}

/**
 * How long the ACL's readsocket took, from Exim's debug lines as they arrived: the request's
 * `set` is printed before the readsocket starts, the readsocket's `set` once it has returned.
 */
function readsocketMs(s: SessionResult<unknown>): number {
  const done = s.stderr.indexOf('check set acl_m0 = ${sg{${readsocket{');
  const begun = s.stderr.lastIndexOf('\nrecipient=', done);
  if (done < 0 || begun < 0) return NaN;
  return s.stderrAt(done) - s.stderrAt(begun);
}

/** EHLO, MAIL FROM and RCPT TO; then the message and QUIT if the RCPT is accepted, else QUIT. */
function deliver(conf: string): Promise<SessionResult<{ rcpt: Reply; data?: Reply; end?: Reply; quit: Reply }>> {
  return eximSession(conf, CLIENT, async (smtp, banner) => {
    if (banner.code !== 220) throw new Error(`banner ${banner.code} ${banner.lines.join(' ')}`);
    const ehlo = await smtp.send('EHLO client.example');
    if (ehlo.code !== 250) throw new Error(`EHLO got ${ehlo.code} ${ehlo.lines.join(' ')}`);
    const mail = await smtp.send('MAIL FROM:<a@sender.example>');
    if (mail.code !== 250) throw new Error(`MAIL FROM got ${mail.code} ${mail.lines.join(' ')}`);
    const rcpt = await smtp.send('RCPT TO:<b@example.test>');
    if (rcpt.code !== 250) return { rcpt, quit: await smtp.send('QUIT') };
    const data = await smtp.send('DATA');
    const end = data.code === 354
      ? await smtp.data(['From: <a@sender.example>', 'To: <b@example.test>', 'Subject: pfgrey and Exim', '', 'Greylisted once.'])
      : undefined;
    return { rcpt, data, end, quit: await smtp.send('QUIT') };
  }, { debug: DEBUG });
}

/** Keeps Exim's session for the log, should the test fail. */
function keep(t: ExecutionContext<Context>, what: string, s: SessionResult<unknown>): void {
  t.context.sessions.push([what, s]);
}

/** The headers a RCPT ACL added to the accepted message, as Exim's ACL debugging lists them. */
function aclHeaders(stderr: string): string[] {
  const m = />>Headers added by MAIL or RCPT ACL:\n((?: {2}.*\n)*)/.exec(stderr);
  return m ? m[1]!.split('\n').filter((l) => l !== '').map((l) => l.slice(2)) : [];
}

test('Exim with postgrey\'s readsocket ACL: the first RCPT gets 451 with pfgrey\'s text at once, and the retry after --delay is accepted', async (t) => {
  if (missing) return lacking(t, missing);
  const dir = await tempDir(t, 'pfgrey-exim-');
  const policy = await startPolicy(t, ['--inet', '127.0.0.1:0'], ['--delay', String(DELAY_S), '--db', path.join(dir, 'policy.db')]);
  const conf = writeEximConfig(path.join(dir, 'exim'), policy.socket);

  const first = await deliver(conf);
  keep(t, 'first attempt', first);
  const deferredAt = Date.now();
  const { rcpt } = first.value;
  t.is(rcpt.code, 451, 'the RCPT is deferred');
  // The published ACL hands over pfgrey's answer with its closing empty line, so Exim's reply
  // ends in an empty 451 line, as it does with postgrey.
  t.is(rcpt.lines[0], `Greylisted by pfgrey, try again in ${DELAY_S} seconds`);
  t.is(first.value.quit.code, 221);
  t.is(readsocketResult(first.stderr), `DEFER_IF_PERMIT Greylisted by pfgrey, try again in ${DELAY_S} seconds`, 'pfgrey\'s answer, not the fail-safe');
  t.regex(first.stderr, /temporarily rejected RCPT <b@example\.test>: greylisted host 192\.0\.2\.7/, 'the ACL\'s log_message');

  // At once: pfgrey answered the half-closed connection and closed it, so readsocket read to
  // EOF instead of waiting out its 5 s and falling back to action=DUNNO. (The RCPT's own time
  // also holds Exim's reverse lookup of the client, which $sender_host_name asks for.)
  const took = readsocketMs(first);
  t.true(took < PROMPT_MS, `readsocket took ${took} ms (RCPT ${rcpt.ms} ms, the session ${first.ms} ms)`);
  t.notRegex(first.stderr, /socket read timed out|failed to connect to socket/);

  // A retry before the delay is over is still deferred.
  const early = await deliver(conf);
  keep(t, 'early retry', early);
  t.is(early.value.rcpt.code, 451);
  t.regex(early.value.rcpt.lines[0] ?? '', /^Greylisted by pfgrey, try again in [1-3] seconds$/);

  // The 451 said when: retry then, as a sending MTA would (the wait is the greylisting delay).
  const seconds = Number(/try again in (\d+) seconds/.exec(rcpt.lines[0] ?? '')?.[1] ?? DELAY_S);
  await sleep(Math.max(0, deferredAt + seconds * 1000 - Date.now()));
  const retry = await deliver(conf);
  keep(t, 'retry after the delay', retry);
  t.is(retry.value.rcpt.code, 250, 'the retry is accepted');
  t.is(retry.value.data?.code, 354);
  t.is(retry.value.end?.code, 250, 'and so is its message');
  t.regex(retry.value.end?.lines[0] ?? '', /^OK id=/);
  t.is(retry.value.quit.code, 221);
  t.regex(readsocketResult(retry.stderr) ?? '', /^(DUNNO|PREPEND X-Greylist: .*)$/);
  t.true(readsocketMs(retry) < PROMPT_MS, `readsocket took ${readsocketMs(retry)} ms`);
  t.notRegex(retry.stderr, /socket read timed out|failed to connect to socket/);
});

test('with --x-greylist-header, the first accepted message gets the X-Greylist header through the published PREPEND warn (over --unix)', async (t) => {
  if (missing) return lacking(t, missing);
  const dir = await tempDir(t, 'pfgrey-exim-');
  const socket = path.join(dir, 'policy.sock');
  const policy = await startPolicy(t, ['--unix', socket], ['--delay', String(DELAY_S), '--db', path.join(dir, 'policy.db'), '--x-greylist-header']);
  t.is(policy.socket, socket);
  const conf = writeEximConfig(path.join(dir, 'exim'), socket);

  const first = await deliver(conf);
  keep(t, 'first attempt', first);
  const deferredAt = Date.now();
  t.is(first.value.rcpt.code, 451);

  await sleep(Math.max(0, deferredAt + DELAY_S * 1000 - Date.now())); // the greylisting delay
  const passed = await deliver(conf);
  keep(t, 'first accepted', passed);
  t.is(passed.value.rcpt.code, 250);
  t.is(passed.value.end?.code, 250);
  t.regex(readsocketResult(passed.stderr) ?? '', /^PREPEND X-Greylist: /);
  const headers = aclHeaders(passed.stderr);
  t.is(headers.length, 1, headers.join('\n'));
  const m = /^X-Greylist: delayed (\d+) seconds by pfgrey-\d+\.\d+\.\d+(?:[-+.\w]*); (.+)$/.exec(headers[0] ?? '');
  t.truthy(m, `the header as pfgrey prepends it: ${headers[0]}`);
  if (m) {
    t.true(Number(m[1]) >= DELAY_S, `delayed ${m[1]} seconds, at least --delay`);
    t.false(Number.isNaN(Date.parse(m[2]!)), `a date: ${m[2]}`);
  }

  // Only the message that was delayed says so: the next one passes without a header.
  const later = await deliver(conf);
  keep(t, 'second accepted', later);
  t.is(later.value.rcpt.code, 250);
  t.is(readsocketResult(later.stderr), 'DUNNO');
  t.deepEqual(aclHeaders(later.stderr), []);
});

test('the promptness check can fail: a policy server that answers but keeps the connection open makes Exim wait out the 5 s and use action=DUNNO', async (t) => {
  if (missing) return lacking(t, missing);
  // What pfgrey must not do: answer a half-closed connection and leave its own side open.
  const held = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    held.add(c);
    c.on('data', () => c.write('action=DEFER_IF_PERMIT Greylisted by pfgrey, try again in 3 seconds\n\n'));
    c.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const c of held) c.destroy();
    server.close(() => resolve());
  }));
  const { port } = server.address() as net.AddressInfo;
  const dir = await tempDir(t, 'pfgrey-exim-');
  const conf = writeEximConfig(path.join(dir, 'exim'), `inet:127.0.0.1:${port}`);

  const s = await deliver(conf);
  keep(t, 'held-open server', s);
  t.true(readsocketMs(s) >= READSOCKET_MS - 100, `readsocket took ${readsocketMs(s)} ms`);
  t.regex(s.stderr, /socket read timed out/);
  t.is(readsocketResult(s.stderr), 'DUNNO', 'the fail-safe, not the answer');
  t.is(s.value.rcpt.code, 250, 'so the greylisting answer is lost');
});
