// Privilege separation for `pfgrey run`, in spamd's manner: started as root, the daemon opens
// /dev/pf, binds its ports and opens its database, then becomes an unprivileged user before it
// handles any client. pfctl is later run with the /dev/pf descriptor it inherited, so root is
// never needed again.

import fs from 'node:fs';
import { addUserCommand, thisSystem } from './config/accounts.js';
import { PfgreyError, systemErrorText } from './errors.js';
import type { Logger } from './log.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

/** Looks `name` up in the passwd file (every BSD keeps /etc/passwd next to its database). */
export function lookupUser(name: string, passwd = '/etc/passwd'): Account | undefined {
  let text: string;
  try {
    text = fs.readFileSync(passwd, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) {
      const uid = Number(f[2]);
      const gid = Number(f[3]);
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { name, uid, gid };
    }
  }
  return undefined;
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/** The account to become, checked before anything is opened; undefined when not root. */
export function accountToBecome(user: string, log: Logger, explicit = true): Account | undefined {
  if (!isRoot()) {
    log.notice(`not started as root: running as uid ${process.getuid?.()} without privilege separation; ` +
      'pfctl must be able to open /dev/pf by itself, and ports below 1024 cannot be bound');
    return undefined;
  }
  const account = lookupUser(user);
  if (!account && !explicit) {
    // The default user is missing: a first run on a machine pfgrey was never installed on (the
    // README's `npm start`). Run, but say loudly how to fix it; a --user that is named must exist.
    log.warning(`user ${user} does not exist: running as root WITHOUT privilege separation; ` +
      `create it: ${addUserCommand(thisSystem(), user)}`);
    return undefined;
  }
  if (!account) {
    throw new PfgreyError('E_USER', `no such user ${user} (create it, or name another with --user)`);
  }
  if (account.uid === 0) throw new PfgreyError('E_USER', `--user ${user} is root: name an unprivileged user`);
  return account;
}

/**
 * Hands the files the daemon keeps writing to `account`, then becomes it for good (groups,
 * gid, uid — in that order, since only root may change the first two). Each file is opened
 * without following a symbolic link and changed through that descriptor: the files lie in the
 * unprivileged user's directory, and a link planted there must not make root give away its
 * target.
 */
export function becomeUser(account: Account, files: readonly string[], log: Logger): void {
  for (const f of files) {
    let fd: number;
    try {
      fd = fs.openSync(f, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      // ELOOP on Linux and OpenBSD, EMLINK on FreeBSD: the name is a symbolic link.
      const why = code === 'ELOOP' || code === 'EMLINK' ? 'it is a symbolic link' : systemErrorText(err);
      throw new PfgreyError('E_PRIVILEGES', `cannot hand ${f} to ${account.name}: ${why}`, { cause: err });
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) {
        throw new PfgreyError('E_PRIVILEGES', `cannot hand ${f} to ${account.name}: it is not a plain file`);
      }
      // A hard link planted since the database was checked would give away the file it names.
      if (st.nlink > 1) {
        throw new PfgreyError('E_PRIVILEGES', `cannot hand ${f} to ${account.name}: it has ${st.nlink} names (hard links)`);
      }
      fs.fchownSync(fd, account.uid, account.gid);
    } catch (err) {
      if (err instanceof PfgreyError) throw err;
      throw new PfgreyError('E_PRIVILEGES', `cannot hand ${f} to ${account.name}: ${systemErrorText(err)}`, { cause: err });
    } finally {
      fs.closeSync(fd);
    }
  }
  try {
    // Only the user's own group: no supplementary group of root's survives.
    process.setgroups!([account.gid]);
    process.setgid!(account.gid);
    process.setuid!(account.uid);
  } catch (err) {
    throw new PfgreyError('E_PRIVILEGES',
      `cannot become ${account.name} (uid ${account.uid}, gid ${account.gid}): ${systemErrorText(err)}`, { cause: err });
  }
  log.info(`dropped privileges to ${account.name} (uid ${account.uid}, gid ${account.gid})`);
}

/** A procfs file's text, or undefined where there is no such file (no procfs on the BSDs). */
function procText(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** CAP_NET_BIND_SERVICE's bit in Linux's capability sets (linux/capability.h). */
const CAP_NET_BIND_SERVICE = 10n;

/**
 * Whether this process can bind ports below 1024: root, or on Linux a process holding
 * CAP_NET_BIND_SERVICE (the systemd unit runs pfgrey as a user of its own with it). The
 * config port's reserved-source-port rule means "only a sender as privileged as we are", so
 * it applies exactly when this is true. `status` is /proc/self/status, for tests.
 */
export function mayBindReserved(uid = process.getuid?.(), status?: string): boolean {
  if (uid === 0) return true;
  const text = status ?? procText('/proc/self/status');
  if (text === undefined) return false; // no procfs (the BSDs): only root can
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(text);
  return m !== null && ((BigInt(`0x${m[1]}`) >> CAP_NET_BIND_SERVICE) & 1n) === 1n;
}

/**
 * The lowest port that any user may bind, when the system lets ordinary users bind some ports
 * below 1024 (Linux's net.ipv4.ip_unprivileged_port_start; container runtimes often set 0);
 * undefined where reserved ports are reserved. `value` is the sysctl's text, for tests.
 */
export function unprivilegedPortStart(value?: string): number | undefined {
  const text = value ?? procText('/proc/sys/net/ipv4/ip_unprivileged_port_start');
  if (text === undefined) return undefined;
  const n = Number.parseInt(text.trim(), 10);
  return Number.isInteger(n) && n < 1024 ? n : undefined;
}
