// What one sender may cost the daemon through the config port is bounded: connections at once,
// time without a completed line, bytes held across connections, lines and log lines per
// connection, and (by handing large connections to a worker thread) the time the event loop is
// held. Each limit is lowered through ConfigPort's options so that a test stays small; the
// defaults are in src/config/defaults.ts. Speed targets are measured by `npm run bench:config`.

import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import { ConfigPort, type ConfigPortOptions, type OffThread } from '../../src/blacklist/config-port.js';
import { BlackLists } from '../../src/blacklist/lists.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { memoryLogger } from '../../src/log.js';
import { eventually, sendConfig } from '../helpers/smtp.js';

type Options = Partial<Omit<ConfigPortOptions, 'host' | 'port' | 'lists' | 'log'>>;

async function startPort(t: ExecutionContext, opts: Options = {}, make = (o: ConfigPortOptions) => new ConfigPort(o)) {
  const lists = new BlackLists();
  const log = memoryLogger();
  const port = make({ host: '127.0.0.1', port: 0, lists, log, requireReservedPort: false, ...opts });
  const { port: p } = await port.listen();
  t.teardown(() => port.close());
  return { port, p, lists, log };
}

interface Client {
  socket: net.Socket;
  /** How the connection ended: an error code (ECONNRESET: the port reset it) or 'closed'. */
  ended: Promise<string>;
  isOpen(): boolean;
}

/** A connection to the config port that stays open until the test ends it or the port does. */
async function connect(t: ExecutionContext, p: number): Promise<Client> {
  const socket = net.connect({ port: p, host: '127.0.0.1' });
  t.teardown(() => socket.destroy());
  let open = true;
  const ended = new Promise<string>((resolve) => {
    let code = 'closed';
    socket.on('error', (err: NodeJS.ErrnoException) => {
      code = err.code ?? err.message;
    });
    socket.on('close', () => {
      open = false;
      resolve(code);
    });
  });
  socket.resume();
  // A refused connection may be reset before Node reports it connected.
  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', () => resolve());
  });
  return { socket, ended, isOpen: () => open };
}

