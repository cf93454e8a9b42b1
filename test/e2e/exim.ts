// A real Exim for the policy tests: a configuration of its own around postgrey's published
// readsocket ACL, and SMTP sessions through `exim4 -C CONF -bh IP`, which reads a client's
// side of the dialogue on stdin, runs the ACLs for real (readsocket included) and prints the
// replies on stdout. Exim is unpacked, not installed, by test/e2e/exim-setup.sh.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** .build/test/e2e → the repository, where the ACL text lives (tsc copies only .ts files). */
const REPO = path.resolve(HERE, '../../..');
export const ACL_FILE = path.join(REPO, 'test/e2e/exim-postgrey.acl');
/** Where exim-setup.sh unpacks Debian's exim4-daemon-light; PFGREY_EXIM names another binary. */
export const EXIM = process.env.PFGREY_EXIM || '/opt/pfgrey-test/exim/usr/sbin/exim4';
/** The socket in the published ACL, the only text the tests change. */
const PUBLISHED_SOCKET = '${readsocket{/var/run/postgrey}';

/** Why this machine cannot run Exim sessions, or undefined when it can. */
export function eximMissing(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (a Debian Exim binary)';
  if (!fs.existsSync(EXIM)) return `no Exim at ${EXIM}: run test/e2e/exim-setup.sh as root, or set PFGREY_EXIM`;
  const version = spawnSync(EXIM, ['-bV', '-C', '/dev/null'], { encoding: 'utf8' });
  if (version.status !== 0) {
    const why = (version.stderr || version.error?.message || '').trim().split('\n')[0];
    return `${EXIM} does not run (${why}): run test/e2e/exim-setup.sh as root`;
  }
  // The configuration below names Exim's Debian user; getpwnam must find it.
  if (spawnSync('getent', ['passwd', 'Debian-exim']).status !== 0) return 'no Debian-exim user: run test/e2e/exim-setup.sh as root';
  if (!fs.existsSync(ACL_FILE)) return `${ACL_FILE} is missing`;
  return undefined;
}

/**
 * Writes an Exim configuration into `dir` whose RCPT ACL is postgrey's published one talking to
 * `socket` (a path, or `inet:HOST:PORT`), and returns its path. Exim switches to Debian-exim
 * for parts of a -bh session, so its spool and log directories are open to every user.
 */
export function writeEximConfig(dir: string, socket: string): string {
  const published = fs.readFileSync(ACL_FILE, 'utf8');
  if (published.split(PUBLISHED_SOCKET).length !== 2) throw new Error(`${ACL_FILE}: expected ${PUBLISHED_SOCKET} exactly once`);
  for (const sub of ['spool', 'log']) {
    fs.mkdirSync(path.join(dir, sub), { recursive: true });
    fs.chmodSync(path.join(dir, sub), 0o777);
  }
  const conf = path.join(dir, 'exim.conf');
  fs.writeFileSync(conf, [
    'primary_hostname = mx.example.test',
    'domainlist local_domains = example.test',
    'acl_smtp_rcpt = check_rcpt',
    `spool_directory = ${path.join(dir, 'spool')}`,
    `log_file_path = ${path.join(dir, 'log')}/%slog`,
    'exim_user = Debian-exim',
    'exim_group = Debian-exim',
    // Nothing from the test's environment is wanted; this also stops Exim warning that it purged it.
    'keep_environment =',
    '',
    'begin acl',
    '',
    'check_rcpt:',
    published.replace(PUBLISHED_SOCKET, `\${readsocket{${socket}}`),
    '  accept domains = +local_domains',
    '',
    'begin routers',
    'begin transports',
    '',
  ].join('\n'));
  return conf;
}

export interface Reply {
  code: number;
  /** The text of each line of the reply, without the code and separator. */
  lines: string[];
  /** Milliseconds from writing the command (or starting Exim, for the banner) to the last line. */
  ms: number;
}

