import test, { type ExecutionContext } from 'ava';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DB_USAGE, dbCommand } from '../src/cli/db.js';
import type { CliIO } from '../src/cli/io.js';
import { ManualClock } from '../src/clock.js';
import { greyKey, type Entry } from '../src/grey/entry.js';
import { ScanAccumulator } from '../src/grey/rules.js';
import { openStore } from '../src/store/sqlite.js';
import { rawSql } from './helpers/raw-sql.js';
import { helpText } from '../src/cli/args.js';

const S = 1000;
const DAY = 86400;
const NOW = 1_700_000_000; // seconds
const USAGE = `${DB_USAGE}\n`;

interface Result {
  code: number;
  /** stdout as bytes, one character per byte. */
  stdout: string;
  stderr: string;
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-cli-db-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function tempDb(t: ExecutionContext): Promise<string> {
  return path.join(await tempDir(t), 'grey.db');
}

/** Runs `pfgrey db` in-process against PassThrough streams. */
async function db(args: string[], o: { env?: NodeJS.ProcessEnv; stdin?: string | Buffer; clock?: ManualClock } = {}): Promise<Result> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  stdin.end(o.stdin ?? '');
  const io: CliIO = { stdout, stderr, stdin, env: o.env ?? {} };
  const code = await dbCommand(args, io, { clock: o.clock ?? new ManualClock(NOW * S) });
  return { code, stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString('utf8') };
}

/** `pfgrey db --db file …` */
const on = (file: string, args: string[], o: Parameters<typeof db>[1] = {}) => db(['--db', file, ...args], o);

async function seed(file: string, entries: Entry[]): Promise<void> {
  const s = await openStore(file, { create: true });
  for (const e of entries) s.put(e);
  await s.close();
}

async function read(file: string, key: string): Promise<Entry | undefined> {
  const s = await openStore(file, { readonly: true });
  try {
    return await s.get(key);
  } finally {
    await s.close();
  }
}

const exists = (file: string) => access(file).then(() => true, () => false);

