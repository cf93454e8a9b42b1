// `pfgrey explain IP HELO FROM TO`: what weighted greylisting would decide for a first attempt
// with this client, HELO, sender and recipient, and why: the same checks, weights and
// thresholds as `pfgrey run --weighted` and `pfgrey policy --weighted` (the same options), and
// the same lines that -v logs for a real decision. Nothing is written anywhere; with --db the
// known-good-sender memory is read from that database.

import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { PfgreyError } from '../errors.js';
import { goodKnown, knownGoodKey, unangled } from '../grey/rules.js';
import { GOOD_PREFIX } from '../grey/entry.js';
import { controlEscaper } from '../log.js';
import { openDatabase, storeKind } from '../store/open.js';
import { explain, judge, withKnownGood } from '../weighted/score.js';
import { startWeighting, WEIGHTED_OPTIONS, weightedConfig } from '../weighted/options.js';
import { helpText, usageError } from './args.js';
import type { CliIO } from './io.js';

export const EXPLAIN_USAGE =
  'usage: pfgrey explain [--greylist-threshold n] [--trap-threshold n] [--dnsbl zone[=w][:codes] ...]\n' +
  '           [--dnswl zone[=w][:codes] ...] [--resolver host[:port] ...] [--generic-rdns file]\n' +
  '           [--no-spf] [--hostname name] [--db path|url] ip helo from to';

const OPTIONS = {
  ...WEIGHTED_OPTIONS,
  hostname: { type: 'string' },
  db: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The arguments are a client's text to be tried out: a control character in them is shown as `\xHH`, not sent to the terminal. */
const printable = controlEscaper();

export async function explainCommand(argv: string[], io: CliIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw usageError('explain', err, EXPLAIN_USAGE);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(helpText('explain', EXPLAIN_USAGE));
    return 0;
  }
  if (positionals.length !== 4) {
    throw new PfgreyError('E_USAGE', `expected four arguments (ip helo from to), got ${positionals.length}\n${EXPLAIN_USAGE}`);
  }
  const [ip, helo, from, to] = positionals as [string, string, string, string];
  if (net.isIP(ip) === 0) throw new PfgreyError('E_BAD_ADDRESS', `${JSON.stringify(ip)} is not an IP address`);
  const cfg = weightedConfig({ ...values, weighted: true }, [os.hostname(), ...(values.hostname ? [values.hostname] : [])])!;
  const sender = unangled(from);
  const rcpt = unangled(to);

  // The known-good memory, read from the database named on the command line (or PFGREY_DB).
  let knownLine: string | undefined;
  let known: string | undefined;
  const dbPath = values.db ?? (io.env.PFGREY_DB || undefined);
  const good = knownGoodKey(sender, ip);
  if (dbPath !== undefined && good !== undefined) {
    if (storeKind(dbPath) === 'sqlite' && !existsSync(dbPath)) {
      knownLine = `known-good memory not read: ${dbPath} does not exist`;
    } else {
      const store = await openDatabase(dbPath, { readonly: true });
      try {
        const entry = (await store.getMany([good])).get(good);
        if (goodKnown(entry, Date.now())) known = good.slice(GOOD_PREFIX.length);
      } finally {
        await store.close();
      }
    }
  }

  const weighting = await startWeighting(cfg);
  try {
    const score = await weighting.stage.score({ ip, helo, sender, rcpt });
    const full = known !== undefined ? withKnownGood(score, known) : score;
    const out = [`${ip} helo ${JSON.stringify(helo)} from <${sender}> to <${rcpt}>`, ...explain(full, cfg.settings, true)];
    if (knownLine) out.push(`  ${knownLine}`);
    io.stdout.write(`${out.map(printable).join('\n')}\n`);
    // The exit status says the decision, for scripts: 0 accept, 2 greylist, 3 trap.
    const j = judge(full, cfg.settings);
    return j === 'accept' ? 0 : j === 'greylist' ? 2 : 3;
  } finally {
    weighting.close();
  }
}
