// Writes pflog capture files (link type DLT_PFLOG) for pfgrey logd's tests: each packet is an
// OpenBSD pfloghdr followed by an IPv4 + TCP header, as pf logs an SMTP connection attempt.
// And nflog capture files (DLT_NFLOG), as `tcpdump -w` saves what nftables' `log group N` sends.

import fs from 'node:fs/promises';
import net from 'node:net';

export interface PflogPacket {
  dir: 'in' | 'out';
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** TCP flags byte; SYN by default. */
  flags?: number;
  /** pf action: 0 pass, 1 drop. */
  action?: number;
  ifname?: string;
}

const SYN = 0x02;
const PFLOG_HDRLEN = 100;

function ipv4(s: string): Buffer {
  return Buffer.from(s.split('.').map(Number));
}

function packet(p: PflogPacket): Buffer {
  const h = Buffer.alloc(PFLOG_HDRLEN);
  h[0] = PFLOG_HDRLEN;
  h[1] = 2; // AF_INET
  h[2] = p.action ?? 0;
  h.write(p.ifname ?? 'em0', 4, 'latin1');
  h.writeUInt32BE(3, 36); // rule number
  h.writeUInt32BE(0xffffffff, 40); // no subrule
  h[60] = p.dir === 'in' ? 1 : 2;
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(40, 2);
  ip[8] = 64;
  ip[9] = 6; // TCP
  ipv4(p.src).copy(ip, 12);
  ipv4(p.dst).copy(ip, 16);
  return Buffer.concat([h, ip, tcpHeader(p)]);
}

/** A bare TCP header, a SYN to port 25 unless told otherwise. */
function tcpHeader(p: { sport?: number; dport?: number; flags?: number }): Buffer {
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(p.sport ?? 40000, 0);
  tcp.writeUInt16BE(p.dport ?? 25, 2);
  tcp[12] = 0x50;
  tcp[13] = p.flags ?? SYN;
  tcp.writeUInt16BE(65535, 14);
  return tcp;
}

export async function writePflogPcap(file: string, packets: PflogPacket[]): Promise<void> {
  await writePcap(file, 117, packets.map(packet)); // DLT_PFLOG
}

export interface NflogPacket {
  /** The nflog group (tcpdump's "resource ID"). */
  group: number;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** TCP flags byte; SYN by default. */
  flags?: number;
}

function ipv6(s: string): Buffer {
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const words = (x: string | undefined) => (x ? x.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  const b = Buffer.alloc(16);
  all.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return b;
}

/** The TLVs of an nflog record: length and type in the writing host's order (little-endian here). */
function tlv(type: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + Math.ceil(value.length / 4) * 4);
  b.writeUInt16LE(4 + value.length, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

function nflogPacket(p: NflogPacket): Buffer {
  const v6 = net.isIPv6(p.src);
  let ip: Buffer;
  if (v6) {
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(20, 4);
    ip[6] = 6; // TCP
    ip[7] = 64;
    ipv6(p.src).copy(ip, 8);
    ipv6(p.dst).copy(ip, 24);
  } else {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = 6;
    ipv4(p.src).copy(ip, 12);
    ipv4(p.dst).copy(ip, 16);
  }
  const head = Buffer.alloc(4);
  head[0] = v6 ? 10 : 2; // AF_INET6, AF_INET
  head.writeUInt16BE(p.group, 2);
  const prefix = tlv(10, Buffer.from('pfgrey\0')); // NFULA_PREFIX, which tcpdump does not print
  return Buffer.concat([head, prefix, tlv(9, Buffer.concat([ip, tcpHeader(p)]))]); // NFULA_PAYLOAD
}

export async function writeNflogPcap(file: string, packets: NflogPacket[]): Promise<void> {
  await writePcap(file, 239, packets.map(nflogPacket)); // DLT_NFLOG
}

async function writePcap(file: string, linkType: number, packets: Buffer[]): Promise<void> {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(512, 16);
  header.writeUInt32LE(linkType, 20);
  const parts: Buffer[] = [header];
  let t = Math.floor(Date.now() / 1000);
  for (const data of packets) {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(t++, 0);
    rec.writeUInt32LE(data.length, 8);
    rec.writeUInt32LE(data.length, 12);
    parts.push(rec, data);
  }
  await fs.writeFile(file, Buffer.concat(parts));
}