const G1 = { key: greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<b@us>'), first: 1700000000 * S, pass: 1700014400 * S, expire: 1700014400 * S, bcount: 1, pcount: 0 };
const G2 = { key: greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<c@us>'), first: 1700000100 * S, pass: 1700014500 * S, expire: 1700014500 * S, bcount: 2, pcount: 0 };
const W = { key: '198.51.100.4', first: 1600000000 * S, pass: 1600001000 * S, expire: 1603110400 * S, bcount: 3, pcount: 2 };
const TR = { key: '203.0.113.9', first: 1700000000 * S, pass: 0, expire: 1700086400 * S, bcount: 1, pcount: -1 };
const ST = { key: 'trap@us.example', first: 1700000000 * S, pass: 0, expire: 0, bcount: 1, pcount: -2 };

const LINES = {
  G1: 'GREY|192.0.2.7|mx.ex|<a@ex>|<b@us>|1700000000|1700014400|1700014400|1|0',
  G2: 'GREY|192.0.2.7|mx.ex|<a@ex>|<c@us>|1700000100|1700014500|1700014500|2|0',
  W: 'WHITE|198.51.100.4|||1600000000|1600001000|1603110400|3|2',
  TR: 'TRAPPED|203.0.113.9|1700086400',
  ST: 'SPAMTRAP|trap@us.example',
};

// --- listing --------------------------------------------------------------------------------

test('the listing prints every entry as spamdb does, in key order', async (t) => {
  const file = await tempDb(t);
  await seed(file, [ST, TR, W, G2, G1]);
  const r = await on(file, []);
  t.is(r.code, 0);
  t.is(r.stderr, '');
  t.is(r.stdout, [LINES.G1, LINES.G2, LINES.W, LINES.TR, LINES.ST].join('\n') + '\n');
});

test('an empty database lists nothing and exits 0', async (t) => {
  const file = await tempDb(t);
  await seed(file, []);
  t.deepEqual(await on(file, []), { code: 0, stdout: '', stderr: '' });
});

test('a missing database cannot be opened for reading: exit 1', async (t) => {
  const file = await tempDb(t);
  const r = await on(file, []);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey db: cannot open ${file} for reading: no such file\n`);
  t.false(await exists(file));
});

test('a legacy GREY key lists with an empty helo', async (t) => {
  const file = await tempDb(t);
  await seed(file, [{ ...G1, key: '192.0.2.7\n<a@ex>\n<b@us>' }]);
  const r = await on(file, []);
  t.is(r.stdout, 'GREY|192.0.2.7||<a@ex>|<b@us>|1700000000|1700014400|1700014400|1|0\n');
});

test('a GREY key without a from part gets spamdb\'s warning and exit 1, and the listing goes on', async (t) => {
  const file = await tempDb(t);
  await seed(file, [G1, { ...G1, key: '192.0.2.8\nhelo' }, W]);
  const r = await on(file, []);
  t.is(r.code, 1);
  t.is(r.stdout, `${LINES.G1}\n${LINES.W}\n`);
  t.is(r.stderr, 'pfgrey db: No from part in grey key "192.0.2.8\\x0ahelo"\n');
});

test('listing keys shows those entries and exits with the number not found', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W, TR, ST]);
  const r = await on(file, ['trap@us.example', '192.0.2.99', '198.51.100.4', 'nobody@x']);
  t.is(r.code, 2);
  t.is(r.stdout, `${LINES.ST}\n${LINES.W}\n`);
  t.is(r.stderr, '');
});

test('the database is found through --db, then PFGREY_DB', async (t) => {
  const dir = await tempDir(t);
  const a = path.join(dir, 'a.db');
  const b = path.join(dir, 'b.db');
  await seed(a, [W]);
  await seed(b, [TR]);
  t.is((await db([], { env: { PFGREY_DB: a } })).stdout, `${LINES.W}\n`);
  t.is((await db(['--db', b], { env: { PFGREY_DB: a } })).stdout, `${LINES.TR}\n`);
  t.is((await db(['-a', '192.0.2.1'], { env: { PFGREY_DB: b } })).code, 0);
  t.truthy(await read(b, '192.0.2.1'));
});

test('--json lists a JSON array with one object per line', async (t) => {
  const file = await tempDb(t);
  await seed(file, [G1, W, TR, ST]);
  const r = await on(file, ['--json']);
  t.is(r.code, 0);
  const lines = r.stdout.split('\n');
  t.is(lines[0], '[');
  t.is(lines.length, 7); // [, four objects, ], and the empty string after the final newline
  t.deepEqual(JSON.parse(r.stdout), [
    { type: 'GREY', ip: '192.0.2.7', helo: 'mx.ex', from: '<a@ex>', to: '<b@us>', first: 1700000000, pass: 1700014400, expire: 1700014400, bcount: 1, pcount: 0 },
    { type: 'WHITE', ip: '198.51.100.4', first: 1600000000, pass: 1600001000, expire: 1603110400, bcount: 3, pcount: 2 },
    { type: 'TRAPPED', ip: '203.0.113.9', expire: 1700086400 },
    { type: 'SPAMTRAP', address: 'trap@us.example' },
  ]);
});

test('--json of an empty listing or of keys is valid JSON too', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  t.deepEqual(JSON.parse((await on(file, ['--json', '192.0.2.1'])).stdout), []);
  const r = await on(file, ['--json', '198.51.100.4', '192.0.2.1']);
  t.is(r.code, 1);
  t.deepEqual(JSON.parse(r.stdout), [{ type: 'WHITE', ip: '198.51.100.4', first: 1600000000, pass: 1600001000, expire: 1603110400, bcount: 3, pcount: 2 }]);
});

test('--json stays valid JSON when it skips a bad key', async (t) => {
  const file = await tempDb(t);
  await seed(file, [G1, { ...G1, key: '192.0.2.8\nhelo' }]);
  const r = await on(file, ['--json']);
  t.is(r.code, 1);
  t.is(JSON.parse(r.stdout).length, 1);
});

test('raw 8-bit bytes in a tuple are listed as the same bytes', async (t) => {
  const file = await tempDb(t);
  await seed(file, [{ ...G1, key: greyKey('192.0.2.7', 'h\xe9\xff', '<a@ex>', '<b@us>') }]);
  const r = await on(file, []);
  t.is(r.stdout, 'GREY|192.0.2.7|h\xe9\xff|<a@ex>|<b@us>|1700000000|1700014400|1700014400|1|0\n');
});

// --- usage ----------------------------------------------------------------------------------

test('a type flag without -a or -d is a usage error: exit 1', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  for (const flag of ['-G', '-t', '-T']) {
    t.deepEqual(await on(file, [flag]), { code: 1, stdout: '', stderr: USAGE }, flag);
  }
});

test('an unknown flag is a usage error: exit 1', async (t) => {
  const file = await tempDb(t);
  const r = await on(file, ['-x']);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey db: unknown option -x\n${USAGE}`);
  const m = await db(['--db']);
  t.is(m.code, 1);
  t.true(m.stderr.endsWith(USAGE));
  t.false(await exists(file));
});

test('-h prints the usage on stdout and exits 0', async (t) => {
  t.deepEqual(await db(['-h']), { code: 0, stdout: helpText('db', DB_USAGE), stderr: '' });
});

test('--import cannot be combined with -a, -d or keys', async (t) => {
  const file = await tempDb(t);
  for (const args of [['-a', '--import', '-'], ['--import', '-', '192.0.2.1'], ['-d', '--import=-']]) {
    const r = await on(file, args);
    t.is(r.code, 1);
    t.true(r.stderr.endsWith(USAGE));
  }
});

// --- -a -----------------------------------------------------------------------------------------

test('-a adds a new WHITE entry: pass now, expire in 36 days', async (t) => {
  const file = await tempDb(t);
  await seed(file, []);
  const r = await on(file, ['-a', '192.0.2.1', '2001:db8::1']);
  t.deepEqual(r, { code: 0, stdout: '', stderr: '' });
  const line = `|||${NOW}|${NOW}|${NOW + 36 * DAY}|1|0`;
  t.is((await on(file, [])).stdout, `WHITE|192.0.2.1${line}\nWHITE|2001:db8::1${line}\n`);
});

test('-a on a missing database creates it and says so, so a mistyped --db is noticed', async (t) => {
  const file = await tempDb(t);
  const r = await on(file, ['-a', '192.0.2.1']);
  t.deepEqual(r, { code: 0, stdout: '', stderr: `pfgrey db: no database at ${file}: created it\n` });
  t.is((await on(file, [])).stdout, `WHITE|192.0.2.1|||${NOW}|${NOW}|${NOW + 36 * DAY}|1|0\n`);
});

test('-a on an existing entry counts a pass and restarts its 36 days, keeping first and bcount', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  const later = new ManualClock((NOW + 100) * S);
  t.is((await on(file, ['-a', '198.51.100.4'], { clock: later })).code, 0);
  t.deepEqual(await read(file, W.key), { ...W, pass: (NOW + 100) * S, expire: (NOW + 100 + 36 * DAY) * S, pcount: 3 });
});