export interface Smtp {
  /** Sends one command line and waits for its whole reply. */
  send(line: string): Promise<Reply>;
  /** Sends a message body after a 354 (dot-stuffed, then the lone dot) and waits for the reply. */
  data(lines: string[]): Promise<Reply>;
}

export interface SessionResult<T> {
  value: T;
  /** Exim's stdout: the testing-mode banner lines and every reply. */
  stdout: string;
  /** Exim's stderr: the LOG: lines, and the debug output asked for with `debug`. */
  stderr: string;
  /**
   * When the character at `offset` of stderr arrived (Date.now()). Exim writes its debug lines
   * unbuffered as it goes, so the time between two lines is the time Exim spent between them.
   */
  stderrAt(offset: number): number;
  code: number | null;
  ms: number;
}

/**
 * Runs `exim4 -C conf -bh client` and plays the client's side with `client`, one command at a
 * time as an SMTP client would (each waits for the previous reply, so a reply's time is its
 * own). `debug` is an Exim -d selector list such as `-all+acl`. Exim is killed if it outlives
 * `timeout` ms.
 */
export async function eximSession<T>(
  conf: string, client: string, play: (smtp: Smtp, banner: Reply) => Promise<T>,
  opts: { debug?: string; timeout?: number } = {},
): Promise<SessionResult<T>> {
  const started = Date.now();
  const args = [...(opts.debug ? [`-d${opts.debug}`] : []), '-C', conf, '-bh', client];
  const child = spawn(EXIM, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
  let stdout = '';
  let stderr = '';
  let scanned = 0;
  const replies: Reply[] = [];
  let pending: string[] = [];
  let since = started;
  let wake: () => void = () => {};
  let ended = false;
  const exited = new Promise<number | null>((resolve) => {
    const end = (code: number | null) => {
      ended = true;
      wake();
      resolve(code);
    };
    child.on('close', end);
    child.on('error', (err) => {
      stderr += `\nspawn ${EXIM}: ${err.message}`;
      end(null);
    });
  });
  // Exim may end (a dropped session) while a command is still on its way.
  child.stdin.on('error', () => undefined);
  const killer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 60_000);
  const arrivals: Array<{ end: number; at: number }> = [];
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    arrivals.push({ end: stderr.length, at: Date.now() });
  });
  const stderrAt = (offset: number) => (arrivals.find((a) => a.end > offset) ?? { at: NaN }).at;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    // Reply lines are `NNN-text` (more follow) or `NNN text` (the last); the testing mode's own
    // `****` lines and blank lines between them are not replies.
    let nl;
    while ((nl = stdout.indexOf('\n', scanned)) >= 0) {
      const line = stdout.slice(scanned, nl).replace(/\r$/, '');
      scanned = nl + 1;
      const m = /^(\d{3})(?:([ -])(.*))?$/.exec(line);
      if (!m) continue;
      pending.push(m[3] ?? '');
      if (m[2] !== '-') {
        replies.push({ code: Number(m[1]), lines: pending, ms: Date.now() - since });
        pending = [];
      }
    }
    wake();
  });

  let taken = 0;
  const nextReply = async (what: string): Promise<Reply> => {
    for (;;) {
      if (replies.length > taken) return replies[taken++]!;
      if (ended) {
        throw new Error(`Exim ended before replying to ${what}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  const write = (text: string) => {
    since = Date.now();
    child.stdin.write(text);
  };
  const smtp: Smtp = {
    send: (line) => {
      write(`${line}\r\n`);
      return nextReply(line);
    },
    data: (lines) => {
      write(`${lines.map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n')}\r\n.\r\n`);
      return nextReply('the message');
    },
  };
  try {
    const value = await play(smtp, await nextReply('the connection'));
    child.stdin.end();
    const code = await exited;
    return { value, stdout, stderr, stderrAt, code, ms: Date.now() - started };
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err;
  } finally {
    clearTimeout(killer);
  }
}
