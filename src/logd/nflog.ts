// pfgrey logd on Linux. pf/linux/pfgrey.nft logs the first packet of every passed SMTP connection
// to an nflog group (`log group N`), and logd reads the groups through `tcpdump -i nflog:IN,OUT`
// (libpcap's name for netfilter's log groups). tcpdump 4.99 prints nflog's header and then the
// packet, and nothing else that nflog carries (not the prefix, not the interfaces, not even with
// -v):
//   00:00:00.000000 version 0, resource ID 25, family IPv4 (2), length 172: 192.0.2.2.47210 > 192.0.2.1.25: Flags [S], seq …
//   00:00:00.000419 version 0, resource ID 26, family IPv6 (10), length 128: 2001:db8::1.41136 > 2001:db8::2.25: Flags [S], …
// So the direction comes from the group ("resource ID"): one group for inbound, one for
// outbound. libpcap cannot filter nflog captures ("NFLOG link-layer type filtering not
// implemented"): the ruleset logs only new SMTP connections, and the checks here (to port 25,
// SYN without ACK) keep out anything else that reaches the groups.

import fs from 'node:fs/promises';
import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import type { PflogEvent } from './pflog.js';

/** The nflog groups logd reads: inbound passes, and outbound ones (none: inbound only). */
export interface NflogGroups {
  in: number;
  out?: number;
}

/** Where logd reads passed connections from: a pf log interface, or nflog groups. */
export type Capture =
  | { kind: 'pflog'; ifname: string }
  | { kind: 'nflog'; ifname: string; groups: NflogGroups };

const LINE = /\bresource ID (\d+), family IPv[46] \(\d+\), length \d+: (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\]/;

/**
 * The passed connection on one line of tcpdump's nflog output, or undefined for anything else:
 * another group, another port, a packet other than a SYN without ACK (tcpdump prints ACK as
 * `.`; ECN's E and W may come with the SYN).
 */
export function parseNflogLine(line: string, groups: NflogGroups): PflogEvent | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const [, group, src, sport, dst, dport, flags] = m;
  const dir = Number(group) === groups.in ? 'in' : Number(group) === groups.out ? 'out' : undefined;
  if (!dir || Number(dport) !== 25 || !flags!.includes('S') || flags!.includes('.')) return undefined;
  const family = net.isIP(src!);
  if (family === 0 || net.isIP(dst!) !== family) return undefined;
  return { action: 'pass', dir, src: src!, sport: Number(sport), dst: dst!, dport: 25 };
}

const GROUP = /^(?:0|[1-9]\d{0,4})$/;

/**
 * Reads -l: `pflog0` or another pf log interface (spamlogd's meaning), or the nflog groups as
 * libpcap names them: `nflog:IN,OUT`, `nflog:IN` (inbound only), or `nflog` for the groups
 * pf/linux/pfgrey.nft uses (DEFAULTS.nflogGroups).
 */
export function parseCaptureInterface(value: string): Capture {
  if (value === 'nflog') return nflogCapture(DEFAULTS.nflogGroups);
  if (value.startsWith('nflog:')) {
    const parts = value.slice('nflog:'.length).split(',');
    const bad = () => new PfgreyError('E_BAD_OPTION',
      `-l ${value}: expected nflog:IN,OUT (or nflog:IN), nflog group numbers from 0 to 65535`);
    if (parts.length > 2 || !parts.every((p) => GROUP.test(p) && Number(p) <= 65535)) throw bad();
    const [inbound, outbound] = parts.map(Number);
    if (inbound === outbound) {
      throw new PfgreyError('E_BAD_OPTION', `-l ${value}: inbound and outbound connections need groups of their own, ` +
        'since nflog packets do not say which way they went');
    }
    return nflogCapture({ in: inbound!, out: outbound });
  }
  if (!/^[\w.]{1,15}$/.test(value)) throw new PfgreyError('E_BAD_OPTION', `-l ${value}: not an interface name`);
  return { kind: 'pflog', ifname: value };
}

function nflogCapture(groups: NflogGroups): Capture {
  const out = groups.out === undefined ? '' : `,${groups.out}`;
  return { kind: 'nflog', ifname: `nflog:${groups.in}${out}`, groups: { ...groups } };
}

/** -l's default: pf's log interface on the BSDs, the groups of pf/linux/pfgrey.nft on Linux. */
export function defaultCaptureInterface(platform: NodeJS.Platform = process.platform): string {
  return platform === 'linux' ? nflogCapture(DEFAULTS.nflogGroups).ifname : DEFAULTS.pflog;
}

const DLT_PFLOG = 117;
const DLT_NFLOG = 239;

/**
 * What a capture file given to -r holds, from its pcap header: `pflog`, `nflog`, or undefined
 * (another link type, pcapng, unreadable: tcpdump then reads it as -l says, and reports what is
 * wrong with it). Reading the file's own kind lets `-r` take a pflog capture on Linux and an
 * nflog capture anywhere without -l.
 */
export async function captureFileKind(file: string): Promise<Capture['kind'] | undefined> {
  let header: Buffer;
  try {
    const fh = await fs.open(file, 'r');
    try {
      header = Buffer.alloc(24);
      const { bytesRead } = await fh.read(header, 0, 24, 0);
      if (bytesRead < 24) return undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  // Microsecond and nanosecond pcap, written on either kind of machine.
  const magicLE = header.readUInt32LE(0);
  const little = magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d;
  const magicBE = header.readUInt32BE(0);
  if (!little && magicBE !== 0xa1b2c3d4 && magicBE !== 0xa1b23c4d) return undefined;
  // The low 16 bits are the link type; the high ones may carry FCS information.
  const linkType = (little ? header.readUInt32LE(20) : header.readUInt32BE(20)) & 0xffff;
  return linkType === DLT_PFLOG ? 'pflog' : linkType === DLT_NFLOG ? 'nflog' : undefined;
}
