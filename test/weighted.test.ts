// Weighted greylisting against a real DNS server (Debian's nsd on a loopback port, zones written
// here): the stage's scores for good and bad clients, both doors acting on them (the policy
// door answers a good client at once and defers a listed one; the tarpit whitelists a good
// client on its first contact), `pfgrey explain`, and a dead resolver that costs only the budget
// and counts as neutral.

import test, { type ExecutionContext } from 'ava';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULTS } from '../src/config/defaults.js';
import { entryType } from '../src/grey/entry.js';
import { openDatabase } from '../src/store/open.js';
import { DnsClient } from '../src/weighted/dns.js';
import { parseListSpec } from '../src/weighted/dnslists.js';
import { judge, WeightedStage, type WeightedSettings } from '../src/weighted/score.js';
import { loadSpf } from '../src/weighted/spf.js';
import { runCli } from './helpers/cli.js';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { BUDGET_SLACK, DEAD_LOOKUP_TIMEOUT, deadResolver, nsdFor } from './helpers/nsd.js';
import { ask, policyRequest, startPolicy } from './helpers/policy.js';
import { attemptToData } from './helpers/smtp.js';
import { eventually } from './helpers/wait.js';

const SOA = '@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ IN NS ns.example.test.\n';
const zone = (origin: string, records: string) => `$ORIGIN ${origin}.\n$TTL 300\n${SOA}${records}`;

// The population: 192.0.2.10 a mail server (confirming rDNS, a HELO with an address);
// .20 a dial-up line (generic PTR); .25 another, whose PTR name has no A record; .30 no PTR;
// .40 a DNSBL listing; .50 a mail server an allow list lists; 127.0.0.2 and 127.0.0.3,
// loopback clients the tarpit test connects from with confirming rDNS (the first listed, the
// second not).
const ZONES = {
  'good.test': zone('good.test',
    'ns IN A 127.0.0.1\nmail IN A 192.0.2.10\nmail2 IN A 192.0.2.40\nmail3 IN A 192.0.2.50\nlo2 IN A 127.0.0.2\nlo3 IN A 127.0.0.3\n'),
  '0.0.127.in-addr.arpa': zone('0.0.127.in-addr.arpa', '2 IN PTR lo2.good.test.\n3 IN PTR lo3.good.test.\n'),
  'isp.test': zone('isp.test', 'dsl-192-0-2-20.pool IN A 192.0.2.20\n'),
  '2.0.192.in-addr.arpa': zone('2.0.192.in-addr.arpa',
    '10 IN PTR mail.good.test.\n20 IN PTR dsl-192-0-2-20.pool.isp.test.\n25 IN PTR dsl-192-0-2-25.pool.isp.test.\n40 IN PTR mail2.good.test.\n50 IN PTR mail3.good.test.\n'),
  'bl.test': zone('bl.test', '40.2.0.192 IN A 127.0.0.2\n2.0.0.127 IN A 127.0.0.2\n'),
  'wl.test': zone('wl.test', '50.2.0.192 IN A 127.0.15.1\n'),
  // The sender domains: one whose SPF record lists the mail server, one that ends in ~all.
  'sender.test': zone('sender.test', '@ IN TXT "v=spf1 ip4:192.0.2.10 -all"\nsoft IN TXT "v=spf1 ip4:192.0.2.10 ~all"\n'),
};

const LISTS = ['--dnsbl', 'bl.test', '--dnswl', 'wl.test'];

const nsd = (t: ExecutionContext) => nsdFor(t, ZONES);

function stageOn(t: ExecutionContext, server: string, over: Partial<WeightedSettings> = {}, lookupTimeout = 2000) {
  const dns = new DnsClient({ servers: [server], timeout: lookupTimeout });
  t.teardown(() => dns.close());
  const settings: WeightedSettings = {
    threshold: DEFAULTS.greylistThreshold,
    lists: [parseListSpec('wl.test', 'dnswl'), parseListSpec('bl.test', 'dnsbl')],
    ourNames: ['mx.us.test'],
    spf: false,
    ...over,
  };
  // As startWeighting does: mailauth is loaded before the first decision's budget starts.
  if (settings.spf) loadSpf();
  return { stage: new WeightedStage({ dns, settings }), settings, dns };
}

