import test from 'ava';
import { Backoff, retryingIn, sleep, type Timers } from '../src/backoff.js';
import { ManualClock } from '../src/clock.js';

/** Timers driven by a ManualClock: nothing fires until the test moves the clock. */
class ManualTimers implements Timers {
  readonly clock = new ManualClock(0);
  private waiting: Array<{ at: number; fn: () => void }> = [];

  after(ms: number, fn: () => void): () => void {
    const w = { at: this.clock.now() + ms, fn };
    this.waiting.push(w);
    return () => {
      this.waiting = this.waiting.filter((x) => x !== w);
    };
  }

  get pending(): number {
    return this.waiting.length;
  }

  /** Moves the clock and fires what came due; then lets the waits' promises settle. */
  async advance(ms: number): Promise<void> {
    this.clock.advance(ms);
    const due = this.waiting.filter((w) => w.at <= this.clock.now());
    this.waiting = this.waiting.filter((w) => w.at > this.clock.now());
    for (const w of due) w.fn();
    await new Promise((r) => setImmediate(r));
  }
}

/** Runs `wait` and reports whether it has settled, and how. */
function watch(p: Promise<boolean>): { settled: boolean; passed: boolean | undefined } {
  const s = { settled: false, passed: undefined as boolean | undefined };
  void p.then((v) => {
    s.settled = true;
    s.passed = v;
  });
  return s;
}

test('delays double from the minimum up to the maximum and stay there', (t) => {
  const b = new Backoff({ min: 1000, max: 60_000 });
  const seen = Array.from({ length: 9 }, () => b.next());
  t.deepEqual(seen, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
  t.is(b.attempts, 9);
});

test('a reset after a success starts the next failure at the minimum', (t) => {
  const b = new Backoff({ min: 100, max: 5000 });
  b.next();
  b.next();
  t.is(b.current, 400);
  b.reset();
  t.is(b.current, 100);
  t.is(b.attempts, 0);
});

test('a maximum equal to the minimum is a fixed poll; a zero minimum never busy-loops', (t) => {
  const poll = new Backoff({ min: 500, max: 500 });
  t.deepEqual([poll.next(), poll.next(), poll.next()], [500, 500, 500]);
  const zero = new Backoff({ min: 0, max: 0 });
  t.is(zero.next(), 1);
  const inverted = new Backoff({ min: 300, max: 100 });
  t.deepEqual([inverted.next(), inverted.next()], [300, 300], 'a cap below the minimum never shrinks the delay');
});

test('a wait takes the current delay on the injected timers, and no sooner', async (t) => {
  const timers = new ManualTimers();
  const b = new Backoff({ min: 1000, max: 4000, timers });
  const first = watch(b.wait());
  await timers.advance(999);
  t.false(first.settled);
  await timers.advance(1);
  t.deepEqual(first, { settled: true, passed: true });
  t.is(b.current, 2000, 'the next wait is twice as long');
  const second = watch(b.wait());
  await timers.advance(1999);
  t.false(second.settled);
  await timers.advance(1);
  t.true(second.passed);
});

test('aborting the signal ends a wait at once and cancels its timer', async (t) => {
  const timers = new ManualTimers();
  const b = new Backoff({ min: 60_000, max: 60_000, timers });
  const stop = new AbortController();
  const w = b.wait(stop.signal);
  t.is(timers.pending, 1);
  stop.abort();
  t.false(await w);
  t.is(timers.pending, 0, 'no timer left behind');
});

test('a wait on a signal already aborted returns false without arming a timer', async (t) => {
  const timers = new ManualTimers();
  const stop = new AbortController();
  stop.abort();
  t.false(await sleep(10_000, stop.signal, { timers }));
  t.is(timers.pending, 0);
});

test('a wait that passed is not disturbed by a later abort', async (t) => {
  const timers = new ManualTimers();
  const stop = new AbortController();
  const w = watch(sleep(100, stop.signal, { timers }));
  await timers.advance(100);
  stop.abort();
  await new Promise((r) => setImmediate(r));
  t.deepEqual(w, { settled: true, passed: true });
});

test('an unref\'d wait on the system timers still fires while the process has other work', async (t) => {
  const keepAlive = setTimeout(() => {}, 10_000);
  t.teardown(() => clearTimeout(keepAlive));
  t.true(await sleep(5, undefined, { unref: true }));
});

test('log lines say the delay as the options take it', (t) => {
  t.is(retryingIn(5000), 'retrying in 5s');
  t.is(retryingIn(60_000), 'retrying in 60s');
  t.is(retryingIn(250), 'retrying in 250ms');
  t.is(retryingIn(1000, 'restarting'), 'restarting in 1s');
});
