// `pfgrey stats [--http HOST:PORT] [--db PATH] [--json]`: the status page's numbers on the
// command line. It asks the running daemon's status endpoint (`--http`, else $PFGREY_HTTP,
// else 127.0.0.1:8027, the port the manual suggests for `pfgrey run --http`); when no daemon
// answers there, it reads the database itself and prints the entries it holds, which is all a
// file can tell (held connections, pushes and rates live in the daemon). The first line says
// which of the two answered.

import { parseArgs } from 'node:util';
import { DEFAULTS } from '../config/defaults.js';
import { describe, PfgreyError } from '../errors.js';
import { entryType } from '../grey/entry.js';
import { ago, POLICY_OUTCOMES, pushText, type Status } from '../http/activity.js';
import { formatHttpAddress, type HttpAddress, parseHttpAddress } from '../http/server.js';
import { openDatabase, shownDb } from '../store/open.js';
import { databasePath, type CliIO } from './io.js';
import { helpText, usageError } from './args.js';

export const STATS_USAGE = 'usage: pfgrey stats [--http host:port] [--db path|url] [--json]';

const OPTIONS = {
  http: { type: 'string' },
  db: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** How long the daemon has to answer before the database is read instead. */
const ASK_TIMEOUT = 3000;

/** What the database holds now, by type (entries whose expiry has not passed). */
export interface DatabaseCounts {
  grey: number;
  white: number;
  trapped: number;
  spamtraps: number;
  policy: number;
  awl: number;
  /** Known-good senders of weighted greylisting. */
  good: number;
}

async function askDaemon(at: HttpAddress): Promise<Status> {
  const res = await fetch(`http://${formatHttpAddress(at)}/status.json`, { signal: AbortSignal.timeout(ASK_TIMEOUT) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return await res.json() as Status;
}

/** Why fetch failed, in a few words: `connection refused`, not `fetch failed`. */
function whyNot(err: unknown): string {
  const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (err instanceof Error && err.name === 'TimeoutError') return `no answer within ${ASK_TIMEOUT / 1000} s`;
  return cause?.code ?? describe(err);
}

async function countDatabase(path: string, now: number): Promise<DatabaseCounts> {
  const store = await openDatabase(path, { readonly: true });
  const counts: DatabaseCounts = { grey: 0, white: 0, trapped: 0, spamtraps: 0, policy: 0, awl: 0, good: 0 };
  try {
    for await (const chunk of store.chunks(DEFAULTS.scanChunk)) {
      for (const e of chunk) {
        const type = entryType(e);
        // A spamtrap does not expire; anything else past its expiry waits for the scan to go.
        if (type !== 'SPAMTRAP' && e.expire <= now) continue;
        const key = ({ GREY: 'grey', WHITE: 'white', TRAPPED: 'trapped', SPAMTRAP: 'spamtraps', POLICY: 'policy', AWL: 'awl', GOOD: 'good' } as const)[type];
        counts[key]++;
      }
    }
  } finally {
    await store.close();
  }
  return counts;
}

/** The daemon's status as a few lines, like the status page's. */
export function formatStatus(s: Status, at: string): string {
  const lines = [`from the daemon at ${at}: pfgrey ${s.command} ${s.version}, up ${ago(s.now - s.startedAt).replace(/ ago$/, '')}`];
  if (s.held) {
    const h = s.held;
    lines.push(`held connections: ${h.grey + h.black + h.trapped} (grey ${h.grey}, black ${h.black}, trapped ${h.trapped})`);
  }
  lines.push(s.counts
    ? `entries (scan ${ago(s.now - s.counts.at)}): grey ${s.counts.grey}, white ${s.counts.white}, trapped ${s.counts.trapped}, spamtraps ${s.counts.spamtraps}`
    : 'entries: no scan yet');
  const t = s.totals;
  lines.push(`since start: ${s.held ? `tuples ${t.tuples}, ` : ''}promotions ${t.promotions}, traps ${t.traps}, expiries ${t.expiries}`);
  if (s.firewall) {
    lines.push(`firewall ${s.firewall.name}: ${s.lastPush ? `last push ${pushText(s.lastPush, s.now)}` : `no push to <${s.firewall.table}> yet`}; ` +
      `${t.pushes} pushes, ${t.pushFailures} failed`);
  }
  const answered = POLICY_OUTCOMES.filter((o) => s.policy[o] > 0);
  if (s.command === 'policy' || answered.length > 0) {
    lines.push(`policy requests: ${answered.length ? answered.map((o) => `${o} ${s.policy[o]}`).join(', ') : 'none'}`);
  }
  lines.push(`store: ${t.commits} commits, ${t.commitFailures} failed${s.backlog !== undefined ? `; backlog ${s.backlog}` : ''}`);
  if (s.lists) lines.push(`lists: ${s.lists.length ? s.lists.map((l) => `${l.tag} (${l.blocks} blocks)`).join(', ') : 'none'}`);
  return `${lines.join('\n')}\n`;
}

export async function statsCommand(argv: string[], io: CliIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw usageError('stats', err, STATS_USAGE);
  }
  if (values.help) {
    io.stdout.write(helpText('stats', STATS_USAGE));
    return 0;
  }
  const flag = values.http !== undefined ? '--http' : io.env.PFGREY_HTTP ? 'PFGREY_HTTP' : 'the default';
  const at = parseHttpAddress(values.http ?? (io.env.PFGREY_HTTP || DEFAULTS.httpAddress), flag);
  const where = formatHttpAddress(at);
  let why: string;
  try {
    const status = await askDaemon(at);
    if (values.json) {
      io.stdout.write(`${JSON.stringify({ source: 'daemon', address: where, ...status, samples: undefined, sampleEvery: undefined })}\n`);
    } else {
      io.stdout.write(formatStatus(status, where));
    }
    return 0;
  } catch (err) {
    why = whyNot(err);
  }
  const db = databasePath(values.db, io.env);
  const now = Date.now();
  let counts: DatabaseCounts;
  try {
    counts = await countDatabase(db, now);
  } catch (err) {
    throw new PfgreyError('E_DB_OPEN', `no daemon answered at ${where} (${why}), and the database cannot be read: ${describe(err)}`, { cause: err });
  }
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ source: 'database', database: shownDb(db), daemon: { address: where, error: why }, now, counts })}\n`);
    return 0;
  }
  io.stdout.write(`from the database ${shownDb(db)} (no daemon answered at ${where}: ${why}); held connections, pushes and rates need the daemon's --http\n` +
    `entries: grey ${counts.grey}, white ${counts.white}, trapped ${counts.trapped}, spamtraps ${counts.spamtraps}` +
    `${counts.policy + counts.awl > 0 ? `, policy triplets ${counts.policy}, auto-whitelist counts ${counts.awl}` : ''}${counts.good > 0 ? `, known-good senders ${counts.good}` : ''}\n`);
  return 0;
}
