// Addresses as sockets report them. A listener bound to `::` (dual-stack) names its IPv4 peers
// and its own IPv4 addresses as IPv4-mapped IPv6 (`::ffff:192.0.2.1`, RFC 4291 §2.5.5.2); pf
// tables, the database and the log keep the plain IPv4 form, as spamd does.

import net from 'node:net';

/** `::ffff:192.0.2.1` → `192.0.2.1`; any other address as given; a missing one as ''. */
export function plainAddress(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') && net.isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}
