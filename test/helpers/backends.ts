// The stores a test of the core or of the store interface runs against, each test once per
// backend: the in-memory reference, SQLite in a temporary directory, and PostgreSQL (a database
// of its own on a throwaway cluster, test/helpers/postgres.ts) where it is installed or required.

import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { MemoryStore } from '../../src/store/memory.js';
import { openPostgresStore } from '../../src/store/postgres.js';
import { openStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from './daemon.js';
import { postgresAvailable, testDatabase } from './postgres.js';

export const backends: Record<string, (t: ExecutionContext) => Promise<Store>> = {
  memory: async () => new MemoryStore(),
  sqlite: async (t) => {
    const store = await openStore(path.join(await tempDir(t), 'pfgrey.db'), { create: true });
    t.teardown(() => store.close());
    return store;
  },
  ...(postgresAvailable ? {
    postgres: async (t: ExecutionContext) => {
      const url = await testDatabase(t);
      if (url === undefined) throw new Error('PostgreSQL is required here and missing');
      const store = await openPostgresStore(url);
      t.teardown(() => store.close());
      return store;
    },
  } : {}),
};
