// Minimal DNS wire-format helpers for the hot path. The proxy never fully
// decodes what it forwards or serves from cache: it reads the header and the
// question, walks resource records only to find TTL fields, and patches bytes
// in place. Every read is bounds-checked and throws WireError, so a malformed
// packet can never crash the server or read past the buffer.
// Building responses is in wire-build.ts.

export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

export const HEADER_LEN = 12;
export const TYPE_A = 1;
export const TYPE_NS = 2;
export const TYPE_CNAME = 5;
export const TYPE_SOA = 6;
export const TYPE_OPT = 41;
export const TYPE_AAAA = 28;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

// Header flag bits (16-bit flags word).
export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;
export const FLAG_CD = 0x0010;

/** The advertised UDP size assumed without EDNS (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;
/** What we advertise in our own OPT records (DNS flag day 2020 value). */
export const OUR_EDNS_UDP_SIZE = 1232;

/** A parsed query: header fields, the single question and its EDNS parameters. */
export class ParsedQuery {
  private dotted: string | undefined;

  constructor(
    readonly id: number,
    readonly flags: number,
    readonly opcode: number,
    /** The question name in wire form (length-prefixed labels, no root byte), ASCII lower-cased. */
    private readonly wireName: string,
    /** False when a label holds a '.', a control byte or non-ASCII: never answered locally. */
    readonly qnameIsPlain: boolean,
    readonly qtype: number,
    readonly qclass: number,
    /** Offset just past the question section. */
    readonly questionEnd: number,
    /** EDNS UDP payload size from the client's OPT record, or undefined without EDNS. */
    readonly ednsUdpSize: number | undefined,
    /** DNSSEC OK bit of the client's OPT record. */
    readonly dnssecOk: boolean,
    /**
     * Cache/single-flight key: the question in lower case plus the bits that
     * change what an upstream answers (EDNS present, DO, CD).
     */
    readonly key: string,
  ) {}

  /** Lower-case, no trailing dot, labels joined with '.'; "" for the root. Built on first use (cache hits never need it). */
  get qname(): string {
    if (this.dotted === undefined) {
      const parts: string[] = [];
      for (let pos = 0; pos < this.wireName.length;) {
        const len = this.wireName.charCodeAt(pos);
        parts.push(this.wireName.slice(pos + 1, pos + 1 + len));
        pos += 1 + len;
      }
      this.dotted = parts.join('.');
    }
    return this.dotted;
  }
}

/** Reads the header only; undefined if fewer than 12 bytes. */
export function readId(buf: Buffer): number | undefined {
  return buf.length >= HEADER_LEN ? buf.readUInt16BE(0) : undefined;
}

/** Offset after the (possibly compressed) name starting at off. */
export function skipName(buf: Buffer, off: number): number {
  let hops = 0;
  for (;;) {
    if (off >= buf.length) throw new WireError('name runs past end of packet');
    const len = buf[off];
    if ((len & 0xc0) === 0xc0) {
      if (off + 2 > buf.length) throw new WireError('truncated compression pointer');
      return off + 2;
    }
    if ((len & 0xc0) !== 0) throw new WireError('unsupported label type');
    if (len === 0) return off + 1;
    off += 1 + len;
    if (++hops > 127) throw new WireError('name has too many labels');
  }
}

interface RRVisitor {
  (type: number, ttlOffset: number, rdataOffset: number, rdlength: number): void;
}

/** Walks `count` resource records from off; returns the offset after them. */
export function walkRecords(buf: Buffer, off: number, count: number, visit?: RRVisitor): number {
  for (let i = 0; i < count; i++) {
    off = skipName(buf, off);
    if (off + 10 > buf.length) throw new WireError('truncated resource record header');
    const type = buf.readUInt16BE(off);
    const rdlength = buf.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (rdata + rdlength > buf.length) throw new WireError('resource record data runs past end of packet');
    if (visit) visit(type, off + 4, rdata, rdlength);
    off = rdata + rdlength;
  }
  return off;
}

/**
 * Parses a query's header, single question and OPT record. Throws WireError
 * when the packet is malformed; the caller answers FORMERR when at least the
 * header was readable.
 */
