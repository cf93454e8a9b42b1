// The policy door: Postfix's check_policy_service (and Exim's readsocket) ask it about each
// RCPT, and it answers from the greylist core's verdict: a greylisted tuple is deferred with
// the time left, anything else gets DUNNO. It never leaves a client without an answer: a
// request it cannot greylist, or a core that cannot decide (a database error), is answered
// DUNNO, the fail-safe Postfix's SMTPD_POLICY_README asks of a policy server, and logged.

import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { DEFAULTS } from '../config/defaults.js';
import type { Greylister } from '../grey/greylister.js';
import type { Verdict, WeightedPass } from '../grey/requests.js';
import { formatWeight } from '../weighted/score.js';
import { listenError } from '../listen-error.js';
import type { Logger } from '../log.js';
import { describe, PfgreyError, systemErrorText } from '../errors.js';
import { systemClock, type Clock } from '../clock.js';
import { RepeatLog } from '../repeat-log.js';
import { CoarseTimer, resolutionFor, type Due } from '../timers.js';
import { RecentInstances } from './postgrey-key.js';
import { formatAnswer, PolicyReader, type PolicyQuery, policyQuery, type PolicyRequest } from './protocol.js';

export interface PolicyServerOptions {
  core: Greylister;
  log: Logger;
  /** The action for a greylisted tuple (postgrey's --greylist-action). */
  greylistAction: string;
  /** Its text; `%s` is the seconds left and `%r` the recipient's domain (postgrey's placeholders). */
  greylistText: string;
  /** Close after every answer (--no-reuse), for clients that wait for EOF. */
  noReuse: boolean;
  /**
   * postgrey's keys of a request: its triplet (client network, normalised sender, recipient)
   * and its client, both hashed with --privacy (src/policy/postgrey-key.ts).
   */
  keys: (q: PolicyQuery) => { triplet: string; client: string };
  /** --privacy: the core writes no entry that names an address. */
  privacy: boolean;
  /** Why a request is let through without greylisting (a whitelist, --exempt), or undefined. */
  exempt?: (q: PolicyQuery) => string | undefined;
  /** The X-Greylist header for a triplet's first pass, given the seconds it waited (--x-greylist-header). */
  header?: (waited: number) => string;
  /** The header for a first attempt weighted greylisting let by (with --x-greylist-header). */
  weightedHeader?: (pass: WeightedPass) => string;
  /**
   * DEFAULTS.policyIdleTimeout, DEFAULTS.policyMaxConnections, DEFAULTS.policyAnswerTimeout and
   * DEFAULTS.policyFailureLogEvery, unless a test says otherwise.
   */
  idleTimeout?: number;
  maxConnections?: number;
  answerTimeout?: number;
  failureLogEvery?: number;
  clock?: Clock;
  /** How each request was answered, for /metrics: the verdict's kind, or why there was none. */
  onAnswer?: (outcome: AnswerOutcome) => void;
}

/** What a request's answer came from (the verdict label of pfgrey_policy_requests_total). */
export type AnswerOutcome = 'greylisted' | 'passed' | 'whitelisted' | 'trapped' | 'exempt' | 'ignored' | 'late' | 'failed';

/** Why a request was answered DUNNO without a verdict: the core did not decide in time. */
const LATE = Symbol('late');

/** What the door answers, and what its log line says of it (postgrey's words). */
interface Decision {
  action: string;
  log: string;
}

/**
 * The answer to a verdict, as postgrey answers: the greylist action with its text for a
 * deferred triplet (or a trapped client), PREPEND with the X-Greylist header on a triplet's
 * first pass when a header is set and the message has not had one, DUNNO otherwise.
 */
export function decide(
  verdict: Verdict, q: PolicyQuery, opts: Pick<PolicyServerOptions, 'greylistAction' | 'greylistText' | 'header' | 'weightedHeader'>, newInstance: () => boolean,
): Decision {
  switch (verdict.kind) {
    case 'greylisted':
    case 'trapped': {
      const seconds = Math.max(1, Math.ceil((verdict.left ?? 0) / 1000));
      let text = opts.greylistText;
      // postgrey's workaround for Exchange, which treats 4.7.1 as a permanent refusal: Postfix
      // 2.3 and later (which send etrn_domain) take an enhanced status code from the text.
      if (q.enhanced && !/^\d/.test(text)) text = `4.2.0 ${text}`;
      text = text.replace('%s', String(seconds)).replace('%r', q.recipient.replace(/.*@/, ''));
      const reason = verdict.kind === 'trapped' ? `trapped (${verdict.why})` : verdict.fresh ? 'new' : `early-retry (${seconds}s missing)`;
      return { action: `${opts.greylistAction} ${text}`, log: `action=greylist, reason=${reason}` };
    }
    case 'passed':
      if (verdict.weighted) {
        const w = verdict.weighted;
        const log = `action=pass, reason=weighted (score ${formatWeight(w.score)}: ${w.reasons})`;
        return opts.weightedHeader && newInstance() ? { action: `PREPEND ${opts.weightedHeader(w)}`, log } : { action: 'DUNNO', log };
      }
      if (verdict.waited !== undefined) {
        const waited = Math.floor(verdict.waited / 1000);
        const log = `action=pass, reason=triplet found, delay=${waited}`;
        return opts.header && newInstance() ? { action: `PREPEND ${opts.header(waited)}`, log } : { action: 'DUNNO', log };
      }
      return { action: 'DUNNO', log: 'action=pass, reason=triplet found' };
    case 'whitelisted':
      return { action: 'DUNNO', log: `action=pass, reason=${verdict.by === 'awl' ? 'client AWL' : 'client WHITE'}` };
    default:
      return { action: 'DUNNO', log: `action=pass, reason=${verdict.kind}` };
  }
}

