// What the inbound side needs from a TLS ClientHello before deciding who
// terminates it: the ALPN list. Mesh peers offer Istio's istio-* protocols
// (istio-peer-exchange/istio for TCP, istio-h2/istio-http/1.1 for HTTP); an
// app's own TLS offers h2/http/1.1 or nothing, and is passed through to the
// app untouched (PERMISSIVE).
import { clientHelloExtension } from '../protocol/sniff.js';
/** ALPN values Istio's client sidecars offer to a mesh peer. */
export const MESH_ALPN_TCP = ['istio-peer-exchange', 'istio'];
export const MESH_ALPN_H2 = ['istio-h2'];
export const MESH_ALPN_H1 = ['istio-http/1.1'];
/** What the inbound server side accepts, in preference order. */
export const MESH_ALPN_SERVER = ['istio-h2', 'istio-http/1.1', 'istio-peer-exchange', 'istio'];

export function isMeshAlpn(protocols: string[]): boolean {
  return protocols.some((p) => p === 'istio' || p.startsWith('istio-'));
}

/**
 * ALPN protocol names from a buffer that starts with a TLS record carrying a
 * ClientHello. [] if there is no ALPN extension; undefined if the record is
 * incomplete or malformed.
 */
export function alpnFromClientHello(buf: Buffer): string[] | undefined {
  if (buf.length < 9 || buf[0] !== 0x16 || buf[5] !== 1) return undefined;
  const recLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recLen) return undefined;
  const ext = clientHelloExtension(buf.subarray(5, 5 + recLen), 16);
  if (ext === undefined) return [];
  try {
    // protocol_name_list: u16 length, then (u8 length, name)…
    const out: string[] = [];
    const end = Math.min(ext.length, 2 + ext.readUInt16BE(0));
    for (let j = 2; j < end; j += 1 + ext[j]) out.push(ext.toString('latin1', j + 1, j + 1 + ext[j]));
    return out;
  } catch {
    return undefined;
  }
}

/** Reads (without consuming) until a complete first TLS record is buffered, or gives up. */
export function peekRecord(sock: import('node:net').Socket, timeoutMs: number, max = 16 * 1024 + 5): Promise<Buffer> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const done = () => {
      clearTimeout(t);
      sock.off('readable', onReadable);
      sock.off('end', done);
      sock.off('close', done);
      if (buf.length && !sock.destroyed) sock.unshift(buf);
      resolve(buf);
    };
    const onReadable = () => {
      for (let c: Buffer | null; (c = sock.read() as Buffer | null) !== null;) buf = Buffer.concat([buf, c]);
      // Not a TLS handshake record: nothing more to learn here (plaintext goes on to protocol sniffing).
      if (buf[0] !== 0x16 || (buf.length >= 5 && (buf.length >= 5 + buf.readUInt16BE(3) || buf.length >= max))) done();
    };
    const t = setTimeout(done, timeoutMs);
    sock.on('readable', onReadable);
    sock.once('end', done);
    sock.once('close', done);
  });
}
