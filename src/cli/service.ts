// The one process lifecycle of pfgrey's long-running commands (`pfgrey run`, `pfgrey logd`):
// signals, the stop, the handling of a bug, and the exit status man/pfgrey.8 (EXIT STATUS)
// promises for both: 0 after a signal, 1 when the start fails or the stop lost writes, 70
// (EX_SOFTWARE) after an internal error, once pending writes are committed.

import os from 'node:os';
import { bugReport, describe } from '../errors.js';
import type { Logger } from '../log.js';

/** What a command runs: built before its start, so signals can be handled from the first moment. */
export interface Service {
  /**
   * Starts. `abort` is aborted when a signal or a bug asks for a stop before the start is
   * over: a start with a wait of its own (logd waiting for the database) ends it and rejects
   * with `abort.reason`; one that ignores it is stopped as soon as it has started.
   */
  start(abort: AbortSignal): Promise<void>;
  /** Stops, committing what is pending; rejects (one line) when something was lost. */
  stop(): Promise<void>;
  /** A second SIGTERM or SIGINT during the stop: give up what is still being retried. */
  stopNow?(): void;
  /** SIGHUP. Without it SIGHUP is logged and ignored, as Node's default would end the process. */
  reload?(): Promise<void>;
  /** Resolves when the service has ended by itself (logd at the end of a capture file). */
  finished?(): Promise<void>;
  /** SIGUSR1 (and SIGINFO, ^T, where the system has it): a one-line status for the log. */
  status?(): string;
}

export interface LifecycleOptions {
  log: Logger;
  /** Signals that stop the service; SIGTERM and SIGINT unless given. */
  stopSignals?: readonly NodeJS.Signals[];
}

/**
 * Runs `service` until a stop signal, a bug, or its own end; resolves with the exit status. A
 * start that fails rejects with its error, for the command's one line (exit status 1).
 */
export async function runService(service: Service, { log, stopSignals = ['SIGTERM', 'SIGINT'] }: LifecycleOptions): Promise<number> {
  let code = 0;
  let started = false;
  let stopping = false;
  /** A signal asked for the stop (not a bug, not the service's own end). */
  let signalled = false;
  let cutShort = false;
  let reloadWanted = false;
  const stopAsked = new AbortController();
  const asked = new Promise<void>((resolve) => stopAsked.signal.addEventListener('abort', () => resolve(), { once: true }));

  // Installed before the start: a SIGTERM or SIGHUP that arrives while the service is still
  // opening its database is acted on once it is up, instead of killing it half-way.
  const onStopSignal = (signal: NodeJS.Signals) => {
    if (!signalled) {
      signalled = true;
      log.notice(`${signal} received, flushing and exiting`);
      stopAsked.abort();
      return;
    }
    // Before the stop has begun there is nothing to cut short: it follows the start.
    if (!stopping || cutShort) return;
    if (!service.stopNow) {
      log.notice(`${signal} received again: already stopping`);
      return;
    }
    // A stop retrying writes the database refuses ends as soon as the attempt under way
    // returns, its line saying how many were lost. A third signal kills, as no handler is left.
    cutShort = true;
    offStopSignals();
    log.notice(`${signal} received again, giving up the writes not yet committed`);
    service.stopNow();
  };
  const offStopSignals = () => {
    for (const s of stopSignals) process.off(s, onStopSignal);
  };
  for (const s of stopSignals) process.on(s, onStopSignal);

  const onHup = () => {
    if (!service.reload) {
      log.info('SIGHUP received: nothing to reload');
      return;
    }
    if (stopAsked.signal.aborted) {
      log.notice('SIGHUP received while stopping: not reloading');
      return;
    }
    log.notice('SIGHUP received, reloading');
    if (started) void service.reload();
    else reloadWanted = true;
  };
  process.on('SIGHUP', onHup);

  // SIGINFO is the BSDs' (^T at a terminal); Linux has none, and Node only knows the signals
  // of the system it runs on.
  const infoSignals: NodeJS.Signals[] = service.status
    ? ['SIGUSR1', ...(Object.hasOwn(os.constants.signals, 'SIGINFO') ? ['SIGINFO' as NodeJS.Signals] : [])]
    : [];
  const onInfo = () => {
    if (!started) log.notice('status: starting');
    else if (stopping || stopAsked.signal.aborted) log.notice('status: stopping');
    else log.notice(service.status!());
  };
  for (const s of infoSignals) process.on(s, onInfo);

  // A bug must not take the pending writes with it: one line (with the place it happened, for
  // the report), the stop with its commits, and exit 70 for the supervisor to restart. One
  // during the stop is logged too, and the stop goes on.
  const onBug = (err: Error) => {
    const what = bugReport(err);
    code = 70;
    if (stopAsked.signal.aborted || stopping) {
      log.error(`${what}, while stopping`);
      return;
    }
    log.error(what);
    stopAsked.abort();
  };
  process.on('uncaughtException', onBug);

  try {
    try {
      await service.start(stopAsked.signal);
    } catch (err) {
      // A start that ended its wait because the stop came first: nothing started, nothing to stop.
      if (stopAsked.signal.aborted && err === stopAsked.signal.reason) return code;
      throw err;
    }
    started = true;
    if (reloadWanted && !stopAsked.signal.aborted) void service.reload?.();
    await Promise.race([asked, service.finished?.() ?? asked]);
    stopping = true;
    try {
      await service.stop();
    } catch (err) {
      log.error(`shutdown: ${describe(err)}`);
      // A bug's 70 says more than the lost writes' 1: it is what the report is about.
      if (code === 0) code = 1;
    }
    return code;
  } finally {
    offStopSignals();
    process.off('SIGHUP', onHup);
    for (const s of infoSignals) process.off(s, onInfo);
    process.off('uncaughtException', onBug);
  }
}
