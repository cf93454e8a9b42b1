import test from 'ava';
import { CoarseTimer, resolutionFor } from '../src/timers.js';
import { eventually } from './helpers/wait.js';

test('deadlines fire in order, never early, through one shared timer', async (t) => {
  const timer = new CoarseTimer(5);
  const start = Date.now();
  const fired: Array<[string, number]> = [];
  const target = (name: string) => ({ onDue: () => void fired.push([name, Date.now() - start]) });
  timer.schedule(target('c'), start + 60);
  timer.schedule(target('a'), start + 20);
  timer.schedule(target('b'), start + 40);
  await eventually(() => fired.length === 3, 'the three deadlines');
  t.deepEqual(fired.map(([n]) => n), ['a', 'b', 'c']);
  for (const [name, at] of fired) t.true(at >= { a: 20, b: 40, c: 60 }[name]! - 1, `${name} fired at ${at}`);
  t.is(timer.size, 0);
  timer.stop();
});

test('rescheduling a target replaces its earlier deadline, and cancel removes it', async (t) => {
  const timer = new CoarseTimer(5);
  let calls = 0;
  const target = { onDue: () => void calls++ };
  timer.schedule(target, Date.now() + 10);
  timer.schedule(target, Date.now() + 30);
  t.is(timer.size, 1);
  const other = { onDue: () => t.fail('cancelled target fired') };
  timer.schedule(other, Date.now() + 10);
  timer.cancel(other);
  // Every deadline still scheduled is served in order, so once none is left the replaced one
  // has had its chance to fire.
  await eventually(() => timer.size === 0, 'the rescheduled deadline');
  t.is(calls, 1);
  timer.stop();
});

test('many targets due at once are served a bounded number per event-loop turn, in order, all of them', async (t) => {
  const timer = new CoarseTimer(5, undefined, 10);
  const fired: number[] = [];
  const turns: number[] = [];
  let inTurn = false;
  const due = Date.now() + 20;
  for (let i = 0; i < 25; i++) {
    timer.schedule({
      onDue: () => {
        fired.push(i);
        if (!inTurn) {
          inTurn = true;
          turns.push(0);
          queueMicrotask(() => (inTurn = false)); // runs once the timer's callback returns
        }
        turns[turns.length - 1]! += 1;
      },
    }, i < 20 ? due : due + 5); // two buckets, both due by the time the timer fires
  }
  await eventually(() => fired.length === 25, 'all 25 targets');
  t.deepEqual(fired, Array.from({ length: 25 }, (_, i) => i));
  // A late first tick (a busy machine) finds both buckets due: still at most 10 a turn.
  t.true(turns.every((n) => n <= 10), turns.join(' '));
  t.is(turns.reduce((a, b) => a + b, 0), 25);
  t.true(turns.length >= 3);
  t.is(timer.size, 0);
  timer.stop();
});

test('the resolution follows the shortest delay, between 1 and 100 ms', (t) => {
  t.is(resolutionFor(1000), 100);
  t.is(resolutionFor(20), 2);
  t.is(resolutionFor(1), 1);
  t.is(resolutionFor(400_000), 100);
});
