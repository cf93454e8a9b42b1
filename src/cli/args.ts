// What every subcommand shares about its command line: one style for a mistake in it
// ("unknown option --x", "option -c needs a value (-c maxcon)"), then the usage, and --help's
// page, which lists each option in one line with the first sentence of its man page entry
// (src/cli/help-text.ts, made from man/pfgrey.8 by scripts/gen-help.js).

import { PfgreyError, describe } from '../errors.js';
import { HELP } from './help-text.js';

/** The flag of a parseArgs message ("Option '-c, --c <value>' …" → "-c"). */
function flagIn(message: string): string {
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? '';
  // parseArgs names a short option with its long twin (`-c, --c <value>`): the user typed -c.
  return quoted.split(/[ ,]/)[0] ?? quoted;
}

/** The man page's spelling of a flag with its value (`-c maxcon`), if the command lists it. */
function withValue(command: string, flag: string): string | undefined {
  for (const [flags] of HELP[command] ?? []) {
    for (const one of flags.split(', ')) {
      if (one === flag || one.startsWith(`${flag} `)) return one;
    }
  }
  return undefined;
}

/** One short clause for a parseArgs error, the same in every subcommand. */
export function argumentProblem(command: string, err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = describe(err);
  const flag = flagIn(message);
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${flag}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      if (/does not take an argument/.test(message)) return `option ${flag} takes no value`;
      const spelled = withValue(command, flag);
      // `pfgrey run -h` is spamd's -h hostname, not a request for help.
      const help = flag === '-h' ? '; for the usage, --help' : '';
      return `option ${flag} needs a value${spelled && spelled !== flag ? ` (${spelled})` : ''}${help}`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(flag)}`;
    default:
      return message.split('\n')[0]!;
  }
}

/** The usage error to throw: the clause, then the usage lines. */
export function usageError(command: string, err: unknown, usage: string): PfgreyError {
  return new PfgreyError('E_USAGE', `${argumentProblem(command, err)}\n${usage}`);
}

/** `pfgrey COMMAND --help`: the usage, then one line per option, as the man page has them. */
export function helpText(command: string, usage: string): string {
  const entries = HELP[command] ?? [];
  const width = 26;
  const lines = entries.map(([flags, text]) =>
    flags.length < width ? `  ${flags.padEnd(width)}${text}` : `  ${flags}  ${text}`);
  return `${usage}\n\n${lines.join('\n')}\n\nSee pfgrey(8) for more.\n`;
}
