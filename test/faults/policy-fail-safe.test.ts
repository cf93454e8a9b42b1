// The policy door's fail-safe: whatever keeps the core from deciding in time — a database held
// locked by another process, a write the store refuses, a bug — Postfix and Exim still get an
// answer, DUNNO, and the log says why: the first failure whole, then one line per interval with
// how many more there were, however many requests fail.

import test from 'ava';
import path from 'node:path';
import { PolicyServer, type PolicyServerOptions } from '../../src/policy/server.js';
import { PolicyReader } from '../../src/policy/protocol.js';
import { memoryLogger } from '../../src/log.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { holdWriteLock } from '../helpers/raw-sql.js';
import { ask, policyRequest, startPolicy } from '../helpers/policy.js';
import { eventually } from '../helpers/wait.js';

const DUNNO = 'action=DUNNO\n\n';

function server(handle: () => Promise<unknown>, over: Partial<PolicyServerOptions> = {}) {
  const log = memoryLogger();
  const s = new PolicyServer({
    core: { handle } as never, log, greylistAction: 'DEFER_IF_PERMIT', greylistText: 'x', noReuse: false,
    keys: (q) => ({ triplet: `${q.ip}/${q.sender}/${q.recipient}`, client: q.ip }), privacy: false, ...over,
  });
  return { s, log, errors: () => log.lines.filter((l) => l.startsWith('error: ')) };
}

const req = (i: number) => new PolicyReader().push(Buffer.from(policyRequest({ recipient: `r${i}@us.example` }), 'latin1'))[0]!;

test('a core that does not decide within the answer timeout gets DUNNO; many such requests log two lines, not one each', async (t) => {
  const { s, errors } = server(() => new Promise(() => undefined), { answerTimeout: 200, failureLogEvery: 1500 });
  // The server's timer does not hold the process open (a real stuck core is a SQLite call in
  // flight, which does); this promise that never settles is not, so the test holds it open.
  const open = setInterval(() => undefined, 1000);
  t.teardown(() => {
    clearInterval(open);
    return s.close();
  });
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => s.answer(req(i))));
  t.true(answers.every((a) => a.toString() === DUNNO));
  t.deepEqual(errors(), ['error: policy: no verdict for 192.0.2.1 a@example.org r0@us.example within 0.2 s (the database is slow or locked); answering DUNNO']);
  await eventually(() => errors().length === 2, 'the count of the others', 30_000);
  t.is(errors()[1], 'error: policy: 39 more requests answered DUNNO in the last 2 s because of failures like the one above');
  // Quiet for an interval: the next failure is told whole again.
  await new Promise((r) => setTimeout(r, 3200));
  t.is((await s.answer(req(99))).toString(), DUNNO);
  t.is(errors().length, 3);
  t.regex(errors()[2]!, /^error: policy: no verdict for 192\.0\.2\.1 a@example\.org r99@us\.example within/);
});

test('a bug in the core, or a write the store refuses, is answered DUNNO and logged in one line without a stack', async (t) => {
  const bug = server(() => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'expire')")));
  t.teardown(() => bug.s.close());
  t.is((await bug.s.answer(req(1))).toString(), DUNNO);
  t.deepEqual(bug.errors().map((l) => l.includes('\n')), [false]);
  t.regex(bug.errors()[0]!, /Cannot read properties of undefined \(reading 'expire'\); answering DUNNO$/);

  const dropped = server(async () => ({ kind: 'dropped', why: 'disk full' }));
  t.teardown(() => dropped.s.close());
  t.is((await dropped.s.answer(req(2))).toString(), DUNNO);
  t.deepEqual(dropped.errors(), ['error: policy: cannot record 192.0.2.1 a@example.org r2@us.example: disk full; answering DUNNO']);
});

test('pfgrey policy on a database another process holds locked answers DUNNO in time, and records the tuple once the lock goes', async (t) => {
  const dbPath = path.join(await tempDir(t), 'pfgrey.db');
  const p = await startPolicy(t, ['--db', dbPath]);
  t.deepEqual((await ask(p.port, [policyRequest({ recipient: 'first@us.example' })])).answers.map((a) => a.split(' ')[0]), ['action=DEFER_IF_PERMIT']);

  // Another process's write transaction, as an sqlite3 shell or `pfgrey db -a` would hold it.
  const lock = await holdWriteLock(t, dbPath);

  t.deepEqual((await ask(p.port, [policyRequest({ recipient: 'locked@us.example' })])).answers, ['action=DUNNO']);
  t.regex(p.stderr(), /no verdict for 192\.0\.2\.1 a@example\.org locked@us\.example within 4 s \(the database is slow or locked\); answering DUNNO/);
  await lock.release();

  // The request answered DUNNO was still recorded: its triplet is known once the lock is gone.
  await eventually(async () => {
    const r = await runCli(['db', '--db', dbPath]);
    return r.stdout.includes('POLICY|192.0.2.0/a@example.org/locked@us.example|');
  }, 'the late write committed', 60_000);
});
