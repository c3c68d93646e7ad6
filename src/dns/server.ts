// The DNS proxy on 15053 inside `weir proxy`: cluster names answered from the
// registry, everything else forwarded to the pod's own nameservers with a
// cache and single-flight. Before the first registry snapshot every query is
// forwarded, so a pod's DNS never fails just because config is late.
//
// This file assembles the parts: options and start-up (here), the sockets
// (transport.ts), and resolution (resolver.ts: local-answers.ts for cluster
// names, forwarding.ts for the rest, fast-teacher.ts for what the native UDP
// threads of udp-fast.ts may repeat).
import type net from 'node:net';
import os from 'node:os';
import { Registry as PromRegistry } from 'prom-client';
import type { RegistryView } from '../controlplane/types.js';
import { createLogger, type Logger } from '../common/log.js';
import { FieldError } from '../common/errors.js';
import type { Outcome } from './metrics.js';
import { readResolvConf, type Upstream } from './resolv-conf.js';
import { Resolver } from './resolver.js';
import { DnsTransports } from './transport.js';
import { UdpFastPath, udpFastPathAvailable } from './udp-fast.js';

export type { UpstreamAnswer } from './forwarding.js';

export interface DnsProxyOptions {
  registry: RegistryView;
  podNamespace: string;
  /** The pod's own resolv.conf (upstream servers and search list). Default /etc/resolv.conf. */
  resolvConfPath?: string;
  /** null disables a family. Default 127.0.0.1 and ::1, port 15053. */
  listen?: { v4?: string | null; v6?: string | null; port?: number };
  metrics?: PromRegistry;
  logger?: Logger;
  /** Budget for one forwarded query across all upstream servers. Default 2500 ms. */
  upstreamTimeoutMs?: number;
  cacheMaxEntries?: number;
  cacheMaxBytes?: number;
  /** Cap on cached lifetimes. Default 3600 s. */
  cacheMaxTtlSeconds?: number;
  /** Idle TCP client connections are closed after this. Default 10 s (RFC 7766 suggests seconds). */
  tcpIdleTimeoutMs?: number;
  /** Overrides resolv.conf's nameservers (e.g. a non-53 port); the search list still comes from resolv.conf. */
  upstreams?: Upstream[];
  /**
   * UDP is served by this many native threads of the addon's fast path
   * (udp-fast.ts), each with its own SO_REUSEPORT socket per address when
   * more than one: repeated questions are answered there without entering
   * JavaScript. 0 = UDP through Node's dgram in this thread. Default
   * min(2, available CPUs) when the addon is built, else 0.
   */
  udpThreads?: number;
}

export interface DnsProxyStats {
  queries: Record<Outcome, number>;
  cacheEntries: number;
  cacheBytes: number;
  upstreamInflight: number;
  tcpConnections: number;
  registryVersion: number | undefined;
  /** Per native UDP thread (empty without them): queries it answered itself, and the registry version it answers from. */
  udpThreads: { queries: number; registryVersion: number | undefined }[];
  /** The fast path's answer table and hand-offs (undefined without it). */
  udpFastPath?: { entries: number; answered: number; missed: number; dropped: number };
}

export interface DnsProxy {
  close(): Promise<void>;
  stats(): DnsProxyStats;
  /** Where the proxy actually listens. */
  addresses(): { udp: net.AddressInfo[]; tcp: net.AddressInfo[] };
}

/** Starts the DNS proxy; resolves once every listener is bound. */
export async function startDnsProxy(opts: DnsProxyOptions): Promise<DnsProxy> {
  if (!opts.registry || typeof opts.registry.current !== 'function') throw new FieldError('registry', 'a RegistryView is required');
  if (typeof opts.podNamespace !== 'string' || opts.podNamespace === '') throw new FieldError('podNamespace', 'the pod namespace is required');
  const port = opts.listen?.port ?? 15053;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FieldError('listen.port', 'expected a port number', String(port));
  const timeoutMs = opts.upstreamTimeoutMs ?? 2500;
  if (!(timeoutMs > 0)) throw new FieldError('upstreamTimeoutMs', 'must be positive', String(timeoutMs));

  const resolvPath = opts.resolvConfPath ?? '/etc/resolv.conf';
  let search: string[] = [];
  let servers: Upstream[];
  if (opts.upstreams && opts.upstreams.length > 0) {
    servers = opts.upstreams;
    try { search = readResolvConf(resolvPath).search; } catch { /* search list is optional with explicit upstreams */ }
  } else {
    const rc = readResolvConf(resolvPath);
    servers = rc.nameservers;
    search = rc.search;
  }

  const fastAvailable = udpFastPathAvailable();
  const threads = opts.udpThreads ?? (fastAvailable ? Math.min(2, os.availableParallelism()) : 0);
  if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw new FieldError('udpThreads', 'expected an integer from 0 to 64', String(threads));
  if (threads > 0 && !fastAvailable) {
    throw new FieldError('udpThreads', 'native UDP threads need the native addon with the DNS fast path (npm run build:native); use 0', String(threads));
  }

  const v4 = opts.listen?.v4 === undefined ? '127.0.0.1' : opts.listen.v4;
  const v6 = opts.listen?.v6 === undefined ? '::1' : opts.listen.v6;
  const server = new DnsServer(opts, servers, search[0], timeoutMs);
  try {
    await server.listen(v4, v6, port, threads === 0);
    if (threads > 0) {
      const fast = await UdpFastPath.start({
        threads,
        hosts: [v4, v6].filter((h): h is string => h !== null),
        port,
        maxEntries: opts.cacheMaxEntries ?? 10000,
        onMiss: (packet, reply) => server.answerMiss(packet, reply),
      }).catch(async (err) => {
        // Asked for explicitly: fail. By default: DNS must work, so serve
        // UDP in this thread rather than not at all.
        if (opts.udpThreads !== undefined) throw err;
        server.log.error({ err }, 'DNS UDP fast path failed to start; serving UDP through Node in this thread');
        for (const host of [v4, v6]) if (host !== null) await server.listenUdpOn(host, port);
        return undefined;
      });
      if (fast) server.attachFastPath(fast);
    }
  } catch (err) {
    await server.close();
    throw err;
  }
  return {
    close: () => server.close(),
    stats: () => server.stats(),
    addresses: () => server.addresses(),
  };
}