/** A list line of `count` IPv4 /32 blocks, all in 10.0.0.0/8. */
function v4List(tag: string, count: number): string {
  const blocks = Array.from({ length: count }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
  return `${tag};"listed";inet;${count};${blocks.join(';')}\n`;
}

/**
 * A list line of exactly `bytes` bytes of short IPv6 blocks (`a:b::/32`), the input that
 * costs the most parsing per byte; the message pads it to the size.
 */
function v6ListOfSize(tag: string, bytes: number): { line: string; count: number } {
  const blocks: string[] = [];
  let size = tag.length + 40;
  for (let i = 0; size < bytes - 40; i++) {
    const b = `${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::/32`;
    blocks.push(b);
    size += b.length + 1;
  }
  const bare = `${tag};"m";inet6;${blocks.length};${blocks.join(';')}\n`;
  const line = `${tag};"m${'x'.repeat(bytes - bare.length)}";inet6;${blocks.length};${blocks.join(';')}\n`;
  return { line, count: blocks.length };
}

const linesWith = (log: { lines: string[] }, text: string) => log.lines.filter((l) => l.includes(text));

/** Waits until the port holds no connection and no byte. */
const released = (port: ConfigPort) => eventually(() => port.connections === 0 && port.bytesHeld === 0, 'every connection and byte let go');

test('connections over the most at once are reset at once, with one log line for the burst', async (t) => {
  const { port, p, lists, log } = await startPort(t, { maxConnections: 2 });
  const idle = [await connect(t, p), await connect(t, p)];
  await eventually(() => port.connections === 2, 'two connections open');
  const extra = await Promise.all([connect(t, p), connect(t, p), connect(t, p)]);
  for (const c of extra) t.is(await c.ended, 'ECONNRESET', 'refused at once, with a reset: the sender learns its list was not taken');
  t.true(idle.every((c) => c.isOpen()), 'the connections already open are kept');
  t.is(linesWith(log, 'the most at once').length, 1, log.lines.join('\n'));
  t.is(port.connections, 2);

  // Once one ends there is room again, for a sender that works.
  idle[0]!.socket.destroy();
  await eventually(() => port.connections === 1, 'the ended connection released');
  await sendConfig(p, 'alpha;"m";inet;1;192.0.2.0/24\n');
  await eventually(() => lists.count('alpha') === 1, 'the list taken');
  // A new burst is logged again.
  await connect(t, p);
  await eventually(() => port.connections === 2, 'full again');
  t.is(await (await connect(t, p)).ended, 'ECONNRESET');
  t.is(linesWith(log, 'the most at once').length, 2, log.lines.join('\n'));
});

test('a connection that completes no line within the idle timeout is reset, logged once, and changes nothing', async (t) => {
  const { port, p, lists, log } = await startPort(t, { idleTimeout: 300 });
  const silent = await connect(t, p);
  silent.socket.write('alpha;"m";inet;1;192.0.2.0/24');
  t.is(await silent.ended, 'ECONNRESET');
  t.is(linesWith(log, 'no line completed').length, 1, log.lines.join('\n'));
  t.is(lists.count('alpha'), 0);
  t.true(await released(port));
});

test('bytes trickled without ending a line do not keep a config connection open', async (t) => {
  const { port, p, log } = await startPort(t, { idleTimeout: 1000 });
  const trickler = await connect(t, p);
  const timer = setInterval(() => trickler.isOpen() && trickler.socket.write('9'), 100);
  t.teardown(() => clearInterval(timer));
  await eventually(() => !trickler.isOpen(), 'the trickler cut');
  clearInterval(timer);
  t.true(trickler.socket.bytesWritten >= 2, `it kept sending (${trickler.socket.bytesWritten} bytes)`);
  t.is(linesWith(log, 'no line completed').length, 1, log.lines.join('\n'));
  t.true(await released(port));
});

test('a connection that pushes the bytes held past the most at once is reset while others still work, and its bytes are let go', async (t) => {
  const { port, p, lists, log } = await startPort(t, { maxBytesInFlight: 1024 * 1024, maxBytes: 800 * 1024 });
  const a = v4List('a', 40_000);
  const b = v4List('b', 40_000);
  t.true(a.length > 512 * 1024 && a.length < 800 * 1024, `${a.length} bytes: alone under maxBytes, two over the bytes held`);

  const first = await connect(t, p);
  first.socket.write(a);
  await eventually(() => port.bytesHeld === a.length, 'the first connection\'s bytes held');
  const second = await connect(t, p);
  second.socket.end(b);
  t.not(await second.ended, 'closed', 'reset, so the sender learns its list was not taken');
  t.is(linesWith(log, 'together, the most at once').length, 1, log.lines.join('\n'));
  t.is(port.bytesHeld, a.length, 'only the first connection\'s bytes are held');

  first.socket.end();
  await first.ended;
  await eventually(() => lists.count('a') === 40_000, 'the first list taken');
  await sendConfig(p, 'c;"m";inet;1;192.0.2.0/24\n');
  await eventually(() => lists.count('c') === 1, 'a later sender works');
  t.is(lists.count('b'), 0);

  // Alone, a connection may still send no more than maxBytes.
  const huge = await connect(t, p);
  huge.socket.end(v4List('h', 70_000));
  t.not(await huge.ended, 'closed');
  t.is(linesWith(log, 'the most one may send').length, 1, log.lines.join('\n'));
  t.is(lists.count('h'), 0);
  t.true(await released(port));
});

test('megabytes of junk on one connection log at most the bad lines shown and one "N more bad lines"', async (t) => {
  const shown = DEFAULTS.configMaxBadLinesLogged;
  const { p, log } = await startPort(t);
  // Under the worker threshold (parsed on the main thread) and well over it (in the worker).
  for (const bytes of [30_000, 5_000_000]) {
    const lines = Math.floor(bytes / 3);
    const before = log.lines.length;
    await sendConfig(p, 'xx\n'.repeat(lines));
    await eventually(() => log.lines.some((l, i) => i >= before && l.includes('more bad lines')), 'the count of the rest');
    const written = log.lines.slice(before);
    t.true(written.length <= shown + 1, `${written.length} log lines for ${lines} bad lines`);
    t.is(written.filter((l) => / line \d+ \(xx\) ignored: /.test(l)).length, shown);
    t.regex(written.at(-1)!, new RegExp(`^error: config from 127\\.0\\.0\\.1:\\d+: ${lines - shown} more bad lines ignored$`));
  }
});

test('lines past the most one connection may carry are refused unread', async (t) => {
  const { p, lists, log } = await startPort(t, { maxLines: 3 });
  const text = ['a', 'b', 'c', 'd', 'e'].map((tag) => `${tag};"m";inet;1;192.0.2.0/24\n`).join('');
  await sendConfig(p, text);
  await eventually(() => lists.tags().length === 3, 'three lists taken');
  t.deepEqual(lists.tags(), ['a', 'b', 'c']);
  await eventually(() => linesWith(log, 'past the 3 lines').length === 2, 'the two others refused');
  t.is(lists.count('d') + lists.count('e'), 0);
});

// How long such a list holds the event loop is measured by `npm run bench:config`, which set
// the threshold; here, that a connection at the threshold is parsed in the worker thread.
test('a list just under the worker threshold is parsed on the main thread, and one at the threshold in the worker', async (t) => {
  const calls: string[] = [];
  class Watched extends ConfigPort {
    override applyText(text: string | Uint8Array, from: string): number {
      calls.push(`main thread ${text.length}`);
      return super.applyText(text, from);
    }
    protected override offThread(): OffThread {
      calls.push('worker');
      return super.offThread();
    }
  }
  const { p, lists } = await startPort(t, {}, (o) => new Watched(o));
  const limit = DEFAULTS.configOffThreadBytes;
  const under = v6ListOfSize('under', limit - 1);
  const at = v6ListOfSize('at', limit);
  t.is(under.line.length, limit - 1);
  t.is(at.line.length, limit);
  await sendConfig(p, under.line);
  await eventually(() => lists.count('under') === under.count, 'the list under the threshold taken');
  await sendConfig(p, at.line);
  await eventually(() => lists.count('at') === at.count, 'the list at the threshold taken');
  t.deepEqual(calls, [`main thread ${limit - 1}`, 'worker']);
});
