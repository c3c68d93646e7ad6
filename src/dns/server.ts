// The DNS proxy on 15053 inside `weir proxy`: cluster names answered from the
// registry, everything else forwarded to the pod's own nameservers with a
// cache and single-flight. Before the first registry snapshot every query is
// forwarded, so a pod's DNS never fails just because config is late.
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { Registry as PromRegistry } from 'prom-client';
import type { Registry, RegistryService, RegistryView } from '../controlplane/types.js';
import { createLogger, type Logger } from '../common/log.js';
import { FieldError } from '../common/errors.js';
import { AnswerCache } from './cache.js';
import { LocalZone, type LocalMatch } from './local-zone.js';
import { createDnsMetrics, type DnsMetrics, type Outcome } from './metrics.js';
import { readResolvConf, type Upstream } from './resolv-conf.js';
import { Forwarder } from './upstream.js';
import { UdpFastPath, udpFastPathAvailable } from './udp-fast.js';
import {
  buildResponse, CLASS_IN, CLASSIC_UDP_SIZE, encodeName, errorResponse, FLAG_AA, FLAG_QR, FLAG_RA, FLAG_RD,
  HEADER_LEN, parseQuery, qtypeLabel, rdataForIp, RCODE_FORMERR, RCODE_NOERROR, RCODE_NOTIMP, RCODE_SERVFAIL,
  soaRdata, truncatedResponse, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME, TYPE_SOA, WireError,
  type ParsedQuery, type RecordSpec,
} from './wire.js';

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

/** An upstream answer, and whether it came from the cache rather than the network. */
export interface UpstreamAnswer { response: Buffer; cached: boolean }

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

const LOCAL_TTL = 30;
const TCP_MAX_MESSAGE = 65535;
const TCP_MAX_PENDING_PER_CONNECTION = 64;
const TCP_MAX_UNREAD_ANSWER_BYTES = 1024 * 1024;
/** Largest UDP payload over IPv4 (65535 - IP and UDP headers). */
const UDP_MAX_PAYLOAD = 65507;
const MAX_UPSTREAM_INFLIGHT = 8192;
const MEMO_MAX = 20000;
/** How often a registry view that never emits 'update' is checked for a new snapshot (fast path only). */
const REGISTRY_POLL_MS = 250;

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

type Transport = 'udp' | 'tcp';

export class DnsServer {
  readonly log: Logger;
  private readonly cache: AnswerCache;
  private readonly forwarder: Forwarder;
  private readonly metrics: DnsMetrics;
  private readonly inflight = new Map<string, Promise<UpstreamAnswer>>();
  private readonly counts: Record<Outcome, number> = { local: 0, forwarded: 0, cached: 0, failed: 0, malformed: 0 };
  private readonly udpSockets: dgram.Socket[] = [];
  private readonly tcpServers: net.Server[] = [];
  private readonly tcpConnections = new Set<net.Socket>();
  private zone: LocalZone | undefined;
  private zoneRegistry: Registry | undefined;
  /** Pre-encoded local answers for the current registry, keyed like the cache. */
  private memo = new Map<string, Buffer>();
  /** Question keys known not to be cluster names under the current registry. */
  private notLocal = new Set<string>();
  private closed = false;
  /** The native UDP threads, when they serve UDP; taught answers they may repeat. */
  private fast: UdpFastPath | undefined;
  private fastRegistry: Registry | undefined;
  private fastPoll: NodeJS.Timeout | undefined;
  private readonly onRegistryUpdate = () => this.registryMaybeChanged();

  constructor(
    private readonly opts: DnsProxyOptions,
    servers: Upstream[],
    private readonly firstSearchDomain: string | undefined,
    timeoutMs: number,
  ) {
    this.log = opts.logger ?? createLogger({ name: 'dns' });
    this.cache = new AnswerCache({
      maxEntries: opts.cacheMaxEntries ?? 10000,
      maxBytes: opts.cacheMaxBytes ?? 16 * 1024 * 1024,
      maxTtlSeconds: opts.cacheMaxTtlSeconds ?? 3600,
    });
    this.forwarder = new Forwarder({ servers, timeoutMs });
    this.metrics = createDnsMetrics(
      opts.metrics ?? new PromRegistry(),
      () => ({ entries: this.cache.size, bytes: this.cache.bytes }),
      () => this.forwarder.inflight,
      () => this.fast?.stats() ?? [],
      () => this.fast?.counters().dropped ?? 0,
    );
  }

