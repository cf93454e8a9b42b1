import test, { type ExecutionContext } from 'ava';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DB_USAGE, dbCommand } from '../src/cli/db.js';
import type { CliIO } from '../src/cli/io.js';
import { ManualClock } from '../src/clock.js';
import { greyKey, type Entry } from '../src/grey/entry.js';
import { openStore } from '../src/store/sqlite.js';

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

test('a GREY key without a from part stops the listing with spamdb\'s warning and exit 1', async (t) => {
  const file = await tempDb(t);
  await seed(file, [G1, { ...G1, key: '192.0.2.8\nhelo' }, W]);
  const r = await on(file, []);
  t.is(r.code, 1);
  t.is(r.stdout, `${LINES.G1}\n`);
  t.is(r.stderr, 'pfgrey db: No from part in grey key 192.0.2.8\n');
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

test('--json stays valid JSON when the listing stops at a bad key', async (t) => {
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
  t.deepEqual(await db(['-h']), { code: 0, stdout: USAGE, stderr: '' });
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
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 6 entries\n' });
  t.is((await on(dst, [])).stdout, dump);
});

test('--import - reads stdin, skipping blank lines and CRs', async (t) => {
  const file = await tempDb(t);
  const r = await on(file, ['--import', '-'], { stdin: `\n${LINES.W}\r\n  \n${LINES.TR}\n\n` });
  t.is(r.code, 0);
  t.is(r.stderr, 'pfgrey db: imported 2 entries\n');
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
  t.is(r.stderr, `pfgrey db: ${dumpFile}: line 3: pass time "soon" is not a number\n`);
  t.is((await on(file, [])).stdout, `${LINES.ST}\n`);

  const s = await on(path.join(dir, 'new.db'), ['--import', '-'], { stdin: 'WHITE|not-an-ip|||1|2|3|4|5\n' });
  t.is(s.code, 1);
  t.is(s.stderr, 'pfgrey db: stdin: line 1: invalid ip address "not-an-ip"\n');
  t.false(await exists(path.join(dir, 'new.db')));
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
