// Reads what `tcpdump -n -e -ttt` prints for pflog packets. spamlogd reads the packets itself
// through bpf; we let tcpdump decode pflog (it does so on every system) and read its text, which
// keeps pfgrey free of native capture code. Both tcpdump dialects are accepted:
//   tcpdump.org:  00:00:00.000000 rule 3/0(match): pass in on em0: 192.0.2.7.51234 > 198.51.100.1.25: Flags [S], …
//   OpenBSD:      Nov 22 05:40:01.123456 rule 2/(match) pass in on em0: 192.0.2.7.51234 > 10.0.0.1.25: S 1:1(0) …
//   FreeBSD:      00:00:00.000000 rule 3/0(match) [uid 0]: pass out on em0: 198.51.100.1.40000 > 203.0.113.9.25: …

import net from 'node:net';

export interface PflogEvent {
  action: string;
  dir: 'in' | 'out';
  /** The interface pf names; nflog's lines (nflog.ts) name none. */
  ifname?: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

// FreeBSD's tcpdump adds ` [uid N]` (and ` [ridentifier N]`) after the reason when pf set them.
const LINE = /\brule [^ ]*?\(\w+\)(?: \[[^\]]*\])*:? (\w+) (in|out) on (\S+): (\d{1,3}(?:\.\d{1,3}){3})\.(\d+) > (\d{1,3}(?:\.\d{1,3}){3})\.(\d+):/;

/** The event on one line of tcpdump output, or undefined for anything else. */
export function parsePflogLine(line: string): PflogEvent | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const [, action, dir, ifname, src, sport, dst, dport] = m;
  if (!net.isIPv4(src!) || !net.isIPv4(dst!)) return undefined;
  return { action: action!, dir: dir as 'in' | 'out', ifname: ifname!, src: src!, sport: Number(sport), dst: dst!, dport: Number(dport) };
}

/** spamlogd's capture filter: passed IPv4 SMTP connection attempts (SYN without ACK). */
export function captureFilter(ifname?: string): string {
  return `ip and port 25 and action pass and tcp[13]&0x12=0x2${ifname ? ` and on ${ifname}` : ''}`;
}

/**
 * The address a passed SMTP connection whitelists (spamlogd(8)): inbound, the client that reached
 * the real MTA; outbound (unless inbound-only), the server we sent mail to.
 */
export function whitelistTarget(e: PflogEvent, inboundOnly: boolean): string | undefined {
  if (e.action !== 'pass') return undefined;
  if (e.dir === 'in') return e.src;
  return inboundOnly ? undefined : e.dst;
}
