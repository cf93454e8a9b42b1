// The stores a test of the core or of the store interface runs against, each test once per
// backend: the in-memory reference and SQLite in a temporary directory.

import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { MemoryStore } from '../../src/store/memory.js';
import { openStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from './daemon.js';

export const backends: Record<string, (t: ExecutionContext) => Promise<Store>> = {
  memory: async () => new MemoryStore(),
  sqlite: async (t) => {
    const store = await openStore(path.join(await tempDir(t), 'pfgrey.db'), { create: true });
    t.teardown(() => store.close());
    return store;
  },
};