class DnsServer {
  readonly log: Logger;
  private readonly resolver: Resolver;
  private readonly transports: DnsTransports;
  private closed = false;

  constructor(
    private readonly opts: DnsProxyOptions,
    servers: Upstream[],
    private readonly firstSearchDomain: string | undefined,
    timeoutMs: number,
  ) {
    this.log = opts.logger ?? createLogger({ name: 'dns' });
    this.resolver = new Resolver({
      registry: opts.registry,
      podNamespace: opts.podNamespace,
      firstSearchDomain,
      servers,
      timeoutMs,
      cacheMaxEntries: opts.cacheMaxEntries,
      cacheMaxBytes: opts.cacheMaxBytes,
      cacheMaxTtlSeconds: opts.cacheMaxTtlSeconds,
      metrics: opts.metrics ?? new PromRegistry(),
      log: this.log,
    });
    this.transports = new DnsTransports({
      answer: (msg, transport) => this.resolver.answer(msg, transport),
      log: this.log,
      tcpIdleTimeoutMs: opts.tcpIdleTimeoutMs ?? 10_000,
    });
  }

  /** TCP on each address, and UDP too unless native threads serve it. */
  async listen(v4: string | null, v6: string | null, port: number, udp: boolean): Promise<void> {
    for (const host of [v4, v6]) {
      if (host === null) continue;
      if (udp) await this.transports.listenUdp(host, port);
      await this.transports.listenTcp(host, port);
    }
    this.log.info({ addresses: this.addresses(), firstSearchDomain: this.firstSearchDomain }, 'DNS proxy listening');
  }

  /** UDP in this thread on host:port (the fallback when the native threads could not start). */
  listenUdpOn(host: string, port: number): Promise<void> {
    return this.transports.listenUdp(host, port);
  }

  /** Hands UDP to the native threads; they answer from what resolution teaches them. */
  attachFastPath(fast: UdpFastPath): void {
    this.resolver.teacher.attach(fast);
  }

  /** A query the native threads handed over: answered like any other, through them. */
  answerMiss(packet: Buffer, reply: (answer: Buffer) => void): void {
    if (this.closed) return;
    const r = this.resolver.answer(packet, 'udp');
    if (r === undefined) return;
    if (r instanceof Promise) {
      r.then((resp) => { if (resp && !this.closed) reply(resp); }, (err) => this.log.error({ err }, 'DNS handler failed'));
    } else {
      reply(r);
    }
  }

  addresses(): { udp: net.AddressInfo[]; tcp: net.AddressInfo[] } {
    const fast = this.resolver.teacher.fast;
    return {
      udp: fast ? fast.addresses() : this.transports.udpSockets.map((s) => s.address()),
      tcp: this.transports.tcpServers.map((s) => s.address() as net.AddressInfo),
    };
  }

  stats(): DnsProxyStats {
    const fast = this.resolver.teacher.fast;
    const { cache, forwarder } = this.resolver.forwarding;
    const queries = { ...this.resolver.counts };
    const udpThreads = [];
    for (const w of fast?.stats() ?? []) {
      const totals = w.outcomeTotals();
      let n = 0;
      for (const o of Object.keys(totals) as Outcome[]) { queries[o] += totals[o]; n += totals[o]; }
      udpThreads.push({ queries: n, registryVersion: w.registryVersion });
    }
    const fc = fast?.counters();
    return {
      queries,
      cacheEntries: cache.size,
      cacheBytes: cache.bytes,
      upstreamInflight: forwarder.inflight,
      tcpConnections: this.transports.tcpConnections.size,
      registryVersion: this.opts.registry.current()?.version,
      udpThreads,
      udpFastPath: fc && { entries: fc.entries, answered: fc.answered, missed: fc.missed, dropped: fc.dropped },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    // Joins the native threads and closes their sockets; misses still queued are dropped.
    this.resolver.teacher.close();
    await this.transports.close();
    await this.resolver.close();
  }
}