const attempt = (ip: string, helo: string) => ({ ip, helo, sender: 'a@sender.test', rcpt: 'b@us.test' });

test.serial('scores from real DNS: a mail server passes, a listed client, dial-up lines (confirmed or not) with a bad HELO and a client without rDNS are judged by their findings', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const { stage, settings } = stageOn(t, running.server);
  const scored = async (ip: string, helo: string) => {
    const s = await stage.score(attempt(ip, helo));
    return { total: s.total, judgement: judge(s, settings), weighing: s.findings.filter((f) => f.weight !== 0).map((f) => `${f.check}:${f.result}`) };
  };
  t.deepEqual(await scored('192.0.2.10', 'mail.good.test'), { total: 0, judgement: 'accept', weighing: [] });
  t.deepEqual(await scored('192.0.2.40', 'mail2.good.test'), { total: 2, judgement: 'greylist', weighing: ['dnsbl:listed'] });
  t.deepEqual(await scored('192.0.2.50', 'mail3.good.test'), { total: -2, judgement: 'accept', weighing: ['dnswl:listed'] });
  t.deepEqual(await scored('192.0.2.20', 'localhost'), { total: 2, judgement: 'greylist', weighing: ['helo:not-fqdn', 'rdns:generic'] });
  t.deepEqual(await scored('192.0.2.25', 'localhost'), { total: 2.5, judgement: 'greylist', weighing: ['helo:not-fqdn', 'rdns:generic'] });
  const unconfirmed = await scored('192.0.2.25', 'mail.good.test');
  t.deepEqual(unconfirmed, { total: 1.5, judgement: 'accept', weighing: ['rdns:generic'] });
  t.true(unconfirmed.total > (await scored('192.0.2.20', 'mail.good.test')).total, 'a dial-up PTR that does not confirm weighs more than one that does');
  t.deepEqual(await scored('192.0.2.30', 'mail.good.test'), { total: 1, judgement: 'accept', weighing: ['rdns:missing'] });
  t.deepEqual(await scored('192.0.2.30', '[192.0.2.99]'), { total: 2, judgement: 'greylist', weighing: ['helo:foreign-literal', 'rdns:missing'] });
  const same = await stage.score({ ip: '192.0.2.30', helo: 'mail.good.test', sender: 'b@us.test', rcpt: 'B@us.test' });
  t.is(same.total, 2, 'sender = recipient adds its point');
});

test.serial('SPF of the sender domain: a listed mail server passes, another client fails (and is greylisted by that alone), softfail adds one point', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const { stage, settings } = stageOn(t, running.server, { spf: true });
  const pass = await stage.score(attempt('192.0.2.10', 'mail.good.test'));
  t.like(pass.findings.find((f) => f.check === 'spf'), { result: 'pass', weight: 0 });
  t.is(pass.total, 0);
  // 192.0.2.50: a confirmed, allow-listed mail server, but not in sender.test's record.
  const fail = await stage.score(attempt('192.0.2.50', 'mail3.good.test'));
  t.like(fail.findings.find((f) => f.check === 'spf'), { result: 'fail', weight: DEFAULTS.spfFailWeight });
  t.regex(fail.findings.find((f) => f.check === 'spf')!.why, /^SPF of sender\.test: fail \(matched -all\), weight 2$/);
  t.is(fail.total, DEFAULTS.dnswlWeight + DEFAULTS.spfFailWeight);
  const failing = await stage.score({ ...attempt('192.0.2.30', 'mail.good.test'), sender: 'x@sender.test' });
  t.is(judge(failing, settings), 'greylist', 'SPF fail and no rDNS');
  const soft = await stage.score({ ...attempt('192.0.2.40', 'mail2.good.test'), sender: 'x@soft.sender.test' });
  t.like(soft.findings.find((f) => f.check === 'spf'), { result: 'softfail', weight: DEFAULTS.spfSoftfailWeight });
});

