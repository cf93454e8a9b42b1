#!/usr/bin/env node
// The one `pfgrey` entry: picks the subcommand and turns any error into one line on stderr.

import { VERSION } from '../version.js';
import { PfgreyError, describe } from '../errors.js';
import { controlEscaper } from '../log.js';
import { checkCommand } from './check.js';
import { dbCommand } from './db.js';
import { explainCommand } from './explain.js';
import { logdCommand } from './logd.js';
import { failure, processIO, type CliIO } from './io.js';
import { policyCommand } from './policy.js';
import { runCommand } from './run.js';
import { setupCommand } from './setup.js';
import { statsCommand } from './stats.js';

const USAGE = `usage: pfgrey <command> [options]

commands:
  run     the tarpit and greylisting daemon (spamd's flags; pfgrey run --help)
  db      list and edit the greylist database (spamdb's flags; pfgrey db -h)
  setup   fetch the blacklists of spamd.conf and send them to the daemon (spamd-setup's flags)
  logd    keep WHITE entries fresh from pf's log of passed SMTP connections (spamlogd's flags)
  check   check pf's rules and this system for what would keep mail from flowing
  policy  a Postfix/Exim policy server greylisting from the same database (postgrey's port)
  stats   what the daemon is doing: its status endpoint (--http), else the database's counts
  explain what weighted greylisting would decide for a client, HELO, sender and recipient, and why

options:
  -V, --version   print the version
  -h, --help      this text; pfgrey COMMAND --help lists the command's options, pfgrey(8) says more
`;

/**
 * Node reads arguments as UTF-8 and turns bytes that are not UTF-8 into U+FFFD, so an argument
 * holding one is not what was typed: a key stored from it would differ from the bytes the
 * user meant, and could not be found or deleted with them. Refused for every command, here.
 */
function notUtf8(argv: string[]): PfgreyError | undefined {
  const i = argv.findIndex((a) => a.includes('\ufffd'));
  if (i < 0) return undefined;
  return new PfgreyError('E_USAGE', `argument ${i + 1} is not UTF-8 text: its bytes cannot be passed on as they were typed`);
}

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  const refused = notUtf8(argv);
  if (refused) {
    io.stderr.write(`pfgrey: ${refused.message}\n`);
    return refused.exitCode;
  }
  try {
    switch (command) {
      case 'run':
        return await runCommand(rest, io);
      case 'db':
        return await dbCommand(rest, io);
      case 'setup':
        return await setupCommand(rest, io);
      case 'logd':
        return await logdCommand(rest, io);
      case 'check':
        return await checkCommand(rest, io);
      case 'policy':
        return await policyCommand(rest, io);
      case 'stats':
        return await statsCommand(rest, io);
      case 'explain':
        return await explainCommand(rest, io);
      case '--version':
      case '-V': {
        io.stdout.write(`pfgrey ${VERSION}\n`);
        return 0;
      }
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(USAGE);
        return 0;
      default:
        io.stderr.write(command === undefined ? USAGE : `pfgrey: unknown command "${command}"\n${USAGE}`);
        return 1;
    }
  } catch (err) {
    const { message, status } = failure(err);
    io.stderr.write(`pfgrey ${command}: ${message}\n`);
    return status;
  }
}

// `pfgrey db | head -1` closes our stdout early: that is the reader's choice, not an error.
// Any other write error (a full disk) is one line, and the exit status says it.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  process.stderr.write(`pfgrey: cannot write output: ${describe(err)}\n`);
  process.exit(1);
});
// Where stderr itself fails (a background setup whose logger(1) is gone), there is nobody to
// tell; the command goes on with its work rather than dying half-way.
process.stderr.on('error', () => {});
// A library's process warning (node-postgres about an sslmode it will read differently) is one
// line like every other, not Node's default of a paragraph and a hint about --trace-warnings.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  const text = controlEscaper()(w.message.replace(/\s+/g, ' ').trim());
  process.stderr.write(`pfgrey: warning: ${text.length > 600 ? `${text.slice(0, 600)}…` : text}\n`);
});
// The daemons (run, logd) handle their own bugs, flushing first; any other command says what
// went wrong on one line, not a stack trace.
process.on('uncaughtException', (err) => {
  if (process.listenerCount('uncaughtException') > 1) return;
  process.stderr.write(`pfgrey: internal error: ${describe(err)}\n`);
  process.exit(70);
});

main(process.argv.slice(2), processIO).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`pfgrey: internal error: ${describe(err)}\n`);
    process.exitCode = 70;
  },
);
