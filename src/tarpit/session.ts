// The SMTP dialogue of one tarpit connection, as a pure state machine: a line in, a reply (and
// perhaps a tuple) out. It knows nothing of sockets or time, so every reply spamd gives can be
// tested without a network. Follows the states of spamd's nextstate() (OpenBSD's
// libexec/spamd/spamd.c) with two deliberate fixes, both in README.md's "Where pfgrey differs
// from spamd": pipelined commands are answered one by one (the connection feeds lines one at a
// time), and a tuple is produced even when the client never said HELO/EHLO.

import { DEFAULTS } from '../config/defaults.js';
import type { Envelope } from '../grey/types.js';
import { controlEscaper } from '../log.js';
import { REPLY, quitReply, renderBlackReply } from './replies.js';

export interface SessionOptions {
  hostname: string;
  /** false in blacklist-only mode (-b): nobody is greylisted, DATA is always accepted. */
  greylist: boolean;
  /** Messages of the blacklists the client is on (empty: not blacklisted). */
  blackMessages: readonly string[];
  blackCode: number;
  /** The client's address, for `%A` in blacklist messages. */
  ip: string;
}

export interface Outcome {
  reply: string;
  /** Close the connection once the reply is sent. */
  close: boolean;
  /** A (helo, from, to) tuple to hand to the greylister. */
  tuple?: Envelope;
  /** What spamd logs of this line with -v (the caller decides whether to log it). */
  verbose?: { level: 'info' | 'debug'; message: string };
}

type Phase = 'start' | 'helo' | 'mail' | 'data' | 'done';

const COMMANDS = ['HELO', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'NOOP', 'QUIT', 'RSET'] as const;
type Command = (typeof COMMANDS)[number];

/** spamd matches commands as case-insensitive prefixes: `mailx` is MAIL, `HELOfoo` is HELO. */
function commandOf(line: string): Command | undefined {
  const head = line.slice(0, 4).toUpperCase();
  return (COMMANDS as readonly string[]).includes(head) ? (head as Command) : undefined;
}

/**
 * HELO, MAIL and RCPT arguments go into the database key, which must hold no control bytes
 * (keyProblem in src/grey/entry.ts): a key a client made with ESC or NUL in it would otherwise
 * reach an operator's terminal or fail to import back. spamd stores such bytes raw. We neither
 * store them raw nor refuse the command: each control byte (C0, DEL, a C1 as the listing sees
 * it) is recorded as the text `\xHH`, the way `pfgrey db` and the log show it. The same bytes
 * always give the same text, so a client that retries with them still matches its tuple and
 * passes greylisting; the rest of its bytes, UTF-8 or not, are kept as sent. The cap applies to
 * the recorded text, so a field holds at most maxArg bytes as in spamd.
 */
const recordable = controlEscaper({ bytes: true });

/** The first word of `text` after leading blanks, recordable, capped at spamd's 1023-byte buffer. */
function firstWord(text: string): string {
  const m = /^[ \t]*([^ \t\r\n]*)/.exec(text);
  return recordable(m?.[1] ?? '').slice(0, DEFAULTS.maxArg);
}

/** HELO/EHLO argument: whatever follows the four command letters. */
export function heloArgument(line: string): string {
  return firstWord(line.slice(4));
}

/**
 * MAIL/RCPT argument: whatever follows the first colon, kept raw (angle brackets, case).
 * Without a colon spamd keeps the previous value, and so do we (kept on purpose: README.md's
 * "Where pfgrey differs from spamd"): the previous value is what a client that sent
 * `MAIL FROM <x>` would be recorded with by spamd.
 */
export function pathArgument(line: string, previous: string): string {
  const colon = line.indexOf(':');
  return colon < 0 ? previous : firstWord(line.slice(colon + 1));
}

export class Session {
  private phase: Phase = 'start';
  private helo = '';
  private from = '';
  private to = '';
  private badCommands = 0;
  private inBody = false;
  private bodyLines = 0;