test('-a on a TRAPPED entry makes it WHITE with pcount 0', async (t) => {
  const file = await tempDb(t);
  await seed(file, [TR]);
  await on(file, ['-a', TR.key]);
  t.is((await on(file, [TR.key])).stdout, `WHITE|${TR.key}|||1700000000|${NOW}|${NOW + 36 * DAY}|1|0\n`);
});

test('-t -a adds a TRAPPED entry for 24 hours, and re-traps an existing one', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  t.is((await on(file, ['-t', '-a', '192.0.2.1', W.key])).code, 0);
  t.deepEqual(await read(file, '192.0.2.1'), { key: '192.0.2.1', first: NOW * S, pass: 0, expire: (NOW + DAY) * S, bcount: 1, pcount: -1 });
  t.deepEqual(await read(file, W.key), { ...W, expire: (NOW + DAY) * S, pcount: -1 });
  t.is((await on(file, ['192.0.2.1'])).stdout, `TRAPPED|192.0.2.1|${NOW + DAY}\n`);
});

test('-T -a stores a new spamtrap address in lower case', async (t) => {
  const file = await tempDb(t);
  t.is((await on(file, ['-T', '-a', 'Trap@Us.EXAMPLE'])).code, 0);
  t.is((await on(file, [])).stdout, 'SPAMTRAP|trap@us.example\n');
  t.deepEqual(await read(file, 'trap@us.example'), { key: 'trap@us.example', first: NOW * S, pass: 0, expire: 0, bcount: 1, pcount: -2 });
});

test('-T -a of an existing address keeps it a spamtrap', async (t) => {
  const file = await tempDb(t);
  await seed(file, [ST]);
  t.is((await on(file, ['-T', '-a', ST.key])).code, 0);
  t.deepEqual(await read(file, ST.key), { ...ST, expire: 0, pcount: -2 });
});

test('-T -a without "@" is fatal with exit 255, after earlier keys are written', async (t) => {
  const file = await tempDb(t);
  await seed(file, []);
  const r = await on(file, ['-T', '-a', 'first@us.example', 'nobody', 'later@us.example']);
  t.is(r.code, 255);
  t.is(r.stderr, 'pfgrey db: not an email address: nobody\n');
  t.is((await on(file, [])).stdout, 'SPAMTRAP|first@us.example\n');
});

test('-a with an invalid ip warns per key and exits with the number of failures', async (t) => {
  const file = await tempDb(t);
  await seed(file, []);
  const r = await on(file, ['-a', 'mail.example', '192.0.2.1', '192.0.2.300']);
  t.is(r.code, 2);
  t.is(r.stderr, 'pfgrey db: invalid ip address mail.example\npfgrey db: invalid ip address 192.0.2.300\n');
  t.is((await on(file, [])).stdout, `WHITE|192.0.2.1|||${NOW}|${NOW}|${NOW + 36 * DAY}|1|0\n`);
});

test('-G -a cannot add GREY entries: exit 2, no database created', async (t) => {
  const file = await tempDb(t);
  t.deepEqual(await on(file, ['-G', '-a', '192.0.2.1']), { code: 2, stdout: '', stderr: 'pfgrey db: cannot add GREY entries\n' });
  t.false(await exists(file));
});

test('-a or -d without a non-empty key: no addresses specified, exit 2', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  for (const args of [['-a'], ['-a', ''], ['-d', '', ''], ['-t', '-d']]) {
    t.deepEqual(await on(file, args), { code: 2, stdout: '', stderr: 'pfgrey db: no addresses specified\n' }, args.join(' '));
  }
});

test('-a skips empty keys among real ones', async (t) => {
  const file = await tempDb(t);
  t.is((await on(file, ['-a', '', '192.0.2.1', ''])).code, 0);
  t.truthy(await read(file, '192.0.2.1'));
});

test('of -a and -d the last one given wins', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  t.is((await on(file, ['-a', '-d', W.key])).code, 0);
  t.is(await read(file, W.key), undefined);
  t.is((await on(file, ['-d', '-a', W.key])).code, 0);
  t.truthy(await read(file, W.key));
  t.is((await on(file, ['-ad', W.key])).code, 0);
  t.is(await read(file, W.key), undefined);
});

test('adding the same key twice in one command counts twice', async (t) => {
  const file = await tempDb(t);
  t.is((await on(file, ['-a', '192.0.2.1', '192.0.2.1'])).code, 0);
  t.is((await read(file, '192.0.2.1'))?.pcount, 1);
});

// --- -d -----------------------------------------------------------------------------------------

test('-d deletes exact keys of any type; a missing one is "no entry for", counted in the exit', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W, TR, ST]);
  const r = await on(file, ['-d', W.key, '192.0.2.99', TR.key]);
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey db: no entry for 192.0.2.99\n');
  t.is((await on(file, [])).stdout, `${LINES.ST}\n`);
  t.is((await on(file, ['-t', '-d', ST.key])).code, 0);
  t.is((await on(file, [])).stdout, '');
});

