// Weighted greylisting in the greylist core: a score under the threshold lets a first attempt by
// (the tarpit whitelists the client, the policy door answers at once), a score at or over it
// greylists as usual, a score at the trap threshold traps, and a sender domain and network that
// passed greylisting before are known good. The stage is a stand-in here; the checks themselves
// are tested against a real DNS server in weighted.test.ts.

import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { ManualClock } from '../src/clock.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { entryType, goodKey, greyKey, policyKey } from '../src/grey/entry.js';
import { Greylister } from '../src/grey/greylister.js';
import type { PolicyRequest } from '../src/grey/requests.js';
import { goodHit, knownGoodKey, senderDomain } from '../src/grey/rules.js';
import { entryToJson, formatEntry, parseLine } from '../src/grey/spamdb-format.js';
import { memoryLogger } from '../src/log.js';
import { Activity } from '../src/http/activity.js';
import { MemoryStore } from '../src/store/memory.js';
import {
  type Attempt, explain, type Finding, judge, reasons, type Score, senderIsRecipient, spfFinding, sumScore, type WeightedStage, withKnownGood,
} from '../src/weighted/score.js';

const S = 1000;
const H = 3600 * S;
const D = 24 * H;
const times = { passTime: 25 * 60 * S, greyExpiry: 4 * H, whiteExpiry: 36 * D, trapExpiry: D };
const T0 = 1_800_000_000_000;

const finding = (check: Finding['check'], weight: number, result = weight > 0 ? 'bad' : 'ok'): Finding => ({ check, result, weight, why: `${check} said ${result}` });
const scoreOf = (...weights: number[]): Score => sumScore(weights.map((w, i) => finding(i % 2 ? 'helo' : 'dnsbl', w)), false);

/** A stage that scores by client address, and records what it was asked. */
function fakeStage(scores: Record<string, number>) {
  const asked: Attempt[] = [];
  let hold: Promise<void> | undefined;
  return {
    asked,
    holdUntil(p: Promise<void>) {
      hold = p;
    },
    async score(a: Attempt): Promise<Score> {
      asked.push(a);
      if (hold) await hold;
      return scoreOf(scores[a.ip] ?? 0);
    },
  };
}

/** A core on a memory store and a manual clock, its stage `stage`, threshold 2, logging at -v. */
function coreWith<S extends Pick<WeightedStage, 'score'>>(t: ExecutionContext, stage: S, trapThreshold?: number) {
  const store = new MemoryStore();
  const clock = new ManualClock(T0);
  const log = memoryLogger();
  const g = new Greylister({ store, times, log, clock, atomic: true, weighted: { stage, threshold: 2, trapThreshold, verbose: true } });
  const events: string[] = [];
  const judged: string[] = [];
  g.events.on((e) => (e.kind === 'weighed' ? judged.push(e.judgement) : events.push(`${e.kind} ${'ip' in e ? e.ip : ''}`)));
  t.teardown(() => g.stop());
  return { g, store, clock, log, stage, events, judged };
}

function core(t: ExecutionContext, scores: Record<string, number>, trapThreshold?: number) {
  return coreWith(t, fakeStage(scores), trapThreshold);
}

const tuple = (ip: string, from = '<a@sender.example>', to = '<b@us.example>') => ({ ip, helo: 'mx.sender.example', from, to });
const policy = (ip: string, over: Partial<PolicyRequest> = {}): PolicyRequest => ({
  kind: 'policy', ip, triplet: `${ip}/a@sender.example/b@us.example`, client: ip, rcpt: 'b@us.example', privacy: false,
  helo: 'mx.sender.example', sender: 'a@sender.example', ...over,
});

// --- pure parts ---------------------------------------------------------------------------------

/** A score as judge() sees it: its total, and what unanswered checks could add. */
const at = (total: number, doubt = 0) => ({ total, doubt });

