// One daemon per database. Two `pfgrey run` on one file (on different ports, say) would both
// scan, promote and push the same table, each undoing the other's view of what is in pf. SQLite
// keeps the file consistent but cannot say "someone else runs here", so the daemon holds a lock
// of its own beside the database: a Unix socket named `<db>.lock` that it listens on.
//
// A socket rather than a pid file: a pid file outlives a crash or a reboot and its pid may by
// then belong to another process, which would keep pfgrey from starting. A socket proves its
// holder alive by answering: the second daemon connects, reads the holder's pid from it and
// refuses to start, naming it; a socket nobody answers on is what a crash left behind, and is
// replaced. `pfgrey db` and `pfgrey logd` do not take the lock: they are meant to run beside
// the daemon.

import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { PfgreyError, systemErrorText } from '../errors.js';
import type { Logger } from '../log.js';

export interface DatabaseLock {
  readonly path: string;
  release(): Promise<void>;
}

/**
 * Longest socket path every system takes (sun_path is 104 bytes on the BSDs, 108 on Linux, with
 * the terminating NUL). Node cuts a longer one short without a word and would lock another name.
 */
const SOCKET_PATH_MAX = 103;

/** How long a holder has to answer before its socket counts as left behind. */
const ANSWER_WAIT = 2_000;

/** Most bytes read from a holder: `pfgrey PID\n`. */
const ANSWER_MAX = 64;

/** The holder's answer; undefined when nobody listens (a socket a crash left behind). */
function askHolder(path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const s = net.connect({ path });
    const done = (answer: string | undefined) => {
      clearTimeout(timer);
      s.destroy();
      resolve(answer);
    };
    // A listener that accepts but never answers is alive all the same.
    const timer = setTimeout(() => done(text || 'pfgrey (no answer)'), ANSWER_WAIT);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      text += d;
      if (text.includes('\n') || text.length >= ANSWER_MAX) done(text.slice(0, ANSWER_MAX));
    });
    s.on('end', () => done(text || 'pfgrey (no answer)'));
    s.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? undefined : `unknown (${err.code})`));
  });
}

function listen(server: net.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Takes the lock of the database at `dbPath`, or throws E_DB_LOCKED naming the pid of the
 * daemon that holds it. A socket left by a daemon that died is replaced, with a notice. Undefined,
 * with a warning, where the path is too long for a socket.
 */
export async function lockDatabase(dbPath: string, log: Logger): Promise<DatabaseLock | undefined> {
  const path = `${dbPath}.lock`;
  if (Buffer.byteLength(path) > SOCKET_PATH_MAX) {
    log.warning(`${path} is longer than a Unix socket's name may be (${SOCKET_PATH_MAX} bytes): ` +
      'nothing stops a second daemon on this database');
    return undefined;
  }
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(`pfgrey ${process.pid}\n`);
  });
  for (let attempt = 0; ; attempt++) {
    try {
      await listen(server, path);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
        // A directory this process may not write: the database's own open says what that
        // means for it, in its words; the lock is not what the user has to fix first.
        log.warning(`cannot create ${path} (${systemErrorText(err)}): nothing stops a second daemon on this database`);
        return undefined;
      }
      if (code !== 'EADDRINUSE' || attempt > 0) {
        throw new PfgreyError('E_DB_LOCKED', `cannot lock ${dbPath} with ${path}: ${systemErrorText(err)}`, { cause: err });
      }
    }
    const holder = await askHolder(path);
    if (holder !== undefined) {
      const pid = /^pfgrey (\d+)/.exec(holder)?.[1];
      throw new PfgreyError('E_DB_LOCKED', `${dbPath} is in use by another pfgrey daemon` +
        `${pid ? ` (pid ${pid})` : ''}, which holds ${path}: stop it first, or give this one a --db of its own`);
    }
    // Only a socket is ever removed: anything else under the name was not left by pfgrey.
    const st = await lstat(path).catch(() => undefined);
    if (st && !st.isSocket()) {
      throw new PfgreyError('E_DB_LOCKED', `cannot lock ${dbPath}: ${path} exists and is not a socket; remove it`);
    }
    if (st) {
      await unlink(path).catch(() => undefined);
      log.notice(`${path} was left by a pfgrey that is no longer running; taking it over`);
    }
  }
  let released: Promise<void> | undefined;
  return {
    path,
    // Closing the listener removes the socket file (libuv unlinks it).
    release: () => (released ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
