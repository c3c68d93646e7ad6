// Sends queries to the pod's upstream nameservers: UDP first, TCP when the
// UDP answer is truncated, next server on timeout/SERVFAIL/REFUSED. One UDP
// socket per address family is shared by all queries; answers are matched by
// (ID, server address, question) so a stray or spoofed packet from elsewhere
// cannot complete a query.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import type { Upstream } from './resolv-conf.js';
import { FLAG_TC, HEADER_LEN, RCODE_REFUSED, RCODE_SERVFAIL, sameQuestion } from './wire.js';

export class UpstreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

interface Pending {
  server: Upstream;
  query: Buffer;
  questionEnd: number;
  resolve(response: Buffer): void;
}

export interface ForwarderOptions {
  servers: Upstream[];
  /** Whole budget for one query across all servers and the TCP retry. */
  timeoutMs: number;
}

const MAX_UDP_RESPONSE = 65535;

export class Forwarder {
  private readonly sockets = new Map<4 | 6, dgram.Socket>();
  private readonly pending = new Map<number, Pending>();
  private readonly tcpSockets = new Set<net.Socket>();
  /** Index of the server that answered last: start there next time. */
  private preferred = 0;
  private closed = false;

  constructor(private readonly opts: ForwarderOptions) {
    if (opts.servers.length === 0) throw new UpstreamError('no upstream nameservers');
  }

  get inflight(): number {
    return this.pending.size;
  }

  /**
   * Forwards `query` (whose question ends at questionEnd) and resolves with
   * the upstream response, ID set to the query's. Rejects with UpstreamError
   * when no server answered within the budget.
   */
  async query(query: Buffer, questionEnd: number): Promise<Buffer> {
    const deadline = Date.now() + this.opts.timeoutMs;
    const servers = this.opts.servers;
    // Split the budget so every server gets a turn before the client gives up.
    const perServer = Math.max(100, Math.floor(this.opts.timeoutMs / servers.length));
    let lastFailure: Buffer | undefined;
    let lastError = 'no upstream answered';
    for (let i = 0; i < servers.length; i++) {
      const idx = (this.preferred + i) % servers.length;
      const server = servers[idx];
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const budget = Math.min(remaining, i === servers.length - 1 ? remaining : perServer);
      try {
        let response = await this.udpExchange(server, query, questionEnd, budget);
        if (response.readUInt16BE(2) & FLAG_TC) {
          response = await this.tcpExchange(server, query, questionEnd, Math.max(1, deadline - Date.now()));
        }
        const rcode = response.readUInt16BE(2) & 0xf;
        if (rcode === RCODE_SERVFAIL || rcode === RCODE_REFUSED) {
          lastFailure = response;
          continue;
        }
        this.preferred = idx;
        return response;
      } catch (err) {
        lastError = `${server.host}:${server.port}: ${(err as Error).message}`;
      }
    }
    if (lastFailure) return lastFailure;
    throw new UpstreamError(lastError);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.tcpSockets) s.destroy();
    for (const p of this.pending.values()) p.resolve(Buffer.alloc(0));
    this.pending.clear();
    await Promise.all([...this.sockets.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.clear();
  }

  private socketFor(family: 4 | 6): dgram.Socket {
    let s = this.sockets.get(family);
    if (s) return s;
    s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6' });
    s.on('message', (msg, rinfo) => this.onUdpMessage(msg, rinfo));
    // ICMP errors and the like: individual queries time out instead.
    s.on('error', () => {});
    this.sockets.set(family, s);
    return s;
  }

  private onUdpMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < HEADER_LEN) return;
    const p = this.pending.get(msg.readUInt16BE(0));
    if (!p) return;
    if (rinfo.port !== p.server.port || !sameHost(rinfo.address, p.server.host)) return;
    if (!sameQuestion(msg, p.questionEnd, p.query, p.questionEnd)) return;
    p.resolve(msg);
  }

  private udpExchange(server: Upstream, query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new UpstreamError('forwarder closed'));
    const family = net.isIPv6(server.host.split('%')[0]) ? 6 : 4;
    const sock = this.socketFor(family);
    const id = this.freeId();
    const clientId = query.readUInt16BE(0);
    const out = Buffer.from(query);
    out.writeUInt16BE(id, 0);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamError(`UDP timeout after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        server,
        query: out,
        questionEnd,
        resolve: (response) => {
          clearTimeout(timer);
          this.pending.delete(id);
          if (response.length < HEADER_LEN) { reject(new UpstreamError('forwarder closed')); return; }
          response.writeUInt16BE(clientId, 0);
          resolve(response);
        },
      });
      sock.send(out, server.port, server.host, (err) => {
        if (err && this.pending.has(id)) {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(new UpstreamError(`UDP send: ${err.message}`));
        }
      });
    });
  }

  tcpExchange(server: Upstream, query: Buffer, questionEnd: number, timeoutMs: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new UpstreamError('forwarder closed'));
    return new Promise<Buffer>((resolve, reject) => {
      const sock = net.connect({ host: server.host, port: server.port });
      this.tcpSockets.add(sock);
      let chunks: Buffer = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | undefined, response?: Buffer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.tcpSockets.delete(sock);
        sock.destroy();
        if (err) reject(err);
        else resolve(response!);
      };
      const timer = setTimeout(() => finish(new UpstreamError(`TCP timeout after ${timeoutMs} ms`)), timeoutMs);
      sock.on('connect', () => {
        const frame = Buffer.allocUnsafe(2 + query.length);
        frame.writeUInt16BE(query.length, 0);
        query.copy(frame, 2);
        sock.write(frame);
      });
      sock.on('data', (d) => {
        chunks = chunks.length === 0 ? d : Buffer.concat([chunks, d]);
        if (chunks.length < 2) return;
        const len = chunks.readUInt16BE(0);
        if (chunks.length < 2 + len) return;
        const response = chunks.subarray(2, 2 + len);
        if (response.length < HEADER_LEN || response.readUInt16BE(0) !== query.readUInt16BE(0)
          || !sameQuestion(response, questionEnd, query, questionEnd)) {
          finish(new UpstreamError('TCP answer does not match the question'));
          return;
        }
        finish(undefined, Buffer.from(response));
      });
      sock.on('error', (err) => finish(new UpstreamError(`TCP: ${err.message}`)));
      sock.on('close', () => finish(new UpstreamError('TCP connection closed before an answer')));
    });
  }

  private freeId(): number {
    // The caller bounds in-flight queries far below 65536, so this ends fast.
    for (;;) {
      const id = randomInt(0, 65536);
      if (!this.pending.has(id)) return id;
    }
  }
}

function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  // dgram reports v6 addresses without zone and in canonical form.
  const bb = b.split('%')[0];
  if (a === bb) return true;
  return net.isIPv6(a) && net.isIPv6(bb) && canonicalV6(a) === canonicalV6(bb);
}

function canonicalV6(ip: string): string {
  const sa = new net.SocketAddress({ address: ip, family: 'ipv6' });
  return sa.address;
}

export { MAX_UDP_RESPONSE };
