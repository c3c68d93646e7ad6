// Protocol sniffing on a freshly accepted, paused socket: read the first
// bytes without consuming them (they are unshift()ed back, so whichever
// chain takes the connection sees them as if never read) and classify:
// the HTTP/2 prior-knowledge preface → h2c; an HTTP/1.x request line →
// HTTP/1.1; a TLS ClientHello → TLS (SNI kept for telemetry); anything else
// → TCP. Istio's detection has no timeout by default, so a server-first
// protocol on an undeclared port hangs there; here a client that sends
// nothing within the detection timeout is TCP, which is always safe (the
// bytes are relayed untouched, only L7 features are lost).
import type { Socket } from 'node:net';

export type Sniffed = 'h2' | 'http1' | 'tls' | 'tcp';

export interface Detection {
  protocol: Sniffed;
  /** TLS server name from the ClientHello, when there was one. */
  sni?: string;
  /** Why: 'bytes' (classified), 'timeout' (client silent), 'eof' (client ended), 'limit' (undecided after MAX_SNIFF). */
  reason: 'bytes' | 'timeout' | 'eof' | 'limit' | 'closed';
  /** Bytes looked at (they are back in the socket's buffer). */
  bytes: number;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Longest request line we wait for before calling it TCP (Envoy's default max URL is 8 KiB too). */
export const MAX_SNIFF = 16 * 1024;
const TOKEN = /^[A-Z]{1,20}$/;

/** 'more' = cannot tell yet; otherwise the verdict for these bytes. */
export function classify(buf: Buffer): { protocol: Sniffed; sni?: string } | 'more' {
  if (buf.length === 0) return 'more';
  const n = Math.min(buf.length, PREFACE.length);
  if (buf.subarray(0, n).equals(PREFACE.subarray(0, n))) return n === PREFACE.length ? { protocol: 'h2' } : 'more';
  if (buf[0] === 0x16) return classifyTls(buf);
  return classifyHttp1(buf);
}

function classifyHttp1(buf: Buffer): { protocol: Sniffed } | 'more' {
  const text = buf.toString('latin1', 0, Math.min(buf.length, MAX_SNIFF));
  const sp = text.indexOf(' ');
  const method = sp < 0 ? text : text.slice(0, sp);
  if (method.length > 0 && !/^[A-Z]*$/.test(method.slice(0, 20))) return { protocol: 'tcp' };
  if (sp < 0) return method.length > 20 ? { protocol: 'tcp' } : 'more';
  if (!TOKEN.test(method)) return { protocol: 'tcp' };
  const eol = text.indexOf('\n', sp);
  if (eol < 0) return /[\r\n]/.test(text.slice(sp)) ? { protocol: 'tcp' } : 'more';
  const line = text.slice(0, eol).replace(/\r$/, '');
  return /^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line) ? { protocol: 'http1' } : { protocol: 'tcp' };
}

/** A TLS record carrying a ClientHello; SNI parsed when the record is complete. */
function classifyTls(buf: Buffer): { protocol: Sniffed; sni?: string } | 'more' {
  if (buf.length < 6) return 'more';
  if (buf[1] !== 3 || buf[5] !== 1) return { protocol: 'tcp' }; // not TLS 1.x, or not a ClientHello
  const recLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recLen) return recLen + 5 > MAX_SNIFF ? { protocol: 'tls' } : 'more';
  return { protocol: 'tls', sni: sniFrom(buf.subarray(5, 5 + recLen)) };
}

/** One extension's body from a ClientHello handshake message, undefined if absent or malformed. */
export function clientHelloExtension(hs: Buffer, wanted: number): Buffer | undefined {
  try {
    let i = 4 + 2 + 32; // handshake header, client_version, random
    i += 1 + hs[i]; // session id
    i += 2 + hs.readUInt16BE(i); // cipher suites
    i += 1 + hs[i]; // compression methods
    const extEnd = Math.min(hs.length, i + 2 + hs.readUInt16BE(i));
    i += 2;
    while (i + 4 <= extEnd) {
      const type = hs.readUInt16BE(i);
      const len = hs.readUInt16BE(i + 2);
      i += 4;
      if (type === wanted) return i + len <= hs.length ? hs.subarray(i, i + len) : undefined;
      i += len;
    }
  } catch { /* truncated */ }
  return undefined;
}

/** Server name from a ClientHello handshake message (RFC 6066 §3), undefined if absent or malformed. */
export function sniFrom(hs: Buffer): string | undefined {
  const ext = clientHelloExtension(hs, 0);
  // server_name_list: u16 length, then (u8 type, u16 len, name)
  if (!ext || ext.length < 5) return undefined;
  return ext.toString('latin1', 5, 5 + ext.readUInt16BE(3));
}

/**
 * Waits for enough bytes to classify (or the timeout, or EOF), then puts
 * them back. The socket must be paused with no 'data' listener (accepted
 * with pauseOnConnect).
 */
export function sniff(sock: Socket, timeoutMs: number): Promise<Detection> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (protocol: Sniffed, reason: Detection['reason'], sni?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('close', onClose);
      if (buf.length > 0 && !sock.destroyed) sock.unshift(buf);
      resolve({ protocol, reason, sni, bytes: buf.length });
    };
    const verdict = (ended: boolean) => {
      const v = classify(buf);
      if (v !== 'more') finish(v.protocol, 'bytes', v.sni);
      else if (buf.length >= MAX_SNIFF) finish('tcp', 'limit');
      else if (ended) finish('tcp', 'eof');
    };
    const onReadable = () => {
      for (let c: Buffer | null; (c = sock.read() as Buffer | null) !== null;) buf = buf.length ? Buffer.concat([buf, c]) : c;
      verdict(false);
    };
    const onEnd = () => verdict(true);
    const onClose = () => finish('tcp', 'closed');
    const timer = setTimeout(() => finish('tcp', 'timeout'), timeoutMs);
    sock.on('readable', onReadable);
    sock.once('end', onEnd);
    sock.once('close', onClose);
  });
}
