// A log line that may repeat thousands of times a second (a failing database under load, a
// flood of forged packets): the first is logged whole, and while they go on, one line per
// interval says how many more there were. Used by the policy door for its failed answers and
// by sync for the packets it refuses, one per reason.

import type { Clock } from './clock.js';
import type { Logger } from './log.js';
import type { CoarseTimer, Due } from './timers.js';

export class RepeatLog implements Due {
  private open = false;
  private more = 0;

  constructor(
    private readonly log: Logger,
    private readonly timer: CoarseTimer,
    private readonly every: number,
    private readonly clock: Clock,
    /** The summary line for `count` more in the last `seconds`. */
    private readonly summary: (count: number, seconds: number) => string,
    private readonly level: 'error' | 'warning' = 'error',
  ) {}

  report(line: string): void {
    if (this.open) {
      this.more++;
      return;
    }
    this.log[this.level](line);
    this.open = true;
    this.timer.schedule(this, this.clock.now() + this.every);
  }

  onDue(now: number): void {
    if (this.more === 0) {
      this.open = false;
      return;
    }
    this.log[this.level](this.summary(this.more, Math.round(this.every / 1000)));
    this.more = 0;
    this.timer.schedule(this, now + this.every);
  }
}
