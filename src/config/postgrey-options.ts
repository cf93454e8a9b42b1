// postgrey's time and auto-whitelist options as postgrey(8) takes them, read into the policy
// door's times (PolicyTimes, src/grey/rules.ts): --delay in seconds, --max-age in days,
// --retry-window in days or hours (`6h`), --auto-whitelist-clients a count (0 turns it off).
// pfgrey's own durations (`90s`, `4h`, `36d`) are taken as well. One reading for every command
// that takes these options, so that a postgrey command line means the same to each.

import { PfgreyError } from '../errors.js';
import type { PolicyTimes } from '../grey/rules.js';
import { DEFAULTS } from './defaults.js';
import { parseDuration, parseIntegerOption } from './duration.js';

/**
 * A postgrey day count: a bare whole number is days (postgrey's --max-age and --retry-window),
 * `Nh` or `NH` hours (--retry-window's other form, which postgrey matches case-insensitively),
 * anything else a pfgrey duration. Returns milliseconds.
 */
export function postgreyDays(text: string, what: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return parseDuration(`${t}d`, what);
  const hours = /^(\d+)h$/i.exec(t);
  return parseDuration(hours ? `${hours[1]}h` : t, what);
}

export interface PostgreyOptionValues {
  delay?: string;
  maxAge?: string;
  retryWindow?: string;
  awlClients?: string;
}

/** The policy times these options give, postgrey's defaults (DEFAULTS.policy*) for the rest. */
export function postgreyTimes(v: PostgreyOptionValues): PolicyTimes {
  const maxAge = v.maxAge === undefined ? DEFAULTS.policyMaxAge : postgreyDays(v.maxAge, '--max-age');
  // postgrey reads --max-age 0 as its default; a zero lifetime would forget everything at once.
  if (maxAge <= 0) throw new PfgreyError('E_BAD_OPTION', `--max-age ${v.maxAge}: must be longer than 0`);
  return {
    delay: v.delay === undefined ? DEFAULTS.policyDelay : parseDuration(v.delay, '--delay'),
    maxAge,
    retryWindow: v.retryWindow === undefined ? DEFAULTS.policyRetryWindow : postgreyDays(v.retryWindow, '--retry-window'),
    awlClients: v.awlClients === undefined ? DEFAULTS.policyAwlClients
      : parseIntegerOption(v.awlClients, '--auto-whitelist-clients', 0, 2 ** 31 - 1),
    awlEvery: DEFAULTS.policyAwlEvery,
  };
}