test('-T -d does not lower-case the address', async (t) => {
  const file = await tempDb(t);
  await seed(file, [ST]);
  const r = await on(file, ['-T', '-d', 'TRAP@us.example']);
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey db: no entry for TRAP@us.example\n');
  t.truthy(await read(file, ST.key));
});

test('-G -d deletes the first GREY tuple of the ip, one per argument', async (t) => {
  const file = await tempDb(t);
  await seed(file, [G2, G1, { ...W, key: '192.0.2.7' }, { ...G1, key: greyKey('192.0.2.70', 'h', '<a>', '<b>') }]);
  t.is((await on(file, ['-G', '-d', '192.0.2.7'])).code, 0);
  t.deepEqual((await on(file, [])).stdout.split('\n').filter((l) => l.startsWith('GREY|192.0.2.7|')), [LINES.G2]);
  const r = await on(file, ['-G', '-d', '192.0.2.7', '192.0.2.7']);
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey db: no entry for 192.0.2.7\n');
  const left = (await on(file, [])).stdout;
  t.true(left.includes('WHITE|192.0.2.7|||'));
  t.true(left.includes('GREY|192.0.2.70|'));
});

// A host whitelisted a minute ago: its WHITE entry, the tuple that passed (and stays until
// greyexp, 4 hours after it was first seen), one more that passed, one that has not passed yet,
// and one that passed but has expired (the scan deletes it rather than promote it).
const HOST = '192.0.2.7';
const PROMOTED = [
  { key: HOST, first: (NOW - 1800) * S, pass: (NOW - 60) * S, expire: (NOW + 36 * DAY) * S, bcount: 2, pcount: 0 },
  { key: greyKey(HOST, 'mx.ex', '<a@ex>', '<b@us>'), first: (NOW - 1800) * S, pass: (NOW - 60) * S, expire: (NOW + 12600) * S, bcount: 2, pcount: 0 },
  { key: greyKey(HOST, 'mx.ex', '<a@ex>', '<c@us>'), first: (NOW - 1700) * S, pass: (NOW - 30) * S, expire: (NOW + 12700) * S, bcount: 2, pcount: 0 },
  { key: greyKey(HOST, 'mx.ex', '<a@ex>', '<d@us>'), first: (NOW - 60) * S, pass: (NOW + 14340) * S, expire: (NOW + 14340) * S, bcount: 1, pcount: 0 },
  { key: greyKey(HOST, 'mx.ex', '<old@ex>', '<b@us>'), first: (NOW - 20000) * S, pass: (NOW - 18000) * S, expire: (NOW - 5600) * S, bcount: 2, pcount: 0 },
];

/** What the next scan would write and whitelist, from the database as it is now. */
async function nextScan(file: string): Promise<{ puts: string[]; whitelist: string[] }> {
  const scan = new ScanAccumulator(NOW * S, 36 * DAY * S);
  scan.add(await entries(file));
  const plan = scan.finish();
  return { puts: plan.puts.map((e) => e.key), whitelist: plan.whitelist };
}

test('-d of a host whose passed GREY tuples remain says the next scan would whitelist it again, and how to delete them', async (t) => {
  const file = await tempDb(t);
  await seed(file, PROMOTED);
  const r = await on(file, ['-d', HOST]);
  t.is(r.code, 0, 'the entry was deleted: spamdb\'s status');
  t.is(r.stdout, '');
  t.is(r.stderr,
    `pfgrey db: ${HOST} still has 2 passed GREY tuples, from which the next scan would whitelist it again\n` +
    `pfgrey db: delete them too with: pfgrey db --db ${file} -d --passed ${HOST}\n`);
  t.is(await read(file, HOST), undefined);
  t.deepEqual(await nextScan(file), { puts: [HOST], whitelist: [HOST] }, 'what the message says is what the scan does');

  // The command it printed deletes just those two, and the host then stays deleted.
  const again = await on(file, ['--db', file, '-d', '--passed', HOST]);
  t.is(again.code, 0);
  t.is(again.stderr, `pfgrey db: deleted 2 passed GREY tuples of ${HOST}\n`);
  t.deepEqual((await entries(file)).map((e) => e.key), [PROMOTED[3]!.key, PROMOTED[4]!.key]);
  t.deepEqual(await nextScan(file), { puts: [], whitelist: [] });
});

