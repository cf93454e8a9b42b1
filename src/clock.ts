// The one source of time. Rules take `now` as an argument; the daemon's parts take a Clock so a
// test can substitute a manual one. Times are milliseconds since the epoch.

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock a test moves by hand. */
export class ManualClock implements Clock {
  constructor(private t = 0) {}
  now(): number {
    return this.t;
  }
  set(t: number): void {
    this.t = t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Milliseconds → the whole seconds spamd's formats use. */
export function toSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}
