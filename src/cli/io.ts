import type { Readable, Writable } from 'node:stream';
import { DEFAULTS } from '../config/defaults.js';
import { describe, isPfgreyError } from '../errors.js';

/** What a subcommand may touch of the outside world; tests pass their own. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: NodeJS.ProcessEnv;
}

export const processIO: CliIO = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
};

/**
 * How every command reports the error that ends it: its one-line message and exit status, or,
 * for anything that is not a PfgreyError (a bug), `internal error: …` and 70 (EX_SOFTWARE).
 */
export function failure(err: unknown): { message: string; status: number } {
  if (isPfgreyError(err)) return { message: err.message, status: err.exitCode };
  return { message: `internal error: ${describe(err)}`, status: 70 };
}

/** The database every command uses: --db, else $PFGREY_DB, else the system's default. */
export function databasePath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? (env.PFGREY_DB || DEFAULTS.dbPath);
}
