// Writes pflog capture files (link type DLT_PFLOG) for pfgrey logd's tests: each packet is an
// OpenBSD pfloghdr followed by an IPv4 + TCP header, as pf logs an SMTP connection attempt.

import fs from 'node:fs/promises';

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
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(p.sport ?? 40000, 0);
  tcp.writeUInt16BE(p.dport ?? 25, 2);
  tcp[12] = 0x50;
  tcp[13] = p.flags ?? SYN;
  tcp.writeUInt16BE(65535, 14);
  return Buffer.concat([h, ip, tcp]);
}

export async function writePflogPcap(file: string, packets: PflogPacket[]): Promise<void> {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(512, 16);
  header.writeUInt32LE(117, 20); // DLT_PFLOG
  const parts: Buffer[] = [header];
  let t = Math.floor(Date.now() / 1000);
  for (const p of packets) {
    const data = packet(p);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(t++, 0);
    rec.writeUInt32LE(data.length, 8);
    rec.writeUInt32LE(data.length, 12);
    parts.push(rec, data);
  }
  await fs.writeFile(file, Buffer.concat(parts));
}
