// End to end on Linux: `pfgrey policy` as a real Postfix's policy server. A sending Postfix
// relays to a receiving Postfix whose smtpd asks pfgrey about each RCPT (check_policy_service,
// Postfix's SMTPD_POLICY_README); the first attempt is deferred with our text, the retry after
// the delay passes, and the receiving Postfix relays the message to a sink intact.
//
// Topology (network namespaces named with this process's pid, deleted afterwards; TEST-NET
// addresses only, no traffic leaves the namespaces):
//
//   mx 192.0.2.1   a receiving Postfix (`postfix -c DIR start`, test/e2e/postfix-receiver.ts),
//                  one smtpd per way of reaching pfgrey, all relaying to the sink on
//                  127.0.0.1:2525 (test/e2e/receiver.ts) through transport_maps:
//                    :2501  check_policy_service inet:127.0.0.1:PORT  ← pfgrey policy --inet 127.0.0.1:0
//                    :2502  check_policy_service unix:private/pfgrey-unix  ← pfgrey policy --unix, as postfix
//                    :2503  check_policy_service unix:private/pfgrey  ← master.cf spawn, --stdio, as nobody
//                    :2504  as :2501, with --x-greylist-header
//   sender 192.0.2.2  a private Postfix (test/e2e/postfix-sender.ts) whose transport_maps send
//                  each test's recipient domain to its smtpd.
//
// Each pfgrey has its own database, so each test sees only its own tuple; the tests run at
// the same time in one lab and each fails on its own. Needs root, iproute2, util-linux
// (unshare, nsenter, setpriv) and postfix. Run after a build:
//
//   npx tsc -p tsconfig.test.json
//   PFGREY_REQUIRE_E2E=1 npx ava .build/test/e2e/postfix-policy.test.js
//
// Without PFGREY_REQUIRE_E2E=1 a missing prerequisite skips the tests with the reason;
// PFGREY_E2E_KEEP=1 keeps the lab directory (pfgrey logs, databases, both maillogs).

import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CLI, runCli } from '../helpers/cli.js';
import { lacking } from '../helpers/require.js';
import { eventually } from '../helpers/wait.js';
import { Lab, SYSTEM_PATH, check, type Proc } from './lab.js';
import { startReceivingPostfix, type ReceivingPostfix } from './postfix-receiver.js';
import { startPostfix, type PostfixSender } from './postfix-sender.js';
import type { StoredMessage } from './receiver.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RECEIVER = path.join(HERE, 'receiver.js');

/** pfgrey's --delay, in seconds: the least a greylisted message waits. */
const DELAY = 5;
const MX = '192.0.2.1';
const SENDER = '192.0.2.2';
const SINK_PORT = 2525;
const FROM = 'alice@sender.test';
const NS = {
  mx: `pfgrey-e2e-pmx-${process.pid}`,
  sender: `pfgrey-e2e-psend-${process.pid}`,
};

type ModeName = 'inet' | 'unix' | 'spawn' | 'header';
interface Mode {
  /** The receiving smtpd's port on 192.0.2.1 for this mode. */
  port: number;
  /** The recipient domain the sender routes to that port. */
  domain: string;
  /** The account pfgrey runs as (its database belongs to it), or root. */
  user: 'root' | 'postfix' | 'nobody';
}
const MODES: Record<ModeName, Mode> = {
  inet: { port: 2501, domain: 'inet.example.test', user: 'root' },
  unix: { port: 2502, domain: 'unix.example.test', user: 'postfix' },
  spawn: { port: 2503, domain: 'spawn.example.test', user: 'nobody' },
  header: { port: 2504, domain: 'header.example.test', user: 'root' },
};
const NAMES = Object.keys(MODES) as ModeName[];

