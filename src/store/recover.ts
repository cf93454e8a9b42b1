// The daemon's way of opening its database. A file that is damaged, is not a pfgrey database,
// or was written by a newer pfgrey cannot be used; a daemon that exits on it is restarted by its
// supervisor, fails again, and never tarpits anything (a crash loop). So the daemon moves such a
// file aside, with its SQLite companions, under a timestamped name, says so in one line, and
// starts with a fresh database: greylisting restarts from nothing, which costs senders one more
// retry, while the old file stays for the operator to inspect or restore.
//
// Only the daemon does this. `pfgrey db` keeps failing with a clear error: a command a user
// types must never move the user's file. spamd's own Berkeley DB file is not moved either
// (openStore refuses it as E_DB_FOREIGN): spamd and spamdb may still be using it.

import { link, rename, rm, unlink } from 'node:fs/promises';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError, describe, isPfgreyError, systemErrorText } from '../errors.js';
import type { Logger } from '../log.js';
import { COMPANIONS, exists } from './files.js';
import { scanPagesFile } from './pages.js';
import { SCHEMA_VERSION, openStore, salvageEntries, type OpenStoreOptions } from './sqlite.js';
import type { FileProblem, FileStore, Store } from './types.js';

export interface RecoverOptions extends OpenStoreOptions {
  /** The time the moved file's name records (ms since the epoch); Date.now by default. */
  now?: () => number;
}

export interface RecoveredStore {
  store: FileStore;
  /** Where the unusable file went; undefined when the database opened as it was. */
  movedTo?: string;
  /** Entries read from the unusable file into the fresh one. */
  salvaged?: number;
}


/** Tried names before giving up: `.corrupt-STAMP`, then `-1` … `-99`. */
const MAX_SUFFIX = 99;

/** `20240102T030405Z`: the UTC time, to the second. */
export function corruptStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

/**
 * Opens (creating if missing) the database at `path`. A file openStore refuses as corrupt
 * (E_DB_CORRUPT) or as too new (E_DB_SCHEMA) is moved to `${path}.corrupt-YYYYMMDDTHHMMSSZ`
 * (its -wal, -shm and -journal to that name plus the same suffix; `-1`, `-2`… is added rather
 * than overwrite anything), one error line is logged, and a fresh database is opened. Any
 * other error, including one from the fresh open, is thrown.
 */
export async function openStoreRecovering(path: string, opts: RecoverOptions, log: Logger): Promise<RecoveredStore> {
  const { now = Date.now, ...storeOpts } = opts;
  const open = () => openStore(path, { ...storeOpts, create: true, readonly: false });
  try {
    return { store: await open() };
  } catch (err) {
    if (!isPfgreyError(err) || (err.code !== 'E_DB_CORRUPT' && err.code !== 'E_DB_SCHEMA')) throw err;
    const reason = err.detail;
    // A newer pfgrey's entries may mean something else: those stay in the moved file.
    return startFresh(path, reason, `cannot be used: ${reason}`, now(), err.code === 'E_DB_CORRUPT', open, log);
  }
}

/**
 * For a running daemon whose database changed underneath it (`problem`, from fileProblem):
 * gives up the store `old` and recovers as at start, handing `keep` the writes `old` still had
 * queued as soon as it gives them up (the caller replays them into the store returned, or holds
 * them if this fails). `old` is undefined when an earlier recovery failed: then the file is
 * opened as at start.
 * - removed: the open connection still reads every committed entry; they are copied from it
 *   into a fresh database, and its -wal and -shm (which belong to the removed file and would be
 *   replayed into the fresh one) are moved aside;
 * - replaced: the new file is the database now, opened as at start; the old file's -wal and
 *   -shm are moved aside so that they are not replayed into it;
 * - damaged (truncated, overwritten): the file is moved aside with its companions and what can
 *   still be read of it is copied into a fresh one.
 */
