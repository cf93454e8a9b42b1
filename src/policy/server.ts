// The policy door: Postfix's check_policy_service (and Exim's readsocket) ask it about each
// RCPT, and it answers from the greylist core's verdict: a greylisted tuple is deferred with
// the time left, anything else gets DUNNO. It never leaves a client without an answer: a
// request it cannot greylist, or a core that cannot decide (a database error), is answered
// DUNNO, the fail-safe Postfix's SMTPD_POLICY_README asks of a policy server, and logged.

import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { DEFAULTS } from '../config/defaults.js';
import type { Greylister } from '../grey/greylister.js';
import type { Verdict } from '../grey/requests.js';
import { listenError } from '../listen-error.js';
import type { Logger } from '../log.js';
import { describe, PfgreyError, systemErrorText } from '../errors.js';
import { formatAnswer, PolicyReader, policyTuple, type PolicyRequest } from './protocol.js';

export interface PolicyServerOptions {
  core: Greylister;
  log: Logger;
  /** The action for a greylisted tuple (postgrey's --greylist-action). */
  greylistAction: string;
  /** Its text; `%s` is the seconds left and `%r` the recipient's domain (postgrey's placeholders). */
  greylistText: string;
  /** Close after every answer (--no-reuse), for clients that wait for EOF. */
  noReuse: boolean;
}

/** The action line for a verdict: the greylist action with its text, or DUNNO. */
export function answerFor(verdict: Verdict, recipient: string, opts: Pick<PolicyServerOptions, 'greylistAction' | 'greylistText'>): string {
  if (verdict.kind !== 'greylisted' && verdict.kind !== 'trapped') return 'DUNNO';
  const seconds = verdict.kind === 'greylisted' ? Math.ceil(verdict.left / 1000) : 0;
  const domain = recipient.replace(/^<|>$/g, '').split('@').pop() ?? '';
  return `${opts.greylistAction} ${opts.greylistText.replace(/%s/g, String(seconds)).replace(/%r/g, domain)}`;
}

export class PolicyServer {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: PolicyServerOptions) {}

  /** Answers one request; never rejects. */
  async answer(req: PolicyRequest): Promise<Buffer> {
    const t = policyTuple(req);
    if (!t.ok) {
      this.opts.log.info(`policy request not greylisted (${t.why}): DUNNO`);
      return formatAnswer('DUNNO');
    }
    try {
      const verdict = await this.opts.core.handle({ kind: 'tuple', ip: t.ip, helo: t.helo, from: t.from, to: t.to });
      if (verdict.kind === 'dropped') this.opts.log.error(`policy: cannot record ${t.ip} ${t.from} ${t.to}: ${verdict.why}; answering DUNNO`);
      return formatAnswer(answerFor(verdict, t.to, this.opts));
    } catch (err) {
      this.opts.log.error(`policy: ${describe(err)}; answering DUNNO`);
      return formatAnswer('DUNNO');
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

  /** Listens on TCP (host, port) or a Unix socket path; resolves with what it bound. */
  listen(where: { host: string; port: number } | { path: string }): Promise<string | net.AddressInfo> {
    // Half-open: a client that ends its side (Exim's readsocket) still gets its answer, and
    // the end of ours after it.
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      this.serve(s, s);
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject('path' in where
        ? new PfgreyError('E_LISTEN', `cannot listen for policy requests on ${where.path}: ${systemErrorText(err)}`, { cause: err })
        : listenError('policy requests', where.host, where.port, err)));
      server.listen(where, () => resolve(server.address()!));
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.end();
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
