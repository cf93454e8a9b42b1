// One coarse timer for many deadlines. Thousands of stuttering connections each need "wake me
// at t"; giving each its own Node timer costs memory and wake-ups. Here deadlines fall into
// buckets of `resolution` ms and a single Node timer is armed for the earliest bucket, so the
// cost of a tick is proportional to the connections actually due. A deadline never fires early;
// it may fire up to one resolution late.

import { type Clock, systemClock } from './clock.js';
import { DEFAULTS } from './config/defaults.js';

export interface Due {
  onDue(now: number): void;
}

export class CoarseTimer {
  private readonly buckets = new Map<number, Set<Due>>();
  /** Min-heap of bucket numbers that may hold targets. */
  private readonly heap: number[] = [];
  private readonly where = new Map<Due, number>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private stopped = false;

  constructor(
    readonly resolution: number,
    private readonly clock: Clock = systemClock,
    /**
     * Most targets called in one turn of the event loop. Fifteen thousand stuttering
     * connections put about 1,500 in each 100 ms bucket, each a socket write of 10-15 µs:
     * served at once, that held the loop for 20-80 ms every tick (p99 delay 40 ms). Past
     * this many the rest wait for the next turn, so sockets and other timers are served in
     * between (BENCHMARKS.md §1).
     */
    private readonly maxPerTurn: number = DEFAULTS.timerMaxPerTurn,
  ) {
    if (!(resolution >= 1)) throw new RangeError('timer resolution must be at least 1 ms');
  }

  /** Number of targets waiting. */
  get size(): number {
    return this.where.size;
  }

  /** Calls `target.onDue` at or after `due`; replaces any earlier schedule of the target. */
  schedule(target: Due, due: number): void {
    if (this.stopped) return;
    this.cancel(target);
    const bucket = Math.ceil(due / this.resolution);
    let set = this.buckets.get(bucket);
    if (!set) {
      set = new Set();
      this.buckets.set(bucket, set);
      this.push(bucket);
    }
    set.add(target);
    this.where.set(target, bucket);
    if (bucket * this.resolution < this.armedFor) this.arm();
  }

  cancel(target: Due): void {
    const bucket = this.where.get(target);
    if (bucket === undefined) return;
    this.where.delete(target);
    const set = this.buckets.get(bucket);
    set?.delete(target);
    // The bucket's number stays in the heap; an empty bucket is skipped when reached.
    if (set && set.size === 0) this.buckets.delete(bucket);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.buckets.clear();
    this.where.clear();
    this.heap.length = 0;
  }

  private arm(): void {
    while (this.heap.length > 0 && !this.buckets.has(this.heap[0]!)) this.pop();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.heap.length === 0) {
      this.armedFor = Infinity;
      return;
    }
    this.armedFor = this.heap[0]! * this.resolution;
    const delay = Math.max(0, this.armedFor - this.clock.now());
    this.timer = setTimeout(() => this.fire(), delay);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.clock.now();
    let budget = this.maxPerTurn;
    turn: while (this.heap.length > 0 && this.heap[0]! * this.resolution <= now) {
      const bucket = this.heap[0]!;
      const set = this.buckets.get(bucket);
      if (!set) {
        this.pop();
        continue;
      }
      for (const target of set) {
        // The rest of this bucket stays where it is; arm() below finds it due at once.
        if (budget-- <= 0) break turn;
        set.delete(target);
        this.where.delete(target);
        target.onDue(now);
      }
      if (set.size === 0 && this.buckets.get(bucket) === set) {
        this.buckets.delete(bucket);
        // An onDue may have scheduled an earlier bucket (the clock stepped back): then the
        // number served stays in the heap and is skipped when reached, its bucket being gone.
        if (this.heap[0] === bucket) this.pop();
      }
    }
    if (!this.stopped) this.arm();
  }

  private push(n: number): void {
    const h = this.heap;
    h.push(n);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]! <= h[i]!) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  private pop(): number {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]! < h[m]!) m = l;
        if (r < h.length && h[r]! < h[m]!) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

/** Picks a resolution fine enough for the shortest delay in use, but never finer than 1 ms. */
export function resolutionFor(shortestDelay: number): number {
  return Math.max(1, Math.min(100, Math.floor(shortestDelay / 10)));
}
