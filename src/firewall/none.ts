import type { Logger } from '../log.js';
import { checkTableName, tableLines } from './pf.js';
import type { Firewall } from './types.js';

/** How many addresses a log line names before it only counts the rest. */
const LIST_MAX = 10;

/**
 * A firewall that only remembers and reports: for hosts without pf (development, tests, or a
 * site that reads the whitelist some other way). It refuses what pf would refuse, so a bug
 * does not hide behind `--firewall none`.
 */
export function noneFirewall(log: Logger): Firewall {
  const tables = new Map<string, Set<string>>();

  const check = (table: string, addrs: readonly string[]): void => {
    checkTableName(table);
    tableLines(addrs);
  };
  const tableOf = (table: string): Set<string> => {
    let set = tables.get(table);
    if (!set) tables.set(table, (set = new Set()));
    return set;
  };
  const report = (table: string, what: string): void => {
    const held = [...tableOf(table)];
    log.info(`firewall none: ${what}table <${table}> would now hold ` +
      `${held.length} address${held.length === 1 ? '' : 'es'}${listing(held)}`);
  };

  return {
    name: 'none',
    // Each says what it changed, once: the sync re-asserts an unchanged table at every scan,
    // and a line per scan saying nothing new would bury the lines that do.
    async replace(table, addrs) {
      check(table, addrs);
      const old = tables.get(table);
      const next = new Set(addrs);
      if (old !== undefined && old.size === next.size && [...next].every((a) => old.has(a))) return;
      tables.set(table, next);
      report(table, '');
    },
    async add(table, addrs) {
      check(table, addrs);
      const set = tableOf(table);
      const fresh = [...new Set(addrs)].filter((a) => !set.has(a));
      for (const a of fresh) set.add(a);
      if (fresh.length > 0) report(table, `added ${fresh.length}${named(fresh)}; `);
    },
    async delete(table, addrs) {
      check(table, addrs);
      const set = tableOf(table);
      const gone = [...new Set(addrs)].filter((a) => set.has(a));
      for (const a of gone) set.delete(a);
      if (gone.length > 0) report(table, `deleted ${gone.length}${named(gone)}; `);
    },
    async show(table) {
      checkTableName(table);
      return [...(tables.get(table) ?? [])];
    },
  };
}

function listing(addrs: readonly string[]): string {
  if (addrs.length === 0) return '';
  return `: ${addrs.slice(0, LIST_MAX).join(', ')}${more(addrs.length)}`;
}

function named(addrs: readonly string[]): string {
  if (addrs.length === 0) return '';
  return ` (${addrs.slice(0, LIST_MAX).join(', ')}${more(addrs.length)})`;
}

function more(n: number): string {
  return n > LIST_MAX ? `, … and ${n - LIST_MAX} more` : '';
}