test('a score is the sum of its findings, and the thresholds judge it: under accepts, at or over greylists, the trap threshold traps', (t) => {
  t.is(scoreOf(2, 1, -2).total, 1);
  t.is(scoreOf(0.5, 0.5, 0.5).total, 1.5);
  t.is(judge(at(1.5), { threshold: 2 }), 'accept');
  t.is(judge(at(2), { threshold: 2 }), 'greylist');
  t.is(judge(at(9), { threshold: 2 }), 'greylist', 'no trap threshold: never a trap');
  t.is(judge(at(9), { threshold: 2, trapThreshold: 6 }), 'trap');
  fc.assert(fc.property(fc.array(fc.integer({ min: -20, max: 20 }), { maxLength: 8 }), fc.integer({ min: -5, max: 5 }), (ws, th) => {
    const s = scoreOf(...ws);
    const j = judge(s, { threshold: th });
    // Adding a positive weight never turns a greylist into an accept: the score is monotone.
    return j === 'accept' || judge(scoreOf(...ws, 1), { threshold: th }) === 'greylist';
  }));
});

test('the explanation names the score, the threshold and the decision, then the findings that weigh; reasons say it in a few words', (t) => {
  const s = sumScore([
    { check: 'dnsbl', result: 'listed', weight: 2, why: 'bl.example.test: listed (127.0.0.2), weight 2', label: 'bl.example.test' },
    { check: 'helo', result: 'ok', weight: 0, why: 'HELO mx.example: has an address' },
    { check: 'rdns', result: 'unconfirmed', weight: 0.5, why: 'rDNS of 192.0.2.1: PTR x does not resolve back to it, weight 0.5' },
  ], false);
  t.deepEqual(explain(s, { threshold: 2 }), [
    'score 2.5 >= threshold 2: greylist',
    '  dnsbl: bl.example.test: listed (127.0.0.2), weight 2',
    '  rdns: rDNS of 192.0.2.1: PTR x does not resolve back to it, weight 0.5',
  ]);
  t.is(explain(s, { threshold: 2 }, true).length, 4, 'all: every finding');
  t.is(explain(s, { threshold: 2, trapThreshold: 2.5 })[0], 'score 2.5 >= trap threshold 2.5: trap');
  t.is(explain({ ...s, partial: true }, { threshold: 3 })[0], 'score 2.5 < threshold 3: accept (some lookups did not answer: counted neutral)');
  t.is(reasons(s), 'dnsbl bl.example.test +2, rdns unconfirmed +0.5');
  t.is(reasons(sumScore([], false)), 'nothing suspicious');
});

test('sender = recipient weighs one point (not for a bounce), SPF fail and softfail weigh and the rest is neutral', (t) => {
  t.like(senderIsRecipient('Joe@Example.ORG', 'joe@example.org'), { result: 'is-recipient', weight: DEFAULTS.senderIsRecipientWeight });
  t.like(senderIsRecipient('', ''), { weight: 0 });
  t.like(senderIsRecipient('a@example.org', 'b@example.org'), { weight: 0 });
  const spf = (verdict: Parameters<typeof spfFinding>[0]['verdict']) => spfFinding({ verdict, domain: 'example.org', detail: 'x' });
  t.is(spf('fail').weight, DEFAULTS.spfFailWeight);
  t.is(spf('softfail').weight, DEFAULTS.spfSoftfailWeight);
  for (const v of ['pass', 'neutral', 'none', 'temperror', 'permerror'] as const) t.is(spf(v).weight, 0, v);
  t.regex(spf('temperror').why, /SPF of example\.org: temperror \(x\), neutral/);
  t.true(DEFAULTS.spfFailWeight >= DEFAULTS.greylistThreshold, 'an SPF fail alone greylists');
  t.true(DEFAULTS.dnsblWeight >= DEFAULTS.greylistThreshold, 'a DNSBL listing alone greylists');
});

