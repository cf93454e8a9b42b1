// A load-generating Postfix policy client for bench/policy: several connections, each sending
// one request and waiting for its answer before the next, as Postfix's smtpd processes do.
// Driven by its parent over IPC: it connects, then runs the warm-up when told (new tuples
// only), then the measured phase (half new tuples, half repeats), and reports every answer's
// kind and latency and its own CPU time. The request stream depends only on the connection's
// number, so every server is sent the same bytes in the same order.

import net from 'node:net';
import { performance } from 'node:perf_hooks';

const [portText, firstText, countText, measuredText] = process.argv.slice(2);
const port = Number(portText);
const first = Number(firstText);
const count = Number(countText);
/** Requests per connection in the measured phase (a multiple of 4). */
const measured = Number(measuredText);
/** New tuples per connection in the warm-up: one for each repeat of an old tuple later. */
const warm = measured / 4;
/** How long one answer may take before the run is called failed. */
const ANSWER_DEADLINE = 60_000;

export type Expected = 'defer' | 'pass';
export interface Counts {
  DEFER: number;
  PREPEND: number;
  DUNNO: number;
  /** Well-formed answers with another action. */
  other: number;
  /** Not one `action=…` line and the empty line. */
  malformed: number;
  /** Well-formed, but not what a greylist decides for it (a new tuple passed, an old one deferred). */
  unexpected: number;
}
export interface LoadReport {
  phase: 'warmed' | 'measured';
  counts: Counts;
  /** Milliseconds, one per request, measured phase only. */
  latencies: number[];
  /** This process's user + system CPU during the phase, in microseconds. */
  cpu: number;
}

const NETS = ['192.0.2', '198.51.100', '203.0.113'];

/** A small integer hash, so the stream is the same in every run without a stored list. */
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Tuple `n` of connection `c`: a client from the documentation networks, its name and HELO, a
 * sender of its own (letters around the digits, so postgrey's VERP rule leaves it distinct) and
 * one of 200 local recipients. No two (c, n) share a sender, so each is new both as spamd's
 * tuple (ip, helo, from, to) and as postgrey's (client /24, sender, recipient).
 */
function tuple(c: number, n: number) {
  const h = mix(c * 1_000_003 + n);
  const ip = `${NETS[h % 3]}.${1 + ((h >>> 2) % 254)}`;
  const named = (h >>> 10) % 5 !== 0;
  const domain = `d${(h >>> 13) % 97}.example.org`;
  const name = named ? `mx${(h >>> 20) % 8}.${domain}` : 'unknown';
  return {
    ip, name,
    helo: named ? name : `[${ip}]`,
    sender: `news-u${n}c${c}@${domain}`,
    recipient: `user${(h >>> 5) % 200}@example.com`,
  };
}

let instance = 0;

/** Postfix 3.7's attributes for a RCPT, in its order, most of them empty for a plain client. */
function request(c: number, n: number): string {
  const t = tuple(c, n);
  const seq = ++instance;
  const queueId = `4${(mix(seq) & 0xfffffff).toString(16).toUpperCase().padStart(7, '0')}${(c & 0xff).toString(16).toUpperCase()}`;
  return 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n' +
    `client_address=${t.ip}\nclient_name=${t.name}\nclient_port=${1024 + (mix(seq) % 60000)}\n` +
    `reverse_client_name=${t.name}\nserver_address=192.0.2.254\nserver_port=25\n` +
    `helo_name=${t.helo}\nsender=${t.sender}\nrecipient=${t.recipient}\nrecipient_count=0\n` +
    `queue_id=${queueId}\ninstance=${(1000 + c).toString(16)}.${seq.toString(16).padStart(8, '0')}.${(mix(c) & 0xfffff).toString(16)}.0\n` +
    'size=0\netrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n' +
    'ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n' +
    'policy_context=\ncompatibility_level=3.6\nmail_version=3.7.11\n\n';
}

/** One connection to the server; ask() sends a request and resolves with its answer. */
class Connection {
  private readonly socket: net.Socket;
  private buffered = '';
  private waiting: ((answer: string) => void) | undefined;
  private asked = 0;

  constructor(readonly id: number, readonly connected: Promise<void>, socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      const end = this.buffered.indexOf('\n\n');
      if (end < 0) return;
      const answer = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(end + 2);
      if (this.buffered !== '') fail(`connection ${id}: an answer nobody asked for: ${JSON.stringify(this.buffered)}`);
      const w = this.waiting;
      this.waiting = undefined;
      if (!w) fail(`connection ${id}: an answer nobody asked for: ${JSON.stringify(answer)}`);
      else w(answer);
    });
    socket.on('close', () => {
      if (this.waiting || !closing) fail(`connection ${id}: closed by the server`);
    });
    socket.on('error', (err) => fail(`connection ${id}: ${err.message}`));
  }

  static open(id: number): Connection {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    return new Connection(id, new Promise((resolve) => socket.once('connect', () => resolve())), socket);
  }

  ask(text: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.asked = performance.now();
      this.socket.write(text);
    });
  }

  /** Whether a request has waited for its answer longer than ANSWER_DEADLINE. */
  late(now: number): boolean {
    return this.waiting !== undefined && now - this.asked > ANSWER_DEADLINE;
  }

  end(): void {
    this.socket.end();
  }
}