/** postgrey's log line: the queue id, the action and reason, then who asked about what. */
function logLine(q: PolicyQuery, what: string): string {
  const who = [['client_name', q.name], ['client_address', q.ip], ['sender', q.sender], ['recipient', q.recipient]]
    .filter(([, v]) => v !== '').map(([k, v]) => `${k}=${v}`).join(', ');
  return `${q.queueId ? `${q.queueId}: ` : ''}${what}, ${who}`;
}

/** A Unix socket to listen on, with its mode and owner. */
export interface UnixListener {
  path: string;
  mode?: number;
  owner?: { uid: number; gid: number };
}

/**
 * A socket left at `path` by a server that is gone (a crash, a kill -9) would make the bind
 * fail: it is removed when nothing answers on it. Anything else there — a live server, a
 * file, a symbolic link — is left alone and the bind fails naming it.
 */
async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new PfgreyError('E_LISTEN', `cannot listen for policy requests on ${path}: it exists and is not a socket (not removed)`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new PfgreyError('E_LISTEN', `cannot listen for policy requests on ${path}: another server is answering on it`);
  await unlink(path);
}

export class PolicyServer {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  /** One X-Greylist header per message (postgrey's is_new_instance). */
  private readonly instances = new RecentInstances();
  /** One coarse timer for every pending answer's deadline and the failure log. */
  private readonly timer: CoarseTimer;
  private readonly clock: Clock;
  private readonly answerTimeout: number;
  /**
   * Failed answers (a timeout, a database error, a bug): a database that fails under heavy
   * traffic costs two log lines a minute, not one per request.
   */
  private readonly failures: RepeatLog;

  constructor(private readonly opts: PolicyServerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.answerTimeout = opts.answerTimeout ?? DEFAULTS.policyAnswerTimeout;
    this.timer = new CoarseTimer(resolutionFor(this.answerTimeout), this.clock);
    this.failures = new RepeatLog(opts.log, this.timer, opts.failureLogEvery ?? DEFAULTS.policyFailureLogEvery, this.clock,
      (n, s) => `policy: ${n} more request${n === 1 ? '' : 's'} answered DUNNO in the last ${s} s because of failures like the one above`);
  }

  /** The core's verdict, or LATE when it takes longer than the answer timeout. */
  private within(verdict: Promise<Verdict>): Promise<Verdict | typeof LATE> {
    return new Promise((resolve, reject) => {
      const deadline: Due = { onDue: () => resolve(LATE) };
      this.timer.schedule(deadline, this.clock.now() + this.answerTimeout);
      verdict.then((v) => {
        this.timer.cancel(deadline);
        resolve(v);
      }, (err: unknown) => {
        this.timer.cancel(deadline);
        reject(err);
      });
    });
  }

  /** Answers one request; never rejects. */
  async answer(req: PolicyRequest): Promise<Buffer> {
    const { bytes, outcome } = await this.decideAnswer(req);
    this.opts.onAnswer?.(outcome);
    return bytes;
  }

  private async decideAnswer(req: PolicyRequest): Promise<{ bytes: Buffer; outcome: AnswerOutcome }> {
    const dunno = (outcome: AnswerOutcome) => ({ bytes: formatAnswer('DUNNO'), outcome });
    const parsed = policyQuery(req);
    if (!parsed.ok) {
      this.opts.log.info(`policy request not greylisted (${parsed.why}): DUNNO`);
      return dunno('ignored');
    }
    const q = parsed.query;
    try {
      const exempt = this.opts.exempt?.(q);
      if (exempt !== undefined) {
        this.opts.log.info(logLine(q, `action=pass, reason=${exempt}`));
        return dunno('exempt');
      }
      const { triplet, client } = this.opts.keys(q);
      // A verdict that comes too late is still recorded by the core; only the answer is DUNNO.
      const verdict = await this.within(this.opts.core.handle({
        kind: 'policy', ip: q.ip, triplet, client, rcpt: q.recipient, privacy: this.opts.privacy, helo: q.helo, sender: q.sender,
      }));
      if (verdict === LATE) {
        this.failures.report(`policy: no verdict for ${q.ip} ${q.sender} ${q.recipient} within ${this.answerTimeout / 1000} s (the database is slow or locked); answering DUNNO`);
        return dunno('late');
      }
      if (verdict.kind === 'dropped') {
        this.failures.report(`policy: cannot record ${q.ip} ${q.sender} ${q.recipient}: ${verdict.why}; answering DUNNO`);
        return dunno('failed');
      }
      const d = decide(verdict, q, this.opts, () => this.instances.isNew(q.instance));
      this.opts.log.info(logLine(q, d.log));
      const kind = verdict.kind;
      const outcome = kind === 'greylisted' || kind === 'passed' || kind === 'whitelisted' || kind === 'trapped' ? kind : 'failed';
      return { bytes: formatAnswer(d.action), outcome };
    } catch (err) {
      this.failures.report(`policy: ${describe(err)}; answering DUNNO`);
      return dunno('failed');
    }
  }