export async function replaceUnderneath(
  path: string, old: FileStore | undefined, problem: FileProblem, keep: (writes: Array<(next: Store) => void>) => void,
  opts: RecoverOptions, log: Logger,
): Promise<FileStore> {
  const { now = Date.now, ...storeOpts } = opts;
  const open = () => openStore(path, { ...storeOpts, create: true, readonly: false });
  if (!old) return (await openStoreRecovering(path, opts, log)).store;

  const at = now();
  // The old connection stays open until its files have been read: it still reads what the
  // file lost (from its -wal and its cache; all of it when the file was only unlinked). It
  // commits nothing more from here on; its queued writes are the caller's.
  const gaveUp = await old.abandon();
  keep(gaveUp.writes);
  let closed = false;
  const closeOld = async () => {
    closed = true;
    await gaveUp.close();
  };
  try {
    const { movedTo, companions } = await moveAside(path, `${path}.${problem.kind === 'damaged' ? 'corrupt' : problem.kind}-${corruptStamp(at)}`,
      problem.reason, { companionsOnly: problem.kind !== 'damaged' });
    const withThem = companions.length > 0 ? ` (with its ${companions.join(', ')})` : '';
    const moved = problem.kind === 'damaged' ? `moved it to ${movedTo}${withThem}`
      : companions.length > 0 ? `moved its ${companions.join(', ')} to ${movedTo}-*` : 'nothing to move';
    // SQLite removes a database's -wal and -shm by name when its last connection closes: the
    // old connection must close before any new file has those names, or it would delete the
    // new database's.
    if (problem.kind === 'replaced') {
      await closeOld();
      const { store } = await openStoreRecovering(path, opts, log);
      log.error(`database ${path} changed underneath pfgrey: ${problem.reason}; pfgrey now uses that file, as at a start; ${moved}`);
      return store;
    }
    // So the fresh database is built under a name of its own and moved into place once the old
    // connection is closed.
    const building = `${path}.recovering`;
    for (const sfx of ['', ...COMPANIONS]) await rm(building + sfx, { force: true });
    const fresh = await openStore(building, { ...storeOpts, create: true, readonly: false });
    const copied = new Set<string>();
    let stopped = '';
    let salvaged = 0;
    try {
      try {
        for await (const chunk of old.chunks(DEFAULTS.scanChunk)) {
          for (const e of chunk) {
            fresh.put(e);
            copied.add(e.key);
          }
          // A commit per chunk keeps the fresh store's queue, a second copy of every entry, short.
          await fresh.flush();
        }
      } catch (err) {
        stopped = ` (reading it stopped there: ${describe(err)})`;
      }
      // What the connection could not read, the damaged file may still give (a removed one is gone).
      if (stopped && problem.kind === 'damaged') salvaged = await salvage(movedTo, fresh, copied);
    } finally {
      await fresh.close();
    }
    await closeOld();
    if (!(await moveNoClobber(building, path))) throw new Error(`${path} appeared while the database was recovered`);
    const store = await open();
    const more = salvaged > 0 ? ` and ${salvaged} more read from the file` : '';
    log.error(`database ${path} changed underneath pfgrey: ${problem.reason}; ${moved}, started a fresh database and copied into it ` +
      `the ${copied.size} entr${copied.size === 1 ? 'y' : 'ies'} the open connection still read${stopped}${more}`);
    return store;
  } finally {
    if (!closed) await gaveUp.close();
  }
}

/**
 * Moves the file at `path` aside, opens a fresh one, copies into it what can still be read of
 * the moved file (with `salvaging`), and says so in one error line: `database PATH <what>;
 * moved it to …`.
 */