test('the known-good memory: a sender domain and the client\'s /24 or /64; bounces and domainless senders are not remembered', (t) => {
  t.is(senderDomain('<a@Sender.Example>'), 'sender.example');
  t.is(senderDomain('a@b@sender.example'), 'sender.example');
  t.is(senderDomain('<>'), undefined);
  t.is(senderDomain('postmaster'), undefined);
  t.is(knownGoodKey('a@sender.example', '192.0.2.77'), goodKey('sender.example', '192.0.2.0/24'));
  t.is(knownGoodKey('a@sender.example', '2001:db8:1:2:3::4'), goodKey('sender.example', '2001:db8:1:2:0:0:0:0/64'));
  t.is(knownGoodKey('', '192.0.2.77'), undefined);
  t.is(knownGoodKey('a@sender.example', 'not-an-ip'), undefined);
  const key = goodKey('sender.example', '192.0.2.0/24');
  const first = goodHit(undefined, key, T0, 35 * D)!;
  t.deepEqual(first, { key, first: T0, pass: T0, expire: T0 + 35 * D, bcount: 1, pcount: 0 });
  t.is(goodHit(first, key, T0 + 10 * S, 35 * D), undefined, 'renewed at most hourly');
  t.like(goodHit(first, key, T0 + 2 * H, 35 * D), { first: T0, pass: T0 + 2 * H, expire: T0 + 2 * H + 35 * D, bcount: 2 });
  t.like(goodHit(first, key, T0 + 40 * D, 35 * D), { first: T0 + 40 * D, bcount: 1 }, 'an expired one starts again');
  t.like(withKnownGood(scoreOf(5), 'sender.example 192.0.2.0/24'), { total: 5 + DEFAULTS.knownGoodWeight });
});

test('GOOD lines list and import back; a bad domain or network is refused naming the line', (t) => {
  const e = { key: goodKey('sender.example', '192.0.2.0/24'), first: T0, pass: T0 + H, expire: T0 + 35 * D, bcount: 3, pcount: 0 };
  t.is(entryType(e), 'GOOD');
  const line = formatEntry(e);
  t.is(line, `GOOD|sender.example|192.0.2.0/24|${T0 / 1000}|${(T0 + H) / 1000}|${(T0 + 35 * D) / 1000}|3`);
  t.deepEqual(parseLine(line, 1), e);
  t.deepEqual(entryToJson(e), { type: 'GOOD', domain: 'sender.example', network: '192.0.2.0/24', first: T0 / 1000, last: (T0 + H) / 1000, expire: (T0 + 35 * D) / 1000, passes: 3 });
  const v6 = { ...e, key: goodKey('sender.example', '2001:db8:1:2:0:0:0:0/64') };
  t.deepEqual(parseLine(formatEntry(v6), 1), v6);
  t.throws(() => parseLine('GOOD|sender|192.0.2.0/24|1|2|3|1', 7), { message: /line 7: GOOD has a bad sender domain/ });
  t.throws(() => parseLine('GOOD|sender.example|192.0.2.0/33|1|2|3|1', 8), { message: /line 8: GOOD has a bad network/ });
  t.throws(() => parseLine('GOOD|sender.example|192.0.2.0/24|1|2|3', 9), { message: /line 9: GOOD needs 7 fields/ });
});

// --- the tarpit's tuples ------------------------------------------------------------------------

test('a first attempt scoring under the threshold whitelists its client at once, and says why at -v', async (t) => {
  const { g, store, events, log, stage } = core(t, { '192.0.2.1': 0 });
  const v = await g.tuple(tuple('192.0.2.1'));
  t.like(v, { kind: 'whitelisted', ip: '192.0.2.1', by: 'weighted', weighted: { score: 0, reasons: 'nothing suspicious' } });
  t.like(await store.get('192.0.2.1'), { first: T0, pass: T0, expire: T0 + times.whiteExpiry, pcount: 0 });
  t.is(entryType((await store.get('192.0.2.1'))!), 'WHITE');
  t.deepEqual(events, ['white 192.0.2.1']);
  t.deepEqual(stage.asked, [{ ip: '192.0.2.1', helo: 'mx.sender.example', sender: 'a@sender.example', rcpt: 'b@us.example' }], 'asked without angle brackets');
  t.true(log.lines.some((l) => /weighted: 192\.0\.2\.1 <a@sender\.example> -> <b@us\.example>: score 0 < threshold 2: accept/.test(l)), log.lines.join('\n'));
  t.true(log.lines.some((l) => /whitelisted: 192\.0\.2\.1 on first contact, score 0 \(nothing suspicious\)/.test(l)));
});

