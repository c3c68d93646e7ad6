// The two capture listeners (outbound 15001, inbound 15006): accept, read
// the original destination, enforce the connection limit and drain, then
// hand the connection to protocol selection. Nothing here knows about
// protocols, routes or bytes.
import { createServer, type Server, type Socket } from 'node:net';
import { canonicalIp, hostPort } from './addr.js';
import type { Conn, Direction, ProxyDeps, Tracked } from './context.js';
import { originalDst, type OriginalDst } from './original-dst.js';
import { transparentListenFd } from './transparent.js';
import type { NativeL4 } from './native-l4/native-l4.js';

export type ConnHandler = (conn: Conn) => Promise<void>;

export class Listeners {
  private readonly servers: Server[] = [];
  private draining = false;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Accepted connections not yet finished (the limit must hold after sockets are handed to the splice pump). */
  private inFlight = 0;

  /** `open`: what the chains are relaying or serving; drain cuts what is left of it, the 5 s flush reports it. */
  /** `native`: the outbound (and, with REDIRECT, inbound) listener is the pump thread's (src/proxy/native-l4); what it hands over comes to `adopt`. */
  constructor(private readonly d: ProxyDeps, private readonly open: Set<Tracked>, private readonly handle: ConnHandler, private readonly native?: NativeL4) {}

  async listen(): Promise<void> {
    if (this.native) this.native.listen(this.d.config.outboundPort, 'outbound');
    else await this.bind('outbound', this.d.config.outboundPort);
    if (this.native?.inboundNative()) this.native.listen(this.d.config.inboundPort, 'inbound');
    else await this.bind('inbound', this.d.config.inboundPort);
    // Long-lived connections report their bytes every 5 s, not only at close (Istio does the same).
    this.flushTimer = setInterval(() => { for (const t of this.open) t.report?.(); }, 5000);
    this.flushTimer.unref();
  }

  activeConnections(): number {
    return this.inFlight + (this.native?.active() ?? 0);
  }

  /** A connection the native accept path handed over (its original destination already read, or unreadable). */
  adopt(direction: Direction, sock: Socket, dst: OriginalDst | undefined): void {
    this.accept(direction, sock, { dst }).catch((err: unknown) => {
      this.d.logger.error({ err: String(err), stack: (err as Error)?.stack }, 'connection handler failed');
      if (!sock.destroyed) sock.resetAndDestroy();
    });
  }

  /** Stop accepting; wait for open connections up to the timeout, then cut the rest. */
  async drain(timeoutMs: number): Promise<{ remaining: number }> {
    this.draining = true;
    this.native?.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    const deadline = Date.now() + timeoutMs;
    while (this.activeConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const remaining = this.activeConnections();
    for (const t of [...this.open]) t.abort();
    this.native?.abortAll();
    this.native?.stop();
    clearInterval(this.flushTimer);
    return { remaining };
  }

  private async bind(direction: Direction, port: number): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
      this.accept(direction, sock).catch((err: unknown) => {
        // A bug in a chain must cost one connection, never the process.
        this.d.logger.error({ err: String(err), stack: (err as Error)?.stack }, 'connection handler failed');
        if (!sock.destroyed) sock.resetAndDestroy();
      });
    });
    // "::" with ipv6Only=false is one dual-stack socket: IPv4 arrives as ::ffff:a.b.c.d.
    // TPROXY delivers only to an IP_TRANSPARENT listener, which Node cannot make.
    const transparent = direction === 'inbound' && this.d.config.interceptionMode === 'TPROXY';
    const where = transparent ? { fd: await transparentListenFd(port, 4096) } : { host: '::', port, ipv6Only: false, backlog: 4096 };
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(where, () => { server.off('error', reject); resolve(); });
    });
    this.servers.push(server);
  }

  /** `pre`: the native listener already read the original destination (undefined there = it could not). */
  private async accept(direction: Direction, down: Socket, pre?: { dst: OriginalDst | undefined }): Promise<void> {
    const counters = this.d.counters;
    counters.accepted++;
    down.on('error', () => { /* each chain handles errors its own way */ });
    const peer = hostPort(canonicalIp(down.remoteAddress ?? ''), down.remotePort ?? 0);
    const listenerPort = direction === 'outbound' ? this.d.config.outboundPort : this.d.config.inboundPort;
    if (this.draining) { this.reject(direction, down, peer, 'draining'); return; }
    // Our own count, not server.maxConnections: spliced sockets leave Node's count.
    if (this.inFlight + (this.native?.active() ?? 0) >= this.d.config.maxConnections) { this.reject(direction, down, peer, 'max_connections'); return; }
    this.inFlight++;
    try {
      let dst: OriginalDst | undefined;
      // TPROXY does not NAT: the accepted socket's own address is the original
      // destination. (Connections REDIRECTed to the listener port itself, like
      // the proxy calling its own pod IP, still carry SO_ORIGINAL_DST.)
      const tproxied = direction === 'inbound' && this.d.config.interceptionMode === 'TPROXY' && down.localPort !== listenerPort;
      try {
        dst = pre ? pre.dst : tproxied ? { ip: canonicalIp(down.localAddress ?? ''), port: down.localPort ?? 0 } : await originalDst(down, listenerPort);
      } catch (err) {
        this.d.logger.warn({ err: String(err) }, 'cannot read original destination');
      }
      // No redirect behind this connection (someone dialled the listener itself): refusing avoids a loop.
      const ownPorts = [this.d.config.outboundPort, this.d.config.inboundPort];
      if (!dst || ownPorts.includes(dst.port)) { this.reject(direction, down, peer, 'no_original_dst'); return; }
      await this.handle({ direction, down, dst, peer, local: hostPort(dst.ip, dst.port), startedAt: new Date(), start: performance.now(), tproxied });
    } finally {
      this.inFlight--;
    }
  }

  private reject(direction: Direction, down: Socket, peer: string, reason: string): void {
    this.d.counters.rejected++;
    this.d.metrics.rejected.inc({ direction, reason });
    if (this.d.accessLog.enabled) this.d.logger.info({ access: direction, downstream: peer, rejected: reason }, 'connection rejected');
    down.resetAndDestroy();
  }
}
