// pfgrey db --import-postgrey: what postgrey learnt (db_dump output of postgrey.db and
// postgrey_clients.db) becomes POLICY, AWL and WHITE entries with postgrey's expiry, bad records
// are named and left out, and a real postgrey's databases come over whole.

import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DB_USAGE, dbCommand } from '../src/cli/db.js';
import type { CliIO } from '../src/cli/io.js';
import { ManualClock, type Clock } from '../src/clock.js';
import { awlKey, policyKey, type Entry } from '../src/grey/entry.js';
import { openStore } from '../src/store/sqlite.js';
import { lacking } from './helpers/require.js';
import { eventually } from './helpers/wait.js';

const S = 1000;
const DAY = 86400;
const NOW = 1_700_000_000; // seconds
const MAX_AGE = 35 * DAY;
const RETRY = 2 * DAY;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function tempDb(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-import-postgrey-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, 'grey.db');
}

/** Runs `pfgrey db --db file …` in-process, `stdin` as its standard input. */
async function db(file: string, args: string[], stdin: string | Buffer = '', clock: Clock = new ManualClock(NOW * S)): Promise<Result> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const input = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  input.end(typeof stdin === 'string' ? Buffer.from(stdin, 'latin1') : stdin);
  const io: CliIO = { stdout, stderr, stdin: input, env: {} };
  const code = await dbCommand(['--db', file, ...args], io, { clock });
  return { code, stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString('utf8') };
}

/** `--import-postgrey -` with the dump on stdin, and any further options. */
const importing = (file: string, dump: string, args: string[] = []) => db(file, ['--import-postgrey', '-', ...args], dump);