test('each judgement is an event, which /metrics counts by decision', async (t) => {
  const { g, judged } = core(t, { '192.0.2.1': 0, '192.0.2.2': 2, '192.0.2.3': 9 }, 6);
  const activity = new Activity({ command: 'run', weighted: true });
  activity.follow(g.events);
  const before = await activity.registry.metrics();
  t.regex(before, /^pfgrey_weighted_decisions_total\{decision="trap"\} 0$/m, 'every decision from zero');
  for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) await g.tuple(tuple(ip));
  await g.tuple(tuple('192.0.2.2'));
  t.deepEqual(judged, ['accept', 'greylist', 'trap'], 'a retry of a greylisted tuple is not judged again');
  const after = await activity.registry.metrics();
  for (const d of ['accept', 'greylist', 'trap']) t.regex(after, new RegExp(`^pfgrey_weighted_decisions_total\\{decision="${d}"\\} 1$`, 'm'));
});

test('a first attempt at or over the threshold is greylisted as without weighting, and its retry after the pass time passes', async (t) => {
  const { g, store, clock, events } = core(t, { '192.0.2.2': 2 });
  t.like(await g.tuple(tuple('192.0.2.2')), { kind: 'greylisted', left: times.passTime });
  t.is(await store.get('192.0.2.2'), undefined, 'no WHITE entry');
  clock.advance(times.passTime + S);
  t.like(await g.tuple(tuple('192.0.2.2')), { kind: 'passed' });
  t.deepEqual(events, ['grey ', 'grey ']);
  // The pass is remembered: the same sender domain from the same /24 is known good from now on.
  const good = await store.get(goodKey('sender.example', '192.0.2.0/24'));
  t.like(good, { first: clock.now(), pass: clock.now(), bcount: 1 });
});

test('a known-good sender domain and network is let by at once, from another address in its /24, without asking DNS', async (t) => {
  const { g, store, clock, stage } = core(t, { '192.0.2.3': 3, '192.0.2.4': 3 });
  t.like(await g.tuple(tuple('192.0.2.3')), { kind: 'greylisted' });
  clock.advance(times.passTime + S);
  t.like(await g.tuple(tuple('192.0.2.3')), { kind: 'passed' });
  const v = await g.tuple(tuple('192.0.2.4', '<other@sender.example>', '<c@us.example>'));
  t.like(v, { kind: 'whitelisted', by: 'weighted', weighted: { score: DEFAULTS.knownGoodWeight } });
  t.deepEqual(stage.asked.map((a) => a.ip), ['192.0.2.3'], 'the known-good sender was not scored: delivered before, accepted at once');
  t.regex((v as { weighted: { reasons: string } }).weighted.reasons, /known sender\.example 192\.0\.2\.0\/24 -100/);
  t.is(entryType((await store.get('192.0.2.4'))!), 'WHITE');
  // Another domain from the same network is not known.
  t.like(await g.tuple(tuple('192.0.2.4', '<x@elsewhere.example>')), { kind: 'whitelisted' }, 'already WHITE now');
});

test('a score at the trap threshold traps the client; without a trap threshold it is only greylisted', async (t) => {
  const trapping = core(t, { '192.0.2.5': 7 }, 6);
  t.like(await trapping.g.tuple(tuple('192.0.2.5')), { kind: 'trapped', ip: '192.0.2.5' });
  t.is(entryType((await trapping.store.get('192.0.2.5'))!), 'TRAPPED');
  t.true(trapping.log.lines.some((l) => /Trapping 192\.0\.2\.5 for tuple .*\(score 7 >= trap threshold 6: dnsbl bad \+7\)/.test(l)), trapping.log.lines.join('\n'));
  const plain = core(t, { '192.0.2.5': 7 });
  t.like(await plain.g.tuple(tuple('192.0.2.5')), { kind: 'greylisted' });
});

