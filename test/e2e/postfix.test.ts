// End to end on Linux: a real Postfix is greylisted by pfgrey behind the example nftables
// ruleset, retries, gets whitelisted, and its mail reaches a real receiving MTA intact.
//
// Topology (network namespaces named with this process's pid, deleted afterwards; only
// TEST-NET addresses, no traffic leaves the namespaces):
//
//   mx (br0: 192.0.2.1/24, 198.51.100.1/24)
//     pf/linux/pfgrey.nft loaded; `pfgrey run --firewall nft -l 0.0.0.0` on :8025;
//     the receiving MTA (test/e2e/receiver.ts, smtp-server) on :25
//   sender  192.0.2.2     a private Postfix (own mount + PID namespace), relayhost [192.0.2.1]:25
//   oneshot 192.0.2.3     swaks, which never retries
//   trusted 198.51.100.2  swaks, put into the nospamd set
//
// Every client dials 192.0.2.1:25; the ruleset decides whether that is pfgrey or the MTA.
// Needs root, iproute2, nftables, util-linux, postfix and swaks. Run after a build:
//
//   npx tsc -p tsconfig.test.json
//   PFGREY_REQUIRE_E2E=1 npx ava .build/test/e2e/postfix.test.js
//
// Without PFGREY_REQUIRE_E2E=1 a missing prerequisite skips the tests with the reason;
// PFGREY_E2E_KEEP=1 keeps the lab directory (logs, database, Postfix's maillog) afterwards.

import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CLI, runCli } from '../helpers/cli.js';
import { required } from '../helpers/require.js';
import { eventually } from '../helpers/smtp.js';
import { Lab, NFT, SYSTEM_PATH, check, type Proc } from './lab.js';
import { startPostfix, type PostfixSender } from './postfix-sender.js';
import type { StoredMessage } from './receiver.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../../..');
const RULESET = path.join(REPO, 'pf/linux/pfgrey.nft');
const RECEIVER = path.join(HERE, 'receiver.js');

const PASS_MS = 8000;
const SCAN_MS = 1000;
const MX = '192.0.2.1';
const SENDER = '192.0.2.2';
const ONESHOT = '192.0.2.3';
const TRUSTED = '198.51.100.2';
const NS = {
  mx: `pfgrey-e2e-mx-${process.pid}`,
  sender: `pfgrey-e2e-sender-${process.pid}`,
  oneshot: `pfgrey-e2e-oneshot-${process.pid}`,
  trusted: `pfgrey-e2e-trusted-${process.pid}`,
};

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

