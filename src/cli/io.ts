import type { Readable, Writable } from 'node:stream';
import { DEFAULTS } from '../config/defaults.js';

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

/** The database every command uses: --db, else $PFGREY_DB, else the system's default. */
export function databasePath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? (env.PFGREY_DB || DEFAULTS.dbPath);
}