  /** TCP on each address, and UDP too unless native threads serve it. */
  async listen(v4: string | null, v6: string | null, port: number, udp: boolean): Promise<void> {
    for (const host of [v4, v6]) {
      if (host === null) continue;
      if (udp) await this.listenUdp(host, port);
      await this.listenTcp(host, port);
    }
    this.log.info({ addresses: this.addresses(), firstSearchDomain: this.firstSearchDomain }, 'DNS proxy listening');
  }

  /**
   * Hands UDP to the native threads. They answer from what handle()
   * teaches them, and forget it all whenever the registry changes: on the
   * view's 'update' event, and by a periodic identity check for views that
   * change without one.
   */
  attachFastPath(fast: UdpFastPath): void {
    this.fast = fast;
    this.fastRegistry = this.opts.registry.current();
    fast.forgetAll(this.fastRegistry?.version);
    this.opts.registry.on('update', this.onRegistryUpdate);
    this.fastPoll = setInterval(this.onRegistryUpdate, REGISTRY_POLL_MS);
    this.fastPoll.unref();
    this.log.info({ addresses: fast.addresses(), threads: fast.stats().length }, 'DNS UDP served by native threads');
  }

  /** A query the native threads handed over: answered like any other, through them. */
  answerMiss(packet: Buffer, reply: (answer: Buffer) => void): void {
    if (this.closed) return;
    const r = this.safeHandle(packet, 'udp');
    if (r === undefined) return;
    if (r instanceof Promise) {
      r.then((resp) => { if (resp && !this.closed) reply(resp); }, (err) => this.log.error({ err }, 'DNS handler failed'));
    } else {
      reply(r);
    }
  }

  private registryMaybeChanged(): void {
    const r = this.opts.registry.current();
    if (!this.fast || r === this.fastRegistry) return;
    this.fastRegistry = r;
    this.fast.forgetAll(r?.version);
  }

  /**
   * Lets the native threads repeat this answer to questions like `query`
   * (UDP only: they serve nothing else). A cached answer's lifetime is a
   * second cache lookup, so it is asked for only when it will be used.
   */
  private teach(query: Buffer, answer: Buffer, lifetimeMs: number | (() => number), kind: 'local' | 'cached', transport: Transport): void {
    if (!this.fast || transport !== 'udp') return;
    this.fast.teach(query, answer, typeof lifetimeMs === 'number' ? lifetimeMs : lifetimeMs(), kind);
  }

  addresses(): { udp: net.AddressInfo[]; tcp: net.AddressInfo[] } {
    return {
      udp: this.fast ? this.fast.addresses() : this.udpSockets.map((s) => s.address()),
      tcp: this.tcpServers.map((s) => s.address() as net.AddressInfo),
    };
  }

  stats(): DnsProxyStats {
    const queries = { ...this.counts };
    const udpThreads = [];
    for (const w of this.fast?.stats() ?? []) {
      const totals = w.outcomeTotals();
      let n = 0;
      for (const o of Object.keys(totals) as Outcome[]) { queries[o] += totals[o]; n += totals[o]; }
      udpThreads.push({ queries: n, registryVersion: w.registryVersion });
    }
    const fc = this.fast?.counters();
    return {
      queries,
      cacheEntries: this.cache.size,
      cacheBytes: this.cache.bytes,
      upstreamInflight: this.forwarder.inflight,
      tcpConnections: this.tcpConnections.size,
      registryVersion: this.opts.registry.current()?.version,
      udpThreads,
      udpFastPath: fc && { entries: fc.entries, answered: fc.answered, missed: fc.missed, dropped: fc.dropped },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.fast) {
      if (this.fastPoll) clearInterval(this.fastPoll);
      const off = (this.opts.registry as { off?: (e: string, l: () => void) => unknown }).off;
      if (typeof off === 'function') off.call(this.opts.registry, 'update', this.onRegistryUpdate);
      // Joins the threads and closes their sockets; misses still queued are dropped.
      this.fast.close();
    }
    for (const c of this.tcpConnections) c.destroy();
    this.tcpConnections.clear();
    await Promise.all([
      ...this.udpSockets.map((s) => new Promise<void>((r) => s.close(() => r()))),
      ...this.tcpServers.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ]);
    this.udpSockets.length = 0;
    this.tcpServers.length = 0;
    await this.forwarder.close();
    this.metrics.unregister();
  }

  /** UDP in this thread on host:port (the fallback when the native threads could not start). */
  listenUdpOn(host: string, port: number): Promise<void> {
    return this.listenUdp(host, port);
  }

