// The connection's read/answer/write loop, driven through a stand-in socket so that what the
// kernel would hide (our own write buffer, when the peer reads) is visible and in the test's hands.

import test from 'ava';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { Connection, type ConnectionHost } from '../src/tarpit/connection.js';
import { REPLY } from '../src/tarpit/replies.js';
import { Session } from '../src/tarpit/session.js';
import { CoarseTimer } from '../src/timers.js';

class StandInSocket extends EventEmitter {
  writable = true;
  destroyed = false;
  ended = false;
  paused = false;
  /** What write() reports: false is a peer that has stopped reading. */
  accepting = true;
  readonly written: string[] = [];
  write(chunk: Buffer): boolean {
    this.written.push(chunk.toString('latin1'));
    return this.accepting;
  }
  pause(): void { this.paused = true; }
  resume(): void { this.paused = false; }
  end(): void { this.ended = true; }
  destroy(): void { this.destroyed = true; this.writable = false; }
  setTimeout(): void {}
  feed(text: string): void { this.emit('data', Buffer.from(text, 'latin1')); }
}

function connection(t: import('ava').ExecutionContext, blackMessages: string[] = []) {
  const timer = new CoarseTimer(10);
  t.teardown(() => timer.stop());
  const socket = new StandInSocket();
  const closed: string[] = [];
  const host: ConnectionHost = {
    now: () => Date.now(),
    timer,
    stutterFor: () => 0,
    byteAtATime: () => true,
    idleTimeout: 60_000,
    maxLine: 8191,
    onTuple: () => {},
    onVerbose: () => {},
    onClose: () => closed.push('closed'),
    linger: (s) => s.end(),
    backlogged: () => false,
    backlogPause: 20,
  };
  const session = new Session({ hostname: 'tarpit.test', greylist: true, blackMessages, blackCode: 450, ip: '192.0.2.1' });
  const conn = new Connection(socket as unknown as Socket, '192.0.2.1', '198.51.100.1', session, [], host);
  conn.start('220 banner\r\n');
  return { socket, conn, closed };
}

test('sixty thousand header lines in one read are taken without a reply and without exhausting the stack', (t) => {
  const { socket, conn } = connection(t, ['You are listed']);
  socket.feed('HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n');
  t.is(socket.written.at(-1), REPLY.data);
  t.notThrows(() => socket.feed('a\r\n'.repeat(60_000)));
  t.false(conn.isClosed);
  socket.feed('.\r\n');
  t.true(conn.isClosed);
  t.true(socket.written.at(-1)!.startsWith('450 '), 'the message ends at the dot with the list reply');
});

test('sixty thousand pipelined commands answered at once are answered one by one without recursion', (t) => {
  const { socket, conn } = connection(t);
  t.notThrows(() => socket.feed('NOOP\r\n'.repeat(60_000)));
  t.false(conn.isClosed);
  t.is(socket.written.filter((w) => w === REPLY.noop).length, 60_000);
});

test('a peer that stops reading gets no further replies until our buffer drains, and the rest are kept in order', (t) => {
  const { socket } = connection(t);
  socket.accepting = false;
  socket.feed('NOOP\r\nHELO h\r\nMAIL FROM:<a@b>\r\n');
  t.deepEqual(socket.written, ['220 banner\r\n', REPLY.noop], 'one reply is written, then the connection waits');
  t.true(socket.paused, 'and reads nothing more meanwhile');
  socket.emit('drain');
  t.deepEqual(socket.written.slice(2), [REPLY.helo], 'each drain lets one more reply out');
  socket.accepting = true;
  socket.emit('drain');
  t.deepEqual(socket.written.slice(3), [REPLY.mail]);
  t.false(socket.paused, 'with every line answered, reading resumes');
});

test('a line of thousands of CRs before its LF is one line with its line ending stripped', (t) => {
  const { socket } = connection(t);
  socket.feed(`NOOP${'\r'.repeat(8000)}\n`);
  t.is(socket.written.at(-1), REPLY.noop);
  socket.feed(`${'\r'.repeat(8000)}x\n`);
  t.is(socket.written.at(-1), REPLY.unknown, 'CRs inside the line are kept: it is not a command');
});