test('-d --passed deletes the entry and its passed tuples at once; an address with neither is "no entry for"', async (t) => {
  const file = await tempDb(t);
  await seed(file, [...PROMOTED, W]);
  const r = await on(file, ['-d', '--passed', HOST, W.key, '192.0.2.99']);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey db: deleted 2 passed GREY tuples of ${HOST}\npfgrey db: no entry for 192.0.2.99\n`);
  t.deepEqual((await entries(file)).map((e) => e.key), [PROMOTED[3]!.key, PROMOTED[4]!.key]);

  // Passed tuples without a WHITE entry yet (the scan has not run): they are what is found.
  await seed(file, [PROMOTED[1]!]);
  const s = await on(file, ['-t', '-d', '--passed', HOST]);
  t.deepEqual(s, { code: 0, stdout: '', stderr: `pfgrey db: deleted 1 passed GREY tuple of ${HOST}\n` });
});

test('-d says nothing more when no passed tuple remains, and names the passed tuples of an address it did not find', async (t) => {
  const file = await tempDb(t);
  await seed(file, [PROMOTED[0]!, PROMOTED[3]!, PROMOTED[4]!, { ...PROMOTED[1]!, key: greyKey('192.0.2.8', 'h', '<a@ex>', '<b@us>') }]);
  t.deepEqual(await on(file, ['-d', HOST]), { code: 0, stdout: '', stderr: '' });
  const r = await on(file, ['-t', '-d', '192.0.2.8'], { env: { PFGREY_DB: file } });
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey db: no entry for 192.0.2.8\n' +
    'pfgrey db: 192.0.2.8 still has 1 passed GREY tuple, from which the next scan would whitelist it again\n' +
    'pfgrey db: delete them too with: pfgrey db --db ' + file + ' -d -t --passed 192.0.2.8\n');
  // With the database from PFGREY_DB, the command names none.
  const e = await db(['-d', '192.0.2.8'], { env: { PFGREY_DB: file } });
  t.is(e.stderr.split('\n')[2], 'pfgrey db: delete them too with: pfgrey db -d --passed 192.0.2.8');
});

test('--passed goes with -d or -d -t only', async (t) => {
  const file = await tempDb(t);
  for (const args of [['--passed', HOST], ['-a', '--passed', HOST], ['-G', '-d', '--passed', HOST], ['-T', '-d', '--passed', 'a@b']]) {
    const r = await on(file, args);
    t.deepEqual(r, { code: 1, stdout: '', stderr: `pfgrey db: --passed goes with -d (or -d -t) of addresses\n${USAGE}` }, args.join(' '));
  }
  t.false(await exists(file));
});

test('-d on a missing database cannot open it for writing', async (t) => {
  const file = await tempDb(t);
  const r = await on(file, ['-d', '192.0.2.1']);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey db: cannot open ${file} for writing: no such file\n`);
  t.false(await exists(file));
});

// --- --import -----------------------------------------------------------------------------------

test('--import reads back what the listing printed', async (t) => {
  const dir = await tempDir(t);
  const src = path.join(dir, 'src.db');
  const dst = path.join(dir, 'dst.db');
  await seed(src, [G1, G2, W, TR, ST, { ...G1, key: greyKey('192.0.2.9', 'h\xe9\xff', '<\x80@x>', '<b@us>') }]);
  const dump = (await on(src, [])).stdout;
  const dumpFile = path.join(dir, 'dump.txt');
  await writeFile(dumpFile, Buffer.from(dump, 'latin1'));
  const r = await on(dst, ['--import', dumpFile]);
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 6 entries (3 GREY, 1 WHITE, 1 TRAPPED, 1 SPAMTRAP)\n' });
  t.is((await on(dst, [])).stdout, dump);
});

test('--import - reads stdin, skipping blank lines and CRs', async (t) => {
  const file = await tempDb(t);
  const r = await on(file, ['--import', '-'], { stdin: `\n${LINES.W}\r\n  \n${LINES.TR}\n\n` });
  t.is(r.code, 0);
  t.is(r.stderr, 'pfgrey db: imported 2 entries (1 WHITE, 1 TRAPPED)\n');
  t.is((await on(file, [])).stdout, `${LINES.W}\n${LINES.TR}\n`);
});

test('--import replaces entries that already exist', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W, ST]);
  const r = await on(file, ['--import', '-'], { stdin: 'WHITE|198.51.100.4|||1|2|3|4|5\n' });
  t.is(r.code, 0);
  t.is((await on(file, [])).stdout, `WHITE|198.51.100.4|||1|2|3|4|5\n${LINES.ST}\n`);
});

test('--import with a bad line names file and line, exits 1 and imports nothing', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'grey.db');
  await seed(file, [ST]);
  const dumpFile = path.join(dir, 'dump.txt');
  await writeFile(dumpFile, `${LINES.W}\n\n${LINES.G1.replace('|1700014400|1700014400|', '|soon|1700014400|')}\n${LINES.TR}\n`);
  const r = await on(file, ['--import', dumpFile]);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey db: ${dumpFile}: line 3: pass time "soon" is not a number; nothing imported\n`);
  t.is((await on(file, [])).stdout, `${LINES.ST}\n`);

  const s = await on(path.join(dir, 'new.db'), ['--import', '-'], { stdin: 'WHITE|not-an-ip|||1|2|3|4|5\n' });
  t.is(s.code, 1);
  t.is(s.stderr, 'pfgrey db: stdin: line 1: invalid ip address "not-an-ip"; nothing imported\n');
  t.false(await exists(path.join(dir, 'new.db')));
});

// What `spamdb > dump` gives on a spamd host (spamdb(8): one line per entry, in the hash's
// order), with every shape it prints: GREY tuples (IPv4 and IPv6, a bounce's <>, 8-bit bytes
// in helo and addresses, punctuation clients send), a legacy GREY key without helo (spamd
// before 2007: `GREY|ip||from|to|…`), WHITE (promoted, and added by spamdb -a), TRAPPED and
// SPAMTRAP.
const SPAMDB_DUMP = [
  'WHITE|198.51.100.4|||1699990000|1699991500|1703101500|3|2',
  'GREY|203.0.113.50|[203.0.113.50]|<>|<postmaster@us.example>|1699999000|1700000500|1700013400|1|0',
  'TRAPPED|192.0.2.66|1700050000',
  'GREY|192.0.2.7|mx.ex.example|<a@ex.example>|<b@us.example>|1699998000|1699999500|1700012400|2|0',
  'SPAMTRAP|trap@us.example',
  'GREY|2001:db8::25|mail.ex.example|<bounce+srs=x@ex.example>|<Carol.O\'Neil@us.example>|1699998500|1700000000|1700012900|1|0',
  'GREY|192.0.2.9|h\xc3\xa9l\xc3\xb4.example|<j\xc3\xb6rg@ex.example>|<\xe9t\xe9@us.example>|1699999100|1700000600|1700013500|1|0',
  'GREY|192.0.2.10||<old@ex.example>|<b@us.example>|1699999200|1700000700|1700013600|1|0',
  'WHITE|2001:db8::1|||1699000000|1699000000|1702110400|1|0',
  'TRAPPED|2001:db8::666|1700060000',
  'SPAMTRAP|x-y.z+tag@us.example',
  'GREY|192.0.2.11|EHLO-junk!#$%&*=?^_`{}~|<"quoted local"@ex.example>|<b@us.example>|1699999300|1700000800|1700013700|4|0',
].map((l) => l.replace(/\\x([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))));