  constructor(private readonly opts: SessionOptions) {}

  get blacklisted(): boolean {
    return this.opts.blackMessages.length > 0;
  }

  get finished(): boolean {
    return this.phase === 'done';
  }

  /** What the client has said so far; used for logging on disconnect. */
  get envelope(): Envelope {
    return { helo: this.helo, from: this.from, to: this.to };
  }

  /** The reply that ends the session: 451 for greylisted clients, the list messages otherwise. */
  finalReply(): string {
    return this.blacklisted
      ? renderBlackReply(this.opts.blackMessages, this.opts.blackCode, this.opts.ip)
      : REPLY.greylisted;
  }

  /** Handles one input line (without its CR LF). */
  line(line: string): Outcome {
    if (this.phase === 'done') return { reply: '', close: true };
    if (this.phase === 'data') return this.dataLine(line);

    const cmd = commandOf(line);
    if (cmd === 'QUIT') return this.end(quitReply(this.opts.hostname));
    if (cmd === 'RSET' && this.phase !== 'start') {
      // spamd keeps the stored MAIL/RCPT values across RSET; only the state goes back.
      this.phase = 'helo';
      return this.ok(REPLY.rset);
    }

    if (this.phase === 'start' && (cmd === 'HELO' || cmd === 'EHLO')) {
      const arg = heloArgument(line);
      this.helo = arg;
      if (arg === '') return this.ok(REPLY.heloNoArg);
      this.phase = 'helo';
      return this.ok(REPLY.helo);
    }
    if ((this.phase === 'start' || this.phase === 'helo') && cmd === 'MAIL') {
      this.from = pathArgument(line, this.from);
      this.phase = 'mail';
      return this.ok(REPLY.mail);
    }
    if (cmd === 'RCPT') {
      this.to = pathArgument(line, this.to);
      this.phase = 'mail';
      const out = this.ok(REPLY.rcpt);
      if (this.from !== '' && this.to !== '') {
        out.verbose = { level: 'info',
          message: `(${this.blacklisted ? 'BLACK' : 'GREY'}) ${this.opts.ip}: ${this.from} -> ${this.to}` };
        if (this.opts.greylist && !this.blacklisted) out.tuple = { helo: this.helo, from: this.from, to: this.to };
      }
      return out;
    }
    if (cmd === 'DATA') {
      if (this.opts.greylist && !this.blacklisted) return this.end(REPLY.greylisted);
      this.phase = 'data';
      this.inBody = false;
      this.bodyLines = 0;
      return this.ok(REPLY.data);
    }
    if (cmd === 'NOOP') return this.ok(REPLY.noop);

    this.badCommands += 1;
    if (this.badCommands > DEFAULTS.maxBadCommands) return this.end(this.finalReply());
    return this.ok(REPLY.unknown);
  }

  /**
   * Message content (blacklisted clients and -b mode). Ends at the `.` line or after the tenth
   * body line. Unlike spamd, which takes any line that starts with "quit" as QUIT even inside
   * DATA, such a body line is content (README.md's "Where pfgrey differs from spamd").
   */
  private dataLine(line: string): Outcome {
    if (line === '.') return this.end(this.finalReply());
    if (!this.inBody) {
      if (line === '') this.inBody = true;
      // spamd's -v shows who the spam claims to be from and to, and what it is about.
      if (/^(from|to|subject):/i.test(line)) return { reply: '', close: false, verbose: { level: 'info', message: `${this.opts.ip}: ${line}` } };
      return { reply: '', close: false };
    }
    this.bodyLines += 1;
    const out = this.bodyLines >= DEFAULTS.maxBodyLines ? this.end(this.finalReply()) : { reply: '', close: false };
    if (line !== '') out.verbose = { level: 'debug', message: `${this.opts.ip}: Body: ${line}` };
    return out;
  }

  private ok(reply: string): Outcome {
    return { reply, close: false };
  }

  private end(reply: string): Outcome {
    this.phase = 'done';
    return { reply, close: true };
  }
}
