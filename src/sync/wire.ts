// spamd's sync protocol, version 2 (spamd(8), SYNCHRONISATION), as pure functions: a packet
// in, its records out or the one thing wrong with it; records in, a packet out. The layout is
// spamd's so that pfgrey and OpenBSD spamd can sit in one sync group (README.md, "Several MX
// hosts"). Every number is big-endian:
//
//   header, 32 bytes: version (1) = 2, af (1) = 2 (AF_INET), length (2, the whole packet),
//                     counter (4), HMAC-SHA1 (20), padding (4)
//   records (TLVs):   type (2), length (2, the record's whole length)
//     END     0  length 4
//     GREY    1  time (4), ip (4), from length (2), to length (2), helo length (2), then from,
//                to and helo, each ending in a NUL byte that its length counts, then zeros up
//                to a multiple of 16 bytes
//     WHITE   2  length 16: time (4), expire (4), ip (4)
//     TRAPPED 3  as WHITE
//
// The HMAC is HMAC-SHA1 over the packet's `length` bytes with the HMAC field zeroed, keyed by
// the lower-case hexadecimal SHA-1 digest of the key file's contents (key.ts). Times are Unix
// seconds on the wire, truncated to 32 bits; records carry milliseconds, as the rest of pfgrey.
//
// Strings are byte strings (latin1: one character per byte), as database keys are.