test('a spamdb dump with every line shape imports and lists back identically (in key order, not spamdb\'s hash order)', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const dumpFile = path.join(dir, 'dump');
  await writeFile(dumpFile, Buffer.from(`${SPAMDB_DUMP.join('\n')}\n`, 'latin1'));
  const r = await on(file, ['--import', dumpFile]);
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 12 entries (6 GREY, 2 WHITE, 2 TRAPPED, 2 SPAMTRAP)\n' });
  const listed = (await on(file, [])).stdout;
  t.true(listed.endsWith('\n'));
  t.deepEqual(listed.slice(0, -1).split('\n').sort(), [...SPAMDB_DUMP].sort(), 'byte for byte, as spamdb printed them');
  // The keys are the bytes spamd stored, so the tarpit finds the same tuples when clients retry.
  t.truthy(await read(file, greyKey('192.0.2.10', '', '<old@ex.example>', '<b@us.example>')));
  t.truthy(await read(file, greyKey('192.0.2.9', 'h\xc3\xa9l\xc3\xb4.example', '<j\xc3\xb6rg@ex.example>', '<\xe9t\xe9@us.example>')));
});

test('a spamdb dump line holding | or \\ in a key imports as those bytes and lists escaped; one bad line imports nothing', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await seed(file, [ST]);
  // spamdb prints keys raw: a '|' in helo, a backslash in an address.
  const raw = 'GREY|192.0.2.12|a|b|<x\\y@ex>|<b@us>|1699999000|1700000500|1700013400|1|0';
  const r = await on(file, ['--import', '-'], { stdin: `${raw}\n` });
  t.is(r.code, 0, r.stderr);
  t.truthy(await read(file, greyKey('192.0.2.12', 'a|b', '<x\\y@ex>', '<b@us>')));
  t.true((await on(file, [])).stdout.includes('GREY|192.0.2.12|a\\x7cb|<x\\\\y@ex>|<b@us>|'));

  // A bad line anywhere, the last one here, and nothing of the dump is written.
  const fresh = path.join(dir, 'other.db');
  await seed(fresh, [ST]);
  const bad = [...SPAMDB_DUMP, 'WHITE|198.51.100.5|||1699990000|1699991500|yesterday|3|2'];
  const s = await on(fresh, ['--import', '-'], { stdin: Buffer.from(`${bad.join('\n')}\n`, 'latin1') });
  t.deepEqual(s, { code: 1, stdout: '', stderr: 'pfgrey db: stdin: line 13: expire time "yesterday" is not a number; nothing imported\n' });
  t.is((await on(fresh, [])).stdout, `${LINES.ST}\n`);
});

test('--import of a file that cannot be read is one line, exit 1', async (t) => {
  const dir = await tempDir(t);
  const missing = path.join(dir, 'missing.txt');
  const r = await on(path.join(dir, 'grey.db'), ['--import', missing]);
  t.is(r.code, 1);
  t.is(r.stderr, `pfgrey db: cannot read ${missing}: no such file or directory\n`);
});

// --- the file -----------------------------------------------------------------------------------

test('a corrupt database is one line on stderr and exit 1, for listing and writing', async (t) => {
  const file = await tempDb(t);
  await writeFile(file, Buffer.alloc(8192, 0x41));
  for (const args of [[], ['-a', '192.0.2.1'], ['-d', '192.0.2.1']]) {
    const r = await on(file, args);
    t.is(r.code, 1);
    t.is(r.stderr, `pfgrey db: ${file}: database is corrupt (file is not a database)\n`);
  }
});

test('pfgrey db reads and writes while a daemon holds the database open', async (t) => {
  const file = await tempDb(t);
  const daemon = await openStore(file, { create: true, commitDelay: 3_600_000 });
  t.teardown(() => daemon.close().catch(() => undefined));
  daemon.put(W);
  await daemon.flush();
  t.is((await on(file, [])).stdout, `${LINES.W}\n`);
  t.is((await on(file, ['-t', '-a', '192.0.2.1'])).code, 0);
  t.is((await daemon.get('192.0.2.1'))?.pcount, -1);
  t.is((await on(file, ['-d', W.key])).code, 0);
  t.is(await daemon.get(W.key), undefined);
  await daemon.close();
});