let closing = false;

function fail(why: string): never {
  console.error(`policy load ${first}: ${why}`);
  process.exit(1);
}

function tally(counts: Counts, answer: string, expected: Expected): void {
  const m = /^action=(\S+)(?: [^\n]*)?$/.exec(answer);
  if (!m) {
    counts.malformed++;
    return;
  }
  const action = m[1]!;
  const kind = action.startsWith('DEFER') ? 'DEFER' : action === 'PREPEND' ? 'PREPEND' : action === 'DUNNO' ? 'DUNNO' : 'other';
  counts[kind]++;
  if ((kind === 'DEFER') !== (expected === 'defer')) counts.unexpected++;
}

const newCounts = (): Counts => ({ DEFER: 0, PREPEND: 0, DUNNO: 0, other: 0, malformed: 0, unexpected: 0 });

async function warmUp(conns: Connection[]): Promise<LoadReport> {
  const counts = newCounts();
  const cpu0 = process.cpuUsage();
  await Promise.all(conns.map(async (conn) => {
    for (let n = 0; n < warm; n++) tally(counts, await conn.ask(request(conn.id, n)), 'defer');
  }));
  const cpu = process.cpuUsage(cpu0);
  return { phase: 'warmed', counts, latencies: [], cpu: cpu.user + cpu.system };
}

/**
 * The measured stream, in groups of four per connection: a new tuple; the same tuple again at
 * once (still greylisted); another new tuple; a warm-up tuple, first seen more than the delay
 * ago (passed).
 */
async function measure(conns: Connection[]): Promise<LoadReport> {
  const counts = newCounts();
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  await Promise.all(conns.map(async (conn) => {
    for (let i = 0; i < measured; i++) {
      const k = i >> 2;
      const step = i & 3;
      const n = step === 3 ? k : warm + 2 * k + (step === 2 ? 1 : 0);
      const text = request(conn.id, n);
      const t0 = performance.now();
      const answer = await conn.ask(text);
      latencies.push(performance.now() - t0);
      tally(counts, answer, step === 3 ? 'pass' : 'defer');
    }
  }));
  const cpu = process.cpuUsage(cpu0);
  return { phase: 'measured', counts, latencies, cpu: cpu.user + cpu.system };
}

if (!(measured > 0 && measured % 4 === 0)) fail(`measured requests per connection must be a positive multiple of 4, not ${measuredText}`);
const conns = Array.from({ length: count }, (_, i) => Connection.open(first + i));
await Promise.all(conns.map((c) => c.connected));
// One watchdog for all connections, rather than a timer per request, which would cost the
// clients CPU that the server could have had.
const watchdog = setInterval(() => {
  const now = performance.now();
  const stuck = conns.find((c) => c.late(now));
  if (stuck) fail(`connection ${stuck.id}: no answer within ${ANSWER_DEADLINE / 1000} s`);
}, 1000);
process.send!({ phase: 'ready' });
process.on('message', (m: { phase: string }) => {
  const run = m.phase === 'warm' ? warmUp(conns) : m.phase === 'measure' ? measure(conns) : undefined;
  if (!run) {
    closing = true;
    clearInterval(watchdog);
    for (const c of conns) c.end();
    process.disconnect();
    return;
  }
  run.then((report) => process.send!(report), (err: Error) => fail(err.message));
});
