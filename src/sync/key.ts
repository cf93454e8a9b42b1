// The sync key (spamd(8), SYNCHRONISATION): the HMAC key is the lower-case hexadecimal SHA-1
// digest of the key file's bytes, as spamd computes it (SHA1File), so that one file copied to
// every peer, pfgrey or spamd, keys them all.
//
// The file is read as root, before privileges are dropped, and whoever can choose it can add
// WHITE and TRAPPED entries on every peer. So, as the README's security section says for every
// file root reads: it is opened without following a symbolic link, it must be a plain file
// belonging to root or to the user running pfgrey, and no one else may write it. Others being
// able to read it is only warned about (they could forge packets, not change ours).
//
// Unlike spamd, which then uses an empty key and accepts packets from anyone, a missing key
// file stops the start (README.md, "Where pfgrey differs from spamd").

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { PfgreyError, systemErrorText } from '../errors.js';
import type { Logger } from '../log.js';

const keyError = (path: string, why: string, cause?: unknown) =>
  new PfgreyError('E_SYNC_KEY', `sync key ${path}: ${why}`, { cause, detail: why });

/** The HMAC key of the key file at `path`: its SHA-1 digest in lower-case hex, as ASCII bytes. */
export async function loadSyncKey(path: string, log: Logger, euid = process.geteuid?.() ?? 0): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw keyError(path, 'no such file; create one and copy it to every peer: ' +
        `openssl rand -hex 32 > ${path}; chmod 600 ${path}`, err);
    }
    // ELOOP on Linux and OpenBSD, EMLINK on FreeBSD: the name is a symbolic link.
    if (code === 'ELOOP' || code === 'EMLINK') throw keyError(path, 'is a symbolic link, which pfgrey never follows for its key', err);
    throw keyError(path, `cannot open it: ${systemErrorText(err)}`, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw keyError(path, 'is not a plain file');
    if (st.uid !== 0 && st.uid !== euid) {
      throw keyError(path, `belongs to uid ${st.uid}, neither root nor this user (uid ${euid}), so someone else placed it`);
    }
    if ((st.mode & 0o022) !== 0) throw keyError(path, 'may be written by others than its owner (chmod go-w it, then check its contents)');
    if ((st.mode & 0o004) !== 0) log.warning(`sync key ${path} may be read by every user, who could then forge sync packets (chmod 600 it)`);
    const hash = createHash('sha1');
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
    return Buffer.from(hash.digest('hex'), 'ascii');
  } catch (err) {
    if (err instanceof PfgreyError) throw err;
    throw keyError(path, `cannot read it: ${systemErrorText(err)}`, err);
  } finally {
    await fh.close();
  }
}
