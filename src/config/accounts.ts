// The one command per system that creates the user `pfgrey run` becomes when started as root.
// The README's install sections, pfgrey run's warning and pfgrey check's finding all print
// these lines, so what a user copies is the same wherever they read it (test/accounts.test.ts
// checks the README against them).
//
// Each follows its system's habit for daemon accounts: no password, no login shell, a home
// that holds nothing, and a group of its own named after the user (the rc.d scripts and the
// README's `install -d -o _pfgrey -g _pfgrey` rely on that group).
// - OpenBSD (useradd(8)): `-g =uid` makes the group with the uid's number, `-L daemon` is the
//   login class the ports' daemon users get, /var/empty and /sbin/nologin are theirs too.
// - FreeBSD (pw(8)): pw makes the user's own group by default; /nonexistent and
//   /usr/sbin/nologin are what the ports' daemon users have.
// - Linux (Debian's useradd(8)): a system account (uid below 1000, no home created) with its
//   own group. Under systemd, rc.d/linux/pfgrey.service needs none: it runs as a dynamic user.

import { DEFAULTS } from './defaults.js';

export type SystemName = 'openbsd' | 'freebsd' | 'linux';

const ADD_USER: Record<SystemName, (user: string) => string> = {
  openbsd: (u) => `useradd -g =uid -L daemon -c pfgrey -d /var/empty -s /sbin/nologin ${u}`,
  freebsd: (u) => `pw useradd ${u} -c pfgrey -d /nonexistent -s /usr/sbin/nologin`,
  linux: (u) => `useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin ${u}`,
};

/** The command that creates `user` on `os`. */
export function addUserCommand(os: SystemName, user: string = DEFAULTS.user): string {
  return ADD_USER[os](user);
}

/** The system pfgrey runs on, as far as these commands go (every other one is treated as Linux). */
export function thisSystem(platform: string = process.platform): SystemName {
  return platform === 'openbsd' || platform === 'freebsd' ? platform : 'linux';
}
