// Building DNS responses (the proxy's own answers, errors and truncation) in
// wire format; wire.ts reads packets, this writes them.
import { isIPv4, isIPv6 } from 'node:net';
import { CLASS_IN, FLAG_QR, FLAG_RA, FLAG_TC, HEADER_LEN, OUR_EDNS_UDP_SIZE, TYPE_A, TYPE_AAAA, TYPE_OPT, WireError } from './wire.js';

/** A header-only (plus question, when parseable) error response. */
export function errorResponse(query: Buffer, rcode: number, questionEnd?: number): Buffer {
  const qlen = questionEnd !== undefined ? questionEnd - HEADER_LEN : 0;
  const out = Buffer.alloc(HEADER_LEN + qlen);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  const qflags = query.readUInt16BE(2);
  // Keep opcode and RD from the query, as RFC 1035 asks.
  out.writeUInt16BE(FLAG_QR | (qflags & 0x7900) | FLAG_RA | (rcode & 0xf), 2);
  if (qlen > 0) {
    out.writeUInt16BE(1, 4);
    query.copy(out, HEADER_LEN, HEADER_LEN, questionEnd);
  }
  return out;
}

/** The truncated form of a response: header with TC set plus the question, nothing else. */
export function truncatedResponse(response: Buffer, questionEnd: number): Buffer {
  const out = Buffer.allocUnsafe(questionEnd);
  response.copy(out, 0, 0, questionEnd);
  out.writeUInt16BE(out.readUInt16BE(2) | FLAG_TC, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  return out;
}

/** Encodes a dotted name (no compression). */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed === '') return Buffer.from([0]);
  const labels = trimmed.split('.');
  const parts: Buffer[] = [];
  let total = 1;
  for (const label of labels) {
    const bytes = Buffer.from(label, 'latin1');
    if (bytes.length === 0 || bytes.length > 63) throw new WireError(`bad label in name ${JSON.stringify(name)}`);
    parts.push(Buffer.from([bytes.length]), bytes);
    total += bytes.length + 1;
  }
  if (total > 255) throw new WireError(`name longer than 255 bytes: ${JSON.stringify(name)}`);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export interface RecordSpec {
  name: string;
  type: number;
  ttl: number;
  rdata: Buffer;
}

export function rdataForIp(ip: string): { type: number; rdata: Buffer } {
  if (isIPv4(ip)) return { type: TYPE_A, rdata: Buffer.from(ip.split('.').map(Number)) };
  if (isIPv6(ip)) return { type: TYPE_AAAA, rdata: ipv6Bytes(ip) };
  throw new WireError(`not an IP address: ${JSON.stringify(ip)}`);
}

function ipv6Bytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  let text = ip.split('%')[0];
  // Embedded IPv4 tail (::ffff:1.2.3.4).
  const v4tail = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4tail) {
    const o = v4tail[1].split('.').map(Number);
    text = text.slice(0, -v4tail[1].length) + `${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined
    ? headGroups
    : [...headGroups, ...new Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function soaRdata(mname: string, rname: string, serial: number, minimum: number): Buffer {
  const times = Buffer.alloc(20);
  times.writeUInt32BE(serial >>> 0, 0);
  times.writeUInt32BE(7200, 4); // refresh
  times.writeUInt32BE(1800, 8); // retry
  times.writeUInt32BE(86400, 12); // expire
  times.writeUInt32BE(minimum, 16);
  return Buffer.concat([encodeName(mname), encodeName(rname), times]);
}

export interface BuildResponseOptions {
  /** The question section bytes to echo (from the query, keeps the client's case). */
  question: Buffer;
  id: number;
  flags: number;
  rcode: number;
  answers: RecordSpec[];
  authority?: RecordSpec[];
  /** Add an OPT record (the client sent EDNS). */
  edns: boolean;
}

/** Encodes a full response; names uncompressed except answers owned by the question name. */
export function buildResponse(o: BuildResponseOptions): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(HEADER_LEN);
  header.writeUInt16BE(o.id, 0);
  header.writeUInt16BE((o.flags & ~0xf) | (o.rcode & 0xf), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(o.answers.length, 6);
  header.writeUInt16BE(o.authority?.length ?? 0, 8);
  header.writeUInt16BE(o.edns ? 1 : 0, 10);
  parts.push(header, o.question);
  const nameCache = new Map<string, Buffer>();
  const qnameLower = questionNameLower(o.question);
  const encodeOwner = (name: string): Buffer => {
    const lower = name.toLowerCase().replace(/\.$/, '');
    // Compression pointer to the question name at offset 12 saves bytes for
    // the common case (every A record of a headless service).
    if (lower === qnameLower) return POINTER_TO_QUESTION;
    let enc = nameCache.get(lower);
    if (!enc) { enc = encodeName(lower); nameCache.set(lower, enc); }
    return enc;
  };
  for (const rr of [...o.answers, ...(o.authority ?? [])]) {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(rr.type, 0);
    fixed.writeUInt16BE(CLASS_IN, 2);
    fixed.writeUInt32BE(rr.ttl >>> 0, 4);
    fixed.writeUInt16BE(rr.rdata.length, 8);
    parts.push(encodeOwner(rr.name), fixed, rr.rdata);
  }
  if (o.edns) {
    const opt = Buffer.alloc(11);
    opt[0] = 0; // root owner
    opt.writeUInt16BE(TYPE_OPT, 1);
    opt.writeUInt16BE(OUR_EDNS_UDP_SIZE, 3);
    // extended rcode, version, flags, rdlength all zero
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

const POINTER_TO_QUESTION = Buffer.from([0xc0, HEADER_LEN]);

function questionNameLower(question: Buffer): string {
  let off = 0;
  const labels: string[] = [];
  while (off < question.length && question[off] !== 0) {
    const len = question[off];
    labels.push(question.toString('latin1', off + 1, off + 1 + len).toLowerCase());
    off += 1 + len;
  }
  return labels.join('.');
}
