// The one logger. Lines look like syslog's (`pfgrey[pid]: message`) so that spamd's message
// texts, which users grep for, come out the same; in the foreground they go to stderr.

export type Level = 'error' | 'warning' | 'notice' | 'info' | 'debug';
const ORDER: Record<Level, number> = { error: 0, warning: 1, notice: 2, info: 3, debug: 4 };

export interface Logger {
  error(msg: string): void;
  warning(msg: string): void;
  notice(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export interface LoggerOptions {
  /** Most verbose level written; spamd logs info by default and debug with -d. */
  level?: Level;
  ident?: string;
  write?: (line: string) => void;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const max = ORDER[opts.level ?? 'info'];
  const ident = opts.ident ?? 'pfgrey';
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: Level) => (msg: string) => {
    if (ORDER[level] <= max) write(`${ident}[${process.pid}]: ${msg}\n`);
  };
  return {
    error: emit('error'),
    warning: emit('warning'),
    notice: emit('notice'),
    info: emit('info'),
    debug: emit('debug'),
  };
}

/** A logger that remembers its lines; for tests. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: Level) => (msg: string) => void lines.push(`${level}: ${msg}`);
  return {
    lines,
    error: push('error'),
    warning: push('warning'),
    notice: push('notice'),
    info: push('info'),
    debug: push('debug'),
  };
}

export const silentLogger: Logger = {
  error() {}, warning() {}, notice() {}, info() {}, debug() {},
};