/** The listing's lines, sorted (the store's key order is not what these tests are about). */
async function listed(file: string): Promise<string[]> {
  const r = await db(file, []);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

const exists = (file: string) => access(file).then(() => true, () => false);

/**
 * `db_dump -p` output: its header (lines 1–5 with nothing added), then each key and value on
 * a line of its own, already in the print format, then DATA=END. The first key is on line 6.
 */
function dump(records: Array<[string, string]>, header: string[] = []): string {
  return ['VERSION=3', 'format=print', 'type=btree', ...header, 'db_pagesize=4096', 'HEADER=END',
    ...records.flatMap(([k, v]) => [` ${k}`, ` ${v}`]), 'DATA=END', ''].join('\n');
}

const sha1 = (s: string) => createHash('sha1').update(s, 'latin1').digest('hex');

async function seed(file: string, entries: Entry[]): Promise<void> {
  const s = await openStore(file, { create: true });
  for (const e of entries) s.put(e);
  await s.close();
}

// --- postgrey.db ------------------------------------------------------------------------------

test('postgrey.db\'s triplets become POLICY entries: passed ones expire max-age after their last sighting, the others the retry window after it', async (t) => {
  const file = await tempDb(t);
  const r = await importing(file, dump([
    ['192.0.2.0/alice@ex.example/bob@us.example', `${NOW - 1000},${NOW - 600}`],
    ['198.51.100.0/#@lists.example/carol@us.example', `${NOW - 100},${NOW - 50}`],
    // Older postgrey versions wrote the client's host name as a third field: it is not needed.
    ['2001:db8:0:0:0:0:0:0/dave@ex.example/bob@us.example', `${NOW - 7200},${NOW - 3600},mx.ex.example`],
    // --lookup-by-host, and a bounce's empty sender.
    ['203.0.113.5/32//bob@us.example', `${NOW - 10},${NOW - 10}`],
  ]));
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 4 entries (4 POLICY)\n' });
  t.deepEqual(await listed(file), [
    `POLICY|192.0.2.0/alice@ex.example/bob@us.example|${NOW - 1000}|${NOW - 600}|${NOW - 600 + MAX_AGE}|2|1`,
    `POLICY|198.51.100.0/#@lists.example/carol@us.example|${NOW - 100}|${NOW - 50}|${NOW - 50 + RETRY}|1|0`,
    // The IPv6 network stays exactly as postgrey wrote it, so the policy door finds it again.
    `POLICY|2001:db8:0:0:0:0:0:0/dave@ex.example/bob@us.example|${NOW - 7200}|${NOW - 3600}|${NOW - 3600 + MAX_AGE}|2|1`,
    `POLICY|203.0.113.5/32//bob@us.example|${NOW - 10}|${NOW - 10}|${NOW - 10 + RETRY}|1|0`,
  ]);
});

test('--privacy triplets (SHA-1 keys) are told from clients by their first time, and kept as hashes', async (t) => {
  const file = await tempDb(t);
  const key = sha1('192.0.2.0/alice@ex.example/bob@us.example');
  const r = await importing(file, dump([[key, `${NOW - 1000},${NOW - 600}`]]));
  t.is(r.stderr, 'pfgrey db: imported 1 entries (1 POLICY)\n');
  t.deepEqual(await listed(file), [`POLICY|${key}|${NOW - 1000}|${NOW - 600}|${NOW - 600 + MAX_AGE}|2|1`]);
});

test('print-format escapes are read back to the bytes postgrey stored: \\hh a byte, \\\\ a backslash', async (t) => {
  const file = await tempDb(t);
  const r = await importing(file, dump([['192.0.2.0/j\\c3\\a9r\\c3\\b4me\\\\x@ex.example/bob@us.example', `${NOW - 10},${NOW - 10}`]]));
  t.is(r.code, 0);
  // The listing writes UTF-8 as it is and a backslash as \\ (src/grey/spamdb-format.ts).
  t.deepEqual(await listed(file), [`POLICY|192.0.2.0/j\xc3\xa9r\xc3\xb4me\\\\x@ex.example/bob@us.example|${NOW - 10}|${NOW - 10}|${NOW - 10 + RETRY}|1|0`]);
  const s = await openStore(file, { readonly: true });
  t.truthy(await s.get(policyKey('192.0.2.0/j\xc3\xa9r\xc3\xb4me\\x@ex.example/bob@us.example')));
  await s.close();
});

// --- postgrey_clients.db ----------------------------------------------------------------------

const CLIENTS = dump([
  ['192.0.2.10', `5,${NOW - 100}`],
  ['192.0.2.11', `4,${NOW - 100}`],
  ['2001:DB8:0:0:0:0:0:1', `7,${NOW - 200}`],
  ['2001:DB8:0:0:0:0:0:2', `1,${NOW - 200}`],
  [sha1('192.0.2.12'), `9,${NOW - 300}`],
]);

test('clients that reached the auto-whitelist become WHITE under the address the doors see; the rest, and hashed ones, stay AWL under postgrey\'s key', async (t) => {
  const file = await tempDb(t);
  const r = await importing(file, CLIENTS);
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 5 entries (3 AWL, 2 WHITE)\n' });
  t.deepEqual(await listed(file), [
    `AWL|192.0.2.11|${NOW - 100}|${NOW - 100}|${NOW - 100 + MAX_AGE}|4`,
    `AWL|2001:DB8:0:0:0:0:0:2|${NOW - 200}|${NOW - 200}|${NOW - 200 + MAX_AGE}|1`,
    // --privacy: no address to whitelist, so the count stays, as the policy door keeps it.
    `AWL|${sha1('192.0.2.12')}|${NOW - 300}|${NOW - 300}|${NOW - 300 + MAX_AGE}|9`,
    `WHITE|192.0.2.10|||${NOW - 100}|${NOW - 100}|${NOW - 100 + MAX_AGE}|5|0`,
    `WHITE|2001:db8::1|||${NOW - 200}|${NOW - 200}|${NOW - 200 + MAX_AGE}|7|0`,
  ].sort());
});

test('--auto-whitelist-clients sets the count that makes a client WHITE, and 0 makes none', async (t) => {
  const seven = await tempDb(t);
  t.is((await importing(seven, CLIENTS, ['--auto-whitelist-clients', '7'])).stderr, 'pfgrey db: imported 5 entries (4 AWL, 1 WHITE)\n');
  t.deepEqual((await listed(seven)).filter((l) => l.startsWith('WHITE')), [`WHITE|2001:db8::1|||${NOW - 200}|${NOW - 200}|${NOW - 200 + MAX_AGE}|7|0`]);
  const none = await tempDb(t);
  t.is((await importing(none, CLIENTS, ['--auto-whitelist-clients', '0'])).stderr, 'pfgrey db: imported 5 entries (5 AWL)\n');
});

test('an IPv4-mapped client that is whitelisted becomes WHITE under its IPv4 address', async (t) => {
  const file = await tempDb(t);
  await importing(file, dump([['0:0:0:0:0:FFFF:C000:20C', `6,${NOW - 100}`]]));
  t.deepEqual(await listed(file), [`WHITE|192.0.2.12|||${NOW - 100}|${NOW - 100}|${NOW - 100 + MAX_AGE}|6|0`]);
});

// --- expiry and options -----------------------------------------------------------------------

test('entries already expired are skipped and counted, and an import with nothing left creates no database', async (t) => {
  const file = await tempDb(t);
  const r = await importing(file, dump([
    ['192.0.2.0/a@ex.example/b@us.example', `${NOW - 3 * DAY - 60},${NOW - 3 * DAY}`], // never passed: 2 days
    ['192.0.2.0/c@ex.example/b@us.example', `${NOW - 40 * DAY},${NOW - 36 * DAY}`], // passed: 35 days
    ['192.0.2.0/d@ex.example/b@us.example', `${NOW - 40 * DAY},${NOW - 34 * DAY}`],
  ]));
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 1 entries (1 POLICY); skipped 2 expired\n' });
  t.deepEqual(await listed(file), [`POLICY|192.0.2.0/d@ex.example/b@us.example|${NOW - 40 * DAY}|${NOW - 34 * DAY}|${NOW + DAY}|2|1`]);

  const empty = await tempDb(t);
  const s = await importing(empty, dump([['192.0.2.10', `9,${NOW - 36 * DAY}`]]));
  t.deepEqual(s, { code: 0, stdout: '', stderr: 'pfgrey db: imported 0 entries; skipped 1 expired\n' });
  t.false(await exists(empty));
});

test('--delay, --max-age and --retry-window decide which triplets passed and when they expire, in postgrey\'s units or as durations', async (t) => {
  // 100 seconds between the first and the last sighting: not passed at postgrey's 300 s.
  const triplet = dump([['192.0.2.0/a@ex.example/b@us.example', `${NOW - 1000},${NOW - 900}`]]);
  const line = async (args: string[]) => {
    const file = await tempDb(t);
    const r = await importing(file, triplet, args);
    t.is(r.code, 0, r.stderr);
    return (await listed(file))[0]!.split('|').slice(2).join('|');
  };
  t.is(await line([]), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + RETRY}|1|0`);
  t.is(await line(['--delay', '60']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + MAX_AGE}|2|1`);
  t.is(await line(['--delay', '1m', '--max-age', '10']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + 10 * DAY}|2|1`);
  t.is(await line(['--delay', '60s', '--max-age', '240h']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + 10 * DAY}|2|1`);
  t.is(await line(['--retry-window', '6h']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + 6 * 3600}|1|0`);
  t.is(await line(['--retry-window', '6H']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + 6 * 3600}|1|0`);
  t.is(await line(['--retry-window', '1']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + DAY}|1|0`);
  // The retry window never outlives max-age.
  t.is(await line(['--retry-window', '5', '--max-age', '1']), `${NOW - 1000}|${NOW - 900}|${NOW - 900 + DAY}|1|0`);
});

test('postgrey\'s options are checked, and only go with --import-postgrey', async (t) => {
  const file = await tempDb(t);
  const USAGE = `${DB_USAGE}\n`;
  t.deepEqual(await importing(file, '', ['--delay', 'soon']), {
    code: 1, stdout: '', stderr: 'pfgrey db: --delay: "soon" is not a duration (use e.g. 500ms, 90s, 25m, 4h, 36d, or seconds)\n',
  });
  t.is((await importing(file, '', ['--max-age', '0'])).stderr, 'pfgrey db: --max-age 0: must be longer than 0\n');
  t.is((await importing(file, '', ['--auto-whitelist-clients', 'many'])).stderr, 'pfgrey db: --auto-whitelist-clients many: not a whole number\n');
  t.deepEqual(await db(file, ['--delay', '60']), { code: 1, stdout: '', stderr: `pfgrey db: --delay goes with --import-postgrey\n${USAGE}` });
  t.deepEqual(await db(file, ['--import', '-', '--import-postgrey', '-']), { code: 1, stdout: '', stderr: `pfgrey db: --import and --import-postgrey cannot be combined\n${USAGE}` });
  for (const args of [['-a', '--import-postgrey', '-'], ['--import-postgrey', '-', '192.0.2.1'], ['-d', '--import-postgrey=-']]) {
    t.deepEqual(await db(file, args), { code: 1, stdout: '', stderr: `pfgrey db: --import-postgrey cannot be combined with -a, -d or keys\n${USAGE}` }, args.join(' '));
  }
  t.false(await exists(file));
  const help = await db(file, ['-h']);
  t.is(help.code, 0);
  t.regex(help.stdout, /--import-postgrey FILE\|- \[--delay D\] \[--max-age D\]\n\s+\[--retry-window D\] \[--auto-whitelist-clients N\]\n/);
  t.regex(help.stdout, /^  --import-postgrey file \| - +Read the output of `db_dump -p' /m);
});

// --- what is already in the database --------------------------------------------------------

test('an entry already in the database stays when its last sighting is as late or later, so the same import run twice changes nothing', async (t) => {
  const file = await tempDb(t);
  const ours = { key: policyKey('192.0.2.0/alice@ex.example/bob@us.example'), first: (NOW - 5000) * S, pass: (NOW - 10) * S, expire: (NOW + DAY) * S, bcount: 7, pcount: 3 };
  const trapped = { key: '192.0.2.10', first: 0, pass: 0, expire: (NOW + DAY) * S, bcount: 1, pcount: -1 };
  const olderCount = { key: awlKey('192.0.2.11'), first: (NOW - 9000) * S, pass: (NOW - 5000) * S, expire: (NOW + DAY) * S, bcount: 1, pcount: 0 };
  await seed(file, [ours, trapped, olderCount]);
  // Both files in one stream, as `cat postgrey.dump clients.dump` makes it.
  const both = dump([
    ['192.0.2.0/alice@ex.example/bob@us.example', `${NOW - 1000},${NOW - 600}`],
    ['192.0.2.0/carol@ex.example/bob@us.example', `${NOW - 1000},${NOW - 600}`],
  ]) + dump([['192.0.2.10', `5,${NOW - 100}`], ['192.0.2.11', `4,${NOW - 100}`]]);
  const r = await importing(file, both);
  t.deepEqual(r, { code: 0, stdout: '', stderr: 'pfgrey db: imported 2 entries (1 POLICY, 1 AWL); skipped 2 no newer than the database\'s\n' });
  t.deepEqual(await listed(file), [
    `AWL|192.0.2.11|${NOW - 100}|${NOW - 100}|${NOW - 100 + MAX_AGE}|4`,
    `POLICY|192.0.2.0/alice@ex.example/bob@us.example|${NOW - 5000}|${NOW - 10}|${NOW + DAY}|7|3`,
    `POLICY|192.0.2.0/carol@ex.example/bob@us.example|${NOW - 1000}|${NOW - 600}|${NOW - 600 + MAX_AGE}|2|1`,
    // Trapped here: postgrey's whitelisting does not undo it.
    `TRAPPED|192.0.2.10|${NOW + DAY}`,
  ]);
  const again = await importing(file, both);
  t.is(again.stderr, 'pfgrey db: imported 0 entries; skipped 4 no newer than the database\'s\n');
  t.is(again.code, 0);
});

test('an expired entry in the database is replaced, whatever its type', async (t) => {
  const file = await tempDb(t);
  await seed(file, [{ key: '192.0.2.10', first: 0, pass: 0, expire: (NOW - 1) * S, bcount: 1, pcount: -1 }]);
  const r = await importing(file, dump([['192.0.2.10', `5,${NOW - 100}`]]));
  t.is(r.stderr, 'pfgrey db: imported 1 entries (1 WHITE)\n');
  t.deepEqual(await listed(file), [`WHITE|192.0.2.10|||${NOW - 100}|${NOW - 100}|${NOW - 100 + MAX_AGE}|5|0`]);
});

// --- which file -------------------------------------------------------------------------------

test('a database= header naming one of postgrey\'s files decides which it is', async (t) => {
  const file = await tempDb(t);
  // Shaped like a hashed client (a small first number), named postgrey.db: read as a triplet.
  const key = sha1('x');
  const r = await importing(file, dump([[key, `${NOW - 400},${NOW - 100}`], [sha1('y'), `5,${NOW - 100}`]], ['database=postgrey.db']));
  t.is(r.stderr, 'pfgrey db: imported 2 entries (2 POLICY)\n');
});

test('bytevalue dumps (db_dump without -p) are read too', async (t) => {
  const file = await tempDb(t);
  const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex');
  const text = dump([[hex('192.0.2.10'), hex(`5,${NOW - 100}`)]]).replace('format=print', 'format=bytevalue');
  const r = await importing(file, text);
  t.is(r.stderr, 'pfgrey db: imported 1 entries (1 WHITE)\n');
});

test('a dump that is neither of postgrey\'s files, or both, or not a dump at all, is refused whole and creates nothing', async (t) => {
  const file = await tempDb(t);
  const cases: Array<[string, string]> = [
    [dump([['postmaster', 'root'], ['abuse', 'root']]),
      'line 6: neither postgrey.db (net/sender/recipient → first,last) nor postgrey_clients.db (address → count,last): key "postmaster", value "root"'],
    [dump([['192.0.2.0/a@ex.example/b@us.example', `${NOW},${NOW}`], ['192.0.2.10', `5,${NOW}`]]),
      'line 1: this dump mixes postgrey.db\'s triplets (line 6, "192.0.2.0/a@ex.example/b@us.example") and postgrey_clients.db\'s clients (line 8, "192.0.2.10"); dump each file by itself'],
    ['WHITE|192.0.2.10|||1|2|3|4|5\n',
      'line 1: not db_dump output: expected its first line, VERSION=3, and found "WHITE|192.0.2.10|||1|2|3|4|5" (make the dump with db_dump -p postgrey.db)'],
    ['', 'line 1: no db_dump output here: it is empty (make the dump with db_dump -p postgrey.db)'],
    ['VERSION=2\n', 'line 1: "VERSION=2": only the VERSION=3 format of db_dump 3 and later is read'],
    [dump([]).replace('type=btree', 'type=recno'), 'line 3: type "recno": postgrey\'s databases are btrees, keyed by text'],
    [dump([['a', 'b']]).replace(' a\n', 'a\n'), 'line 6: expected a key or value line (a space, then the item) or DATA=END, and found "a"'],
    ['VERSION=3\nformat=print\ntype=bt', 'line 3: the dump ends inside its header: it is truncated'],
  ];
  for (const [text, message] of cases) {
    t.deepEqual(await importing(file, text), { code: 1, stdout: '', stderr: `pfgrey db: stdin: ${message}\n` }, message);
  }
  t.false(await exists(file));
});

// --- bad records ------------------------------------------------------------------------------

test('bad records are named by line and left out whole; the rest is imported and the exit status counts them', async (t) => {
  const file = await tempDb(t);
  const long = `192.0.2.0/${'x'.repeat(32_767)}@ex.example/b@us.example`;
  const r = await importing(file, dump([
    ['192.0.2.0/good@ex.example/b@us.example', `${NOW - 10},${NOW - 10}`], // 6
    ['192.0.2.0/a\\zz@ex.example/b@us.example', `${NOW - 10},${NOW - 10}`], // 8
    ['192.0.2.0/b@ex.example/b@us.example', 'soon,later'], // 10, 11
    ['192.0.2.0/c\\0a@ex.example/b@us.example', `${NOW - 10},${NOW - 10}`], // 12
    [long, `${NOW - 10},${NOW - 10}`], // 14
    ['192.0.2.0/also@ex.example/b@us.example', `${NOW - 10},${NOW - 10}`], // 16
    ['192.0.2.0/d@ex.example/b@us.example', `${NOW - 10},\\4`], // 18, 19
    ['not-a-triplet', `${NOW - 10},${NOW - 10}`], // 20
  ]));
  t.is(r.stderr, [
    'pfgrey db: stdin: line 8: key has a bad escape "\\zz" (db_dump -p writes a backslash as \\\\ and other bytes as \\ and two hex digits)',
    'pfgrey db: stdin: line 11: value "soon,later" of key "192.0.2.0/b@ex.example/b@us.example" is not first,last (seconds since the epoch)',
    'pfgrey db: stdin: line 12: key "192.0.2.0/c\\x0a@ex.example/b@us.example" contains a line break (\\x0a): one key per argument or line',
    `pfgrey db: stdin: line 14: key "192.0.2.0/${'x'.repeat(47)}..." is 32808 bytes long; a key may have at most 32767`,
    'pfgrey db: stdin: line 19: value of key "192.0.2.0/d@ex.example/b@us.example" has a bad escape "\\4" (db_dump -p writes a backslash as \\\\ and other bytes as \\ and two hex digits)',
    'pfgrey db: stdin: line 20: key "not-a-triplet" is not postgrey\'s net/sender/recipient, nor its SHA-1 (--privacy)',
    'pfgrey db: imported 2 entries (2 POLICY); skipped 6 bad',
    '',
  ].join('\n'));
  t.is(r.code, 6);
  t.deepEqual((await listed(file)).map((l) => l.split('|')[1]), ['192.0.2.0/also@ex.example/b@us.example', '192.0.2.0/good@ex.example/b@us.example']);
});

test('bad client records are named too: a key that is no address, a value that is not count,last', async (t) => {
  const file = await tempDb(t);
  const r = await importing(file, dump([['192.0.2.10', `5,${NOW - 100}`], ['mail.example', `5,${NOW - 100}`], ['192.0.2.11', '5'], ['192.0.2.12', `5,${NOW - 100},x`]]));
  t.is(r.stderr, [
    'pfgrey db: stdin: line 8: key "mail.example" is not a client address, nor its SHA-1 (--privacy)',
    'pfgrey db: stdin: line 11: value "5" of key "192.0.2.11" is not count,last (a count, then seconds since the epoch)',
    `pfgrey db: stdin: line 13: value "5,${NOW - 100},x" of key "192.0.2.12" is not count,last (a count, then seconds since the epoch)`,
    'pfgrey db: imported 1 entries (1 WHITE); skipped 3 bad',
    '',
  ].join('\n'));
  t.is(r.code, 3);
});

test('a truncated dump keeps the records before the cut and counts the cut as a failure, whatever line it falls in', async (t) => {
  const full = dump([['192.0.2.0/a@ex.example/b@us.example', `${NOW - 10},${NOW - 10}`], ['192.0.2.0/c@ex.example/b@us.example', `${NOW - 20},${NOW - 20}`]]);
  const cases: Array<[string, string, number]> = [
    // Lines 1–5 header, 6–9 records, 10 DATA=END.
    [full.replace('DATA=END\n', ''), 'line 9: the dump ends without DATA=END: it is truncated, and what followed is missing', 2],
    [full.slice(0, full.indexOf(` ${NOW - 20},`)), 'line 8: key "192.0.2.0/c@ex.example/b@us.example" has no value: the dump is truncated', 1],
    [full.slice(0, full.indexOf(`${NOW - 20}\n`) + 5), 'line 9: value of key "192.0.2.0/c@ex.example/b@us.example" is cut short (no line end): the dump is truncated', 1],
    [full.slice(0, full.indexOf('/c@ex') + 4), 'line 8: key is cut short (no line end): the dump is truncated', 1],
  ];
  for (const [text, message, kept] of cases) {
    const file = await tempDb(t);
    const r = await importing(file, text);
    t.is(r.stderr, `pfgrey db: stdin: ${message}\npfgrey db: imported ${kept} entries (${kept} POLICY); skipped 1 bad\n`, message);
    t.is(r.code, 1);
    t.is((await listed(file)).length, kept);
  }
  // Cut inside DATA=END itself: every record is there.
  const file = await tempDb(t);
  t.deepEqual(await importing(file, full.slice(0, -4)), { code: 0, stdout: '', stderr: 'pfgrey db: imported 2 entries (2 POLICY)\n' });
});

test('a key left without its value before DATA=END is named, and the records around it are imported', async (t) => {
  const file = await tempDb(t);
  const text = dump([['192.0.2.0/a@ex.example/b@us.example', `${NOW - 10},${NOW - 10}`]]).replace('DATA=END', ' 192.0.2.0/odd@ex.example/b@us.example\nDATA=END');
  const r = await importing(file, text);
  t.is(r.stderr, 'pfgrey db: stdin: line 8: key "192.0.2.0/odd@ex.example/b@us.example" has no value before DATA=END\n' +
    'pfgrey db: imported 1 entries (1 POLICY); skipped 1 bad\n');
  t.is(r.code, 1);
});

test('many bad records: the first ten are named, the rest counted in one line, and the exit status stops at 255', async (t) => {
  // One good record says which file this is; a dump of nothing but bad records is neither.
  const bad = (n: number) => dump([['192.0.2.0/good@ex.example/b@us.example', `${NOW},${NOW}`],
    ...Array.from({ length: n }, (_, i): [string, string] => [`192.0.2.0/s${i}@ex.example/b@us.example`, 'x'])]);
  const file = await tempDb(t);
  const r = await importing(file, bad(15));
  const lines = r.stderr.split('\n');
  t.is(lines.length, 13);
  t.is(lines[0], 'pfgrey db: stdin: line 9: value "x" of key "192.0.2.0/s0@ex.example/b@us.example" is not first,last (seconds since the epoch)');
  t.is(lines[9], 'pfgrey db: stdin: line 27: value "x" of key "192.0.2.0/s9@ex.example/b@us.example" is not first,last (seconds since the epoch)');
  t.is(lines[10], 'pfgrey db: stdin: 5 more bad records not shown');
  t.is(lines[11], 'pfgrey db: imported 1 entries (1 POLICY); skipped 15 bad');
  t.is(r.code, 15);
  t.is((await importing(file, bad(300))).code, 255);
});

test('an unreadable dump file is one line and exit 1', async (t) => {
  const file = await tempDb(t);
  const missing = path.join(path.dirname(file), 'missing.dump');
  t.deepEqual(await db(file, ['--import-postgrey', missing]), { code: 1, stdout: '', stderr: `pfgrey db: cannot read ${missing}: no such file or directory\n` });
});

// --- a real postgrey --------------------------------------------------------------------------

const POSTGREY = '/usr/sbin/postgrey';

/** Berkeley DB 5.3's db_dump (db5.3-util installs it under this name; db-util adds db_dump). */
function dbDumpCommand(): string | undefined {
  return ['db5.3_dump', 'db_dump'].find((cmd) => {
    const r = spawnSync(cmd, ['-V']);
    return !r.error && r.status === 0;
  });
}

/** Why the real postgrey cannot be run here, or undefined. */
function realPostgreyMissing(): string | undefined {
  if (!existsSync(POSTGREY)) return `${POSTGREY} is not installed (apt-get install postgrey)`;
  if (dbDumpCommand() === undefined) return 'db_dump is not installed (apt-get install db5.3-util)';
  return undefined;
}

/** `db_dump -p` of one of postgrey's files, as a site would make it, while postgrey runs. */
function dbDump(dir: string, file: string): Buffer {
  // -h joins postgrey's environment, so pages still in its cache are read too.
  const r = spawnSync(dbDumpCommand()!, ['-h', dir, '-p', file], { maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`db_dump ${file} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

/** Postfix's policy requests on one connection, each sent once the last is answered; the answers. */
async function ask(socket: string, requests: Array<Record<string, string>>): Promise<string[]> {
  const s = net.connect(socket);
  let text = '';
  s.setEncoding('latin1').on('data', (d: string) => (text += d));
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  try {
    for (let i = 0; i < requests.length; i++) {
      const attrs = { request: 'smtpd_access_policy', protocol_state: 'RCPT', ...requests[i] };
      s.write(`${Object.entries(attrs).map(([k, v]) => `${k}=${v}`).join('\n')}\n\n`);
      await eventually(() => text.split('\n\n').length > i + 1, `postgrey's answer ${i + 1}`);
    }
  } finally {
    s.destroy();
  }
  return text.split('\n\n').filter((a) => a !== '');
}

const canConnect = (socket: string) => new Promise<boolean>((resolve) => {
  const s = net.connect(socket);
  s.on('connect', () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
});

/**
 * What a real postgrey (--delay 60, --auto-whitelist-clients=2) learns from these requests,
 * times given with its policy_test_time attribute, so nothing waits: `t` is three days ago.
 * A (192.0.2.10) passes two triplets more than an hour apart and is whitelisted; B (2001:db8::7)
 * passes one; C never retries and is forgotten by now; D tried ten minutes ago.
 */
function requests(t: number): Array<Record<string, string>> {
  const req = (ip: string, sender: string, recipient: string, time: number) =>
    ({ client_address: ip, client_name: 'unknown', sender, recipient, policy_test_time: String(time) });
  return [
    req('192.0.2.10', 'Alice@Ex.Example', 'bob@us.example', t),
    req('192.0.2.10', 'Alice@Ex.Example', 'bob@us.example', t + 120),
    req('192.0.2.10', 'carol+news@lists.example', 'bob@us.example', t + 4000),
    req('192.0.2.10', 'carol+news@lists.example', 'bob@us.example', t + 4100),
    req('2001:db8::7', 'dave@ex.example', 'erin@us.example', t + 200),
    req('2001:db8::7', 'dave@ex.example', 'erin@us.example', t + 300),
    req('198.51.100.20', 'spam@junk.example', 'bob@us.example', t + 50),
    req('203.0.113.9', 'fresh@ex.example', 'bob@us.example', t + 3 * DAY - 600),
  ];
}

/**
 * Runs postgrey (in the foreground, on a unix socket in a temporary directory that is also its
 * --dbdir, as this user, with no whitelist files) with `args` over the requests; its answers
 * and the dumps of its two files.
 */
async function learn(t: ExecutionContext, args: string[], asks: Array<Record<string, string>>) {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-postgrey-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'sock');
  // By name: postgrey takes `--user=0` for no option (Perl's `|| 'postgrey'`) and becomes the
  // postgrey user, which may not write this directory.
  const group = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
  const child = spawn(POSTGREY, [`--unix=${socket}`, `--dbdir=${dir}`, `--user=${userInfo().username}`, `--group=${group}`,
    '--delay=60', '--auto-whitelist-clients=2', '--whitelist-clients=/dev/null', '--whitelist-recipients=/dev/null', ...args],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (log += d.toString('latin1')));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`postgrey exited: ${log}`);
    return existsSync(socket) && canConnect(socket);
  }, 'postgrey to listen', 30_000);
  const answers = await ask(socket, asks);
  const dumps = { triplets: dbDump(dir, 'postgrey.db'), clients: dbDump(dir, 'postgrey_clients.db') };
  child.kill('SIGTERM');
  await exited;
  return { answers, ...dumps };
}

