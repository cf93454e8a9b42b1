// The daemon's database, from its first start to its stop: the directory made when missing
// (the README's `npm start` keeps it under ./var), the lock that keeps a second daemon off the
// file, the file opened (a damaged one moved aside, see recover.ts), and on a start that fails
// later (a port already taken) the database this start created removed again, so a failed
// start leaves nothing behind.

import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PfgreyError, systemErrorText } from '../errors.js';
import type { Logger } from '../log.js';
import { COMPANIONS, exists } from './files.js';
import { lockDatabase, type DatabaseLock } from './lock.js';
import { openStoreRecovering, type RecoveredStore, type RecoverOptions } from './recover.js';
import { maintenanceElection, openDatabase, storeKind } from './open.js';
import { refuseBerkeleyDb } from './sqlite.js';

export interface DaemonStore extends RecoveredStore {
  /** Releases the lock; call it once the store is closed. */
  unlock(): Promise<void>;
  /**
   * After a start that failed, with the store closed: removes the database file (and its
   * companions) if this start created it, then releases the lock.
   */
  abandon(): Promise<void>;
  /**
   * A database several daemons share (PostgreSQL): whether this one runs the scan's maintenance
   * this round (Scanner's `maintain`). Undefined for a file, which only one daemon opens.
   */
  maintains?: () => Promise<boolean>;
}

export async function openDaemonStore(path: string, opts: RecoverOptions, log: Logger): Promise<DaemonStore> {
  if (storeKind(path) === 'postgres') {
    const store = await openDatabase(path, opts);
    const election = maintenanceElection(path, log)!;
    return { store, unlock: () => election.close(), abandon: () => election.close(), maintains: () => election.turn() };
  }
  await mkdir(dirname(path), { recursive: true }).catch((err: unknown) => {
    throw new PfgreyError('E_DB_OPEN', `cannot create ${dirname(path)} for the database: ${systemErrorText(err)}`, { cause: err });
  });
  // spamd's own file is refused before anything, the lock file included, is made beside it.
  await refuseBerkeleyDb(path);
  const lock: DatabaseLock | undefined = await lockDatabase(path, log);
  const unlock = async () => lock?.release();
  let recovered: RecoveredStore;
  let created: boolean;
  try {
    created = !(await exists(path));
    recovered = await openStoreRecovering(path, opts, log);
  } catch (err) {
    await unlock();
    throw err;
  }
  return {
    ...recovered,
    unlock,
    abandon: async () => {
      try {
        if (created) for (const sfx of ['', ...COMPANIONS]) await rm(path + sfx, { force: true });
      } finally {
        await unlock();
      }
    },
  };
}
