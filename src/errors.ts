import { getSystemErrorMap } from 'node:util';

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
  E_DB_SCHEMA: 'database schema version this pfgrey cannot use',
  E_DB_FOREIGN: 'database is in another program\'s format',
  E_DB_WRITE: 'database write failed',
  /** A database server that cannot be reached (PostgreSQL down, a partition): writes wait for it. */
  E_DB_UNREACHABLE: 'database server cannot be reached',
  E_DB_ROW: 'database row that cannot be listed',
  E_DB_UNSAFE: 'database file is not safe to open',
  E_DB_LOCKED: 'database is in use by another pfgrey daemon',
  E_IMPORT: 'bad spamdb line',
  E_POSTGREY_DUMP: 'postgrey dump that cannot be read (db_dump output of postgrey.db or postgrey_clients.db)',
  E_LISTEN: 'cannot listen',
  E_PRIVILEGES: 'cannot drop privileges',
  E_USER: 'no such user to run as, or one that may not be',
  E_UNSUPPORTED: 'option not supported',
  E_FIREWALL: 'firewall update failed',
  E_FIREWALL_TIMEOUT: 'firewall command timed out',
  E_COMMAND: 'command failed',
  E_COMMAND_TIMEOUT: 'command timed out',
  E_SPAMD_CONF: 'bad spamd.conf',
  E_CONFIG_LINE: 'bad config-port line',
  E_FETCH: 'cannot fetch list',
  E_CONFIG_PORT: 'cannot reach the config port',
  E_POLICY_LIST: 'cannot read a whitelist or exempt file',
  E_SYNC_KEY: 'cannot use the sync key file',
  E_SYNC: 'cannot start spamd sync',
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class PfgreyError extends Error {
  readonly code: ErrorCode;
  /** Exit status the CLI uses when this error ends the program. */
  readonly exitCode: number;
  /**
   * What is wrong, without the file or thing it is about that the message starts with, for a
   * caller that words its own line around it (a database moved aside says why): never parsed
   * out of the message.
   */
  readonly detail: string;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; exitCode?: number; detail?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PfgreyError';
    this.code = code;
    this.exitCode = options.exitCode ?? 1;
    this.detail = options.detail ?? message;
  }
}

export function isPfgreyError(err: unknown): err is PfgreyError {
  return err instanceof PfgreyError;
}

/** `connection refused (ECONNREFUSED)` from a Node system error; the message otherwise. */
export function systemErrorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e.errno === 'number') {
    const known = getSystemErrorMap().get(e.errno);
    if (known) return `${known[1]} (${known[0]})`;
  }
  if (e && typeof e.code === 'string') return e.code;
  return e instanceof Error ? e.message : String(err);
}

/**
 * A bug (an exception nobody caught) as one log line: its message and the place it was thrown,
 * for the report, without the stack trace a user should never see.
 */
export function bugReport(err: Error): string {
  const where = err.stack?.split('\n').find((l) => l.trim().startsWith('at '))?.trim() ?? '';
  return `internal error: ${err.message}${where ? ` (${where})` : ''}`;
}

/** The message of anything thrown, for a one-line report. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