test.serial('the score of an attempt is asked of DNS once: the RCPTs of one message and its retries hit the score cache', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const { stage, dns } = stageOn(t, running.server);
  await stage.score(attempt('192.0.2.10', 'mail.good.test'));
  const { queries, cacheHits } = dns.stats();
  for (let i = 0; i < 5; i++) await stage.score({ ...attempt('192.0.2.10', 'mail.good.test'), rcpt: `r${i}@us.test` });
  t.like(dns.stats(), { queries, cacheHits }, 'no lookup at all: the score itself was kept');
});

test.serial('a dead resolver costs one budget and counts as neutral: only what needs no DNS weighs, and the score is not kept', async (t) => {
  const dead = await deadResolver();
  t.teardown(() => dead.close());
  const budget = 700;
  // Only the budget can end the lookups in time: c-ares would wait far longer.
  const { stage } = stageOn(t, dead.server, { budget }, DEAD_LOOKUP_TIMEOUT);
  const started = Date.now();
  const s = await stage.score(attempt('192.0.2.40', 'localhost'));
  const took = Date.now() - started;
  t.true(took < budget + BUDGET_SLACK, `took ${took} ms`);
  t.true(s.partial);
  t.is(s.total, DEFAULTS.heloWeight, 'the HELO syntax finding needs no DNS; the DNSBL listing is unknown, not bad');
  t.true(s.findings.filter((f) => f.check === 'dnsbl' || f.check === 'rdns').every((f) => f.weight === 0 && f.result === 'unknown'));
  // Once the first queries have given up, the same attempt asks again: a partial score is not kept.
  const asked = dead.received();
  await eventually(async () => {
    await stage.score(attempt('192.0.2.40', 'localhost'));
    return dead.received() > asked;
  }, 'the attempt asked of DNS again');
  t.pass();
});

test.serial('policy door --weighted: a good client is answered at once (with the reason in X-Greylist), a listed one deferred, a retry of the listed one after the delay passes', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const dir = await tempDir(t, 'pfgrey-weighted-');
  const db = path.join(dir, 'policy.db');
  const p = await startPolicy(t, ['--db', db, '--delay', '1', '--weighted', '--resolver', running.server, ...LISTS, '--no-spf',
    '--x-greylist-header', '--hostname', 'mx.us.test']);
  const good = policyRequest({ client_address: '192.0.2.10', client_name: 'mail.good.test', helo_name: 'mail.good.test', instance: 'i1' });
  const { answers } = await ask(p.port, [good]);
  t.regex(answers[0]!, /^action=PREPEND X-Greylist: not delayed by pfgrey-\S+ at mx\.us\.test, weighted score 0 \(nothing suspicious\); \w{3}, \d\d \w{3} \d{4} /);
  const listed = policyRequest({ client_address: '192.0.2.40', client_name: 'mail2.good.test', helo_name: 'mail2.good.test', instance: 'i2' });
  const first = await ask(p.port, [listed]);
  t.regex(first.answers[0]!, /^action=DEFER_IF_PERMIT /);
  await eventually(async () => !/^action=DEFER/.test((await ask(p.port, [listed])).answers[0]!), 'the listed client passing after --delay', 15_000);
  // Logged without -d: the policy door logs every decision, the weighed ones with their score.
  // (The log comes through a pipe that may lag behind the answers.)
  await eventually(() => /action=pass, reason=weighted \(score 0: nothing suspicious\)/.test(p.stderr()), 'the accept logged');
  await eventually(() => /weighted: 192\.0\.2\.40 <a@example\.org> -> <b@us\.example>: score 2 >= threshold 2: greylist; dnsbl: 40\.2\.0\.192\.bl\.test: listed/.test(p.stderr()),
    'the greylisting logged with its score');
  // The pass is remembered as a known-good sender domain and network.
  const store = await openDatabase(db, { readonly: true });
  t.teardown(() => store.close());
  const entries = await eventually(async () => {
    const all = [];
    for await (const chunk of store.chunks(100)) all.push(...chunk);
    return all.some((e) => entryType(e) === 'GOOD') ? all : undefined;
  }, 'the GOOD entry');
  t.truthy(entries.find((e) => e.key === 'good example.org 192.0.2.0/24'));
});