  /**
   * Serves one request stream: each request is answered in order; at the end of the input
   * (a client that half-closes, as Exim's readsocket does, or Postfix's spawn at EOF) what is
   * left is answered, a request without its final empty line included, and the output ends.
   */
  serve(input: Readable, output: Writable, onEnd: () => void = () => output.end()): void {
    const reader = new PolicyReader();
    let chain = Promise.resolve();
    let stopped = false;
    let warned = false;
    // Requests read and not yet answered. A client that sends faster than it reads its answers
    // is not read further until it catches up, so neither the queue nor the unsent answers grow
    // without bound (Postfix sends one request and waits for its answer).
    let waiting = 0;
    const answer = async (req: PolicyRequest) => {
      if (stopped) return;
      const bytes = await this.answer(req);
      if (!output.write(bytes) && !stopped) await new Promise<void>((resolve) => output.once('drain', () => resolve()).once('close', () => resolve()));
      if (this.opts.noReuse) {
        stopped = true;
        onEnd();
      }
    };
    const send = (reqs: PolicyRequest[]) => {
      for (const req of reqs) {
        waiting++;
        if (waiting > DEFAULTS.policyPipelineMax) input.pause();
        chain = chain.then(() => answer(req)).finally(() => {
          waiting--;
          if (waiting <= DEFAULTS.policyPipelineMax && input.isPaused()) input.resume();
        });
      }
      const { garbage, cut, dropped } = reader.trouble;
      if (!warned && garbage + cut + dropped > 0) {
        warned = true; // once per connection: a client sending junk must not flood the log
        this.opts.log.notice(`policy client sent ${garbage} lines without "=", ${cut} over-long values and ${dropped} attributes too many; ignored`);
      }
    };
    input.on('data', (chunk: Buffer) => send(reader.push(chunk)));
    input.on('end', () => {
      if (reader.partial) send(reader.push(Buffer.from('\n\n')));
      chain = chain.then(() => {
        if (!stopped) onEnd();
      });
    });
    input.on('error', () => undefined);
    output.on('error', () => undefined);
  }

  /**
   * Listens on TCP (host, port) or a Unix socket path; resolves with what it bound. A Unix
   * socket gets `mode` (postgrey's --socketmode, 0666 by default: the directory it is in, such
   * as Postfix's private/, is what guards it) and `owner`. At most
   * DEFAULTS.policyMaxConnections connections are served at once (more wait in the kernel's
   * backlog), and one silent for DEFAULTS.policyIdleTimeout is closed: Postfix closes its own
   * after 300 s idle (smtpd_policy_service_max_idle), so only a stuck client meets it.
   */
  async listen(where: { host: string; port: number } | UnixListener): Promise<string | net.AddressInfo> {
    if ('path' in where) await clearStaleSocket(where.path);
    // Half-open: a client that ends its side (Exim's readsocket) still gets its answer, and
    // the end of ours after it.
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.setTimeout(this.opts.idleTimeout ?? DEFAULTS.policyIdleTimeout, () => {
        this.opts.log.debug('policy connection idle too long; closed');
        s.destroy();
      });
      this.serve(s, s);
    });
    server.maxConnections = this.opts.maxConnections ?? DEFAULTS.policyMaxConnections;
    this.servers.push(server);
    const bound = await new Promise<string | net.AddressInfo>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject('path' in where
        ? new PfgreyError('E_LISTEN', `cannot listen for policy requests on ${where.path}: ${systemErrorText(err)}`, { cause: err })
        : listenError('policy requests', where.host, where.port, err)));
      server.listen('path' in where ? { path: where.path } : where, () => resolve(server.address()!));
    });
    if ('path' in where) {
      try {
        await chmod(where.path, where.mode ?? DEFAULTS.policySocketMode);
        if (where.owner) await chown(where.path, where.owner.uid, where.owner.gid);
      } catch (err) {
        throw new PfgreyError('E_LISTEN', `cannot set the mode or owner of ${where.path}: ${systemErrorText(err as NodeJS.ErrnoException)}`, { cause: err });
      }
    }
    return bound;
  }

  async close(): Promise<void> {
    this.timer.stop();
    for (const s of this.sockets) s.end();
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