import { createHmac, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import type { SyncRecord } from '../grey/requests.js';

export type { SyncRecord } from '../grey/requests.js';

export const SYNC_VERSION = 2;
const AF_INET = 2;
export const HEADER_LENGTH = 32;
const HMAC_OFFSET = 8;
const HMAC_LENGTH = 20;
const TLV_HEADER = 4;
const GREY_FIXED = 18;
const ADDR_LENGTH = 16;
/** spamd pads a GREY record to a multiple of this (SPAM_ALIGNBYTES + 1). */
const ALIGN = 16;

const TYPE = { END: 0, GREY: 1, WHITE: 2, TRAPPED: 3 } as const;

/**
 * Why a packet was refused: one word each, so that a log can count them (src/sync/peers.ts).
 * short: fewer than 32 bytes; version, af: not version 2 or not AF_INET; length: a length field
 * below the header's or above what spamd can receive; truncated: fewer bytes arrived than the
 * length field says; hmac: the HMAC does not match; overrun: a record runs past the packet;
 * record: a record's length does not fit its type, or its strings are not NUL-terminated;
 * type: a record type version 2 does not have.
 */
export type Refusal = 'short' | 'version' | 'af' | 'length' | 'truncated' | 'hmac' | 'overrun' | 'record' | 'type';

export interface SyncPacket {
  counter: number;
  records: SyncRecord[];
}

export type Decoded = { ok: true; packet: SyncPacket } | { ok: false; reason: Refusal; detail: string };

const refuse = (reason: Refusal, detail: string): Decoded => ({ ok: false, reason, detail });

/** The HMAC of `packet` (its whole length, with the HMAC field read as zeros). */
function mac(packet: Buffer, key: Buffer): Buffer {
  const h = createHmac('sha1', key);
  h.update(packet.subarray(0, HMAC_OFFSET));
  h.update(Buffer.alloc(HMAC_LENGTH));
  h.update(packet.subarray(HMAC_OFFSET + HMAC_LENGTH));
  return h.digest();
}

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/**
 * The records of one datagram, or why it is refused. Checked in spamd's order (header, HMAC,
 * then each record), with what spamd leaves unchecked checked too: a GREY record's strings must
 * each end in a NUL byte within their lengths and hold none before it (spamd reads on to the
 * next NUL). Unlike spamd, which applies the records before a bad one, a packet with any bad
 * record is refused whole; spamd sends one record per packet, so the two agree on every packet
 * spamd sends. Bytes after the length field's end, or after an END record, are ignored, as
 * spamd ignores them. Never throws.
 */
export function decodePacket(datagram: Buffer, key: Buffer): Decoded {
  if (datagram.length < HEADER_LENGTH) return refuse('short', `${datagram.length} bytes, fewer than the ${HEADER_LENGTH} of a header`);
  if (datagram[0] !== SYNC_VERSION) return refuse('version', `protocol version ${datagram[0]}, not ${SYNC_VERSION}`);
  if (datagram[1] !== AF_INET) return refuse('af', `address family ${datagram[1]}, not ${AF_INET} (AF_INET)`);
  const length = datagram.readUInt16BE(2);
  if (length < HEADER_LENGTH) return refuse('length', `length field ${length}, less than the ${HEADER_LENGTH}-byte header`);
  if (length > DEFAULTS.syncMaxPacket) return refuse('length', `length field ${length}, more than the ${DEFAULTS.syncMaxPacket} bytes spamd receives`);
  if (datagram.length < length) return refuse('truncated', `${datagram.length} bytes arrived of the ${length} the length field says`);
  const packet = datagram.subarray(0, length);
  const theirs = packet.subarray(HMAC_OFFSET, HMAC_OFFSET + HMAC_LENGTH);
  if (!timingSafeEqual(theirs, mac(packet, key))) return refuse('hmac', 'HMAC does not match (another key, or altered)');

  const records: SyncRecord[] = [];
  let at = HEADER_LENGTH;
  while (at < length) {
    const left = length - at;
    if (left < TLV_HEADER) return refuse('overrun', `${left} bytes left at offset ${at}, too few for a record header`);
    const type = packet.readUInt16BE(at);
    const size = packet.readUInt16BE(at + 2);
    if (size > left) return refuse('overrun', `record of ${size} bytes at offset ${at}, but ${left} are left`);
    if (type === TYPE.END) break;
    if (type === TYPE.GREY) {
      if (size < GREY_FIXED) return refuse('record', `GREY record of ${size} bytes at offset ${at}, less than ${GREY_FIXED}`);
      const lengths = [packet.readUInt16BE(at + 12), packet.readUInt16BE(at + 14), packet.readUInt16BE(at + 16)] as const;
      if (GREY_FIXED + lengths[0] + lengths[1] + lengths[2] > size) {
        return refuse('record', `GREY record at offset ${at}: strings of ${lengths.join('+')} bytes do not fit its ${size}`);
      }
      const strings: string[] = [];
      let s = at + GREY_FIXED;
      for (const [i, n] of lengths.entries()) {
        const nul = n === 0 ? -1 : packet.indexOf(0, s);
        if (nul !== s + n - 1) {
          return refuse('record', `GREY record at offset ${at}: its ${['from', 'to', 'helo'][i]} string is not ${n} bytes ending in its only NUL`);
        }
        strings.push(packet.toString('latin1', s, nul));
        s += n;
      }
      const [from, to, helo] = strings as [string, string, string];
      records.push({ type: 'GREY', time: packet.readUInt32BE(at + 4) * 1000, ip: ipv4(packet, at + 8), helo, from, to });
    } else if (type === TYPE.WHITE || type === TYPE.TRAPPED) {
      const name = type === TYPE.WHITE ? 'WHITE' : 'TRAPPED';
      if (size !== ADDR_LENGTH) return refuse('record', `${name} record at offset ${at} of ${size} bytes, not ${ADDR_LENGTH}`);
      records.push({
        type: name, time: packet.readUInt32BE(at + 4) * 1000, expire: packet.readUInt32BE(at + 8) * 1000, ip: ipv4(packet, at + 12),
      });
    } else {
      return refuse('type', `record type ${type} at offset ${at}`);
    }
    // A zero-length record other than END was refused above (GREY and the addresses have a
    // minimum), so the walk always moves on.
    at += size;
  }
  return { ok: true, packet: { counter: packet.readUInt32BE(4), records } };
}

/** Unix seconds, truncated to 32 bits as spamd's htonl(time_t) does. */
const seconds = (ms: number) => Math.floor(ms / 1000) >>> 0;

function ipBytes(ip: string): Buffer {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  throw new RangeError(`sync carries IPv4 addresses only, not ${ip}`);
}

/** Whether the protocol can carry `ip` (version 2 has IPv4 only: an IPv6 client is not synced). */
export function syncable(ip: string): boolean {
  return net.isIPv4(ip);
}

function encodeRecord(r: SyncRecord): Buffer {
  if (r.type === 'GREY') {
    const [from, to, helo] = [r.from, r.to, r.helo].map((s) => Buffer.from(`${s}\0`, 'latin1')) as [Buffer, Buffer, Buffer];
    const body = GREY_FIXED + from.length + to.length + helo.length;
    const size = Math.ceil(body / ALIGN) * ALIGN;
    const b = Buffer.alloc(size);
    b.writeUInt16BE(TYPE.GREY, 0);
    b.writeUInt16BE(size, 2);
    b.writeUInt32BE(seconds(r.time), 4);
    ipBytes(r.ip).copy(b, 8);
    b.writeUInt16BE(from.length, 12);
    b.writeUInt16BE(to.length, 14);
    b.writeUInt16BE(helo.length, 16);
    Buffer.concat([from, to, helo]).copy(b, GREY_FIXED);
    return b;
  }
  const b = Buffer.alloc(ADDR_LENGTH);
  b.writeUInt16BE(r.type === 'WHITE' ? TYPE.WHITE : TYPE.TRAPPED, 0);
  b.writeUInt16BE(ADDR_LENGTH, 2);
  b.writeUInt32BE(seconds(r.time), 4);
  b.writeUInt32BE(seconds(r.expire), 8);
  ipBytes(r.ip).copy(b, 12);
  return b;
}

/** The size of the packet that carries `record` alone (spamd sends one record per packet). */
export function packetSize(record: SyncRecord): number {
  if (record.type !== 'GREY') return HEADER_LENGTH + ADDR_LENGTH + TLV_HEADER;
  const body = GREY_FIXED + [record.from, record.to, record.helo].reduce((n, s) => n + s.length + 1, 0);
  return HEADER_LENGTH + Math.ceil(body / ALIGN) * ALIGN + TLV_HEADER;
}

/**
 * The packet carrying `records` and an END record, with its HMAC. Throws a RangeError for an
 * address that is not IPv4, a string with a NUL byte or a character above 0xff, or a packet
 * longer than spamd can receive (the caller checks with syncable and packetSize first).
 */
export function encodePacket(records: readonly SyncRecord[], counter: number, key: Buffer): Buffer {
  for (const r of records) {
    if (r.type === 'GREY' && [r.from, r.to, r.helo].some((s) => /[\0\u0100-\uffff]/.test(s))) {
      throw new RangeError('a GREY string holds a NUL byte or a character that is not a byte');
    }
  }
  const end = Buffer.alloc(TLV_HEADER);
  end.writeUInt16BE(TYPE.END, 0);
  end.writeUInt16BE(TLV_HEADER, 2);
  const packet = Buffer.concat([Buffer.alloc(HEADER_LENGTH), ...records.map(encodeRecord), end]);
  if (packet.length > DEFAULTS.syncMaxPacket) {
    throw new RangeError(`a sync packet of ${packet.length} bytes is longer than the ${DEFAULTS.syncMaxPacket} spamd receives`);
  }
  packet[0] = SYNC_VERSION;
  packet[1] = AF_INET;
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt32BE(counter >>> 0, 4);
  mac(packet, key).copy(packet, HMAC_OFFSET);
  return packet;
}