/** Why this machine cannot run the suite, or undefined when it can. */
function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (network namespaces, nftables)';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables, a private Postfix)';
  const tools: Array<[string, string]> = [
    ['ip', 'iproute2'], ['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['mount', 'mount'],
    ['postfix', 'postfix'], ['postconf', 'postfix'], ['postqueue', 'postfix'], ['sendmail', 'postfix'],
    ['swaks', 'swaks'],
  ];
  for (const [tool, pkg] of tools) if (!onPath(tool)) return `${tool} is not installed (apt-get install ${pkg})`;
  if (!fs.existsSync(NFT)) return `${NFT} is not installed (apt-get install nftables)`;
  if (!fs.existsSync(RULESET)) return `${path.relative(REPO, RULESET)} does not exist`;
  if (!fs.existsSync(CLI) || !fs.existsSync(RECEIVER)) return 'not built: run npx tsc -p tsconfig.test.json';
  const probe = spawnSync(process.execPath, [CLI, 'run', '--firewall', 'nft', '--nft', NFT, '--nft-table', 'inet pfgrey', '--help'],
    { encoding: 'utf8' });
  if (probe.status !== 0) return `pfgrey run does not take --firewall nft: ${(probe.stderr || probe.stdout).split('\n')[0]}`;
  const ns = `pfgrey-e2e-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8', env: { ...process.env, PATH: SYSTEM_PATH } });
  spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', env: { ...process.env, PATH: SYSTEM_PATH } });
  if (add.status !== 0) return `cannot create network namespaces: ${add.stderr.trim()}`;
  return undefined;
}

const missing = missingPrerequisite();
if (missing && !required) console.log(`# skipping the Postfix/nftables end-to-end tests: ${missing}`);
const e2e = missing && !required ? test.serial.skip : test.serial;

interface World {
  lab: Lab;
  pfgrey: Proc;
  receiver: Proc;
  postfix: PostfixSender;
  db: string;
  inbox: string;
}
let world: World | undefined;

test.before(async () => {
  if (missing) {
    if (required) throw new Error(`PFGREY_REQUIRE_E2E=1 but ${missing}`);
    return;
  }
  const lab = new Lab(Object.values(NS));
  try {
    world = await buildWorld(lab);
  } catch (err) {
    // AVA may not run after.always when before fails; do not leave the lab up in the meantime.
    await lab.destroy();
    throw err;
  }
});

test.after.always(async () => {
  await world?.lab.destroy();
});

async function buildWorld(lab: Lab): Promise<World> {
  for (const ns of Object.values(NS)) await lab.addNetns(ns);
  // One bridge in mx joins every client, so each reaches 192.0.2.1 over its own veth.
  const ipMx = (...args: string[]) => check(['ip', '-n', NS.mx, ...args]);
  await ipMx('link', 'add', 'br0', 'type', 'bridge');
  await ipMx('addr', 'add', `${MX}/24`, 'dev', 'br0');
  await ipMx('addr', 'add', '198.51.100.1/24', 'dev', 'br0');
  await ipMx('link', 'set', 'br0', 'up');
  const clients: Array<[string, string, string]> = [
    [NS.sender, 'vsender', `${SENDER}/24`], [NS.oneshot, 'voneshot', `${ONESHOT}/24`], [NS.trusted, 'vtrusted', `${TRUSTED}/24`],
  ];
  for (const [ns, port, addr] of clients) {
    await ipMx('link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ipMx('link', 'set', port, 'master', 'br0');
    await ipMx('link', 'set', port, 'up');
    await check(['ip', '-n', ns, 'addr', 'add', addr, 'dev', 'eth0']);
    await check(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  await check(['ip', '-n', NS.trusted, 'route', 'add', '192.0.2.0/24', 'via', '198.51.100.1']);

  await lab.execCheck(NS.mx, [NFT, '-f', RULESET]);

  const inbox = path.join(lab.dir, 'inbox');
  const receiver = lab.spawn('receiver', NS.mx, [process.execPath, RECEIVER, '--dir', inbox, '--port', '25', '--name', 'mx.example.test']);
  await receiver.waitFor(/receiver listening on /, 20_000);

  // Exactly the command line the ruleset's header documents, so the header is tested too;
  // then a database and allowed-domains file of our own, and times short enough for a test.
  const db = path.join(lab.dir, 'pfgrey.db');
  const pfgrey = lab.spawn('pfgrey', NS.mx, [process.execPath, CLI, 'run', '--log', 'stderr', ...documentedFlags(), '-h', 'mx.example.test',
    '--db', db, '--alloweddomains', path.join(lab.dir, 'alloweddomains'),
    '--passtime', `${PASS_MS}ms`, '--scan-interval', `${SCAN_MS}ms`, '--stutter', '0', '-v']);
  await pfgrey.waitFor(/listening for incoming connections on 0\.0\.0\.0:8025\./, 30_000);

  const postfix = await startPostfix(lab, NS.sender, {
    hostname: 'sender.test', heloName: 'mta.sender.test', relayhost: `[${MX}]:25`,
  });
  return { lab, pfgrey, receiver, postfix, db, inbox };
}

/** The flags of the `pfgrey run …` line in the ruleset's header comment. */
function documentedFlags(): string[] {
  const m = /^#\s+pfgrey run (.+)$/m.exec(fs.readFileSync(RULESET, 'utf8'));
  if (!m) throw new Error(`${RULESET}: no "pfgrey run ..." line in the header comment`);
  const flags = m[1]!.trim().split(/\s+/);
  if (!flags.join(' ').includes('--firewall nft')) throw new Error(`${RULESET}: the documented command lacks --firewall nft: ${m[0]}`);
  return flags;
}

function w(): World {
  if (!world) throw new Error('the lab was not built');
  return world;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function listing(): Promise<string> {
  const r = await runCli(['db', '--db', w().db]);
  if (r.code !== 0) throw new Error(`pfgrey db exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The addresses in the nftables whitelist set, as the kernel holds them. */
async function whiteSet(): Promise<string[]> {
  const r = await w().lab.execCheck(NS.mx, [NFT, '-j', 'list', 'set', 'inet', 'pfgrey', 'spamd-white']);
  const doc = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  const elems = doc.nftables.find((o) => o.set)?.set?.elem ?? [];
  return elems.map((e) => {
    if (typeof e === 'string') return e;
    const p = (e as { prefix?: { addr: string; len: number } }).prefix;
    return p ? `${p.addr}/${p.len}` : JSON.stringify(e);
  });
}

function inbox(): StoredMessage[] {
  const dir = w().inbox;
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => !n.startsWith('.')).sort()
    .map((n) => JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as StoredMessage);
}

async function swaks(ns: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await w().lab.exec(ns, ['swaks', '--server', `${MX}:25`, '--timeout', '30', ...args], { timeout: 60_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** On failure, what each part saw; AVA prints t.log lines only for failed tests. */
async function explain(t: ExecutionContext, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (world) {
      const ruleset = await w().lab.exec(NS.mx, [NFT, 'list', 'ruleset']).catch((e: Error) => ({ stdout: e.message }));
      t.log(`pfgrey:\n${w().pfgrey.output}`);
      t.log(`pfgrey db:\n${await listing().catch((e: Error) => e.message)}`);
      t.log(`nft list ruleset:\n${ruleset.stdout}`);
      t.log(`Postfix maillog:\n${w().postfix.log()}`);
      t.log(`receiver:\n${w().receiver.output}`);
    }
    throw err;
  }
}

e2e('Postfix is deferred by the tarpit, retries after the pass time, is whitelisted in nftables and delivers intact', async (t) => {
  t.timeout(150_000);
  await explain(t, async () => {
    const { postfix } = w();
    const token = randomUUID();
    const messageId = `<${token}@sender.test>`;
    const headers = [
      'From: Sender <from@sender.test>',
      'To: <to@example.test>',
      `Subject: pfgrey e2e ${token}`,
      `Message-ID: ${messageId}`,
      'Date: Thu, 01 Jan 2026 00:00:00 +0000',
      'X-Pfgrey-Test: greylisting end to end',
    ];
    const body = [
      `body line ${token}`,
      '.a line that starts with a dot, to prove SMTP transparency',
      '',
      'last line',
    ];
    const submittedAt = Date.now();
    await postfix.sendmail('from@sender.test', 'to@example.test', `${headers.join('\n')}\n\n${body.join('\n')}\n`);

    const queueId = (await eventually(
      () => new RegExp(`postfix/cleanup\\[\\d+\\]: ([0-9A-F]+): message-id=${escape(messageId)}`).exec(postfix.log()),
      'Postfix to queue the message', 20_000))[1]!;
    const deferred = new RegExp(`${queueId}: to=<to@example\\.test>, relay=192\\.0\\.2\\.1\\[192\\.0\\.2\\.1\\]:25, .*` +
      'status=deferred \\(host 192\\.0\\.2\\.1\\[192\\.0\\.2\\.1\\] said: 451 Temporary failure, please try again later\\. ' +
      '\\(in reply to DATA command\\)\\)', 'g');
    const deferrals = () => postfix.log().match(deferred)?.length ?? 0;

    // 1. The first attempt lands in the tarpit and is deferred with pfgrey's 451.
    await eventually(() => deferrals() >= 1, 'the first delivery attempt to be deferred with 451', 30_000);
    const queued = (await postfix.queue()).find((q) => q.queue_id === queueId);
    t.truthy(queued, 'the message waits in the queue');
    t.regex(queued!.recipients[0]!.delay_reason ?? '', /451 Temporary failure, please try again later\./);

    // 2. pfgrey recorded the tuple with Postfix's HELO and envelope.
    const grey = await eventually(async () =>
      /^GREY\|192\.0\.2\.2\|mta\.sender\.test\|<from@sender\.test>\|<to@example\.test>\|(\d+)\|(\d+)\|(\d+)\|(\d+)\|(\d+)$/m.exec(await listing()),
    'the GREY tuple', 10_000);
    t.true(Math.abs(Number(grey[1]) - submittedAt / 1000) <= 5, 'first seen when Postfix first tried');
    t.false((await whiteSet()).includes(SENDER), 'not whitelisted before the pass time');
    t.false(inbox().some((m) => m.remoteAddress === SENDER), 'nothing delivered while greylisted');

    // 3. A retry after the pass time whitelists the sender, in the database and in nftables.
    const white = await eventually(async () =>
      /^WHITE\|192\.0\.2\.2\|\|\|(\d+)\|(\d+)\|(\d+)\|(\d+)\|(\d+)$/m.exec(await listing()),
    'the WHITE entry', 60_000);
    t.true(Date.now() - submittedAt >= PASS_MS, 'whitelisted no earlier than the pass time');
    t.true(Number(white[4]) >= 2, 'whitelisted by a retry');
    await eventually(async () => (await whiteSet()).includes(SENDER), 'nft set spamd-white to hold 192.0.2.2', 10_000);
    await eventually(() => deferrals() >= 2, 'the retry that passed to have been tarpitted too', 10_000);

    // 4. The next retry bypasses the tarpit and reaches the MTA with the message intact.
    const sent = new RegExp(`${queueId}: to=<to@example\\.test>, relay=192\\.0\\.2\\.1\\[192\\.0\\.2\\.1\\]:25, .*` +
      'status=sent \\(250 OK: stored as ([^ )]+)');
    const stored = (await eventually(() => sent.exec(postfix.log()), 'Postfix to deliver the message', 60_000))[1]!;
    const got = inbox().filter((m) => m.remoteAddress === SENDER);
    t.is(got.length, 1, 'delivered exactly once');
    const m = got[0]!;
    // The receiver's stdout reaches us through a pipe that may lag behind Postfix's log line.
    await eventually(() => w().receiver.output.includes(`stored ${stored} from ${SENDER}`), 'the receiver to report the stored message', 10_000);
    t.is(m.helo, 'mta.sender.test');
    t.is(m.mailFrom, 'from@sender.test');
    t.deepEqual(m.rcptTo, ['to@example.test']);
    const data = m.data.replace(/\r\n/g, '\n');
    const split = data.indexOf('\n\n');
    const receivedHeaders = data.slice(0, split).split('\n');
    for (const h of headers) t.true(receivedHeaders.includes(h), `header kept: ${h}`);
    t.true(receivedHeaders.some((h) => /^Received: by sender\.test \(Postfix, from userid 0\)/.test(h)), 'the sender Postfix stamped it');
    t.is(data.slice(split + 2), `${body.join('\n')}\n`, 'body byte for byte');
    await eventually(async () => (await postfix.queue()).length === 0, 'the Postfix queue to drain', 10_000);
  });
});

e2e('a one-shot client that never retries stays greylisted and never reaches the MTA', async (t) => {
  t.timeout(60_000);
  await explain(t, async () => {
    const r = await swaks(NS.oneshot, ['--from', 'bulk@oneshot.test', '--to', 'to@example.test', '--helo', 'oneshot.test']);
    t.regex(r.out, /<-\s+220 mx\.example\.test ESMTP spamd IP-based SPAM blocker;/, 'answered by the tarpit');
    t.regex(r.out, /<\*\*\s+451 Temporary failure, please try again later\./);
    await eventually(async () =>
      /^GREY\|192\.0\.2\.3\|oneshot\.test\|<bulk@oneshot\.test>\|<to@example\.test>\|\d+\|\d+\|\d+\|1\|0$/m.test(await listing()),
    'the one-shot GREY tuple', 10_000);

    // Absence takes waiting: past the pass time and two scans, nothing may have changed.
    await sleep(PASS_MS + 2 * SCAN_MS + 500);
    const after = await listing();
    t.regex(after, /^GREY\|192\.0\.2\.3\|oneshot\.test\|<bulk@oneshot\.test>\|<to@example\.test>\|\d+\|\d+\|\d+\|1\|0$/m);
    t.notRegex(after, /^WHITE\|192\.0\.2\.3\|/m);
    t.false((await whiteSet()).includes(ONESHOT), 'not in nft set spamd-white');
    t.false(inbox().some((m) => m.remoteAddress === ONESHOT), 'the MTA never saw it');
    t.false(w().receiver.output.includes(`connect ${ONESHOT}`), 'never even connected to the MTA');
  });
});

e2e('a client in the nospamd set bypasses the tarpit and is answered by the MTA itself', async (t) => {
  t.timeout(60_000);
  await explain(t, async () => {
    // Control: the same client is tarpitted while it is not in nospamd.
    const before = await swaks(NS.trusted, ['--from', 'partner@trusted.test', '--to', 'to@example.test', '--helo', 'trusted.test']);
    t.regex(before.out, /<-\s+220 mx\.example\.test ESMTP spamd IP-based SPAM blocker;/);
    t.regex(before.out, /<\*\*\s+451 Temporary failure, please try again later\./);

    await w().lab.execCheck(NS.mx, [NFT, 'add', 'element', 'inet', 'pfgrey', 'nospamd', `{ ${TRUSTED} }`]);
    const token = randomUUID();
    const after = await swaks(NS.trusted, ['--from', 'partner@trusted.test', '--to', 'to@example.test', '--helo', 'trusted.test',
      '--header', `Message-Id: <${token}@trusted.test>`, '--body', `nospamd ${token}`]);
    t.is(after.code, 0, after.out);
    t.regex(after.out, /<-\s+220 mx\.example\.test ESMTP receiver/, "the MTA's own banner");
    t.regex(after.out, /<-\s+250 OK: stored as /);
    t.notRegex(after.out, /spamd IP-based SPAM blocker/);
    const got = inbox().filter((m) => m.remoteAddress === TRUSTED);
    t.is(got.length, 1);
    t.is(got[0]!.mailFrom, 'partner@trusted.test');
    t.true(got[0]!.data.includes(`Message-Id: <${token}@trusted.test>\r\n`));
    t.is(got[0]!.data.match(/^Message-Id:/gim)?.length, 1, 'our Message-Id replaced swaks\'s own');
    t.true(got[0]!.data.includes(`nospamd ${token}`));
  });
});

e2e('the tarpit and config ports are closed to other hosts; only redirected SMTP reaches pfgrey', async (t) => {
  t.timeout(30_000);
  await explain(t, async () => {
    // pfgrey listens on every address (-l 0.0.0.0), so only the ruleset keeps a spammer from
    // dialling 8025 directly, where it would be tarpitted as if it had passed the redirect
    // while whitelisted. The ruleset drops (a connect timeout, not a refusal) both ports.
    const probe = `
      const net = require('node:net');
      for (const port of [8025, 8026]) {
        const s = net.connect({ host: '${MX}', port });
        s.setTimeout(2000, () => { console.log(port + ' timeout'); s.destroy(); });
        s.on('connect', () => { console.log(port + ' connected'); s.destroy(); });
        s.on('error', (e) => console.log(port + ' ' + e.code));
      }`;
    const r = await w().lab.execCheck(NS.oneshot, [process.execPath, '-e', probe]);
    t.regex(r.stdout, /^8025 timeout$/m, r.stdout);
    t.regex(r.stdout, /^8026 timeout$/m, r.stdout);
  });
});
