// The queue of a group-committing store (SQLite, PostgreSQL): writes wait here, by key, until
// their commit, and every read sees them over what the database returns.

import type { Entry } from './types.js';

/** A queued conditional delete (Store.deleteIf): the row it may delete, as the scan read it. */
export interface DeleteIf {
  readonly expected: Entry;
}

/** A queued write: an insert-or-replace, a delete (null), or a conditional delete. */
export type QueuedWrite = Entry | null | DeleteIf;

export const isDeleteIf = (w: QueuedWrite | undefined): w is DeleteIf => w != null && 'expected' in w;

/** What reads see of a queued write: a conditional delete reads as deleted, like a delete. */
export function queuedEntry(w: QueuedWrite | undefined): Entry | undefined {
  return w == null || isDeleteIf(w) ? undefined : { ...w };
}

/** Key order by code unit: keys are byte strings, so this is byte order, the databases' order. */
export const byKey = (a: Entry, b: Entry): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * getMany over a queue: the keys with a queued write are answered from it, the rest by `fetch`
 * (the committed rows among them). A write queued while `fetch` ran is newer than its row.
 */
export async function overlayKeys(
  pending: ReadonlyMap<string, QueuedWrite>, keys: readonly string[], fetch: (wanted: string[]) => Promise<Entry[]>,
): Promise<Map<string, Entry>> {
  const found = new Map<string, Entry>();
  const wanted: string[] = [];
  for (const key of new Set(keys)) {
    if (pending.has(key)) {
      const e = queuedEntry(pending.get(key));
      if (e) found.set(key, e);
    } else {
      wanted.push(key);
    }
  }
  if (wanted.length === 0) return found;
  const rows = await fetch(wanted);
  for (const r of rows) if (!pending.has(r.key)) found.set(r.key, r);
  for (const k of wanted) {
    const e = queuedEntry(pending.get(k));
    if (e) found.set(k, e);
  }
  return found;
}

/** The committed `rows` of a key range starting with `prefix`, with the queue's writes to it, in key order. */
export function overlayRange(pending: ReadonlyMap<string, QueuedWrite>, rows: Entry[], prefix: string): Entry[] {
  if (pending.size === 0) return rows;
  const found = new Map(rows.map((r) => [r.key, r] as const));
  for (const [key, w] of pending) {
    if (!key.startsWith(prefix)) continue;
    const e = queuedEntry(w);
    if (e) found.set(key, e);
    else found.delete(key);
  }
  return [...found.values()].sort(byKey);
}
