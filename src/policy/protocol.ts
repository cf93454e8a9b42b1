// Postfix's SMTPD policy delegation protocol, as Postfix's SMTPD_POLICY_README describes it:
// a request is `name=value` lines ended by an empty line; the answer is `action=…` and an
// empty line; one connection carries as many requests as the client sends. This module only
// frames and checks: it turns bytes into requests and verdicts into answers, with every input
// bounded, and knows nothing of sockets or of greylisting (the policy door and the core do).

import { isIP } from 'node:net';
import { DEFAULTS } from '../config/defaults.js';

/** One request: its attributes in the order sent (a repeated name keeps its last value). */
export interface PolicyRequest {
  attrs: Map<string, string>;
}

/** What the reader met that is not a request line: said once per connection by its caller. */
export interface PolicyTrouble {
  /** Lines without `=` (ignored). */
  garbage: number;
  /** Values cut at DEFAULTS.policyValueMax bytes. */
  cut: number;
  /** Attributes past DEFAULTS.policyAttrsMax in one request (ignored). */
  dropped: number;
}

/**
 * Splits a connection's bytes into requests. Bytes are read as latin1, one character per byte,
 * as the tarpit reads SMTP: a sender or HELO with 8-bit bytes keeps them exactly. Memory stays
 * bounded whatever the client sends: a line is kept up to its limit and the rest of it skipped,
 * and a request keeps at most a fixed number of attributes.
 */
export class PolicyReader {
  private line = '';
  /** Bytes of the current line past the limit, skipped up to its LF. */
  private skipping = false;
  private attrs = new Map<string, string>();
  readonly trouble: PolicyTrouble = { garbage: 0, cut: 0, dropped: 0 };

  /** The requests that `chunk` completes. */
  push(chunk: Buffer): PolicyRequest[] {
    const done: PolicyRequest[] = [];
    const text = chunk.toString('latin1');
    let from = 0;
    for (;;) {
      const nl = text.indexOf('\n', from);
      let req: PolicyRequest | undefined;
      if (nl >= 0 && this.line === '' && !this.skipping && nl - from <= LINE_ROOM) {
        // A whole line in this chunk, within the limit: read where it lies, as endLine would.
        req = this.endLineAt(text, from, nl > from && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl);
      } else {
        this.take(text.slice(from, nl < 0 ? text.length : nl));
        if (nl < 0) break;
        req = this.endLine();
      }
      if (req) done.push(req);
      from = nl + 1;
    }
    return done;
  }

  /** Whether a request has begun and not ended (the client closed in the middle of one). */
  get partial(): boolean {
    return this.attrs.size > 0 || this.line !== '';
  }

  private take(piece: string): void {
    if (this.skipping) return;
    const room = LINE_ROOM - this.line.length;
    if (piece.length > room) {
      this.line += piece.slice(0, room);
      this.skipping = true;
      this.trouble.cut++;
    } else {
      this.line += piece;
    }
  }

  private endLine(): PolicyRequest | undefined {
    const line = this.line;
    this.line = '';
    this.skipping = false;
    return this.endLineAt(line, 0, line.endsWith('\r') ? line.length - 1 : line.length);
  }

  /**
   * Takes the line text[from, end) (its CR, if any, already left out): an attribute, or the
   * empty line that ends a request. Read in place, so a request's lines cost no copies but
   * its names and values (a policy request has some 30 lines).
   */
  private endLineAt(text: string, from: number, end: number): PolicyRequest | undefined {
    if (end === from) {
      // An empty line ends a request; one that had no attributes is not a request at all.
      if (this.attrs.size === 0) return undefined;
      const req = { attrs: this.attrs };
      this.attrs = new Map();
      return req;
    }
    // The '=' within a name's length of the line's start: never a search past it.
    let eq = -1;
    const stop = Math.min(end, from + DEFAULTS.policyNameMax + 1);
    for (let i = from; i < stop; i++) {
      if (text.charCodeAt(i) === EQ) {
        eq = i;
        break;
      }
    }
    if (eq <= from) {
      this.trouble.garbage++;
      return undefined;
    }
    const name = text.slice(from, eq);
    if (!this.attrs.has(name) && this.attrs.size >= DEFAULTS.policyAttrsMax) {
      this.trouble.dropped++;
      return undefined;
    }
    this.attrs.set(name, text.slice(eq + 1, Math.min(end, eq + 1 + DEFAULTS.policyValueMax)));
    return undefined;
  }
}

/** The longest line kept: a name, '=', a value at its limit, and a CR. */
const LINE_ROOM = DEFAULTS.policyValueMax + DEFAULTS.policyNameMax + 2;
const CR = 0x0d;
const EQ = 0x3d;

/** What the policy door reads of a request: the attributes postgrey uses, as sent. */
export interface PolicyQuery {
  /** client_address. */
  ip: string;
  /** client_name: the client's verified reverse name, or `unknown` (Postfix) or empty. */
  name: string;
  helo: string;
  /** sender, without angle brackets; empty for a bounce. */
  sender: string;
  recipient: string;
  /** instance: one value per message, so that a message gets one X-Greylist header. */
  instance?: string;
  /** queue_id, for the log line. */
  queueId?: string;
  /** etrn_domain is sent by Postfix 2.3 and later (postgrey's test for enhanced status codes). */
  enhanced: boolean;
}

/** A request the door can greylist, or why it cannot. */
export type PolicyQueryResult = { ok: true; query: PolicyQuery } | { ok: false; why: string };

/**
 * The greylisting question in an `smtpd_access_policy` request at RCPT. A request without a
 * protocol_state is taken as RCPT (clients built by hand, such as an Exim ACL, may leave it
 * out); another state, another request type or no client address is not greylisted and says
 * why. Missing names and addresses read as empty, as postgrey reads them.
 */
export function policyQuery(req: PolicyRequest): PolicyQueryResult {
  const a = req.attrs;
  const kind = a.get('request');
  if (kind !== 'smtpd_access_policy') return { ok: false, why: `request ${JSON.stringify(kind ?? '')} is not smtpd_access_policy` };
  const state = a.get('protocol_state') ?? 'RCPT';
  if (state.toUpperCase() !== 'RCPT') return { ok: false, why: `protocol_state ${JSON.stringify(state)} is not RCPT` };
  const ip = a.get('client_address') ?? '';
  if (ip === '') return { ok: false, why: 'no client_address' };
  if (isIP(ip) === 0) return { ok: false, why: `client_address ${JSON.stringify(ip.slice(0, 64))} is not an IP address` };
  return {
    ok: true,
    query: {
      ip,
      name: a.get('client_name') ?? '',
      helo: a.get('helo_name') ?? '',
      sender: a.get('sender') ?? '',
      recipient: a.get('recipient') ?? '',
      instance: a.get('instance'),
      queueId: a.get('queue_id'),
      enhanced: a.has('etrn_domain'),
    },
  };
}

/**
 * The answer to one request: `action=ACTION TEXT` and the empty line that ends it. A line
 * break in the text would end the answer early and make the rest a reply to the next request,
 * so control characters become spaces.
 */
export function formatAnswer(action: string): Buffer {
  const clean = action.replace(/[\x00-\x1f\x7f]/g, ' ');
  return Buffer.from(`action=${clean}\n\n`, 'latin1');
}