test('only the first attempt is weighed: a tuple already greylisted goes its usual way whatever its new score', async (t) => {
  const scores: Record<string, number> = { '192.0.2.6': 5 };
  const { g, store } = core(t, scores);
  t.like(await g.tuple(tuple('192.0.2.6')), { kind: 'greylisted' });
  scores['192.0.2.6'] = 0;
  t.like(await g.tuple(tuple('192.0.2.6')), { kind: 'greylisted' });
  t.is(await store.get('192.0.2.6'), undefined);
});

test('stop waits for the attempts being scored: a tuple whose score arrives during the stop is still recorded', async (t) => {
  const { g, store, stage } = core(t, { '192.0.2.8': 5 });
  let release!: () => void;
  stage.holdUntil(new Promise<void>((r) => (release = r)));
  const verdict = g.tuple(tuple('192.0.2.8'));
  t.is(g.queued, 1, 'being scored counts as queued (the backlog)');
  const stopped = g.stop();
  setTimeout(release, 50);
  await stopped;
  t.like(await verdict, { kind: 'greylisted' });
  t.truthy(await store.get('192.0.2.8\nmx.sender.example\n<a@sender.example>\n<b@us.example>'));
});

// --- the policy door's requests -----------------------------------------------------------------

test('policy: a first attempt under the threshold passes at once with its score, and nothing is written', async (t) => {
  const { g, store } = core(t, { '192.0.2.10': 1.5 });
  const v = await g.handle(policy('192.0.2.10'));
  t.like(v, { kind: 'passed', key: policyKey('192.0.2.10/a@sender.example/b@us.example'), weighted: { score: 1.5 } });
  t.is(await store.get(policyKey('192.0.2.10/a@sender.example/b@us.example')), undefined);
  t.is(await store.get('192.0.2.10'), undefined);
});

test('policy: over the threshold the triplet is greylisted; its pass makes the sender known good, which lets the next one by', async (t) => {
  const { g, store, clock } = core(t, { '192.0.2.11': 4, '192.0.2.12': 4 });
  t.like(await g.handle(policy('192.0.2.11')), { kind: 'greylisted', fresh: true });
  clock.advance(DEFAULTS.policyDelay + S);
  t.like(await g.handle(policy('192.0.2.11')), { kind: 'passed', waited: DEFAULTS.policyDelay + S });
  t.truthy(await store.get(goodKey('sender.example', '192.0.2.0/24')));
  t.like(await g.handle(policy('192.0.2.12', { triplet: '192.0.2.12/z@sender.example/b@us.example', sender: 'z@sender.example' })),
    { kind: 'passed', weighted: { score: DEFAULTS.knownGoodWeight } });
});

test('only first attempts wait for the stage: a WHITE client, a greylisted retry and a sync record are decided without a score', async (t) => {
  const { g, store, clock, stage } = core(t, { '192.0.2.20': 5 });
  let release!: () => void;
  stage.holdUntil(new Promise<void>((r) => (release = r)));
  // A first attempt waits for its score; meanwhile the core goes on deciding what needs none.
  const first = g.tuple(tuple('192.0.2.20'));
  await store.update([], () => [{ put: { key: '192.0.2.21', first: T0, pass: T0, expire: T0 + D, bcount: 1, pcount: 0 } }]);
  t.like(await g.tuple(tuple('192.0.2.21')), { kind: 'whitelisted' });
  t.like(await g.handle(policy('192.0.2.21')), { kind: 'whitelisted' });
  t.like(await g.handle({ kind: 'sync', peer: '198.51.100.1', record: { type: 'GREY', time: T0, ip: '192.0.2.22', helo: 'h', from: '<a@b.example>', to: '<c@d.example>' } }),
    { kind: 'greylisted' });
  t.deepEqual(stage.asked.map((a) => a.ip), ['192.0.2.20']);
  release();
  t.like(await first, { kind: 'greylisted' });
  // Its retry is not a first attempt: decided at once, no second score.
  clock.advance(times.passTime + S);
  t.like(await g.tuple(tuple('192.0.2.20')), { kind: 'passed' });
  t.deepEqual(stage.asked.map((a) => a.ip), ['192.0.2.20']);
});