test.serial('tarpit --weighted: a good client is whitelisted on its first contact, a listed one is greylisted as usual', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const { port, dbPath, log } = await testDaemon(t, ['--stutter', '0', '--grey-stutter', '0', '-v',
    '--weighted', '--resolver', running.server, ...LISTS, '--no-spf']);
  const env = { hello: 'HELO mail.good.test', from: '<a@sender.test>', to: '<b@us.test>' };
  // 127.0.0.3: confirming rDNS, a good HELO, on no list: every check answered, nothing suspicious.
  await attemptToData(port, env, '127.0.0.3');
  await attemptToData(port, env, '127.0.0.2');
  const store = await openDatabase(dbPath, { readonly: true });
  t.teardown(() => store.close());
  const listed = await eventually(async () => {
    const all = [];
    for await (const chunk of store.chunks(100)) all.push(...chunk);
    const white = all.find((e) => e.key === '127.0.0.3');
    const grey = all.find((e) => e.key.startsWith('127.0.0.2\n'));
    return white && grey ? { white, grey, all } : undefined;
  }, 'both attempts recorded');
  t.is(entryType(listed.white), 'WHITE');
  t.is(entryType(listed.grey), 'GREY');
  t.falsy(listed.all.find((e) => e.key === '127.0.0.2'), 'the listed client is not whitelisted');
  t.true(log.lines.some((l) => /weighted: 127\.0\.0\.3 <a@sender\.test> -> <b@us\.test>: score 0 < threshold 2: accept$/.test(l)), log.lines.join('\n'));
  t.true(log.lines.some((l) => /whitelisted: 127\.0\.0\.3 on first contact, score 0/.test(l)), log.lines.join('\n'));
  t.true(log.lines.some((l) => /weighted: 127\.0\.0\.2 <a@sender\.test> -> <b@us\.test>: score 2 >= threshold 2: greylist/.test(l)));
});

test.serial('tarpit --weighted with a dead resolver: a first contact is greylisted as without weighting, never whitelisted for weeks', async (t) => {
  const dead = await deadResolver();
  t.teardown(() => dead.close());
  const { port, dbPath, log } = await testDaemon(t, ['--stutter', '0', '--grey-stutter', '0', '-v',
    '--weighted', '--resolver', dead.server, '--dnsbl', 'bl.test', '--no-spf']);
  await attemptToData(port, { hello: 'HELO mail.good.test', from: '<a@sender.test>', to: '<b@us.test>' }, '127.0.0.3');
  const store = await openDatabase(dbPath, { readonly: true });
  t.teardown(() => store.close());
  const all = await eventually(async () => {
    const found = [];
    for await (const chunk of store.chunks(100)) found.push(...chunk);
    return found.some((e) => e.key.startsWith('127.0.0.3\n')) ? found : undefined;
  }, 'the tuple recorded', 30_000);
  t.is(entryType(all.find((e) => e.key.startsWith('127.0.0.3\n'))!), 'GREY');
  t.falsy(all.find((e) => e.key === '127.0.0.3'), 'not WHITE');
  t.true(log.lines.some((l) => /weighted: 127\.0\.0\.3 .*: score 0 < threshold 2, but lookups that did not answer could add up to 4\.5: greylist, as without weighting/.test(l)),
    log.lines.join('\n'));
});

