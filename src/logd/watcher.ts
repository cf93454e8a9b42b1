// pfgrey logd's engine: runs tcpdump on the pflog interface (or the nflog groups, on Linux) and
// turns every passed SMTP connection into a WHITE entry update. A tcpdump that dies is restarted with backoff; the
// store's group commit means a restart loses nothing already seen.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Backoff, retryingIn } from '../backoff.js';
import { type Clock, systemClock } from '../clock.js';
import { describe, systemErrorText } from '../errors.js';
import { Greylister } from '../grey/greylister.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/types.js';
import { type Capture, parseNflogLine } from './nflog.js';
import { captureFilter, parsePflogLine, type PflogEvent, whitelistTarget } from './pflog.js';

export interface WatcherOptions {
  store: Store;
  log: Logger;
  clock?: Clock;
  tcpdump: string;
  /** What to capture (-l), or with `file`, what the file holds. */
  capture: Capture;
  /** Read this capture file instead (tcpdump -r), then stop. */
  file?: string;
  /** Only connections that arrived on this interface (-i); pflog only. */
  onInterface?: string;
  inboundOnly: boolean;
  whiteExpiry: number;
  retryMin: number;
  retryMax: number;
}

export class PflogWatcher {
  private child: ChildProcess | undefined;
  private stopped = false;
  /** Aborted by stop(), which ends a restart delay at once. */
  private readonly stopping = new AbortController();
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  /** logd's greylist core; pfgrey logd -Y sends what its events say to sync peers. */
  readonly core: Greylister;
  /** Updates of one address are applied in order. */
  private chain: Promise<void> = Promise.resolve();
  private done!: () => void;
  /** Resolves when the watcher has stopped (at stop(), or at the end of a capture file). */
  readonly finished: Promise<void>;
  seen = 0;

  constructor(private readonly opts: WatcherOptions) {
    this.clock = opts.clock ?? systemClock;
    // logd's door to the greylist core: a host seen passing is an `extend` request.
    this.core = new Greylister({ store: opts.store, log: opts.log, clock: this.clock, whiteExpiry: opts.whiteExpiry, atomic: true });
    // Not unref'd: while tcpdump is down, the restart is all that keeps logd alive.
    this.backoff = new Backoff({ min: opts.retryMin, max: opts.retryMax });
    this.finished = new Promise((resolve) => (this.done = resolve));
  }

  argv(): string[] {
    const { capture, file } = this.opts;
    const source = file ? ['-r', file] : ['-i', capture.ifname];
    // libpcap cannot filter nflog captures; the ruleset logs only what logd wants.
    const filter = capture.kind === 'pflog' ? [captureFilter(this.opts.onInterface)] : [];
    return ['-l', '-n', '-e', '-ttt', ...source, ...filter];
  }

  start(): void {
    if (this.stopped) return;
    let stderr = '';
    // 'error' and 'close' may both come, or only one; a spawn can also throw (ENOTDIR,
    // ETXTBSY while tcpdump is being upgraded). Each run ends exactly once.
    let ended = false;
    const end = (why: string, clean: boolean) => {
      if (ended) return;
      ended = true;
      this.child = undefined;
      if (!this.stopped) this.ended(why, clean, stderr);
    };
    let child: ChildProcess;
    try {
      child = spawn(this.opts.tcpdump, this.argv(), { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      end(`cannot run ${this.opts.tcpdump}: ${systemErrorText(err)}`, false);
      return;
    }
    this.child = child;
    // Out of file descriptors, Node gives the child no pipes at all.
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-2000);
    });
    if (child.stdout) createInterface({ input: child.stdout }).on('line', (line) => this.line(line));
    child.on('error', (err) => end(`cannot run ${this.opts.tcpdump}: ${systemErrorText(err)}`, false));
    child.on('close', (code, signal) => end(signal ? `died on signal ${signal}` : `exited with status ${code}`, code === 0));
  }

  /** A tcpdump run is over: the end of a capture file, or a failure to retry with backoff. */
  private ended(why: string, clean: boolean, stderr: string): void {
    const { log } = this.opts;
    const detail = stderr.trim().split('\n').filter((l) => !l.startsWith('reading from') && !l.startsWith('listening on')).slice(-3).join('; ');
    if (this.opts.file) {
      if (!clean) log.error(`tcpdump ${why}${detail ? `: ${detail}` : ''}`);
      void this.chain.then(() => this.finish());
      return;
    }
    log.error(`tcpdump ${why}${detail ? `: ${detail}` : ''}; ${retryingIn(this.backoff.current, 'restarting')}`);
    void this.backoff.wait(this.stopping.signal).then((passed) => {
      if (passed) this.start();
    });
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    this.child?.kill('SIGTERM');
    void this.chain.then(() => this.finish());
    return this.finished;
  }

  private finish(): void {
    this.stopped = true;
    this.done();
  }

  private line(line: string): void {
    const { capture } = this.opts;
    const event: PflogEvent | undefined = capture.kind === 'pflog' ? parsePflogLine(line) : parseNflogLine(line, capture.groups);
    if (!event) return;
    // A line that decoded means tcpdump is healthy again: the next failure starts at the minimum.
    this.backoff.reset();
    const ip = whitelistTarget(event, this.opts.inboundOnly);
    if (!ip) return;
    this.seen += 1;
    this.opts.log.debug(`${event.dir === 'in' ? 'inbound' : 'outbound'} ${ip}`);
    this.chain = this.chain
      .then(async () => {
        const verdict = await this.core.handle({ kind: 'extend', ip });
        if (verdict.kind === 'dropped') this.opts.log.error(`cannot whitelist ${ip}: ${verdict.why}`);
      })
      .catch((err) => this.opts.log.error(`cannot whitelist ${ip}: ${describe(err)}`));
  }
}
