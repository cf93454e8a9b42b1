// /metrics (--http): the numbers after real traffic over sockets, the tarpit's and the policy
// door's, and the page as a whole passes promtool's lint.

import test from 'ava';
import path from 'node:path';
import { tempDir, testDaemon } from './helpers/daemon.js';
import { attemptFrom, connectFrom, get, passTuple, havePromtool, metric, promtoolCheck } from './helpers/http.js';
import { ask, policyRequest, startPolicy } from './helpers/policy.js';
import { lacking } from './helpers/require.js';
import { eventually, sendConfig } from './helpers/smtp.js';
import { REPLY } from '../src/tarpit/replies.js';

/** A daemon with --http on a free port; samples every 50 ms so a test need not wait a minute. */
async function daemonWithHttp(t: Parameters<typeof testDaemon>[0], args: string[] = []) {
  const d = await testDaemon(t, ['--stutter', '0', '--http', '127.0.0.1:0', ...args], undefined, (c) => {
    c.http!.sampleEvery = 50;
  });
  return { ...d, http: d.daemon.httpAddress!.port };
}

test('after real tarpit traffic /metrics counts tuples, held connections by kind, a trap, a promotion, the scan\'s entries, the push and the commits', async (t) => {
  const { port, daemon, http } = await daemonWithHttp(t, ['--passtime', '0']);
  await sendConfig(daemon.configAddress.port, 'nixspam;"listed";inet;1;127.0.0.3/32\n');
  await eventually(() => daemon.lists.lookup('127.0.0.3'), 'the list loaded');
  await daemon.greylister!.handle({ kind: 'add', type: 'SPAMTRAP', key: 'trap@us.example' });

  // Two greylisted tuples from 127.0.0.2; a trap from 127.0.0.5; 127.0.0.6 passes on its retry.
  for (const to of ['<a@us.example>', '<b@us.example>']) t.true((await attemptFrom(port, '127.0.0.2', to)).endsWith(REPLY.greylisted));
  await attemptFrom(port, '127.0.0.5', '<trap@us.example>');
  await passTuple(daemon, port, '127.0.0.6', '<c@us.example>');
  await daemon.store!.flush();
  const tuples = daemon.activity.totals.tuples;
  t.true(tuples >= 5);
  await eventually(() => daemon.lists.lookup('127.0.0.5')?.tags.includes('spamd-greytrap'), 'the trap on the greytrap list');

  // Held now: one of each kind.
  const held = await Promise.all(['127.0.0.4', '127.0.0.3', '127.0.0.5'].map((a) => connectFrom(port, a)));
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  await daemon.scanner!.scanOnce();
  await eventually(() => daemon.activity.totals.pushes >= 1, 'the push after the scan');

  const m = await get(http, '/metrics');
  t.is(m.status, 200);
  t.regex(m.type, /^text\/plain; version=0\.0\.4/);
  const v = (s: string) => metric(m.body, s);
  t.is(v('pfgrey_tuples_total'), tuples);
  t.is(v('pfgrey_held_connections{kind="grey"}'), 1);
  t.is(v('pfgrey_held_connections{kind="black"}'), 1);
  t.is(v('pfgrey_held_connections{kind="trapped"}'), 1);
  t.is(v('pfgrey_traps_total'), 1);
  t.is(v('pfgrey_promotions_total'), 1);
  t.is(v('pfgrey_entries{type="grey"}'), 3, 'two of 127.0.0.2, one of 127.0.0.6');
  t.is(v('pfgrey_entries{type="white"}'), 1);
  t.is(v('pfgrey_entries{type="trapped"}'), 1);
  t.is(v('pfgrey_entries{type="spamtrap"}'), 1);
  t.true(v('pfgrey_last_scan_timestamp_seconds')! > 0);
  t.true(v('pfgrey_firewall_pushes_total{result="ok"}')! >= 1);
  t.is(v('pfgrey_firewall_pushes_total{result="failed"}'), 0);
  t.true(v('pfgrey_firewall_push_duration_seconds_count{kind="replace"}')! >= 1);
  t.is(v('pfgrey_firewall_table_addresses'), 1);
  t.true(v('pfgrey_store_commits_total{result="ok"}')! >= 1);
  t.true(v('pfgrey_store_commit_duration_seconds_count')! >= 1);
  t.is(v('pfgrey_store_backlog'), 0);
  t.is(v('pfgrey_blacklist_blocks{list="nixspam"}'), 1);
  t.is(v('pfgrey_blacklist_blocks{list="spamd-greytrap"}'), 1);
  t.not(v('nodejs_eventloop_lag_p99_seconds'), undefined, 'event-loop lag from prom-client');
  t.true(m.body.includes('\n# TYPE nodejs_active_handles gauge\n'));
  t.false(m.body.includes('nodejs_active_handles_total'), 'the default metric promtool refuses is left out');
  t.is(v('pfgrey_expiries_total'), 0);
});