export function parseQuery(buf: Buffer): ParsedQuery {
  if (buf.length < HEADER_LEN) throw new WireError('shorter than a DNS header');
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  const qdcount = buf.readUInt16BE(4);
  const ancount = buf.readUInt16BE(6);
  const nscount = buf.readUInt16BE(8);
  const arcount = buf.readUInt16BE(10);
  const opcode = (flags >> 11) & 0xf;
  if (qdcount !== 1) throw new WireError(`expected exactly one question, got ${qdcount}`);

  // Question name: uncompressed labels only (there is nothing earlier in a
  // query that a pointer could legitimately refer to).
  let off = HEADER_LEN;
  let plain = true;
  let upper = false;
  for (;;) {
    if (off >= buf.length) throw new WireError('question name runs past end of packet');
    const len = buf[off];
    if (len === 0) break;
    if (len > 63) throw new WireError('question name uses compression or a label longer than 63');
    if (off + 1 + len > buf.length) throw new WireError('question label runs past end of packet');
    if (off + 1 + len - HEADER_LEN > 254) throw new WireError('question name longer than 255 bytes');
    for (let i = off + 1; i <= off + len; i++) {
      const c = buf[i];
      if (c >= 0x41 && c <= 0x5a) upper = true;
      else if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) plain = false;
    }
    off += 1 + len;
  }
  // One string for the whole name; length bytes (< 64) are unaffected by
  // lower-casing, and only ASCII letters are folded (RFC 4343).
  const wireName = !upper ? buf.toString('latin1', HEADER_LEN, off)
    : plain ? buf.toString('latin1', HEADER_LEN, off).toLowerCase() : asciiLowerLatin1(buf, HEADER_LEN, off);
  off += 1; // root label
  if (off + 4 > buf.length) throw new WireError('question type/class runs past end of packet');
  const qtype = buf.readUInt16BE(off);
  const qclass = buf.readUInt16BE(off + 2);
  const questionEnd = off + 4;

  let ednsUdpSize: number | undefined;
  let dnssecOk = false;
  // Walk every section even when only OPT matters: a query whose counts do
  // not match its contents is malformed and must not be forwarded.
  if (arcount + ancount + nscount > 0) {
    const afterAnswers = walkRecords(buf, questionEnd, ancount + nscount);
    walkRecords(buf, afterAnswers, arcount, (type, ttlOffset) => {
      if (type !== TYPE_OPT || ednsUdpSize !== undefined) return;
      // OPT: the CLASS field carries the UDP size, the TTL field the flags.
      ednsUdpSize = Math.max(CLASSIC_UDP_SIZE, buf.readUInt16BE(ttlOffset - 2));
      dnssecOk = (buf.readUInt16BE(ttlOffset + 2) & 0x8000) !== 0;
    });
  }
  const edns = ednsUdpSize === undefined ? 0 : dnssecOk ? 2 : 1;
  const cd = flags & FLAG_CD ? 1 : 0;
  const key = `${qtype}/${qclass}/${edns}${cd}/${wireName}`;
  return new ParsedQuery(id, flags, opcode, wireName, plain, qtype, qclass, questionEnd, ednsUdpSize, dnssecOk, key);
}

/** The bytes as latin1 text with only A-Z folded (DNS case-insensitivity is ASCII-only, RFC 4343). */
function asciiLowerLatin1(buf: Buffer, start: number, end: number): string {
  const copy = Buffer.from(buf.subarray(start, end));
  for (let i = 0; i < copy.length; i++) if (copy[i] >= 0x41 && copy[i] <= 0x5a) copy[i] += 0x20;
  return copy.toString('latin1');
}

export interface ResponseSummary {
  rcode: number;
  truncated: boolean;
  answerCount: number;
  /** Offsets of every TTL field except OPT's (which holds flags). */
  ttlOffsets: number[];
  /** Minimum TTL over answer records; undefined without answers. */
  minAnswerTtl: number | undefined;
  /** RFC 2308 negative TTL: min(SOA TTL, SOA MINIMUM) from the authority section. */
  negativeTtl: number | undefined;
  questionEnd: number;
}

/** Walks an upstream response once to find its TTL fields and caching lifetime. */
export function summarizeResponse(buf: Buffer): ResponseSummary {
  if (buf.length < HEADER_LEN) throw new WireError('response shorter than a DNS header');
  const flags = buf.readUInt16BE(2);
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  let off = HEADER_LEN;
  for (let i = 0; i < qd; i++) {
    off = skipName(buf, off) + 4;
    if (off > buf.length) throw new WireError('truncated question in response');
  }
  const questionEnd = off;
  const ttlOffsets: number[] = [];
  let minAnswerTtl: number | undefined;
  let negativeTtl: number | undefined;
  off = walkRecords(buf, off, an, (_type, ttlOff) => {
    const ttl = buf.readUInt32BE(ttlOff);
    ttlOffsets.push(ttlOff);
    minAnswerTtl = minAnswerTtl === undefined ? ttl : Math.min(minAnswerTtl, ttl);
  });
  off = walkRecords(buf, off, ns, (type, ttlOff, rdata, rdlength) => {
    ttlOffsets.push(ttlOff);
    if (type === TYPE_SOA && rdlength >= 22) {
      const minimum = buf.readUInt32BE(rdata + rdlength - 4);
      const ttl = buf.readUInt32BE(ttlOff);
      negativeTtl = Math.min(ttl, minimum);
    }
  });
  walkRecords(buf, off, ar, (type, ttlOff) => {
    if (type !== TYPE_OPT) ttlOffsets.push(ttlOff);
  });
  return {
    rcode: flags & 0xf,
    truncated: (flags & FLAG_TC) !== 0,
    answerCount: an,
    ttlOffsets,
    minAnswerTtl,
    negativeTtl,
    questionEnd,
  };
}

/** True when both buffers hold the same question section, ignoring ASCII case. */
export function sameQuestion(a: Buffer, aEnd: number, b: Buffer, bEnd: number): boolean {
  if (aEnd !== bEnd || a.length < aEnd || b.length < bEnd) return false;
  for (let i = HEADER_LEN; i < aEnd; i++) {
    let x = a[i];
    let y = b[i];
    if (x >= 0x41 && x <= 0x5a) x += 0x20;
    if (y >= 0x41 && y <= 0x5a) y += 0x20;
    if (x !== y) return false;
  }
  return true;
}

export const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV',
  35: 'NAPTR', 43: 'DS', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY', 257: 'CAA',
};

/** Every value qtypeLabel() can return (fixed, so per-label counters can live in a flat array). */
export const QTYPE_LABELS: readonly string[] = [...new Set(Object.values(TYPE_NAMES)), 'OTHER'];

/** Metric label for a qtype; rare types collapse to OTHER to bound cardinality. */
export function qtypeLabel(qtype: number): string {
  return TYPE_NAMES[qtype] ?? 'OTHER';
}
