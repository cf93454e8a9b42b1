// What pfgrey checks about its database files before SQLite opens them. pfgrey runs as root
// until it has opened the database (rc.d and `npm start` start it so) and the database lives in
// a directory that belongs to the unprivileged user it then becomes. That user, or anyone who
// can write the directory, could plant a symbolic link or a file of their own where the
// database or one of SQLite's companions (-wal, -shm, -journal) will be opened: root would then
// write SQLite pages into the link's target and hand it to the unprivileged user. So, as the
// README's security section says:
// - the directory's own path is resolved once (a symlinked /var is the administrator's choice),
//   and SQLite then opens the file with SQLITE_OPEN_NOFOLLOW: no symbolic link is followed for
//   the database or its companions;
// - the database and each companion that exists must be a plain file, not a link (symbolic or
//   hard), and not writable by everyone; in a directory that others may write too (group or world), it must
//   also belong to root, to the user running pfgrey or to the directory's owner;
// - a directory that everyone may write (without the sticky bit) is refused: anyone could
//   replace the file; with the sticky bit it is allowed with a warning, as the companions
//   checks above still catch files others placed.

import { lstat, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PfgreyError, systemErrorText } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * Files SQLite keeps next to a database. A stale -wal or -journal left beside a fresh file would
 * be replayed into it, so they move with the database; -shm is only an index of the -wal.
 */
export const COMPANIONS = ['-wal', '-shm', '-journal'] as const;

/** open(2) flag of SQLite 3.31 and later: fail rather than follow a symbolic link. */
export const SQLITE_OPEN_NOFOLLOW = 0x01000000;

const S_ISVTX = 0o1000;

function unsafe(path: string, why: string): PfgreyError {
  return new PfgreyError('E_DB_UNSAFE', `${path}: ${why}; refusing to open it`);
}

function missingDirectory(path: string, dir: string, err: unknown): PfgreyError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? `directory ${dir} does not exist` : code === 'ENOTDIR'
    ? `${dir} is not a directory` : `cannot reach directory ${dir}: ${systemErrorText(err)}`;
  return new PfgreyError('E_DB_OPEN', `cannot open ${path}: ${why}`, { cause: err });
}

/**
 * The path SQLite is given for `path`: its directory resolved (symbolic links there are the
 * administrator's, and SQLITE_OPEN_NOFOLLOW refuses a link anywhere in the path), its file
 * name as it is. Throws E_DB_OPEN naming a directory that does not exist.
 */
export async function resolveDatabasePath(path: string): Promise<string> {
  const dir = dirname(path);
  try {
    return join(await realpath(dir), basename(path));
  } catch (err) {
    throw missingDirectory(path, dir, err);
  }
}

/**
 * Checks the directory of `path` (already resolved), the database and its companions as the
 * header says. `shown` is the path as the user gave it, for messages.
 */
export async function checkDatabaseFiles(path: string, shown: string, log: Logger, euid = process.geteuid?.() ?? 0): Promise<void> {
  const dir = dirname(path);
  let d;
  try {
    d = await stat(dir);
  } catch (err) {
    throw missingDirectory(shown, dirname(shown), err);
  }
  if (!d.isDirectory()) throw missingDirectory(shown, dirname(shown), Object.assign(new Error(), { code: 'ENOTDIR' }));
  if ((d.mode & 0o002) !== 0) {
    if ((d.mode & S_ISVTX) === 0) {
      throw unsafe(shown, `its directory ${dirname(shown)} may be written by every user, who could replace the database (chmod o-w it, or use a directory of pfgrey's own)`);
    }
    log.warning(`${shown}: its directory ${dirname(shown)} may be written by every user; keep the database in a directory of pfgrey's own`);
  }
  // Who may have placed a file here: root, the directory's owner, and, when the directory lets
  // its group or everyone write, anyone in that group or anyone at all. Only in that last case
  // does the file's owner tell whether it is to be trusted.
  const shared = (d.mode & 0o022) !== 0;
  const owners = new Set([0, euid, d.uid]);
  for (const sfx of ['', ...COMPANIONS]) {
    const file = path + sfx;
    const name = shown + sfx;
    let st;
    try {
      st = await lstat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new PfgreyError('E_DB_OPEN', `cannot open ${name}: ${systemErrorText(err)}`, { cause: err });
    }
    if (st.isSymbolicLink()) throw unsafe(name, 'is a symbolic link, which pfgrey never follows for its database');
    if (st.isDirectory()) throw new PfgreyError('E_DB_OPEN', `cannot open ${name}: it is a directory`);
    if (!st.isFile()) throw unsafe(name, 'is not a plain file');
    // A hard link is another file under a second name (a user can link a file of root's on the
    // BSDs), and O_NOFOLLOW does not see it.
    if (st.nlink > 1) throw unsafe(name, `has ${st.nlink} names (hard links), so it may be another file as well`);
    if (shared && !owners.has(st.uid)) {
      throw unsafe(name, `belongs to uid ${st.uid}, neither root, this user (uid ${euid}) nor the directory's owner (uid ${d.uid}), so someone else placed it`);
    }
    if ((st.mode & 0o002) !== 0) throw unsafe(name, 'may be written by every user (chmod o-w it once you trust its contents)');
  }
}

/** Whether anything, a link included, is at `file`; throws for anything but its absence. */
export async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
