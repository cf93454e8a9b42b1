// pfgrey policy for tests: started as a user would start it, and asked over real sockets.

import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { CLI } from './cli.js';
import { eventually } from './wait.js';

/** A Postfix RCPT request; `extra` attributes are added as given ("name=value" lines). */
export function policyRequest(over: Record<string, string> = {}): string {
  const attrs: Record<string, string> = {
    request: 'smtpd_access_policy', protocol_state: 'RCPT', protocol_name: 'ESMTP', client_address: '192.0.2.1',
    client_name: 'mx.example', helo_name: 'mx.example', sender: 'a@example.org', recipient: 'b@us.example', ...over,
  };
  return `${Object.entries(attrs).map(([k, v]) => `${k}=${v}`).join('\n')}\n\n`;
}

export interface StartedPolicy {
  port: number;
  pid: number;
  stderr: () => string;
}

/** Starts `pfgrey policy --inet 127.0.0.1:0 …` and waits for its listening line. */
export function startPolicy(t: ExecutionContext, args: string[]): Promise<StartedPolicy> {
  const child = spawn(process.execPath, [CLI, 'policy', '--log', 'stderr', '--inet', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  return eventually(() => {
    const m = /listening for policy requests on 127\.0\.0\.1:(\d+)\./.exec(err);
    return m ? { port: Number(m[1]), pid: child.pid!, stderr: () => err } : undefined;
  }, 'the policy server listening', 30_000);
}

/** One connection: sends each request after the previous answer, returns the answers. */
export async function ask(port: number, requests: string[], halfClose = false): Promise<{ answers: string[]; ended: boolean }> {
  const s = net.connect({ port, host: '127.0.0.1' });
  let text = '';
  let ended = false;
  s.setEncoding('latin1').on('data', (d: string) => (text += d));
  s.on('end', () => (ended = true));
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  for (let i = 0; i < requests.length; i++) {
    s.write(requests[i]!);
    if (halfClose && i === requests.length - 1) s.end();
    await eventually(() => text.split('\n\n').length > i + 1, `answer ${i + 1}`);
  }
  if (halfClose) await eventually(() => ended, 'EOF after the answer');
  s.destroy();
  return { answers: text.split('\n\n').filter((a) => a !== ''), ended };
}

