// The one catalogue of errors pfgrey reports. Each has a stable code so scripts and tests can
// match on it, and a message that names what is wrong and where; the CLI prints the message on
// one line and never a stack trace.

export const ERRORS = {
  E_USAGE: 'usage error',
  E_BAD_OPTION: 'bad option value',
  E_BAD_DURATION: 'bad duration',
  E_BAD_ADDRESS: 'bad address',
  E_DB_OPEN: 'cannot open database',
  E_DB_CORRUPT: 'database is corrupt',
  E_DB_SCHEMA: 'database schema is newer than this pfgrey',
  E_DB_WRITE: 'database write failed',
  E_IMPORT: 'bad spamdb line',
  E_LISTEN: 'cannot listen',
  E_FIREWALL: 'firewall update failed',
  E_FIREWALL_TIMEOUT: 'firewall command timed out',
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class PfgreyError extends Error {
  readonly code: ErrorCode;
  /** Exit status the CLI uses when this error ends the program. */
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PfgreyError';
    this.code = code;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function isPfgreyError(err: unknown): err is PfgreyError {
  return err instanceof PfgreyError;
}

/** The message of anything thrown, for a one-line report. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
