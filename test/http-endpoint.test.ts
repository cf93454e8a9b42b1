// The status endpoint's bounds: loopback addresses only (refused otherwise, in one line), GET
// and HEAD only, answered only for a loopback Host (a page elsewhere rebinding a name to
// 127.0.0.1 gets nothing), no request bodies, small headers; and the files the page needs.

import test from 'ava';
import net from 'node:net';
import { PfgreyError } from '../src/errors.js';
import { parseHttpAddress } from '../src/http/server.js';
import { runCli } from './helpers/cli.js';
import { testDaemon } from './helpers/daemon.js';

/** Sends raw bytes and resolves with everything the server sent back before it closed or went quiet. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => s.write(request));
    let text = '';
    s.setEncoding('latin1').on('data', (d: string) => {
      text += d;
      // One response is enough: keep-alive would hold the socket open.
      const head = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text);
      if (head >= 0 && length && text.length >= head + 4 + Number(length[1])) s.destroy();
      if (head >= 0 && request.startsWith('HEAD ')) s.destroy();
    });
    s.on('close', () => resolve(text));
    s.on('error', reject);
  });
}

const status = (response: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(response)?.[1]);

test('--http takes HOST:PORT, [IPV6]:PORT or a bare PORT on a loopback address', (t) => {
  t.deepEqual(parseHttpAddress('8027'), { host: '127.0.0.1', port: 8027 });
  t.deepEqual(parseHttpAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  t.deepEqual(parseHttpAddress('[::1]:8027'), { host: '::1', port: 8027 });
  t.deepEqual(parseHttpAddress('localhost:8027'), { host: '127.0.0.1', port: 8027 });
  t.deepEqual(parseHttpAddress('127.0.0.2:8027'), { host: '127.0.0.2', port: 8027 });
  for (const bad of ['0.0.0.0:8027', '192.0.2.1:8027', '[2001:db8::1]:8027', '[::]:8027', '[::ffff:192.0.2.1]:8027']) {
    t.throws(() => parseHttpAddress(bad), { instanceOf: PfgreyError, message: /is not a loopback address; the status endpoint has no authentication/ }, bad);
  }
  for (const bad of ['', 'nonsense', '127.0.0.1', '127.0.0.1:99999', 'example.com:8027']) {
    t.throws(() => parseHttpAddress(bad), { instanceOf: PfgreyError, message: /^--http / }, bad);
  }
});

test('pfgrey run and pfgrey policy refuse a --http host that is not loopback in one line, and policy refuses --http with --stdio', async (t) => {
  const run = await runCli(['run', '--http', '0.0.0.0:8027']);
  t.is(run.code, 1);
  t.is(run.stderr, 'pfgrey run: --http 0.0.0.0:8027: 0.0.0.0 is not a loopback address; the status endpoint has no authentication ' +
    'and listens on 127.0.0.1 or ::1 only (publish it through a reverse proxy or an SSH tunnel)\n');
  const policy = await runCli(['policy', '--http', '[2001:db8::1]:8027']);
  t.is(policy.code, 1);
  t.regex(policy.stderr, /^pfgrey policy: --http \[2001:db8::1\]:8027: 2001:db8::1 is not a loopback address; [^\n]+\n$/);
  const stdio = await runCli(['policy', '--stdio', '--http', '127.0.0.1:8027']);
  t.is(stdio.code, 1);
  t.regex(stdio.stderr, /^pfgrey policy: --http and --stdio: [^\n]+\n$/);
});

test('the endpoint answers GET and HEAD for its loopback name only, refuses bodies and oversized headers, and serves the page, its script and its icon', async (t) => {
  const { daemon } = await testDaemon(t, ['--http', '127.0.0.1:0']);
  const a = daemon.httpAddress!;
  t.is(a.address, '127.0.0.1');
  const get = (path: string, extra = '') => raw(a.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${a.port}\r\n${extra}\r\n`);

  const page = await get('/');
  t.is(status(page), 200);
  t.regex(page, /\r\ncontent-type: text\/html; charset=utf-8\r\n/i);
  t.regex(page, /\r\ncontent-security-policy: default-src 'self'[^\r]*\r\n/i);
  t.regex(page, /<script src="\/uPlot\.iife\.min\.js" defer><\/script>/);
  for (const [path, type] of [['/status.js', 'text/javascript'], ['/uPlot.iife.min.js', 'text/javascript'], ['/uPlot.min.css', 'text/css'],
    ['/status.css', 'text/css'], ['/favicon.ico', 'image/svg+xml'], ['/status.json', 'application/json'], ['/metrics', 'text/plain']] as const) {
    const r = await get(path);
    t.is(status(r), 200, path);
    t.true(r.toLowerCase().includes(`\r\ncontent-type: ${type}`), path);
  }
  t.is(status(await get('/nothing-here')), 404);

  const head = await raw(a.port, `HEAD /metrics HTTP/1.1\r\nHost: localhost:${a.port}\r\n\r\n`);
  t.is(status(head), 200);
  t.true(head.endsWith('\r\n\r\n'), 'no body after HEAD');

  const post = await raw(a.port, `POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n`);
  t.is(status(post), 405);
  t.regex(post, /\r\nallow: GET, HEAD\r\n/i);
  t.is(status(await get('/metrics', 'Content-Length: 5\r\n')), 413);
  t.is(status(await raw(a.port, 'GET /metrics HTTP/1.1\r\nHost: rebound.example\r\n\r\n')), 421);
  t.is(status(await get('/metrics', `X-Filler: ${'x'.repeat(16 * 1024)}\r\n`)), 400);
});
