// The one retry delay. Whatever pfgrey retries (a firewall push, a tcpdump that died, the
// config port of a daemon still starting, the database pfgrey run has not created yet, a
// greylist update the database refused) waits the same way: a first delay, doubled after each
// failure up to a cap, back to the first after a success. A fixed poll is the same with the cap
// equal to the first delay. A wait ends at once when its AbortSignal is aborted, so a stop
// never waits out a retry. No jitter: every caller retries one local resource of its own, so
// there is no crowd of clients to spread out.

import { formatDelay } from './config/duration.js';

/** Where waits are timed; a test passes a fake one. */
export interface Timers {
  /** Calls `fn` after `ms`; the function returned cancels it. */
  after(ms: number, fn: () => void, opts?: { unref?: boolean }): () => void;
}

export const systemTimers: Timers = {
  after(ms, fn, opts) {
    const timer = setTimeout(fn, ms);
    if (opts?.unref) timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface BackoffOptions {
  /** First delay (ms). */
  min: number;
  /** Cap of the doubling delay (ms); the same as `min` for a fixed poll. */
  max: number;
  timers?: Timers;
  /**
   * A wait does not keep the process alive: for retries a stop ends anyway (the firewall
   * push), not for one that is all the process still has to do (logd's tcpdump restart).
   */
  unref?: boolean;
}

/**
 * Waits `ms`. Resolves true once it has passed, false as soon as `signal` is aborted (at once
 * when it already is). Never rejects.
 */
export function sleep(ms: number, signal?: AbortSignal,
  opts: { timers?: Timers; unref?: boolean } = {}): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      cancel();
      resolve(false);
    };
    const cancel = (opts.timers ?? systemTimers).after(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, { unref: opts.unref });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `retrying in 5s`, `restarting in 250ms`: the delay in a log line, as the options take it. */
export function retryingIn(ms: number, verb = 'retrying'): string {
  return `${verb} in ${formatDelay(ms)}`;
}

export class Backoff {
  readonly min: number;
  readonly max: number;
  private delay: number;
  private waits = 0;

  constructor(private readonly opts: BackoffOptions) {
    // A zero delay would retry in a busy loop; a cap below the first delay would shrink it.
    this.min = Math.max(1, opts.min);
    this.max = Math.max(this.min, opts.max);
    this.delay = this.min;
  }

  /** The delay the next wait takes: what a log line says before waiting. */
  get current(): number {
    return this.delay;
  }

  /** Waits taken since the last reset (or since the start). */
  get attempts(): number {
    return this.waits;
  }

  /** Takes the current delay and doubles the next one, up to the cap. */
  next(): number {
    const d = this.delay;
    this.delay = Math.min(this.delay * 2, this.max);
    this.waits += 1;
    return d;
  }

  /** After a success: the next failure starts again at the first delay. */
  reset(): void {
    this.delay = this.min;
    this.waits = 0;
  }

  /**
   * Waits the current delay (and doubles the next). True when it passed; false at once when
   * `signal` is aborted, which still counts as a wait taken.
   */
  wait(signal?: AbortSignal): Promise<boolean> {
    return sleep(this.next(), signal, { timers: this.opts.timers, unref: this.opts.unref });
  }
}
