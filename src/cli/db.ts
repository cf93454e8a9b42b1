// `pfgrey db`: spamdb(8) over the pfgrey database — same flags, same lines, same messages,
// same exit statuses — plus --db, --json, --import and --import-postgrey.
//
// Choices where spamdb gives no answer or ours must differ:
// - --json prints the listing as one JSON array with one entry object per line
//   (`[\n{…},\n{…}\n]\n`, `[]\n` when empty): valid JSON as a whole, still greppable, and
//   streamed chunk by chunk so a large table never sits in memory. Object shapes: entryToJson.
// - The type/action checks that need no database (`cannot add GREY entries`, `no addresses
//   specified`) run before the database is opened, so a mistyped command never creates a file.
// - -a creates the database when it does not exist yet (spamdb would fail), and says so on
//   stderr, so a mistyped --db is noticed; listing and -d do not create it. Keys are checked
//   before the database is opened, and a database that -a created for a command that then
//   failed fatally (status 255) is removed again: a failing command leaves nothing behind.
// - -a refuses keys that break keyProblem's rule (control characters, absurd lengths), each
//   with a warning counted in the exit status like spamdb's `invalid ip address`; -d takes any
//   key, so that a bad row written by an older version can still be deleted.
// - A row the listing cannot print (a GREY-looking key with no from part) is reported and
//   skipped, and the listing goes on; spamdb stops there and hides every row after it. Such
//   rows count in the exit status.
// - Keys are escaped in the text listing (src/store/spamdb-format.ts) and --import reads the
//   escapes back, so `pfgrey db > dump; pfgrey db --import dump` restores the same keys.
// - Exit statuses are failure counts like spamdb's, capped at 255 so that 256 failures do not
//   read as success once the shell takes the status modulo 256.
// - Options may follow keys (GNU style); `--` ends options for a key that starts with '-'.
// - -h/--help prints the usage line on stdout and exits 0; spamdb has no help flag.
// - --import-postgrey reads `db_dump -p` output of postgrey's postgrey.db or postgrey_clients.db
//   (src/grey/postgrey-dump.ts says how it is read and what it becomes). Unlike --import, whose
//   lines are all checked before anything is written, it leaves a bad record out, naming its
//   line (the first PROBLEMS_SHOWN, then how many more), and imports the rest, because one odd
//   key among a busy site's triplets should not stop the move; the exit status counts the bad
//   records (up to 255), so a script still sees them. A dump that is not db_dump output, or is
//   neither of postgrey's files, imports nothing (status 1). Entries already expired are
//   skipped and counted. An entry already in the database stays when its last sighting is as
//   late or later (keepsExisting), so running the same import again changes nothing. An import
//   with nothing to write does not create the database.

import { readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { systemClock, type Clock } from '../clock.js';
import { DEFAULTS } from '../config/defaults.js';
import { describe, isPfgreyError, PfgreyError } from '../errors.js';
import { postgreyTimes } from '../config/postgrey-options.js';
import { entryType, keyProblem, toByteString, type Entry } from '../grey/entry.js';
import { Greylister } from '../grey/greylister.js';
import { keepsExisting, parseDbDump, postgreyEntries, type PostgreyImport } from '../grey/postgrey-dump.js';
import { promotesAgain, type ManualType, type PolicyTimes } from '../grey/rules.js';
import { silentLogger } from '../log.js';
import { COMPANIONS, exists } from '../store/files.js';
import { openDatabase, shownDb, storeKind } from '../store/open.js';
import { entryToJson, formatEntry, keyText, parseLine, showKey } from '../grey/spamdb-format.js';
import type { Store } from '../store/types.js';
import { databasePath, failure, type CliIO } from './io.js';
import { argumentProblem, helpText } from './args.js';

export const DB_USAGE =
  'usage: pfgrey db [--db PATH|URL] [--json] [--import FILE|-] [-adGTt] [keys ...]\n' +
  '       pfgrey db [--db PATH] -d [-t] --passed ip ...\n' +
  '       pfgrey db [--db PATH] --import-postgrey FILE|- [--delay D] [--max-age D]\n' +
  '                 [--retry-window D] [--auto-whitelist-clients N]';

type Action = 'list' | 'add' | 'delete';
type KeyType = 'WHITE' | 'TRAPPED' | 'SPAMTRAP' | 'GREY';

const OPTIONS = {
  a: { type: 'boolean', short: 'a' },
  d: { type: 'boolean', short: 'd' },
  G: { type: 'boolean', short: 'G' },
  T: { type: 'boolean', short: 'T' },
  t: { type: 'boolean', short: 't' },
  db: { type: 'string' },
  json: { type: 'boolean' },
  passed: { type: 'boolean' },
  import: { type: 'string' },
  'import-postgrey': { type: 'string' },
  delay: { type: 'string' },
  'max-age': { type: 'string' },
  'retry-window': { type: 'string' },
  'auto-whitelist-clients': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** postgrey's options, which only --import-postgrey reads (for the expiries and the auto-whitelist). */
const POSTGREY_OPTIONS = ['delay', 'max-age', 'retry-window', 'auto-whitelist-clients'] as const;

/** Bad records of an --import-postgrey named one by one; the rest are counted in one line. */
const PROBLEMS_SHOWN = 10;

interface Command {
  action: Action;
  type: KeyType;
  keys: string[];
  dbPath: string;
  /** --db as given, for a command line this one prints (undefined: PFGREY_DB or the default). */
  dbFlag: string | undefined;
  json: boolean;
  /** -d --passed: also delete the ips' GREY tuples from which the next scan would whitelist them. */
  passed: boolean;
  importFrom: string | undefined;
  importPostgrey: string | undefined;
  /** postgrey's times and auto-whitelist for --import-postgrey (its defaults, or the options). */
  policy: PolicyTimes;
}

class Exit {
  constructor(readonly status: number) {}
}

export async function dbCommand(argv: string[], io: CliIO, opts: { clock?: Clock } = {}): Promise<number> {
  const warn = (msg: string) => void io.stderr.write(`pfgrey db: ${msg}\n`);
  try {
    const cmd = parseCommand(argv, io, warn);
    if (cmd instanceof Exit) return cmd.status;
    if (cmd.importFrom !== undefined) return await importDump(cmd, io, warn);
    if (cmd.importPostgrey !== undefined) return await importPostgrey(cmd, io, opts.clock ?? systemClock, warn);
    switch (cmd.action) {
      case 'list':
        return await list(cmd, io, warn);
      case 'add':
        return await add(cmd, opts.clock ?? systemClock, warn);
      case 'delete':
        return await remove(cmd, io, opts.clock ?? systemClock, warn);
    }
  } catch (err) {
    if (err instanceof Exit) return err.status;
    const { message, status } = failure(err);
    warn(message);
    return status;
  }
}

// --- arguments ------------------------------------------------------------------------------

function parseCommand(argv: string[], io: CliIO, warn: (m: string) => void): Command | Exit {
  const usage = (why?: string): Exit => {
    if (why) warn(why);
    io.stderr.write(`${DB_USAGE}\n`);
    return new Exit(1);
  };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    return usage(argumentProblem('db', err));
  }
  const { values, positionals, tokens } = parsed;
  if (values.help) {
    io.stdout.write(helpText('db', DB_USAGE));
    return new Exit(0);
  }
  // spamdb keeps one action and one type, each set by the last flag that names one (getopt order).
  let action: Action = 'list';
  let type: KeyType = 'WHITE';
  for (const tok of tokens) {
    if (tok.kind !== 'option') continue;
    if (tok.name === 'a') action = 'add';
    else if (tok.name === 'd') action = 'delete';
    else if (tok.name === 'G') type = 'GREY';
    else if (tok.name === 't') type = 'TRAPPED';
    else if (tok.name === 'T') type = 'SPAMTRAP';
  }
  if (action === 'list' && type !== 'WHITE') return usage();
  if (values.import !== undefined && (action !== 'list' || positionals.length > 0)) {
    return usage('--import cannot be combined with -a, -d or keys');
  }
  if (values['import-postgrey'] !== undefined) {
    if (action !== 'list' || positionals.length > 0) return usage('--import-postgrey cannot be combined with -a, -d or keys');
    if (values.import !== undefined) return usage('--import and --import-postgrey cannot be combined');
  } else {
    const stray = POSTGREY_OPTIONS.find((o) => values[o] !== undefined);
    if (stray) return usage(`--${stray} goes with --import-postgrey`);
  }
  if (values.db === '') return usage('--db needs a path');
  if (values.passed && (action !== 'delete' || (type !== 'WHITE' && type !== 'TRAPPED'))) {
    return usage('--passed goes with -d (or -d -t) of addresses');
  }
  return {
    action,
    type,
    keys: positionals,
    dbPath: databasePath(values.db, io.env),
    dbFlag: values.db,
    json: values.json ?? false,
    passed: values.passed ?? false,
    importFrom: values.import,
    importPostgrey: values['import-postgrey'],
    policy: postgreyTimes({
      delay: values.delay,
      maxAge: values['max-age'],
      retryWindow: values['retry-window'],
      awlClients: values['auto-whitelist-clients'],
    }),
  };
}

// --- output ---------------------------------------------------------------------------------

/** Resolves once the stream has taken the data, so a large listing respects backpressure. */
function write(stream: Writable, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/** Collects a chunk of listing lines and writes them as one buffer. */
class Listing {
  private parts: Buffer[] = [];
  private count = 0;
  private failed: unknown;

  constructor(
    private readonly out: Writable,
    private readonly json: boolean,
  ) {}

  /** Throws (E_DB_ROW) for an entry spamdb cannot print; nothing of it is queued then. */
  add(e: Entry): void {
    if (this.json) {
      const obj = JSON.stringify(entryToJson(e));
      this.parts.push(Buffer.from(`${this.count === 0 ? '[\n' : ',\n'}${obj}`, 'utf8'));
    } else {
      // latin1: each character of a key is one byte the client sent; write back those bytes.
      this.parts.push(Buffer.from(`${formatEntry(e)}\n`, 'latin1'));
    }
    this.count++;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0 || this.failed) return;
    const data = Buffer.concat(this.parts);
    this.parts = [];
    try {
      await write(this.out, data);
    } catch (err) {
      this.failed = err;
      throw err;
    }
  }

  /** Ends the JSON array even when the listing stopped early, so the output stays valid JSON. */
  async end(): Promise<void> {
    if (this.json) this.parts.push(Buffer.from(this.count === 0 ? '[]\n' : '\n]\n', 'utf8'));
    await this.flush();
  }
}

/**
 * Runs `body` with a listener on stdout's 'error' event: a closed pipe (`pfgrey db | head`) must
 * end the listing quietly, not crash the process with an unhandled 'error'. The write callback
 * carries the same error, and that is what stops the listing.
 */
async function guardingOutput<T>(out: Writable, body: () => Promise<T>): Promise<T> {
  const ignore = () => undefined;
  out.on('error', ignore);
  try {
    return await body();
  } finally {
    // The 'error' event is emitted a tick after the failed write's callback; stay until then.
    setImmediate(() => out.off('error', ignore));
  }
}

function outputFailure(err: unknown, warn: (m: string) => void): number {
  if ((err as { code?: unknown }).code !== 'EPIPE') warn(`cannot write output: ${describe(err)}`);
  return 1;
}

async function withStore<T>(store: Store, body: (s: Store) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await body(store);
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  // Writes are queued in the store: close() is what commits them, and its failure is ours.
  await store.close();
  return result;
}

// --- list and show (spamdb without -a/-d) ----------------------------------------------------

async function list(cmd: Command, io: CliIO, warn: (m: string) => void): Promise<number> {
  const store = await openDatabase(cmd.dbPath, { readonly: true });
  return withStore(store, () =>
    guardingOutput(io.stdout, async () => {
      const out = new Listing(io.stdout, cmd.json);
      let status = 0;
      try {
        if (cmd.keys.length > 0) status = await show(store, cmd.keys, out, warn);
        else status = await listAll(store, out, warn);
        await out.end();
      } catch (err) {
        if (isPfgreyError(err)) throw err;
        return outputFailure(err, warn);
      }
      return Math.min(status, 255);
    }),
  );
}

/** spamdb's print_entry failure: warn with its message; the caller skips the row and counts it. */
function unprintable(err: unknown, warn: (m: string) => void): boolean {
  if (isPfgreyError(err) && err.code === 'E_DB_ROW') {
    warn(err.message);
    return true;
  }
  return false;
}

/** Exit status = rows that could not be printed; they are skipped, not the end of the listing. */
async function listAll(store: Store, out: Listing, warn: (m: string) => void): Promise<number> {
  let bad = 0;
  for await (const chunk of store.chunks(DEFAULTS.scanChunk)) {
    for (const e of chunk) {
      try {
        out.add(e);
      } catch (err) {
        if (!unprintable(err, warn)) throw err;
        bad++;
      }
    }
    await out.flush();
  }
  return bad;
}

/** Exit status = keys not found, as spamdb's dbshow, plus entries that could not be printed. */
async function show(store: Store, keys: string[], out: Listing, warn: (m: string) => void): Promise<number> {
  let failures = 0;
  for (const k of keys) {
    const e = await store.get(toByteString(k));
    if (!e) {
      failures++;
      continue;
    }
    try {
      out.add(e);
    } catch (err) {
      if (!unprintable(err, warn)) throw err;
      failures++;
    }
  }
  return failures;
}

// --- -a -----------------------------------------------------------------------------------------

function nonEmpty(cmd: Command, warn: (m: string) => void): string[] {
  const keys = cmd.keys.filter((k) => k !== '');
  if (keys.length === 0) {
    warn('no addresses specified');
    throw new Exit(2);
  }
  return keys;
}

async function add(cmd: Command, clock: Clock, warn: (m: string) => void): Promise<number> {
  if (cmd.type === 'GREY') {
    warn('cannot add GREY entries');
    return 2;
  }
  // Every key is checked before the database is opened: keys that are all bad neither create
  // nor touch it.
  let failures = 0;
  const good: string[] = [];
  for (const raw of nonEmpty(cmd, warn)) {
    const key = toByteString(raw);
    const problem = keyProblem(key, cmd.type);
    if (problem) {
      warn(`${cmd.type === 'SPAMTRAP' ? 'address' : 'key'} ${showKey(key)} ${problem}`);
      failures++;
    } else if (cmd.type !== 'SPAMTRAP' && isIP(raw) === 0) {
      warn(`invalid ip address ${keyText(key)}`);
      failures++;
    } else {
      good.push(key);
    }
  }
  if (good.length === 0) return Math.min(failures, 255);
  const { result: status, created } = await writeDatabase(cmd.dbPath, (store) => addKeys(store, good, failures));
  if (!created) return status;
  if (status === 255) await removeDatabase(cmd.dbPath);
  else warn(`no database at ${cmd.dbPath}: created it`);
  return status;

  async function addKeys(store: Store, keys: string[], failed: number): Promise<number> {
    const core = doorToCore(store, clock);
    for (const key of keys) {
      const verdict = await core.handle({ kind: 'add', type: cmd.type as ManualType, key });
      // spamdb errx(-1): fatal, status 255. Earlier keys of this command are still written.
      if (verdict.kind === 'refused') {
        warn(`not an email address: ${keyText(key)}`);
        return 255;
      }
      if (verdict.kind === 'dropped') throw new PfgreyError('E_DB_WRITE', `${cmd.dbPath}: cannot write ${keyText(key)}: ${verdict.why}`);
    }
    return Math.min(failed, 255);
  }
}

/**
 * pfgrey db's door to the greylist core: additions, deletions and imports are requests the
 * core decides and writes, as the daemon's are; this command never writes the store itself.
 * Atomic: each batch is read and written in one transaction, so a daemon or logd writing the
 * same key meanwhile does not have its update lost.
 */
function doorToCore(store: Store, clock: Clock = systemClock): Greylister {
  return new Greylister({ store, log: silentLogger, clock, atomic: true });
}

/**
 * Opens the database for a command that writes, creating it when there is none, and runs `body`
 * on it. A database this command created is removed again when `body` fails: a failing command
 * leaves nothing behind. Resolves with body's result and whether the database was created.
 */
async function writeDatabase<T>(dbPath: string, body: (store: Store) => Promise<T>): Promise<{ result: T; created: boolean }> {
  // Anything at the name (a dangling link too) is not ours to remove if the command fails; nor
  // is a PostgreSQL database, which is made by createdb, not here.
  const existed = storeKind(dbPath) === 'postgres' || await exists(dbPath).catch(() => true);
  try {
    return { result: await withStore(await openDatabase(dbPath, { create: true }), body), created: !existed };
  } catch (err) {
    if (!existed) await removeDatabase(dbPath);
    throw err;
  }
}

/** A database file this command created, with SQLite's companions; gone already is fine. */
async function removeDatabase(file: string): Promise<void> {
  // Best effort: the command's own error is what the user needs to read.
  for (const f of [file, ...COMPANIONS.map((sfx) => file + sfx)]) await rm(f, { force: true }).catch(() => undefined);
}

// --- -d -----------------------------------------------------------------------------------------

/**
 * spamdb -d, and what spamdb leaves unsaid: a GREY tuple stays until greyexp after its first
 * sighting, promoted or not, so deleting the WHITE (or TRAPPED) entry of a host whose tuples
 * have passed only lasts until the next scan, which whitelists it again. After the deletions,
 * each address given that still has such tuples (rules.ts, promotesAgain) is named with their
 * count. On a terminal (stdin and stderr both TTYs) the command asks whether to remove them
 * too; elsewhere it prints the command that does, `-d --passed`, which deletes them with the
 * entry. The exit status is spamdb's either way: the keys not found (with --passed, a key
 * counts as found when its entry or any passed tuple was deleted).
 */
async function remove(cmd: Command, io: CliIO, clock: Clock, warn: (m: string) => void): Promise<number> {
  const keys = nonEmpty(cmd, warn);
  const store = await openDatabase(cmd.dbPath, {});
  return withStore(store, async () => {
    const core = doorToCore(store, clock);
    // Only an address's entry stands between its passed tuples and the whitelist.
    const byAddress = cmd.type === 'WHITE' || cmd.type === 'TRAPPED';
    let failures = 0;
    for (const raw of keys) {
      const key = toByteString(raw);
      // -G: the argument is an ip and the first of its tuples goes, one tuple per argument.
      const verdict = await core.handle(cmd.type === 'GREY' ? { kind: 'delete-tuple', ip: key } : { kind: 'delete', key });
      if (verdict.kind === 'dropped') throw new PfgreyError('E_DB_WRITE', `${cmd.dbPath}: cannot delete ${keyText(key)}: ${verdict.why}`);
      let found = verdict.kind !== 'absent';
      if (cmd.passed && byAddress && isIP(key) !== 0) {
        const tuples = await deletePassed(core, key, cmd.dbPath);
        if (tuples > 0) warn(`deleted ${count(tuples, 'passed GREY tuple')} of ${key}`);
        found ||= tuples > 0;
      }
      if (!found) {
        warn(`no entry for ${keyText(key)}`);
        failures++;
      }
    }
    if (byAddress && !cmd.passed) await passedTuplesLeft(store, core, keys, cmd, io, clock, warn);
    return Math.min(failures, 255);
  });
}

const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** Deletes the passed tuples of `ip` through the core; how many there were. */
async function deletePassed(core: Greylister, ip: string, dbPath: string): Promise<number> {
  const verdict = await core.handle({ kind: 'delete-passed', ip });
  if (verdict.kind === 'dropped') throw new PfgreyError('E_DB_WRITE', `${dbPath}: cannot delete the GREY tuples of ${ip}: ${verdict.why}`);
  return verdict.kind === 'deleted' ? verdict.count ?? 1 : 0;
}

/** The addresses among `keys` whose passed tuples remain, said, and removed if the user says so. */
async function passedTuplesLeft(
  store: Store, core: Greylister, keys: string[], cmd: Command, io: CliIO, clock: Clock, warn: (m: string) => void,
): Promise<void> {
  const left: string[] = [];
  const now = clock.now();
  for (const ip of new Set(keys.map(toByteString).filter((k) => isIP(k) !== 0))) {
    const n = (await store.tuplesOf(ip)).filter((e) => promotesAgain(e, now)).length;
    if (n === 0) continue;
    warn(`${ip} still has ${count(n, 'passed GREY tuple')}, from which the next scan would whitelist it again`);
    left.push(ip);
  }
  if (left.length === 0) return;
  if (!interactive(io)) {
    // A URL's password is not repeated: the hint shows *** where it goes.
    const db = cmd.dbFlag === undefined ? '' : ` --db ${shellWord(shownDb(cmd.dbFlag))}`;
    const typeFlag = cmd.type === 'TRAPPED' ? ' -t' : '';
    warn(`delete them too with: pfgrey db${db} -d${typeFlag} --passed ${left.join(' ')}`);
    return;
  }
  const answer = await ask(io, 'pfgrey db: remove them too? [y/N] ');
  if (!/^\s*y(es)?\s*$/i.test(answer)) return;
  for (const ip of left) {
    const n = await deletePassed(core, ip, cmd.dbPath);
    warn(`deleted ${count(n, 'passed GREY tuple')} of ${ip}`);
  }
}

/** A user at a terminal can answer: stdin and stderr are both TTYs. */
function interactive(io: CliIO): boolean {
  return (io.stdin as { isTTY?: boolean }).isTTY === true && (io.stderr as { isTTY?: boolean }).isTTY === true;
}

/** Asks on stderr and reads one line of stdin (at most 1 KiB, or until EOF); the line without its end. */
function ask(io: CliIO, question: string): Promise<string> {
  io.stderr.write(question);
  return new Promise((resolve) => {
    let got = '';
    const done = () => {
      io.stdin.off('data', onData);
      io.stdin.off('end', done);
      io.stdin.off('error', done);
      // Stops reading, so a terminal's stdin no longer keeps the process alive.
      io.stdin.pause();
      resolve(got.split('\n')[0]!.replace(/\r$/, ''));
    };
    const onData = (chunk: Buffer | string) => {
      got += chunk.toString();
      if (got.includes('\n') || got.length > 1024) done();
    };
    io.stdin.on('data', onData);
    io.stdin.once('end', done);
    io.stdin.once('error', done);
  });
}

/** `s` as one word a POSIX shell reads back unchanged. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// --- --import and --import-postgrey -------------------------------------------------------------

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer));
  return Buffer.concat(parts);
}

/** What an import reads: the bytes of `file` (`-`: stdin), named for messages; undefined, said, when unreadable. */
async function readInput(file: string, io: CliIO, warn: (m: string) => void): Promise<{ name: string; data: Buffer } | undefined> {
  const name = file === '-' ? 'stdin' : file;
  try {
    return { name, data: file === '-' ? await readAll(io.stdin) : await readFile(file) };
  } catch (err) {
    // Node says `ENOENT: no such file or directory, open 'x'`; the name is already in front.
    warn(`cannot read ${name}: ${describe(err).replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')}`);
    return undefined;
  }
}

/** Writes entries as they are through the core (restore requests), a batch at a time. */
async function restore(store: Store, entries: readonly Entry[], dbPath: string, clock: Clock): Promise<void> {
  const core = doorToCore(store, clock);
  // A batch at a time: the core decides each turn's requests with one lookup.
  for (let i = 0; i < entries.length; i += DEFAULTS.greyBatch) {
    const verdicts = await Promise.all(entries.slice(i, i + DEFAULTS.greyBatch).map((entry) => core.handle({ kind: 'restore', entry })));
    const dropped = verdicts.find((v) => v.kind === 'dropped');
    if (dropped?.kind === 'dropped') throw new PfgreyError('E_DB_WRITE', `${dbPath}: cannot import: ${dropped.why}`);
  }
}

async function importDump(cmd: Command, io: CliIO, warn: (m: string) => void): Promise<number> {
  const input = await readInput(cmd.importFrom!, io, warn);
  if (!input) return 1;
  // Every line is checked before anything is written: a dump with one bad line imports nothing.
  const entries: Entry[] = [];
  const lines = input.data.toString('latin1').split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') continue;
    try {
      entries.push(parseLine(line, i + 1));
    } catch (err) {
      warn(`${input.name}: ${describe(err)}; nothing imported`);
      return 1;
    }
  }
  await writeDatabase(cmd.dbPath, (store) => restore(store, entries, cmd.dbPath, systemClock));
  // Per type, in spamdb's order, so a move from spamd can be checked against `spamdb | grep -c`.
  const types = (['GREY', 'WHITE', 'TRAPPED', 'SPAMTRAP', 'POLICY', 'AWL', 'GOOD'] as const)
    .map((type) => [type, entries.filter((e) => entryType(e) === type).length] as const)
    .filter(([, n]) => n > 0)
    .map(([type, n]) => `${n} ${type}`);
  warn(`imported ${entries.length} entries${types.length ? ` (${types.join(', ')})` : ''}`);
  return 0;
}