test('a real postgrey\'s triplets and auto-whitelist come over: POLICY, AWL, and WHITE for the whitelisted client', async (t) => {
  const missing = realPostgreyMissing();
  if (missing) return lacking(t, missing);
  const now = Math.floor(Date.now() / 1000);
  const T = now - 3 * DAY;
  const { answers, triplets, clients } = await learn(t, [], requests(T));
  // postgrey greylisted each first attempt and passed each retry after the delay.
  t.deepEqual(answers.map((a) => a.replace(/^action=(\S+).*$/s, '$1')),
    ['DEFER_IF_PERMIT', 'PREPEND', 'DEFER_IF_PERMIT', 'PREPEND', 'DEFER_IF_PERMIT', 'PREPEND', 'DEFER_IF_PERMIT', 'DEFER_IF_PERMIT']);

  const file = await tempDb(t);
  const clock = { now: () => now * S };
  const options = ['--import-postgrey', '-', '--delay', '60', '--auto-whitelist-clients', '2'];
  const a = await db(file, options, triplets, clock);
  t.deepEqual(a, { code: 0, stdout: '', stderr: 'pfgrey db: imported 4 entries (4 POLICY); skipped 1 expired\n' });
  const b = await db(file, options, clients, clock);
  t.deepEqual(b, { code: 0, stdout: '', stderr: 'pfgrey db: imported 2 entries (1 AWL, 1 WHITE)\n' });
  const D = T + 3 * DAY - 600;
  t.deepEqual(await listed(file), [
    `AWL|2001:DB8:0:0:0:0:0:7|${T + 300}|${T + 300}|${T + 300 + MAX_AGE}|1`,
    `POLICY|192.0.2.0/alice@ex.example/bob@us.example|${T}|${T + 120}|${T + 120 + MAX_AGE}|2|1`,
    `POLICY|192.0.2.0/carol@lists.example/bob@us.example|${T + 4000}|${T + 4100}|${T + 4100 + MAX_AGE}|2|1`,
    `POLICY|2001:db8:0:0:0:0:0:0/dave@ex.example/erin@us.example|${T + 200}|${T + 300}|${T + 300 + MAX_AGE}|2|1`,
    `POLICY|203.0.113.0/fresh@ex.example/bob@us.example|${D}|${D}|${D + RETRY}|1|0`,
    `WHITE|192.0.2.10|||${T + 4100}|${T + 4100}|${T + 4100 + MAX_AGE}|2|0`,
  ]);
});