  private listenUdp(host: string, port: number): Promise<void> {
    // A larger receive buffer rides out bursts (the kernel caps it at rmem_max).
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: 1 << 20, lookup: net.isIPv6(host) ? literalAddress6 : literalAddress4 });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      const bound = () => {
        sock.off('error', reject);
        // Errors on a bound UDP socket (e.g. ICMP from a vanished client) are per-packet.
        sock.on('error', (err) => this.log.debug({ err }, 'UDP socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo));
        this.udpSockets.push(sock);
        resolve();
      };
      sock.bind(port, host, bound);
    });
  }

  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const r = this.safeHandle(msg, 'udp');
    if (r === undefined) return;
    if (r instanceof Promise) {
      r.then((resp) => { if (resp) this.sendUdp(sock, resp, rinfo); }, (err) => this.log.error({ err }, 'DNS handler failed'));
    } else {
      this.sendUdp(sock, r, rinfo);
    }
  }

  private sendUdp(sock: dgram.Socket, resp: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return; // an upstream answer arriving after close()
    // Send errors surface as the socket's 'error' event (logged there).
    sock.send(resp, rinfo.port, rinfo.address);
  }

  private listenTcp(host: string, port: number): Promise<void> {
    const srv = net.createServer((c) => this.onTcpConnection(c));
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port, ipv6Only: net.isIPv6(host) }, () => {
        srv.off('error', reject);
        srv.on('error', (err) => this.log.error({ err }, 'TCP listener error'));
        this.tcpServers.push(srv);
        resolve();
      });
    });
  }

  /**
   * RFC 7766: several length-prefixed queries per connection, answered as
   * they complete (pipelined, possibly out of order); closed after idling.
   */
  private onTcpConnection(c: net.Socket): void {
    this.tcpConnections.add(c);
    c.setNoDelay(true);
    c.setTimeout(this.opts.tcpIdleTimeoutMs ?? 10_000, () => c.destroy());
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
        const r = this.safeHandle(msg, 'tcp');
        if (r instanceof Promise) {
          pending++;
          if (pending >= TCP_MAX_PENDING_PER_CONNECTION) c.pause();
          r.then(reply, (err) => this.log.error({ err }, 'DNS handler failed')).finally(() => {
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

  /**
   * handle() with a last line of defence: a bug on some odd input must cost
   * that one query (dropped, logged), never the process and every pod query.
   */
  private safeHandle(msg: Buffer, transport: Transport): Buffer | Promise<Buffer | undefined> | undefined {
    try {
      return this.handle(msg, transport);
    } catch (err) {
      this.log.error({ err, query: msg.toString('base64') }, 'DNS query handling failed; dropped');
      this.counts.failed++;
      return undefined;
    }
  }

  /** One query in, one answer (or nothing: dropped) out. */
  private handle(msg: Buffer, transport: Transport): Buffer | Promise<Buffer | undefined> | undefined {
    const started = performance.now();
    // Not even a header: nothing to answer to.
    if (msg.length < HEADER_LEN) return this.done('OTHER', 'malformed', started, undefined);
    // A response sent to us is never answered (no reflection loops).
    if (msg[2] & 0x80) return this.done('OTHER', 'malformed', started, undefined);
    let q: ParsedQuery;
    try {
      q = parseQuery(msg);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      return this.done('OTHER', 'malformed', started, errorResponse(msg, RCODE_FORMERR));
    }
    const qtype = qtypeLabel(q.qtype);
    if (q.opcode !== 0) return this.done(qtype, 'malformed', started, errorResponse(msg, RCODE_NOTIMP, q.questionEnd));

    const registry = this.opts.registry.current();
    if (registry && q.qclass === CLASS_IN && q.qnameIsPlain) {
      const zone = this.zoneFor(registry);
      // Pre-encoded answer for this exact question under this registry.
      const memoised = this.memo.get(q.key);
      if (memoised) {
        const resp = this.patchFor(memoised, msg, q);
        this.teach(msg, resp, LOCAL_TTL * 1000, 'local', transport);
        return this.done(qtype, 'local', started, this.fit(resp, q, transport));
      }
      const match = this.notLocal.has(q.key) ? undefined : zone.lookup(q.qname);
      if (!match) {
        // Forwarded names repeat too: skip the zone walk next time.
        if (this.notLocal.size >= MEMO_MAX) this.notLocal.clear();
        this.notLocal.add(q.key);
      } else {
        const local = this.localAnswer(msg, q, zone, match, transport);
        if (local instanceof Promise) {
          return local.then(
            (resp) => this.done(qtype, 'local', started, this.fit(resp, q, transport)),
            () => this.done(qtype, 'failed', started, errorResponse(msg, RCODE_SERVFAIL, q.questionEnd)),
          );
        }
        return this.done(qtype, 'local', started, this.fit(local, q, transport));
      }
    }

    const now = Date.now();
    const cached = this.cache.lookup(q.key, q.id, now);
    if (cached) {
      msg.copy(cached, HEADER_LEN, HEADER_LEN, q.questionEnd); // client's own letter case
      this.teach(msg, cached, () => this.cache.remainingMs(q.key, now), 'cached', transport);
      return this.done(qtype, 'cached', started, this.fit(cached, q, transport));
    }

    if (this.forwarder.inflight >= MAX_UPSTREAM_INFLIGHT && !this.inflight.has(q.key)) {
      return this.done(qtype, 'failed', started, errorResponse(msg, RCODE_SERVFAIL, q.questionEnd));
    }
    return this.forwardShared(q.key, msg, q.questionEnd).then(
      (upstream) => {
        const resp = Buffer.from(upstream.response);
        resp.writeUInt16BE(q.id, 0);
        msg.copy(resp, HEADER_LEN, HEADER_LEN, q.questionEnd);
        const rcode = resp.readUInt16BE(2) & 0xf;
        const outcome = rcode === RCODE_SERVFAIL ? 'failed' : upstream.cached ? 'cached' : 'forwarded';
        // Cacheable answers were stored by forwardShared: the threads may repeat them as long as the cache would.
        if (outcome !== 'failed') this.teach(msg, resp, () => this.cache.remainingMs(q.key, Date.now()), 'cached', transport);
        return this.done(qtype, outcome, started, this.fit(resp, q, transport));
      },
      (err) => {
        this.log.debug({ err: (err as Error).message, qname: q.qname }, 'upstream failed');
        return this.done(qtype, 'failed', started, errorResponse(msg, RCODE_SERVFAIL, q.questionEnd));
      },
    );
  }

  private done<T extends Buffer | undefined>(qtype: string, outcome: Outcome, started: number, resp: T): T {
    this.counts[outcome]++;
    this.metrics.query(qtype, outcome, (performance.now() - started) / 1000);
    return resp;
  }

  /** Applies the transport's size limit: TC for UDP beyond the client's EDNS size. */
  private fit(resp: Buffer, q: ParsedQuery, transport: Transport): Buffer {
    const limit = transport === 'udp' ? Math.min(q.ednsUdpSize ?? CLASSIC_UDP_SIZE, UDP_MAX_PAYLOAD) : TCP_MAX_MESSAGE;
    return resp.length > limit ? truncatedResponse(resp, q.questionEnd) : resp;
  }

  /**
   * Single-flight upstream exchange: concurrent identical questions share one
   * upstream query. Resolves with the upstream bytes (shared: copy before
   * patching) and stores cacheable answers.
   */
  private forwardShared(key: string, query: Buffer, questionEnd: number): Promise<UpstreamAnswer> {
    let p = this.inflight.get(key);
    if (p) return p;
    const started = performance.now();
    p = this.forwarder.query(query, questionEnd).then(
      (resp) => {
        this.metrics.upstream((performance.now() - started) / 1000, true);
        this.cache.store(key, resp, Date.now());
        return { response: resp, cached: false };
      },
      (err) => {
        this.metrics.upstream((performance.now() - started) / 1000, false);
        throw err;
      },
    );
    p = p.finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private zoneFor(registry: Registry): LocalZone {
    if (registry !== this.zoneRegistry || !this.zone) {
      this.zone = new LocalZone(registry, this.opts.podNamespace, this.firstSearchDomain);
      this.zoneRegistry = registry;
      this.memo = new Map();
      this.notLocal = new Set();
    }
    return this.zone;
  }

  private localAnswer(msg: Buffer, q: ParsedQuery, zone: LocalZone, match: LocalMatch, transport: Transport): Buffer | Promise<Buffer> {
    const question = msg.subarray(HEADER_LEN, q.questionEnd);
    const flags = FLAG_QR | FLAG_AA | FLAG_RA | (q.flags & FLAG_RD);
    const owner = q.qname;
    const answers: RecordSpec[] = [];
    const target = match;
    let targetOwner = owner;
    if (match.aliasOf) {
      answers.push({ name: owner, type: TYPE_CNAME, ttl: LOCAL_TTL, rdata: encodeName(match.aliasOf) });
      targetOwner = match.aliasOf;
    }
    const soa = this.soaRecord(zone);
    const build = (extra: RecordSpec[]): Buffer => {
      const all = [...answers, ...extra];
      const hasAddress = all.some((r) => r.type === TYPE_A || r.type === TYPE_AAAA);
      return buildResponse({
        question, id: q.id, flags, rcode: RCODE_NOERROR, answers: all,
        // Without an address, the SOA lets clients cache the empty answer (RFC 2308).
        authority: hasAddress || (q.qtype === TYPE_CNAME && all.length > 0) ? [] : [soa],
        edns: q.ednsUdpSize !== undefined,
      });
    };

    if (target.service.kind === 'ExternalName') {
      const ext = (target.service.externalName ?? '').toLowerCase().replace(/\.$/, '');
      if (ext === '') return build([]);
      answers.push({ name: targetOwner, type: TYPE_CNAME, ttl: LOCAL_TTL, rdata: encodeName(ext) });
      if (q.qtype === TYPE_CNAME) return build([]);
      const inCluster = zone.serviceForTarget(ext);
      if (inCluster && inCluster.service.kind !== 'ExternalName') {
        return build(addressRecords(inCluster.service, ext, q.qtype));
      }
      // The target is outside the cluster: chase it upstream so stub
      // resolvers (glibc does not follow CNAMEs itself) get addresses.
      if (q.qtype !== TYPE_A && q.qtype !== TYPE_AAAA) return build([]);
      return this.resolveExternal(ext, q.qtype).then((records) => build(records), () => build([]));
    }

    const records = addressRecords(target.service, targetOwner, q.qtype, target.podAddresses);
    const resp = build(records);
    // Only answers without a shuffle are memoised.
    if (!(target.service.kind === 'Headless' && records.length > 1)) {
      if (this.memo.size >= MEMO_MAX) this.memo.clear();
      this.memo.set(q.key, resp);
      const patched = this.patchFor(resp, msg, q);
      this.teach(msg, patched, LOCAL_TTL * 1000, 'local', transport);
      return patched;
    }
    return resp;
  }

  /** A memoised answer for this query: its ID, RD bit and letter case. */
  private patchFor(memoised: Buffer, msg: Buffer, q: ParsedQuery): Buffer {
    const out = Buffer.allocUnsafe(memoised.length);
    memoised.copy(out);
    out.writeUInt16BE(q.id, 0);
    out[2] = (out[2] & ~0x01) | (msg[2] & 0x01);
    msg.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
    return out;
  }

  private soaRecord(zone: LocalZone): RecordSpec {
    const d = zone.clusterDomain;
    return {
      name: d,
      type: TYPE_SOA,
      ttl: LOCAL_TTL,
      rdata: soaRdata(`ns.dns.${d}`, `hostmaster.${d}`, this.zoneRegistry?.version ?? 0, LOCAL_TTL),
    };
  }

  /** A/AAAA of an out-of-cluster ExternalName target, through cache and single-flight. */
  private async resolveExternal(name: string, qtype: number): Promise<RecordSpec[]> {
    const query = Buffer.from(dnsPacket.encode({
      type: 'query',
      id: randomInt(0, 65536),
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: qtype === TYPE_A ? 'A' : 'AAAA', name }],
    }));
    const parsed = parseQuery(query);
    let resp = this.cache.lookup(parsed.key, parsed.id, Date.now());
    if (!resp) resp = (await this.forwardShared(parsed.key, query, parsed.questionEnd)).response;
    const decoded = dnsPacket.decode(resp);
    const out: RecordSpec[] = [];
    for (const a of decoded.answers ?? []) {
      const ttl = Math.min(LOCAL_TTL, (a as { ttl?: number }).ttl ?? LOCAL_TTL);
      if (a.type === 'CNAME') out.push({ name: a.name, type: TYPE_CNAME, ttl, rdata: encodeName(a.data) });
      else if ((a.type === 'A' || a.type === 'AAAA') && typeof a.data === 'string') out.push({ name: a.name, ttl, ...rdataForIp(a.data) });
    }
    return out;
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

/** A/AAAA records of a service for the asked type; headless answers shuffled. */
function addressRecords(service: RegistryService, owner: string, qtype: number, only?: string[]): RecordSpec[] {
  const want4 = qtype === TYPE_A || qtype === TYPE_ANY;
  const want6 = qtype === TYPE_AAAA || qtype === TYPE_ANY;
  if (!want4 && !want6) return [];
  const out: RecordSpec[] = [];
  for (const ip of only ?? LocalZone.addresses(service)) {
    let rr;
    try { rr = rdataForIp(ip); } catch { continue; } // a bad IP in the registry must not break the name
    if ((rr.type === TYPE_A && want4) || (rr.type === TYPE_AAAA && want6)) out.push({ name: owner, ttl: LOCAL_TTL, ...rr });
  }
  if (service.kind === 'Headless' || service.clusterIPs.length === 0) shuffle(out);
  return out;
}

function shuffle<T>(a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
}