/**
 * The store as a merging import sees it: each atomic update leaves out the writes that the
 * merge rule (keepsExisting) says lose to the entry already there, judged on the entries read
 * inside the same transaction, so a daemon writing the key meanwhile is not overwritten by
 * an older sighting. `kept` collects the keys so left alone. (The restore request itself
 * always writes: what --import wants.)
 */
function merging(store: Store, now: number, kept: Set<string>): Store {
  const update: Store['update'] = (keys, decide, once) => store.update(keys, (current) => decide(current).filter((w) => {
    if (!('put' in w)) return true;
    const keep = keepsExisting(current.get(w.put.key), w.put, now);
    if (keep) kept.add(w.put.key);
    else kept.delete(w.put.key);
    return !keep;
  }), once);
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'update') return update;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function importPostgrey(cmd: Command, io: CliIO, clock: Clock, warn: (m: string) => void): Promise<number> {
  const input = await readInput(cmd.importPostgrey!, io, warn);
  if (!input) return 1;
  const now = clock.now();
  let found: PostgreyImport;
  try {
    found = postgreyEntries(parseDbDump(input.data.toString('latin1')), cmd.policy, now);
  } catch (err) {
    if (!isPfgreyError(err) || err.code !== 'E_POSTGREY_DUMP') throw err;
    warn(`${input.name}: ${err.message}`);
    return 1;
  }
  const { problems } = found;
  for (const p of problems.slice(0, PROBLEMS_SHOWN)) warn(`${input.name}: line ${p.line}: ${p.what}`);
  if (problems.length > PROBLEMS_SHOWN) warn(`${input.name}: ${problems.length - PROBLEMS_SHOWN} more bad records not shown`);
  const kept = new Set<string>();
  if (found.entries.length > 0) {
    await writeDatabase(cmd.dbPath, (store) => restore(merging(store, now, kept), found.entries, cmd.dbPath, clock));
  }
  const written = found.entries.filter((e) => !kept.has(e.key));
  const types = (['POLICY', 'AWL', 'WHITE'] as const)
    .map((type) => [type, written.filter((e) => entryType(e) === type).length] as const)
    .filter(([, n]) => n > 0)
    .map(([type, n]) => `${n} ${type}`);
  const skipped = [
    [found.expired, 'expired'],
    [kept.size, 'no newer than the database\'s'],
    [problems.length, 'bad'],
  ].filter(([n]) => n !== 0).map(([n, why]) => `${n} ${why}`);
  warn(`imported ${written.length} entries${types.length ? ` (${types.join(', ')})` : ''}${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}`);
  return Math.min(problems.length, 255);
}