test('a listing piped into a reader that stops early (| head -1) ends quietly', async (t) => {
  const file = await tempDb(t);
  const entries: Entry[] = [];
  for (let i = 0; i < 5000; i++) entries.push({ ...G1, key: greyKey(`192.0.2.${i % 250}`, `mx${i}.example`, '<a@ex>', '<b@us>') });
  await seed(file, entries);
  const { spawnSync } = await import('node:child_process');
  const { CLI } = await import('./helpers/cli.js');
  const r = spawnSync('/bin/sh', ['-c', '"$0" "$1" db --db "$2" | head -1', process.execPath, CLI, file], { encoding: 'utf8' });
  t.regex(r.stdout, /^GREY\|192\.0\.2\.0\|mx0\.example\|<a@ex>\|<b@us>\|/);
  t.is(r.stdout.split('\n').length, 2);
  t.is(r.stderr, '', 'no EPIPE stack trace');
});

// --- bad keys: what the listing shows and what gets in ----------------------------------------

/** Every entry of a database, in key order. */
async function entries(file: string): Promise<Entry[]> {
  const s = await openStore(file, { readonly: true });
  try {
    const out: Entry[] = [];
    for await (const chunk of s.chunks(1000)) out.push(...chunk);
    return out;
  } finally {
    await s.close();
  }
}

test('the listing writes control characters in keys as \\xHH, so a client cannot drive the operator\'s terminal', async (t) => {
  const file = await tempDb(t);
  // Rows an older version stored raw from clients: ESC ] (retitle), ESC [2J (clear), BEL, CSI as
  // a stray byte and as UTF-8; UTF-8 and 8-bit text stay readable.
  await seed(file, [
    { ...G1, key: greyKey('192.0.2.7', '\x1b]0;owned\x07h\xc3\xa9', '<a\x1b[2J@ex>', '<\x9b2J\xc2\x9b@us>') },
    { ...ST, key: 'tr\x00ap@us' },
  ]);
  const r = await on(file, []);
  t.is(r.code, 0);
  t.is(r.stdout, 'GREY|192.0.2.7|\\x1b]0;owned\\x07h\xc3\xa9|<a\\x1b[2J@ex>|<\\x9b2J\\xc2\\x9b@us>|1700000000|1700014400|1700014400|1|0\n' +
    'SPAMTRAP|tr\\x00ap@us\n');
  t.is(r.stderr, '');
});

test('a dump listed by pfgrey db imports back to identical entries', async (t) => {
  const dir = await tempDir(t);
  const src = path.join(dir, 'src.db');
  const dst = path.join(dir, 'dst.db');
  const keys = [
    // What the tarpit records for control bytes, a backslash, '|' in every field, stray 8-bit
    // bytes (C1 included), UTF-8 (C1 included).
    greyKey('192.0.2.7', 'a\\x1bb|c\\\\', '<a|b@ex>', 'x|y'),
    greyKey('192.0.2.8', '\x80\x9b\xff', 'h\xc3\xa9\xc2\x9b', '<b@us>'),
    greyKey('2001:db8::1', '', '<>', '<c@us>'),
  ];
  // TRAPPED and SPAMTRAP lines do not show first and bcount; those import as 0.
  await seed(src, [...keys.map((key) => ({ ...G1, key })), W, { ...TR, first: 0, bcount: 0 }, { ...ST, key: 'a|b\\c@x\xc3\xa9', first: 0, bcount: 0 }]);
  const dump = (await on(src, [])).stdout;
  await writeFile(path.join(dir, 'dump'), Buffer.from(dump, 'latin1'));
  const r = await on(dst, ['--import', path.join(dir, 'dump')]);
  t.is(r.stderr, 'pfgrey db: imported 6 entries (3 GREY, 1 WHITE, 1 TRAPPED, 1 SPAMTRAP)\n');
  t.is(r.code, 0);
  t.deepEqual(await entries(dst), await entries(src));
});

test('a row stored raw by an older version lists, but --import names its line and writes nothing', async (t) => {
  const dir = await tempDir(t);
  const src = path.join(dir, 'src.db');
  await seed(src, [W, { ...G1, key: greyKey('192.0.2.7', 'a\x1bb', '<a@ex>', '<b@us>') }]);
  const dump = (await on(src, [])).stdout;
  const r = await on(path.join(dir, 'dst.db'), ['--import', '-'], { stdin: Buffer.from(dump, 'latin1') });
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey db: stdin: line 1: key "192.0.2.7\\x0aa\\x1bb\\x0a<a@ex>\\x0a<b@us>" contains the control character \\x1b; nothing imported\n');
  t.false(await exists(path.join(dir, 'dst.db')));
});

