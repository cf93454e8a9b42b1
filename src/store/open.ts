// Which store a --db value names, for every command. A path is an SQLite file (sqlite.ts). A
// postgres:// or postgresql:// URL names a PostgreSQL database that several MX hosts share;
// that backend is not built yet, and such a value is refused with that said, rather than taken
// for a file name. Nothing outside store/ opens a backend directly: commands come through here.

import { PfgreyError } from '../errors.js';
import { openStore, type OpenStoreOptions } from './sqlite.js';
import type { FileStore } from './types.js';

export type StoreKind = 'sqlite' | 'postgres';

export function storeKind(db: string): StoreKind {
  return /^postgres(ql)?:\/\//i.test(db) ? 'postgres' : 'sqlite';
}

/** Throws E_DB_OPEN for a --db value no backend of this pfgrey can open. */
export function assertSupported(db: string): void {
  if (storeKind(db) === 'postgres') {
    throw new PfgreyError('E_DB_OPEN', 'a PostgreSQL database (--db postgres://…) is not supported by this pfgrey yet; ' +
      'give --db the path of an SQLite file');
  }
}

/** Opens the store `db` names (see openStore for the options and errors). */
export async function openDatabase(db: string, opts: OpenStoreOptions = {}): Promise<FileStore> {
  assertSupported(db);
  return openStore(db, opts);
}