function onPath(tool: string): boolean {
  return SYSTEM_PATH.split(':').some((d) => {
    try {
      fs.accessSync(path.join(d, tool), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Why this machine cannot run the tests, or undefined when it can. */
function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (network namespaces)';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, two private Postfix instances)';
  const tools: Array<[string, string]> = [
    ['ip', 'iproute2'], ['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['setpriv', 'util-linux'], ['mount', 'mount'],
    ['postfix', 'postfix'], ['postconf', 'postfix'], ['postqueue', 'postfix'], ['sendmail', 'postfix'],
  ];
  for (const [tool, pkg] of tools) if (!onPath(tool)) return `${tool} is not installed (apt-get install ${pkg})`;
  for (const user of ['postfix', 'nobody']) {
    if (spawnSync('id', ['-u', user], { stdio: 'ignore' }).status !== 0) return `there is no user ${user}`;
  }
  if (!fs.existsSync(CLI) || !fs.existsSync(RECEIVER)) return 'not built: run npx tsc -p tsconfig.test.json';
  const ns = `pfgrey-e2e-probe-${process.pid}`;
  const env = { ...process.env, PATH: SYSTEM_PATH };
  const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8', env });
  spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', env });
  if (add.status !== 0) return `cannot create network namespaces: ${add.stderr.trim()}`;
  return undefined;
}

const missing = missingPrerequisite();

/** A pfgrey policy this lab started itself, or why it did not start. */
type Started = { proc: Proc; port?: number } | { error: string };

interface World {
  lab: Lab;
  sender: PostfixSender;
  mx: ReceivingPostfix;
  sink: Proc;
  inbox: string;
  /** Each mode's database. */
  db: Record<ModeName, string>;
  /** The pfgrey processes the lab runs; the spawn mode's belong to Postfix. */
  servers: Partial<Record<ModeName, Started>>;
}
let world: World | undefined;
let lab: Lab | undefined;
let mx: ReceivingPostfix | undefined;

test.before(async () => {
  if (missing) return;
  lab = new Lab(Object.values(NS));
  try {
    world = await buildWorld(lab);
  } catch (err) {
    // AVA may not run after.always when before fails; do not leave the lab up meanwhile.
    await takeDown();
    throw err;
  }
});

test.after.always(takeDown);

async function takeDown(): Promise<void> {
  await mx?.stop();
  await lab?.destroy();
}

/** The uid and gid of a local account. */
function account(user: Mode['user']): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, user], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** argv that runs `argv` as `user`, with that account's own group. */
function asUser(user: Mode['user'], argv: string[]): string[] {
  if (user === 'root') return argv;
  const { uid, gid } = account(user);
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', ...argv];
}

/** Starts `pfgrey policy ARGS` in mx and waits for its listening line; a failure is kept, not thrown. */
async function startPolicy(l: Lab, name: ModeName, args: string[], listening: RegExp): Promise<Started> {
  const proc = l.spawn(`pfgrey-${name}`, NS.mx, asUser(MODES[name].user,
    [process.execPath, CLI, 'policy', '--log', 'stderr', '--delay', String(DELAY), ...args]));
  try {
    const m = await proc.waitFor(listening, 30_000);
    return { proc, port: m[1] === undefined ? undefined : Number(m[1]) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

async function buildWorld(l: Lab): Promise<World> {
  for (const ns of Object.values(NS)) await l.addNetns(ns);
  await check(['ip', '-n', NS.mx, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.sender]);
  await check(['ip', '-n', NS.mx, 'addr', 'add', `${MX}/24`, 'dev', 'eth0']);
  await check(['ip', '-n', NS.mx, 'link', 'set', 'eth0', 'up']);
  await check(['ip', '-n', NS.sender, 'addr', 'add', `${SENDER}/24`, 'dev', 'eth0']);
  await check(['ip', '-n', NS.sender, 'link', 'set', 'eth0', 'up']);

  // Each database in a directory of the account that opens it: the spawn service runs as nobody.
  const db = {} as Record<ModeName, string>;
  for (const name of NAMES) {
    const dir = path.join(l.dir, `db-${name}`);
    fs.mkdirSync(dir);
    const { uid, gid } = account(MODES[name].user);
    fs.chownSync(dir, uid, gid);
    fs.chmodSync(dir, 0o700);
    db[name] = path.join(dir, 'pfgrey.db');
  }
  // postfix and nobody reach their databases through the lab's directory (mkdtemp's 0700).
  fs.chmodSync(l.dir, 0o711);

  const inbox = path.join(l.dir, 'inbox');
  const sink = l.spawn('sink', NS.mx, [process.execPath, RECEIVER, '--dir', inbox, '--host', '127.0.0.1',
    '--port', String(SINK_PORT), '--name', 'sink.example.test']);
  const inetLine = /listening for policy requests on 127\.0\.0\.1:(\d+)\./;
  const [inet, header] = await Promise.all([
    startPolicy(l, 'inet', ['--inet', '127.0.0.1:0', '--db', db.inet], inetLine),
    startPolicy(l, 'header', ['--inet', '127.0.0.1:0', '--db', db.header, '--x-greylist-header'], inetLine),
    sink.waitFor(/receiver listening on /, 20_000),
  ]);
  // A server that did not start leaves its smtpd asking a port nobody listens on (Postfix then
  // answers 451 4.3.5); its test fails with the reason it did not start.
  const inetPort = (s: Started) => ('port' in s && s.port !== undefined ? s.port : 9);
  const restrictions = (policy: string) => `permit_mynetworks, reject_unauth_destination, check_policy_service ${policy}`;
  const smtpd = (name: ModeName) =>
    `${MX}:${MODES[name].port} inet n - n - - smtpd -o syslog_name=postfix-mx/${name} ` +
    `-o smtpd_recipient_restrictions=$pfgrey_${name}_restrictions`;
  mx = await startReceivingPostfix(l, NS.mx, {
    name: 'mx',
    hostname: 'mx.example.test',
    main: {
      mynetworks: '127.0.0.0/8',
      smtpd_recipient_restrictions: 'permit_mynetworks, reject_unauth_destination',
      pfgrey_inet_restrictions: restrictions(`inet:127.0.0.1:${inetPort(inet)}`),
      pfgrey_unix_restrictions: restrictions('unix:private/pfgrey-unix'),
      pfgrey_spawn_restrictions: restrictions('unix:private/pfgrey'),
      pfgrey_header_restrictions: restrictions(`inet:127.0.0.1:${inetPort(header)}`),
      relay_domains: NAMES.map((n) => MODES[n].domain).join(', '),
      transport_maps: `inline:{${NAMES.map((n) => `${MODES[n].domain}=smtp:[127.0.0.1]:${SINK_PORT}`).join(',')}}`,
      // spawn(8) ends a command after its time limit; SMTPD_POLICY_README sets it for policy servers.
      pfgrey_time_limit: '3600s',
    },
    services: [
      ...NAMES.map(smtpd),
      `pfgrey unix - n n - 0 spawn user=nobody argv=${process.execPath} ${CLI} policy --stdio --db ${db.spawn} --delay ${DELAY}`,
    ],
  });
  // The unix socket goes where smtpd looks for unix:private/…: the private directory that
  // `postfix start` made, Postfix's own; pfgrey runs as postfix to create it there.
  const unix = await startPolicy(l, 'unix', ['--unix', path.join(mx.queueDir, 'private', 'pfgrey-unix'), '--db', db.unix],
    /listening for policy requests on .*private\/pfgrey-unix\./);

  const sender = await startPostfix(l, NS.sender, {
    hostname: 'sender.test',
    heloName: 'mta.sender.test',
    relayhost: `[${MX}]:${MODES.inet.port}`,
    main: { transport_maps: `inline:{${NAMES.map((n) => `${MODES[n].domain}=smtp:[${MX}]:${MODES[n].port}`).join(',')}}` },
  });
  return { lab: l, sender, mx, sink, inbox, db, servers: { inet, header, unix } };
}

function w(): World {
  if (!world) throw new Error('the lab was not built');
  return world;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `pfgrey db --db DB`, run as the account that owns the database, as its administrator would. */
async function listing(name: ModeName): Promise<string> {
  const args = ['db', '--db', w().db[name]];
  const r = MODES[name].user === 'root'
    ? await runCli(args)
    : await w().lab.exec(NS.mx, asUser(MODES[name].user, [process.execPath, CLI, ...args]));
  if (r.code !== 0) throw new Error(`pfgrey db exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function inbox(): StoredMessage[] {
  const dir = w().inbox;
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => !n.startsWith('.')).sort()
    .map((n) => JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as StoredMessage);
}

/** On failure, what each part saw; AVA prints t.log lines only for failed tests. */
async function explain(t: ExecutionContext, name: ModeName, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    if (world) {
      const s = w().servers[name];
      if (s && 'proc' in s) t.log(`pfgrey (${name}):\n${s.proc.output}`);
      t.log(`pfgrey db (${name}):\n${await listing(name).catch((e: Error) => e.message)}`);
      t.log(`receiving Postfix maillog:\n${w().mx.log()}`);
      t.log(`sending Postfix maillog:\n${w().sender.log()}`);
      t.log(`sink:\n${w().sink.output}`);
    }
    throw err;
  }
}

/**
 * One message from the sending Postfix to bob@<the mode's domain>: deferred by pfgrey at its
 * first attempt, delivered to the sink by a retry after the delay, intact. Returns its headers
 * as the sink got them, for the caller's own checks.
 */
async function greylistedThenDelivered(t: ExecutionContext, name: ModeName): Promise<string[]> {
  const { sender, mx: receiving } = w();
  const { port, domain } = MODES[name];
  const started = w().servers[name];
  if (started && 'error' in started) throw new Error(`pfgrey policy (${name}) did not start: ${started.error}`);
  const to = `bob@${domain}`;
  const token = randomUUID();
  const messageId = `<${token}@sender.test>`;
  const headers = [
    `From: Alice <${FROM}>`,
    `To: <${to}>`,
    `Subject: pfgrey policy e2e ${name} ${token}`,
    `Message-ID: ${messageId}`,
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
  ];
  const body = [`body line ${token}`, '.a line that starts with a dot, to prove SMTP transparency', '', 'last line'];
  const submittedAt = Date.now();
  await sender.sendmail(FROM, to, `${headers.join('\n')}\n\n${body.join('\n')}\n`);
  const queueId = (await eventually(
    () => new RegExp(`postfix/cleanup\\[\\d+\\]: ([0-9A-F]+): message-id=${escape(messageId)}`).exec(sender.log()),
    'the sending Postfix to queue the message', 20_000))[1]!;
  const relay = `${queueId}: to=<${escape(to)}>, relay=192\\.0\\.2\\.1\\[192\\.0\\.2\\.1\\]:${port}, .*`;

  // 1. The first attempt is deferred at RCPT with Postfix's 450 and our text.
  const deferred = new RegExp(`${relay}status=deferred \\(host 192\\.0\\.2\\.1\\[192\\.0\\.2\\.1\\] said: 45[01] 4\\.\\d\\.\\d{1,3} ` +
    `<${escape(to)}>: Recipient address rejected: Greylisted by pfgrey, try again in (\\d+) seconds \\(in reply to RCPT TO command\\)\\)`);
  const attempt = new RegExp(`${relay}status=\\w+ .*`);
  const firstAttempt = (await eventually(() => attempt.exec(sender.log()), 'the first delivery attempt', 30_000))[0];
  const deferredAt = Date.now();
  const first = deferred.exec(firstAttempt);
  if (!first) throw new Error(`the first attempt was not deferred by pfgrey: ${firstAttempt}`);
  const left = Number(first[1]);
  t.true(left >= 1 && left <= DELAY, `asked to wait 1..${DELAY} s, not ${left}`);
  t.regex(receiving.log(), new RegExp(`postfix-mx/${name}/smtpd\\[\\d+\\]: NOQUEUE: reject: RCPT from [^\\[]*\\[192\\.0\\.2\\.2\\]: ` +
    `45[01] 4\\.\\d\\.\\d{1,3} <${escape(to)}>: Recipient address rejected: Greylisted by pfgrey, try again in \\d+ seconds; ` +
    `from=<${escape(FROM)}> to=<${escape(to)}> proto=ESMTP helo=<mta\\.sender\\.test>`), 'the receiving Postfix deferred it');
  const queued = (await sender.queue()).find((q) => q.queue_id === queueId);
  t.is(queued?.queue_name, 'deferred', 'the message waits in the sending queue');
  t.regex(queued?.recipients[0]?.delay_reason ?? '', /Greylisted by pfgrey/);
  t.false(inbox().some((m) => m.data.includes(token)), 'nothing at the sink while greylisted');

  // 2. pfgrey recorded the tuple: the sending host (or its /24, as postgrey keys it), the
  // envelope sender and the recipient.
  const tuple = await listing(name);
  t.true(tuple.split('\n').some((l) => l.includes('192.0.2') && l.includes(FROM) && l.includes(to)), `pfgrey db lists the tuple:\n${tuple}`);

  // 3. After the delay a retry passes. The sending Postfix retries by itself within its
  // backoff (5–10 s); asking it to retry once the delay is over only saves the wait. Until
  // the delay has passed there is nothing to poll: it is the very wait under test.
  await sleep(Math.max(0, deferredAt + DELAY * 1000 + 500 - Date.now()));
  const sent = new RegExp(`${relay}status=sent \\(250 2\\.0\\.0 Ok: queued as ([0-9A-F]+)\\)`);
  let flushedAt = 0;
  await eventually(async () => {
    if (sent.test(sender.log())) return true;
    if (Date.now() - flushedAt > 3000) {
      flushedAt = Date.now();
      // Refused while the message is being delivered already; the next round tells.
      await sender.flush(queueId).catch(() => undefined);
    }
    return false;
  }, 'the retry after the delay to be accepted', 60_000);

  // 4. The receiving Postfix relayed it to the sink, intact, once.
  const got = await eventually(() => {
    const ms = inbox().filter((m) => m.data.includes(token));
    return ms.length > 0 && ms;
  }, 'the message at the sink', 30_000);
  t.is(got.length, 1, 'delivered exactly once');
  const m = got[0]!;
  t.true(m.receivedAt - submittedAt >= DELAY * 1000, `delivered no earlier than the delay (${m.receivedAt - submittedAt} ms)`);
  t.is(m.mailFrom, FROM);
  t.deepEqual(m.rcptTo, [to]);
  const data = m.data.replace(/\r\n/g, '\n');
  const split = data.indexOf('\n\n');
  const received = data.slice(0, split).split('\n');
  for (const h of headers) t.true(received.includes(h), `header kept: ${h}`);
  t.true(received.some((h) => /^Received: from mta\.sender\.test \(unknown \[192\.0\.2\.2\]\)/.test(h)), 'the receiving Postfix took it from the sender');
  t.is(data.slice(split + 2), `${body.join('\n')}\n`, 'body byte for byte');
  await eventually(async () => !(await sender.queue()).some((q) => q.queue_id === queueId), 'the sending queue to let it go', 10_000);
  return received;
}

const noXGreylist = (t: ExecutionContext, headers: string[]) =>
  t.false(headers.some((h) => /^X-Greylist:/i.test(h)), 'no X-Greylist header unless asked for');

test('check_policy_service inet: a real Postfix is deferred by pfgrey policy --inet, and its retry after the delay is delivered', async (t) => {
  if (missing) return lacking(t, missing);
  t.timeout(100_000);
  await explain(t, 'inet', async () => {
    noXGreylist(t, await greylistedThenDelivered(t, 'inet'));
    const s = w().servers.inet;
    t.true(s !== undefined && 'proc' in s && s.proc.running, 'pfgrey policy still serving');
  });
});

test('check_policy_service unix:private/…: pfgrey policy --unix in Postfix\'s queue directory defers the first attempt, the retry is delivered', async (t) => {
  if (missing) return lacking(t, missing);
  t.timeout(100_000);
  await explain(t, 'unix', async () => {
    noXGreylist(t, await greylistedThenDelivered(t, 'unix'));
    const s = w().servers.unix;
    t.true(s !== undefined && 'proc' in s && s.proc.running, 'pfgrey policy still serving');
  });
});

test('a master.cf spawn service (pfgrey policy --stdio as nobody) defers the first attempt, the retry is delivered', async (t) => {
  if (missing) return lacking(t, missing);
  t.timeout(100_000);
  await explain(t, 'spawn', async () => {
    noXGreylist(t, await greylistedThenDelivered(t, 'spawn'));
    // Only the command Postfix spawned as nobody could have made this database.
    t.is(fs.statSync(w().db.spawn).uid, account('nobody').uid, 'the database is the spawned pfgrey\'s, as nobody');
  });
});

test('--x-greylist-header: the message delivered after greylisting carries "X-Greylist: delayed …"', async (t) => {
  if (missing) return lacking(t, missing);
  t.timeout(100_000);
  await explain(t, 'header', async () => {
    const headers = await greylistedThenDelivered(t, 'header');
    const x = headers.filter((h) => /^X-Greylist:/i.test(h));
    t.is(x.length, 1, `one X-Greylist header, not ${JSON.stringify(x)}`);
    t.true(x[0]?.startsWith('X-Greylist: delayed ') ?? false, `X-Greylist: delayed …, not ${JSON.stringify(x[0])}`);
  });
});