test('a bad row in the middle is reported by name and every row after it is listed, text and JSON', async (t) => {
  const file = await tempDb(t);
  await seed(file, [G1, W, ST]);
  // As an older pfgrey stored `pfgrey db -T -a "$(cat traps.txt)"`: one key with line breaks,
  // which sorts between G1 and W and reads as a GREY key without a from part.
  await rawSql(file, "INSERT INTO entries VALUES ('192.0.2.8' || char(10) || 'b@us' || char(27) || '[2J', 0, 0, 0, 1, -2);");
  const r = await on(file, []);
  t.is(r.stdout, `${LINES.G1}\n${LINES.W}\n${LINES.ST}\n`);
  t.is(r.stderr, 'pfgrey db: No from part in grey key "192.0.2.8\\x0ab@us\\x1b[2J"\n');
  t.is(r.code, 1);
  const j = await on(file, ['--json']);
  t.is(j.code, 1);
  t.is(j.stderr, r.stderr);
  t.deepEqual(JSON.parse(j.stdout).map((e: { type: string }) => e.type), ['GREY', 'WHITE', 'SPAMTRAP']);
  // Each bad row counts, up to spamdb's cap.
  await rawSql(file, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO entries SELECT '192.0.3.' || i || char(10) || 'x', 0, 0, 0, 1, 0 FROM n;");
  const many = await on(file, []);
  t.is(many.code, 255);
  t.is(many.stderr.split('\n').length, 302);
  t.true(many.stdout.endsWith(`${LINES.ST}\n`));
});

test('-a refuses keys with control characters or beyond the length limits, naming each, and counts them', async (t) => {
  const file = await tempDb(t);
  await seed(file, []);
  const long = `${'a'.repeat(250)}@x.ex`;
  const r = await on(file, ['-T', '-a', 'one@us\ntwo@us', 'ok@us', long, 'tab\t@us']);
  t.is(r.stderr, 'pfgrey db: address "one@us\\x0atwo@us" contains a line break (\\x0a): one key per argument or line\n' +
    `pfgrey db: address "${'a'.repeat(57)}..." is 255 bytes long; a spamtrap address may have at most 254\n` +
    'pfgrey db: address "tab\\x09@us" contains the control character \\x09\n');
  t.is(r.code, 3);
  t.is((await on(file, [])).stdout, 'SPAMTRAP|ok@us\n');
  t.is((await on(file, ['-T', '-a', long.slice(1)])).code, 0, '254 bytes are fine');
  const huge = await on(file, ['-a', `192.0.2.1${' '.repeat(10 * 1024 * 1024)}`]);
  t.is(huge.code, 1);
  t.regex(huge.stderr, /^pfgrey db: key "192\.0\.2\.1 {48}\.\.\." is 10485769 bytes long; a key may have at most 32767\n$/);
  const esc = await on(file, ['-t', '-a', 'fe80::1%\x1b[2J']);
  t.is(esc.stderr, 'pfgrey db: key "fe80::1%\\x1b[2J" contains the control character \\x1b\n');
  t.is(esc.code, 1);
});

test('a failing -a leaves no database behind', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'grey.db');
  const r = await on(file, ['-T', '-a', 'a@us\nb@us']);
  t.is(r.code, 1);
  t.false(await exists(file), 'every key was bad: the database was never created');
  const s = await on(file, ['-T', '-a', 'first@us', 'nobody', 'later@us']);
  t.deepEqual(s, { code: 255, stdout: '', stderr: 'pfgrey db: not an email address: nobody\n' });
  const { readdir } = await import('node:fs/promises');
  t.deepEqual(await readdir(dir), [], 'no database, -wal or -shm');
  t.is((await on(file, ['-a', 'mail.example'])).code, 1);
  t.deepEqual(await readdir(dir), []);
});

test('--import refuses a key with an escaped line break or control character and writes nothing', async (t) => {
  const file = await tempDb(t);
  await seed(file, [W]);
  const r = await on(file, ['--import', '-'], { stdin: `${LINES.ST}\nSPAMTRAP|a@us\\x0ab@us\n` });
  t.is(r.code, 1);
  t.is(r.stderr, 'pfgrey db: stdin: line 2: address "a@us\\x0ab@us" contains a line break (\\x0a): one key per argument or line; nothing imported\n');
  t.is((await on(file, [])).stdout, `${LINES.W}\n`);
});

test('an argument that is not UTF-8 is refused for every command, naming its position', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'grey.db');
  const { execFile } = await import('node:child_process');
  const { CLI } = await import('./helpers/cli.js');
  // Node turns the byte 0xff into U+FFFD in process.argv; the shell passes the raw byte.
  const run = (args: string) => new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile('/bin/sh', ['-c', `exec "$0" "$1" ${args}`, process.execPath, CLI], { env: { ...process.env, PFGREY_DB: file }, encoding: 'utf8' },
      (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
  const bad = (n: number) => `pfgrey: argument ${n} is not UTF-8 text: its bytes cannot be passed on as they were typed\n`;
  t.deepEqual(await run('db -T -a "trap$(printf "\\377")@us"'), { code: 1, stderr: bad(4) });
  t.deepEqual(await run('db -a 192.0.2.1 -- "$(printf "\\377")"'), { code: 1, stderr: bad(5) });
  t.deepEqual(await run('run -n "$(printf "caf\\351")"'), { code: 1, stderr: bad(3) });
  t.deepEqual(await run('"$(printf "\\377")"'), { code: 1, stderr: bad(1) });
  t.false(await exists(file));
  // UTF-8 passes.
  t.is((await run('db -T -a "caf$(printf "\\303\\251")@us"')).code, 0);
  t.is((await on(file, [])).stdout, 'SPAMTRAP|caf\xc3\xa9@us\n');
});
