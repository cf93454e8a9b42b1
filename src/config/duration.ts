import { PfgreyError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses `500ms`, `90s`, `25m`, `4h`, `36d`, or a bare number of seconds (`1.5` is allowed).
 * Returns milliseconds. `what` names the option in the error message.
 */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) {
    throw new PfgreyError('E_BAD_DURATION',
      `${what}: "${text}" is not a duration (use e.g. 500ms, 90s, 25m, 4h, 36d, or seconds)`);
  }
  const ms = Number(m[1]) * UNITS[m[2] ?? 's']!;
  if (!Number.isFinite(ms) || ms > Number.MAX_SAFE_INTEGER) {
    throw new PfgreyError('E_BAD_DURATION', `${what}: "${text}" is too large`);
  }
  return Math.round(ms);
}

/** Parses a decimal integer within [min, max]; `what` names the option in the message. */
export function parseIntegerOption(text: string, what: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(text.trim())) {
    throw new PfgreyError('E_BAD_OPTION', `${what} ${text}: not a whole number`);
  }
  const n = Number(text.trim());
  if (n < min) throw new PfgreyError('E_BAD_OPTION', `${what} ${text}: too small (minimum ${min})`);
  if (n > max) throw new PfgreyError('E_BAD_OPTION', `${what} ${text}: too large (maximum ${max})`);
  return n;
}

/** Formats milliseconds the way the options take them, for log lines. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** A delay in a log line: whole seconds as `5s`, anything else as `250ms`. */
export function formatDelay(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