test('a real postgrey --privacy database comes over as hashes, its whitelisted client an AWL count', async (t) => {
  const missing = realPostgreyMissing();
  if (missing) return lacking(t, missing);
  const now = Math.floor(Date.now() / 1000);
  const T = now - 3 * DAY;
  const { triplets, clients } = await learn(t, ['--privacy'], requests(T).slice(0, 4));
  const file = await tempDb(t);
  const clock = { now: () => now * S };
  const options = ['--import-postgrey', '-', '--delay', '60', '--auto-whitelist-clients', '2'];
  t.is((await db(file, options, Buffer.concat([triplets, clients]), clock)).stderr, 'pfgrey db: imported 3 entries (2 POLICY, 1 AWL)\n');
  t.deepEqual(await listed(file), [
    `AWL|${sha1('192.0.2.10')}|${T + 4100}|${T + 4100}|${T + 4100 + MAX_AGE}|2`,
    `POLICY|${sha1('192.0.2.0/alice@ex.example/bob@us.example')}|${T}|${T + 120}|${T + 120 + MAX_AGE}|2|1`,
    `POLICY|${sha1('192.0.2.0/carol@lists.example/bob@us.example')}|${T + 4000}|${T + 4100}|${T + 4100 + MAX_AGE}|2|1`,
  ].sort());
});
