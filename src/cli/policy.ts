// `pfgrey policy`: a Postfix policy server (check_policy_service inet:… or unix:…, or a
// spawn(8) service on stdin/stdout with --stdio) answering from the greylist core. Its
// database may be the one `pfgrey run` uses: it does not take the daemon's lock, and writes
// each batch atomically (Store.update), as pfgrey db and logd do.

import { parseArgs } from 'node:util';
import { DEFAULTS } from '../config/defaults.js';
import { parseDuration } from '../config/duration.js';
import { describe, PfgreyError } from '../errors.js';
import { Greylister } from '../grey/greylister.js';
import { commandLogger, parseLogTarget } from '../log.js';
import { PolicyServer } from '../policy/server.js';
import { openDatabase } from '../store/open.js';
import type { Store } from '../store/types.js';
import { databasePath, type CliIO } from './io.js';
import { runService } from './service.js';

export const POLICY_USAGE =
  'usage: pfgrey policy [--inet [host:]port] [--unix path] [--stdio] [--db path] [--delay d]\n' +
  '           [--greylist-action action] [--greylist-text text] [--no-reuse] [--log auto|stderr|syslog] [-d]';

const OPTIONS = {
  inet: { type: 'string', multiple: true },
  unix: { type: 'string', multiple: true },
  stdio: { type: 'boolean' },
  db: { type: 'string' },
  delay: { type: 'string' },
  'greylist-action': { type: 'string' },
  'greylist-text': { type: 'string' },
  'no-reuse': { type: 'boolean' },
  log: { type: 'string' },
  d: { type: 'boolean', short: 'd' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `[host:]port`, postgrey's --inet. */
function inetAddress(v: string): { host: string; port: number } {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new PfgreyError('E_BAD_ADDRESS', `--inet ${v}: expected [host:]port`);
  return { host: (m[1] ?? DEFAULTS.policyHost).replace(/^\[|\]$/g, ''), port };
}

export async function policyCommand(argv: string[], io: CliIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new PfgreyError('E_USAGE', `${describe(err).split('\n')[0]}\n${POLICY_USAGE}`);
  }
  if (values.help) {
    io.stdout.write(`${POLICY_USAGE}\n`);
    return 0;
  }
  const target = parseLogTarget(values.log ?? (values.stdio ? 'syslog' : 'auto'));
  if (!target) throw new PfgreyError('E_BAD_OPTION', `--log ${values.log}: expected auto, stderr or syslog`);
  const delay = values.delay === undefined ? DEFAULTS.policyDelay : parseDuration(values.delay, '--delay');
  const inet = (values.inet ?? []).map(inetAddress);
  const unix = values.unix ?? [];
  if (!values.stdio && inet.length === 0 && unix.length === 0) inet.push({ host: DEFAULTS.policyHost, port: DEFAULTS.policyPort });
  // Under spawn(8) stdout is the answer channel: nothing else may be written there.
  const log = commandLogger({ target, debug: values.d ?? false, ident: 'pfgrey-policy', stderr: io.stderr });
  const dbPath = databasePath(values.db, io.env);
  let store: Store | undefined;
  let server: PolicyServer | undefined;
  let ended: () => void = () => {};
  const finished = new Promise<void>((resolve) => (ended = resolve));
  return runService({
    start: async () => {
      store = await openDatabase(dbPath, { create: true, log });
      const core = new Greylister({
        store, log, atomic: true,
        times: { passTime: delay, greyExpiry: DEFAULTS.greyExpiry, whiteExpiry: DEFAULTS.whiteExpiry, trapExpiry: DEFAULTS.trapExpiry },
      });
      server = new PolicyServer({
        core, log,
        greylistAction: values['greylist-action'] ?? DEFAULTS.policyGreylistAction,
        greylistText: values['greylist-text'] ?? DEFAULTS.policyGreylistText,
        noReuse: values['no-reuse'] ?? false,
      });
      for (const where of inet) {
        const a = await server.listen(where);
        log.warning(`listening for policy requests on ${typeof a === 'string' ? a : `${a.address}:${a.port}`}.`);
      }
      for (const path of unix) {
        await server.listen({ path });
        log.warning(`listening for policy requests on ${path}.`);
      }
      // spawn(8): one request stream on stdin/stdout; EOF ends the process.
      if (values.stdio) server.serve(io.stdin, io.stdout, () => ended());
    },
    stop: async () => {
      await server?.close();
      await store?.close();
    },
    finished: values.stdio ? () => finished : undefined,
  }, { log });
}