test('the whole of /metrics, prom-client\'s process metrics included, passes promtool check metrics', async (t) => {
  if (!havePromtool) return lacking(t, 'promtool (Debian\'s prometheus package)');
  const { port, daemon, http } = await daemonWithHttp(t, ['--policy', 'inet:127.0.0.1:0']);
  await attemptFrom(port, '127.0.0.2', '<a@us.example>');
  await daemon.scanner!.scanOnce();
  await eventually(() => daemon.activity.totals.pushes >= 1 && daemon.activity.totals.commits >= 1, 'a push and a commit');
  const { body } = await get(http, '/metrics');
  const r = promtoolCheck(body);
  t.is(r.output, '');
  t.is(r.status, 0);
});

test('pfgrey policy --http counts policy requests by verdict over real sockets, and SIGUSR1 logs them in one line', async (t) => {
  const dir = await tempDir(t);
  const p = await startPolicy(t, ['--db', path.join(dir, 'p.db'), '--http', '127.0.0.1:0', '--delay', '1']);
  const http = Number(/listening for status requests on 127\.0\.0\.1:(\d+)\./.exec(p.stderr())![1]);
  const first = await ask(p.port, [policyRequest()]);
  t.regex(first.answers[0]!, /^action=DEFER_IF_PERMIT /);
  let early = 0;
  await eventually(async () => {
    if ((await ask(p.port, [policyRequest()])).answers[0] === 'action=DUNNO') return true;
    early++;
    return false;
  }, 'the retry passes');
  await ask(p.port, [policyRequest({ request: 'nonsense' })]);
  const m = (await get(http, '/metrics')).body;
  t.is(metric(m, 'pfgrey_policy_requests_total{verdict="greylisted"}'), 1 + early);
  t.is(metric(m, 'pfgrey_policy_requests_total{verdict="passed"}'), 1);
  t.is(metric(m, 'pfgrey_policy_requests_total{verdict="ignored"}'), 1);
  t.is(metric(m, 'pfgrey_policy_requests_total{verdict="late"}'), 0);
  t.true(metric(m, 'pfgrey_store_commits_total{result="ok"}')! >= 2, 'each request is an atomic update');
  t.is(metric(m, 'pfgrey_held_connections{kind="grey"}'), undefined, 'no tarpit here');
  if (havePromtool) t.is(promtoolCheck(m).status, 0, promtoolCheck(m).output);

  process.kill(p.pid, 'SIGUSR1');
  const line = await eventually(() => p.stderr().split('\n').find((l) => l.includes(': status: ')), 'the status line');
  t.is(line.replace(/^pfgrey-policy\[\d+\]: /, ''), 'status: no scan yet; since start: promotions 0, traps 0, expiries 0; ' +
    `policy requests ${3 + early} (greylisted ${1 + early}, passed 1, ignored 1); backlog 0`);
});
