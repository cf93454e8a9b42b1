// Which store a --db value names, for every command. A path is an SQLite file (sqlite.ts). A
// postgres:// or postgresql:// URL names a PostgreSQL database that several MX hosts share
// (postgres.ts); `postgresql://` alone takes every connection setting from libpq's environment
// variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE). Nothing outside store/ opens a
// backend directly: commands come through here.

import type { Logger } from '../log.js';
import { openPostgresStore, PostgresMaintenance, redactUrl } from './postgres.js';
import { openStoreRecovering, type RecoveredStore, type RecoverOptions } from './recover.js';
import { openStore, type OpenStoreOptions } from './sqlite.js';
import type { FileStore } from './types.js';

export type StoreKind = 'sqlite' | 'postgres';

export function storeKind(db: string): StoreKind {
  return /^postgres(ql)?:\/\//i.test(db) ? 'postgres' : 'sqlite';
}

/** The database as messages and output may show it: a URL's password as ***. */
export function shownDb(db: string): string {
  return storeKind(db) === 'postgres' ? redactUrl(db) : db;
}

/** Opens the store `db` names (see openStore and openPostgresStore for the options and errors). */
export async function openDatabase(db: string, opts: OpenStoreOptions = {}): Promise<FileStore> {
  if (storeKind(db) === 'postgres') {
    const { create: _create, ...rest } = opts;
    return openPostgresStore(db, rest);
  }
  return openStore(db, opts);
}

/**
 * Opens the store of a long-running door (pfgrey policy): an SQLite file that cannot be used is
 * moved aside and replaced (recover.ts); a PostgreSQL database has no file to move, and its
 * tables are made when missing.
 */
export async function openServiceStore(db: string, opts: RecoverOptions, log: Logger): Promise<RecoveredStore> {
  if (storeKind(db) === 'postgres') return { store: await openDatabase(db, opts) };
  return openStoreRecovering(db, opts, log);
}

/**
 * Of several hosts sharing one database, which one runs the scan's maintenance (expire,
 * promote) this round; undefined for a file, which has one daemon.
 */
export function maintenanceElection(db: string, log: Logger): PostgresMaintenance | undefined {
  return storeKind(db) === 'postgres' ? new PostgresMaintenance(db, log) : undefined;
}
