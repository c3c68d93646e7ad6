// Resolution: one DNS query in, one answer (or nothing: dropped) out,
// whatever transport it came by. Cluster names are answered locally
// (local-answers.ts), the rest from the cache or forwarded (forwarding.ts);
// answers the native UDP threads may repeat are taught to them
// (fast-teacher.ts). Counts every outcome for stats() and Prometheus.
import { performance } from 'node:perf_hooks';
import type { Registry as PromRegistry } from 'prom-client';
import type { Logger } from '../common/log.js';
import type { RegistryView } from '../controlplane/types.js';
import { FastPathTeacher, type Transport } from './fast-teacher.js';
import { Forwarding } from './forwarding.js';
import { LocalAnswers } from './local-answers.js';
import { createDnsMetrics, type DnsMetrics, type Outcome } from './metrics.js';
import type { Upstream } from './resolv-conf.js';
import { errorResponse, truncatedResponse } from './wire-build.js';
import {
  CLASS_IN, CLASSIC_UDP_SIZE, HEADER_LEN, parseQuery, qtypeLabel, RCODE_FORMERR, RCODE_NOTIMP, RCODE_SERVFAIL,
  WireError, type ParsedQuery,
} from './wire.js';

const TCP_MAX_MESSAGE = 65535;
/** Largest UDP payload over IPv4 (65535 - IP and UDP headers). */
const UDP_MAX_PAYLOAD = 65507;

export interface ResolverOptions {
  registry: RegistryView;
  podNamespace: string;
  firstSearchDomain: string | undefined;
  servers: Upstream[];
  timeoutMs: number;
  cacheMaxEntries?: number;
  cacheMaxBytes?: number;
  cacheMaxTtlSeconds?: number;
  metrics: PromRegistry;
  log: Logger;
}

export class Resolver {
  readonly forwarding: Forwarding;
  readonly teacher: FastPathTeacher;
  readonly counts: Record<Outcome, number> = { local: 0, forwarded: 0, cached: 0, failed: 0, malformed: 0 };
  private readonly local: LocalAnswers;
  private readonly metrics: DnsMetrics;

  constructor(private readonly opts: ResolverOptions) {
    this.forwarding = new Forwarding({
      servers: opts.servers,
      timeoutMs: opts.timeoutMs,
      cacheMaxEntries: opts.cacheMaxEntries,
      cacheMaxBytes: opts.cacheMaxBytes,
      cacheMaxTtlSeconds: opts.cacheMaxTtlSeconds,
      onUpstream: (seconds, ok) => this.metrics.upstream(seconds, ok),
    });
    this.teacher = new FastPathTeacher(opts.registry, opts.log);
    this.local = new LocalAnswers({
      podNamespace: opts.podNamespace,
      firstSearchDomain: opts.firstSearchDomain,
      teach: (query, answer, lifetimeMs, kind, transport) => this.teacher.teach(query, answer, lifetimeMs, kind, transport),
      resolveExternal: (name, qtype, maxTtl) => this.forwarding.resolveExternal(name, qtype, maxTtl),
    });
    const { cache, forwarder } = this.forwarding;
    this.metrics = createDnsMetrics(
      opts.metrics,
      () => ({ entries: cache.size, bytes: cache.bytes }),
      () => forwarder.inflight,
      () => this.teacher.fast?.stats() ?? [],
      () => this.teacher.fast?.counters().dropped ?? 0,
    );
  }

  /**
   * handle() with a last line of defence: a bug on some odd input must cost
   * that one query (dropped, logged), never the process and every pod query.
   */
  answer(msg: Buffer, transport: Transport): Buffer | Promise<Buffer | undefined> | undefined {
    try {
      return this.handle(msg, transport);
    } catch (err) {
      this.opts.log.error({ err, query: msg.toString('base64') }, 'DNS query handling failed; dropped');
      this.counts.failed++;
      return undefined;
    }
  }

  /** Metrics off the shared registry, upstream sockets closed. */
  async close(): Promise<void> {
    await this.forwarding.close();
    this.metrics.unregister();
  }

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
      const local = this.local.answer(registry, msg, q, transport);
      if (local instanceof Promise) {
        return local.then(
          (resp) => this.done(qtype, 'local', started, this.fit(resp, q, transport)),
          () => this.done(qtype, 'failed', started, errorResponse(msg, RCODE_SERVFAIL, q.questionEnd)),
        );
      }
      if (local) return this.done(qtype, 'local', started, this.fit(local, q, transport));
    }

    const { cache } = this.forwarding;
    const now = Date.now();
    const cached = cache.lookup(q.key, q.id, now);
    if (cached) {
      msg.copy(cached, HEADER_LEN, HEADER_LEN, q.questionEnd); // client's own letter case
      this.teacher.teach(msg, cached, () => cache.remainingMs(q.key, now), 'cached', transport);
      return this.done(qtype, 'cached', started, this.fit(cached, q, transport));
    }

    if (this.forwarding.saturated(q.key)) {
      return this.done(qtype, 'failed', started, errorResponse(msg, RCODE_SERVFAIL, q.questionEnd));
    }
    return this.forwarding.forwardShared(q.key, msg, q.questionEnd).then(
      (upstream) => {
        const resp = Buffer.from(upstream.response);
        resp.writeUInt16BE(q.id, 0);
        msg.copy(resp, HEADER_LEN, HEADER_LEN, q.questionEnd);
        const rcode = resp.readUInt16BE(2) & 0xf;
        const outcome = rcode === RCODE_SERVFAIL ? 'failed' : upstream.cached ? 'cached' : 'forwarded';
        // Cacheable answers were stored by forwardShared: the threads may repeat them as long as the cache would.
        if (outcome !== 'failed') this.teacher.teach(msg, resp, () => cache.remainingMs(q.key, Date.now()), 'cached', transport);
        return this.done(qtype, outcome, started, this.fit(resp, q, transport));
      },
      (err) => {
        this.opts.log.debug({ err: (err as Error).message, qname: q.qname }, 'upstream failed');
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
}
