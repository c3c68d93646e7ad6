// The DNS proxy's own sockets in this thread: UDP (when the native threads
// do not serve it) and TCP (RFC 7766: several length-prefixed queries per
// connection, pipelined, answered as they complete). Knows nothing of what
// an answer is: every message goes to `answer` (resolver.ts).
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../common/log.js';
import type { Transport } from './fast-teacher.js';
import { HEADER_LEN } from './wire.js';

const TCP_MAX_PENDING_PER_CONNECTION = 64;
const TCP_MAX_UNREAD_ANSWER_BYTES = 1024 * 1024;

export type Answerer = (msg: Buffer, transport: Transport) => Buffer | Promise<Buffer | undefined> | undefined;

export interface TransportOptions {
  answer: Answerer;
  log: Logger;
  /** Idle TCP client connections are closed after this. */
  tcpIdleTimeoutMs: number;
}

export class DnsTransports {
  readonly udpSockets: dgram.Socket[] = [];
  readonly tcpServers: net.Server[] = [];
  readonly tcpConnections = new Set<net.Socket>();
  private closed = false;

  constructor(private readonly opts: TransportOptions) {}

  listenUdp(host: string, port: number): Promise<void> {
    // A larger receive buffer rides out bursts (the kernel caps it at rmem_max).
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: 1 << 20, lookup: net.isIPv6(host) ? literalAddress6 : literalAddress4 });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      const bound = () => {
        sock.off('error', reject);
        // Errors on a bound UDP socket (e.g. ICMP from a vanished client) are per-packet.
        sock.on('error', (err) => this.opts.log.debug({ err }, 'UDP socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo));
        this.udpSockets.push(sock);
        resolve();
      };
      sock.bind(port, host, bound);
    });
  }

  listenTcp(host: string, port: number): Promise<void> {
    const srv = net.createServer((c) => this.onTcpConnection(c));
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port, ipv6Only: net.isIPv6(host) }, () => {
        srv.off('error', reject);
        srv.on('error', (err) => this.opts.log.error({ err }, 'TCP listener error'));
        this.tcpServers.push(srv);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.tcpConnections) c.destroy();
    this.tcpConnections.clear();
    await Promise.all([
      ...this.udpSockets.map((s) => new Promise<void>((r) => s.close(() => r()))),
      ...this.tcpServers.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ]);
    this.udpSockets.length = 0;
    this.tcpServers.length = 0;
  }

  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const r = this.opts.answer(msg, 'udp');
    if (r === undefined) return;
    if (r instanceof Promise) {
      r.then((resp) => { if (resp) this.sendUdp(sock, resp, rinfo); }, (err) => this.opts.log.error({ err }, 'DNS handler failed'));
    } else {
      this.sendUdp(sock, r, rinfo);
    }
  }

  private sendUdp(sock: dgram.Socket, resp: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return; // an upstream answer arriving after close()
    // Send errors surface as the socket's 'error' event (logged there).
    sock.send(resp, rinfo.port, rinfo.address);
  }

  /**
   * RFC 7766: several length-prefixed queries per connection, answered as
   * they complete (pipelined, possibly out of order); closed after idling.
   */
  private onTcpConnection(c: net.Socket): void {
    this.tcpConnections.add(c);
    c.setNoDelay(true);
    c.setTimeout(this.opts.tcpIdleTimeoutMs, () => c.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    const reply = (resp: Buffer | undefined) => {
      if (!resp || c.destroyed) return;
      const out = Buffer.allocUnsafe(2 + resp.length);
      out.writeUInt16BE(resp.length, 0);
      resp.copy(out, 2);
      // A client that pipelines without reading must not grow our buffers
      // without bound: stop reading its queries until it drains the answers.
      if (!c.write(out) && c.writableLength > TCP_MAX_UNREAD_ANSWER_BYTES && !c.isPaused()) {
        c.pause();
        c.once('drain', () => { if (pending < TCP_MAX_PENDING_PER_CONNECTION) c.resume(); });
      }
    };
    c.on('data', (d) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < HEADER_LEN) {
          // A length that cannot hold a header means the stream is garbage:
          // there is no way to find the next message boundary.
          c.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        const r = this.opts.answer(msg, 'tcp');
        if (r instanceof Promise) {
          pending++;
          if (pending >= TCP_MAX_PENDING_PER_CONNECTION) c.pause();
          r.then(reply, (err) => this.opts.log.error({ err }, 'DNS handler failed')).finally(() => {
            pending--;
            if (c.isPaused() && pending < TCP_MAX_PENDING_PER_CONNECTION && c.writableLength <= TCP_MAX_UNREAD_ANSWER_BYTES) c.resume();
          });
        } else {
          reply(r);
        }
      }
    });
    c.on('error', () => {});
    c.on('close', () => this.tcpConnections.delete(c));
  }
}

/**
 * dgram resolves the destination of every send through dns.lookup, which for
 * an IP literal still costs an isIP check and a nextTick. Every destination
 * here is a literal of the socket's own family (the client's source
 * address), so hand it straight back.
 */
type LookupCallback = (err: Error | null, address: string, family: number) => void;
function literalAddress4(address: string, _family: unknown, callback: LookupCallback): void { callback(null, address, 4); }
function literalAddress6(address: string, _family: unknown, callback: LookupCallback): void { callback(null, address, 6); }
