// What a daemon says when it cannot bind a port. `EADDRINUSE` alone leaves a user guessing;
// the usual holder of 8025 and 8026 is spamd itself (and spamlogd beside it), still enabled
// on a host moving to pfgrey, so that is named, with the command that finds the holder.

import { DEFAULTS } from './config/defaults.js';
import { PfgreyError, systemErrorText } from './errors.js';

export type HostOs = 'openbsd' | 'freebsd' | 'linux';

/** The command that shows which program listens on a port (TCP unless `udp`). */
export const FIND_LISTENER: Record<HostOs, (port: number, udp?: boolean) => string> = {
  openbsd: (p) => `fstat | grep ':${p}'`,
  freebsd: (p) => `sockstat -4l | grep ':${p}'`,
  linux: (p, udp = false) => `ss -l${udp ? 'u' : 't'}np | grep ':${p}'`,
};

function hostOs(): HostOs {
  return process.platform === 'openbsd' || process.platform === 'freebsd' ? process.platform : 'linux';
}

/**
 * E_LISTEN for a failed bind of `what` (the tarpit, the config port; sync packets, `udp`) on
 * host:port, naming the address, the reason and what to do about it; `flag` is the option that
 * gave the address.
 */
export function listenError(
  what: string, host: string, port: number, err: NodeJS.ErrnoException, opts: { udp?: boolean; flag?: string } = {},
): PfgreyError {
  const { udp = false, flag = '-l' } = opts;
  const at = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  let hint = '';
  if (err.code === 'EADDRINUSE') {
    const spamd = port === DEFAULTS.port || port === DEFAULTS.configPort
      ? `; spamd listens on ${DEFAULTS.port} and ${DEFAULTS.configPort}: stop and disable spamd and spamlogd first` : '';
    hint = `: another program holds it${spamd}; find it with ${FIND_LISTENER[hostOs()](port, udp)}`;
  } else if (err.code === 'EACCES') {
    hint = ': ports below 1024 need root (or CAP_NET_BIND_SERVICE)';
  } else if (err.code === 'EADDRNOTAVAIL') {
    hint = `: no interface of this host has that address (${flag})`;
  }
  return new PfgreyError('E_LISTEN', `cannot listen for ${what} on ${at}: ${systemErrorText(err)}${hint}`, { cause: err });
}
