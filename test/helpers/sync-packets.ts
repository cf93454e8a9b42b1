// spamd sync packets (protocol version 2) assembled byte by byte from the layout in spamd(8)'s
// sync description (and README.md, "Several MX hosts"), with the HMAC computed here: tests hold
// pfgrey's decoder and daemons to spamd's layout with these, never with pfgrey's own encoder.

import { createHmac } from 'node:crypto';

export const u16 = (n: number) => Buffer.from([n >> 8 & 0xff, n & 0xff]);
export const u32 = (n: number) => Buffer.from([n >>> 24 & 0xff, n >>> 16 & 0xff, n >>> 8 & 0xff, n & 0xff]);
const ip4 = (ip: string) => Buffer.from(ip.split('.').map(Number));

/** A GREY record: strings with their NULs, padded to 16 bytes as spamd pads them (unless `pad` is false). */
export function greyTlv(ip: string, from: string, to: string, helo: string, pad = true): Buffer {
  const strings = Buffer.from(`${from}\0${to}\0${helo}\0`, 'latin1');
  const body = 18 + strings.length;
  const size = pad ? Math.ceil(body / 16) * 16 : body;
  return Buffer.concat([u16(1), u16(size), u32(1_600_000_000), ip4(ip),
    u16(from.length + 1), u16(to.length + 1), u16(helo.length + 1), strings, Buffer.alloc(size - body)]);
}

/** A WHITE (2) or TRAPPED (3) record expiring at `expire` (Unix seconds). */
export const addrTlv = (type: 2 | 3, ip: string, expire: number) =>
  Buffer.concat([u16(type), u16(16), u32(1_600_000_000), u32(expire), ip4(ip)]);

export const END = Buffer.concat([u16(0), u16(4)]);

/** The key spamd derives from the test key file `pfgrey sync test key\n`: its SHA-1 in hex. */
export const TEST_KEY_FILE = 'pfgrey sync test key\n';
export const TEST_KEY = Buffer.from('a7952e94b117d2bd876ef0778fa6068a5c5e7e3b', 'ascii');

/** Header + records, the length field and the HMAC filled in as spamd does (unless told otherwise). */
export function packet(tlvs: Buffer[], opts: { key?: Buffer; length?: number; version?: number; af?: number } = {}): Buffer {
  const body = Buffer.concat(tlvs);
  const p = Buffer.concat([Buffer.from([opts.version ?? 2, opts.af ?? 2]), u16(opts.length ?? 32 + body.length), u32(1),
    Buffer.alloc(24), body]);
  const len = Math.min(p.length, opts.length ?? p.length);
  createHmac('sha1', opts.key ?? TEST_KEY).update(p.subarray(0, len)).digest().copy(p, 8);
  return p;
}