test.serial('pfgrey explain prints the decision and every finding, and says it in its exit status', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const dns = ['--resolver', running.server, ...LISTS, '--no-spf'];
  const good = await runCli(['explain', ...dns, '192.0.2.10', 'mail.good.test', '<a@sender.test>', 'b@us.test']);
  t.is(good.code, 0, good.stderr);
  const lines = good.stdout.trimEnd().split('\n');
  t.is(lines[0], '192.0.2.10 helo "mail.good.test" from <a@sender.test> to <b@us.test>');
  t.is(lines[1], 'score 0 < threshold 2: accept');
  t.true(lines.some((l) => /^ {2}dnsbl: 10\.2\.0\.192\.bl\.test: not listed/.test(l)), good.stdout);
  t.true(lines.some((l) => /^ {2}rdns: rDNS of 192\.0\.2\.10: mail\.good\.test, forward-confirmed$/.test(l)), good.stdout);
  const bad = await runCli(['explain', ...dns, '192.0.2.20', 'localhost', 'a@sender.test', 'b@us.test']);
  t.is(bad.code, 2, 'greylist');
  t.regex(bad.stdout, /^score 2 >= threshold 2: greylist$/m);
  const trap = await runCli(['explain', ...dns, '--greylist-threshold', '1', '--trap-threshold', '1.5', '192.0.2.20', 'localhost', 'a@sender.test', 'b@us.test']);
  t.is(trap.code, 3, 'trap');
  // With --db, the known-good memory is read: a sender domain and /24 that passed before.
  const dir = await tempDir(t, 'pfgrey-explain-');
  const db = path.join(dir, 'pfgrey.db');
  const now = Math.floor(Date.now() / 1000);
  const imported = await runCli(['db', '--db', db, '--import', '-'], { input: `GOOD|sender.test|192.0.2.0/24|${now}|${now}|${now + 86400}|1\n` });
  t.is(imported.code, 0, imported.stderr);
  const known = await runCli(['explain', ...dns, '--db', db, '192.0.2.20', 'localhost', 'a@sender.test', 'b@us.test']);
  t.is(known.code, 0, known.stdout);
  t.regex(known.stdout, /^score -98 < threshold 2: accept$/m);
  t.regex(known.stdout, /^ {2}known: sender\.test 192\.0\.2\.0\/24 passed greylisting before, weight -100$/m);
});

test.serial('pfgrey explain --generic-rdns FILE: a pattern from the file makes a mail server\'s name generic', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const dir = await tempDir(t, 'pfgrey-explain-');
  const patterns = path.join(dir, 'generic');
  await writeFile(patterns, '# our own idea of generic\n^mail\\.good\\.\n');
  const args = ['--resolver', running.server, ...LISTS, '--no-spf', '192.0.2.10', 'mail.good.test', 'a@sender.test', 'b@us.test'];
  const plain = await runCli(['explain', ...args]);
  t.regex(plain.stdout, /^ {2}rdns: rDNS of 192\.0\.2\.10: mail\.good\.test, forward-confirmed$/m, 'not generic without the file');
  const r = await runCli(['explain', '--generic-rdns', patterns, ...args]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^score 1 < threshold 2: accept$/m);
  t.regex(r.stdout, /^ {2}rdns: rDNS of 192\.0\.2\.10: mail\.good\.test looks generic \(a dial-up or dynamic line\), weight 1$/m);
});

test.serial('pfgrey explain: a HELO of this host\'s name (--hostname) or of one of its interface addresses claims to be us', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const explained = (helo: string) => runCli(['explain', '--resolver', running.server, ...LISTS, '--no-spf', '--hostname', 'mx.us.test',
    '192.0.2.10', helo, 'a@sender.test', 'b@us.test']);
  t.regex((await explained('MX.us.test')).stdout, /^ {2}helo: HELO "MX\.us\.test": our own name, weight 1$/m);
  // The loopback interface's address is this host's on every machine.
  t.regex((await explained('[127.0.0.1]')).stdout, /^ {2}helo: HELO "\[127\.0\.0\.1\]": our own address, weight 1$/m);
});