async function startFresh(
  path: string, reason: string, what: string, stamp: number, salvaging: boolean,
  open: () => Promise<FileStore>, log: Logger,
): Promise<RecoveredStore> {
  const { movedTo, companions } = await moveAside(path, `${path}.corrupt-${corruptStamp(stamp)}`, reason);
  const withThem = companions.length > 0 ? ` (with its ${companions.join(', ')})` : '';
  const store = await open();
  // Whatever can still be read of a damaged file goes into the fresh database: a bad page
  // costs the entries on it, not the whole greylist.
  const rows = salvaging ? await salvage(movedTo, store) : 0;
  // A commit that fails here (a full disk) keeps the entries queued for the next one.
  await store.flush().catch(() => undefined);
  const kept = rows > 0 ? ` and copied into it the ${rows} entr${rows === 1 ? 'y' : 'ies'} that could still be read` : '';
  log.error(`database ${path} ${what}; moved it to ${movedTo}${withThem}, started a fresh database${kept}`);
  return { store, movedTo, salvaged: rows };
}

/**
 * Copies the entries still readable in the moved file `movedTo` into `store`, except the keys
 * in `have` (already copied from a better source); how many. SQL
 * reads first, around the damage. When that could not reach every row (or could not open the
 * table at all: a damaged page 1 or root page), the pages themselves are scanned (pages.ts) and
 * the keys SQL did not deliver are added: SQL's row is the live one, the page scan may also
 * find stale copies on freed pages.
 */
async function salvage(movedTo: string, store: Store, have: ReadonlySet<string> = new Set()): Promise<number> {
  const delivered = new Set<string>(have);
  let rows = 0;
  const { complete } = await salvageEntries(movedTo, (batch) => {
    for (const e of batch) {
      if (delivered.has(e.key)) continue;
      store.put(e);
      delivered.add(e.key);
      rows++;
    }
  });
  if (complete) return rows;
  const scan = await scanPagesFile(movedTo).catch(() => undefined);
  // salvageEntries refuses a newer pfgrey's file; an intact header tells the scan the same.
  if (!scan || (scan.userVersion ?? 0) > SCHEMA_VERSION) return rows;
  let added = 0;
  for (const e of scan.entries) {
    if (delivered.has(e.key)) continue;
    store.put(e);
    // A commit per batch keeps the store's queue, a second copy of every entry, short.
    if (++added % DEFAULTS.commitBatch === 0) await store.flush().catch(() => undefined);
  }
  return rows + added;
}

/**
 * Moves `from` to `to` unless `to` exists; false when it does. A hard link claims the new
 * name atomically (it fails rather than replace); where the file system has no hard links, a
 * check and a rename do.
 */
async function moveNoClobber(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EMLINK') throw err;
    if (await exists(to)) return false;
    await rename(from, to);
    return true;
  }
  await unlink(from);
  return true;
}

/** Moves the database and its companions aside under the first free name from `base`. */
async function moveAside(
  path: string, base: string, reason: string, { companionsOnly = false } = {},
): Promise<{ movedTo: string; companions: string[] }> {
  try {
    const present: string[] = [];
    for (const sfx of COMPANIONS) if (await exists(path + sfx)) present.push(sfx);
    for (let n = 0; n <= MAX_SUFFIX; n++) {
      const target = n === 0 ? base : `${base}-${n}`;
      // Every name this move needs must be free, so the moved files keep one name between them.
      let free = true;
      for (const sfx of ['', ...COMPANIONS]) if (await exists(target + sfx)) free = false;
      if (!free || (!companionsOnly && !(await moveNoClobber(path, target)))) continue;
      for (const sfx of present) {
        if (!(await exists(path + sfx))) continue; // SQLite removed it meanwhile
        if (!(await moveNoClobber(path + sfx, target + sfx))) throw new Error(`${target + sfx} appeared while moving`);
      }
      return { movedTo: target, companions: present };
    }
    throw new Error(`${base} and ${MAX_SUFFIX} numbered variants exist already`);
  } catch (err) {
    throw new PfgreyError('E_DB_OPEN',
      `${path}: ${reason}, and it cannot be moved aside: ${systemErrorText(err)}`, { cause: err });
  }
}
