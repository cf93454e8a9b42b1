// The status page's last hour: one sample a minute of the counts and the connections held, in a
// ring of fixed size, so memory stays the same however long the daemon runs.

import type { Activity } from './activity.js';

/** One point of the plots. Counts are those of the last scan at the time (absent before it). */
export interface Sample {
  /** Unix time in seconds, fractional (uPlot's x axis). */
  t: number;
  grey?: number;
  white?: number;
  trapped?: number;
  heldGrey?: number;
  heldBlack?: number;
  heldTrapped?: number;
  /** Tuples since the previous sample, per minute. */
  tuplesPerMinute?: number;
  /** Policy requests since the previous sample, per minute. */
  policyPerMinute?: number;
}

export interface SamplesOptions {
  /** How often a sample is taken (ms); a minute. */
  every?: number;
  /** How many are kept; sixty (an hour of minutes). */
  size?: number;
}

export class Samples {
  private readonly ring: Array<Sample | undefined>;
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private last: { at: number; tuples: number; policy: number } | undefined;
  readonly every: number;

  constructor(private readonly activity: Activity, opts: SamplesOptions = {}) {
    this.every = opts.every ?? 60_000;
    this.ring = new Array<Sample | undefined>(Math.max(1, opts.size ?? 60));
  }

  /** Takes one now and then one every interval (the timer does not keep the process alive). */
  start(): void {
    this.take();
    this.timer = setInterval(() => this.take(), this.every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Records the present as a sample in the ring. */
  take(): Sample {
    const s = this.current(true);
    this.ring[this.next] = s;
    this.next = (this.next + 1) % this.ring.length;
    return s;
  }

  /**
   * The present as a sample, not recorded: the page's last point, so its plots reach now. The
   * rates are over the time since the last recorded sample.
   */
  current(record = false): Sample {
    const st = this.activity.status();
    const policy = Object.values(st.policy).reduce((a, b) => a + b, 0);
    const s: Sample = { t: st.now / 1000 };
    if (st.counts) {
      s.grey = st.counts.grey;
      s.white = st.counts.white;
      s.trapped = st.counts.trapped;
    }
    if (st.held) {
      s.heldGrey = st.held.grey;
      s.heldBlack = st.held.black;
      s.heldTrapped = st.held.trapped;
    }
    const last = this.last;
    // A rate over less than a second says nothing; the page shows a gap there instead.
    if (last && st.now - last.at >= 1000) {
      const minutes = (st.now - last.at) / 60_000;
      s.tuplesPerMinute = round((st.totals.tuples - last.tuples) / minutes);
      s.policyPerMinute = round((policy - last.policy) / minutes);
    }
    if (record) this.last = { at: st.now, tuples: st.totals.tuples, policy };
    return s;
  }

  /** The recorded samples, oldest first. */
  list(): Sample[] {
    const out: Sample[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const s = this.ring[(this.next + i) % this.ring.length];
      if (s) out.push(s);
    }
    return out;
  }
}

const round = (n: number) => Math.round(n * 10) / 10;
