// What `pfgrey check` learns about the system, as plain data, and the parsers of the system
// files it reads (/etc/services, `mount -p` or `mount` output; the password file is read by
// privileges.ts's lookupUser, as pfgrey run reads it). src/cli/check.ts gathers the facts;
// checks.ts judges them.

export interface FileMode {
  uid: number;
  gid: number;
  /** Permission bits, e.g. 0o750. */
  mode: number;
}

export type PortState =
  | { state: 'free' }
  /** Taken; `smtp` when a connection to it was answered with a 220 greeting in time. */
  | { state: 'taken'; smtp: boolean }
  /** Some other failure to listen, as `cannot assign requested address (EADDRNOTAVAIL)`. */
  | { state: 'failed'; code: string; message: string };

export interface SystemFacts {
  euid: number;
  /** undefined: pfctl is executable; otherwise why not (executableProblem): `/sbin/pfctl does not exist`. */
  pfctlProblem?: string;
  /** Opening the pf device read-write: 'ok', 'not-root' (not tried), or the failure text. */
  pfDevice: 'ok' | 'not-root' | { error: string };
  /** FreeBSD only: whether fdescfs is mounted on /dev/fd, or why the mount table is unknown. */
  fdescfs?: { mounted: boolean } | { error: string };
  /** The --user account from the password file; undefined when it has none. */
  user?: { name: string; uid: number; gid: number };
  /** Where the account was looked up, for messages. */
  passwdFile: string;
  /**
   * The database's directory and its ancestors (root first), as stat(2) saw them. The file
   * itself is not judged: pfgrey run, started as root, hands it to the user.
   */
  db: {
    dir: string;
    /** undefined: the directory does not exist. */
    dirMode?: FileMode;
    ancestors: Array<{ path: string; mode: FileMode }>;
  } | {
    /** A PostgreSQL database (--db postgres://…): its URL without the password. */
    postgres: string;
    /** Why it could not be opened for reading, or undefined when it could. */
    problem?: string;
  };
  tarpitPort: PortState;
  configPort: PortState;
}

/** The tcp names of services(5) (names and aliases) and their ports. */
export function parseServices(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const f = line.split(/\s+/);
    const m = /^(\d+)\/tcp$/.exec(f[1] ?? '');
    if (!m) continue;
    for (const name of [f[0]!, ...f.slice(2)]) if (!out.has(name)) out.set(name, Number(m[1]));
  }
  return out;
}

/**
 * Whether fdescfs is mounted on /dev/fd, from `mount -p` (fstab lines: `fdesc /dev/fd fdescfs
 * rw 0 0`) or `mount` (`fdescfs on /dev/fd (fdescfs)`) output.
 */
export function fdescfsMounted(mountOutput: string): boolean {
  for (const line of mountOutput.split('\n')) {
    const m = /^(\S+)\s+on\s+(\S+)\s+\(([^,)\s]+)/.exec(line);
    const [point, type] = m ? [m[2], m[3]] : line.trim().split(/\s+/).slice(1, 3);
    if (point === '/dev/fd' && type === 'fdescfs') return true;
  }
  return false;
}