test.serial('pfgrey explain shows the HELO, sender and recipient with control characters escaped', async (t) => {
  const running = await nsd(t);
  if (!running) return;
  const r = await runCli(['explain', '--resolver', running.server, ...LISTS, '--no-spf',
    '192.0.2.10', 'mail.good.test\u009b2J', '<a@sender.test\n\u001b[2Jforged>', 'b@us.test\r\u009b31m']);
  t.is(r.stdout.split('\n')[0], '192.0.2.10 helo "mail.good.test\\x9b2J" from <a@sender.test\\x0a\\x1b[2Jforged> to <b@us.test\\x0d\\x9b31m>');
  // runCli reads stdout as latin1: a C1 character written as UTF-8 shows as 0xC2 and the control.
  t.notRegex(r.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, 'nothing but line ends reaches the terminal');
});

test('pfgrey run and pfgrey policy with a missing or bad --generic-rdns file fail with one line naming it', async (t) => {
  const dir = await tempDir(t, 'pfgrey-generic-');
  const missing = path.join(dir, 'missing');
  const bad = path.join(dir, 'bad');
  await writeFile(bad, '^dsl-\n(unclosed\n');
  const commands: [string, string[]][] = [
    // As root, pfgrey run becomes an unprivileged user; _pfgrey does not exist on test machines.
    ['run', ['-p', '0', '--config-port', '0', '--firewall', 'none', '--log', 'stderr', '--db', path.join(dir, 'run.db'),
      ...(process.getuid?.() === 0 ? ['--user', 'nobody'] : [])]],
    ['policy', ['--stdio', '--db', path.join(dir, 'policy.db')]],
  ];
  for (const [command, args] of commands) {
    for (const [file, why] of [[missing, `generic rDNS pattern file ${missing}: no such file`], [bad, `${bad}:2: bad regular expression "(unclosed"`]] as const) {
      const r = await runCli([command, ...args, '--weighted', '--resolver', '127.0.0.1:1', '--generic-rdns', file]);
      t.is(r.code, 1, `${command} ${file}: ${r.stderr}`);
      const errors = r.stderr.split('\n').filter((l) => l.startsWith(`pfgrey ${command}: `));
      t.is(errors.length, 1, r.stderr);
      t.true(errors[0]!.includes(why), r.stderr);
      t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
    }
  }
  // The file is read first: no database was made for a start that could not happen.
  t.deepEqual((await readdir(dir)).sort(), ['bad']);
});

test('the weighted options are refused without --weighted, and bad values name the option', async (t) => {
  const stray = await runCli(['policy', '--dnsbl', 'bl.test', '--stdio']);
  t.is(stray.code, 1);
  t.regex(stray.stderr, /--dnsbl is an option of weighted greylisting: add --weighted/);
  const low = await runCli(['policy', '--weighted', '--greylist-threshold', '3', '--trap-threshold', '2', '--stdio']);
  t.regex(low.stderr, /--trap-threshold 2: must be above --greylist-threshold \(3\)/);
  const nan = await runCli(['run', '--weighted', '--greylist-threshold', 'lots']);
  t.regex(nan.stderr, /--greylist-threshold lots: expected a number/);
  const resolver = await runCli(['explain', '--resolver', 'dns.example', '192.0.2.1', 'h', 'a@b.c', 'd@e.f']);
  t.regex(resolver.stderr, /--resolver dns\.example: not an IP address/);
  const args = await runCli(['explain', '192.0.2.1', 'h']);
  t.regex(args.stderr, /expected four arguments \(ip helo from to\), got 2/);
  const ip = await runCli(['explain', 'nowhere', 'h', 'a@b.c', 'd@e.f']);
  t.regex(ip.stderr, /"nowhere" is not an IP address/);
});