test('a score under the threshold only because lookups did not answer greylists as without weighting, and never traps', async (t) => {
  // No finding weighs, but the DNS list and SPF did not answer: they could have added 4.
  const doubtful = sumScore([
    { check: 'dnsbl', result: 'unknown', weight: 0, why: 'bl.example: timed out, neutral', label: 'bl.example', doubt: 2 },
    { check: 'spf', result: 'temperror', weight: 0, why: 'SPF: timed out, neutral', doubt: 2 },
  ], true);
  const stage = { score: async (a: Attempt) => (a.ip === '192.0.2.30' ? doubtful : sumScore([{ ...doubtful.findings[0]!, doubt: 1 }], true)) };
  const { g, store, log } = coreWith(t, stage, 3);
  t.like(await g.tuple(tuple('192.0.2.30')), { kind: 'greylisted' });
  t.is(entryType((await store.get(greyKey('192.0.2.30', 'mx.sender.example', '<a@sender.example>', '<b@us.example>')))!), 'GREY');
  t.is(await store.get('192.0.2.30'), undefined, 'neither WHITE nor TRAPPED');
  t.true(log.lines.some((l) => l.includes('score 0 < threshold 2, but lookups that did not answer could add up to 4: greylist, as without weighting')), log.lines.join('\n'));
  // At most 1 unanswered under threshold 2: even at worst it stays under, so it is accepted.
  t.like(await g.tuple(tuple('192.0.2.31')), { kind: 'whitelisted', by: 'weighted' });
  t.true(log.lines.some((l) => /score 0 < threshold 2: accept \(some lookups did not answer: counted neutral\)/.test(l)), log.lines.join('\n'));
  t.is(judge(at(0, 9), { threshold: 2, trapThreshold: 3 }), 'greylist', 'doubt never traps');
  // /metrics tells a DNS outage from real suspicion.
  const activity = new Activity({ command: 'run', weighted: true });
  activity.follow(g.events);
  t.regex(await activity.registry.metrics(), /^pfgrey_weighted_unanswered_total 0$/m);
  t.like(await g.tuple(tuple('192.0.2.30', '<b@sender.example>')), { kind: 'greylisted' });
  const after = await activity.registry.metrics();
  t.regex(after, /^pfgrey_weighted_unanswered_total 1$/m);
  t.regex(after, /^pfgrey_weighted_decisions_total\{decision="greylist"\} 1$/m);
  t.notRegex(await new Activity({ command: 'run' }).registry.metrics(), /pfgrey_weighted_unanswered_total/, 'not without --weighted');
  t.is(judge(at(-100, 9), { threshold: 2 }), 'accept', 'a known-good sender outweighs any doubt');
});

test('a stage that throws leaves the attempt greylisted as without weighting, said in one line', async (t) => {
  const { g, store, log } = coreWith(t, { score: async (): Promise<Score> => { throw new Error('boom'); } });
  t.like(await g.tuple(tuple('192.0.2.32')), { kind: 'greylisted' });
  t.is(await store.get('192.0.2.32'), undefined);
  t.is(log.lines.filter((l) => l.includes('cannot score 192.0.2.32: boom; greylisting as usual')).length, 1, log.lines.join('\n'));
});

test('policy: with --privacy nothing that names the client is written, the known-good memory included', async (t) => {
  const { g, store, clock } = core(t, { '192.0.2.13': 4 }, 10);
  t.like(await g.handle(policy('192.0.2.13', { privacy: true })), { kind: 'greylisted' });
  clock.advance(DEFAULTS.policyDelay + S);
  t.like(await g.handle(policy('192.0.2.13', { privacy: true })), { kind: 'passed' });
  t.is(await store.get(goodKey('sender.example', '192.0.2.0/24')), undefined);
});

test('policy: a score at the trap threshold traps the client as a spamtrap hit does', async (t) => {
  const { g, store, events } = core(t, { '192.0.2.14': 9 }, 6);
  t.like(await g.handle(policy('192.0.2.14')), { kind: 'trapped', ip: '192.0.2.14', why: 'score 9 >= trap threshold 6: dnsbl bad +9' });
  t.is(entryType((await store.get('192.0.2.14'))!), 'TRAPPED');
  t.deepEqual(events, ['trap 192.0.2.14']);
});
