// Forwarding: everything that is not a cluster name goes to the pod's own
// nameservers, through a bounded cache (RFC 2308 negative caching) with
// single-flight, so a burst of one question costs one upstream query.
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { AnswerCache } from './cache.js';
import type { Upstream } from './resolv-conf.js';
import { Forwarder } from './upstream.js';
import { encodeName, rdataForIp, type RecordSpec } from './wire-build.js';
import { parseQuery, TYPE_A, TYPE_CNAME } from './wire.js';

/** An upstream answer, and whether it came from the cache rather than the network. */
export interface UpstreamAnswer { response: Buffer; cached: boolean }

const MAX_UPSTREAM_INFLIGHT = 8192;

export interface ForwardingOptions {
  servers: Upstream[];
  timeoutMs: number;
  cacheMaxEntries?: number;
  cacheMaxBytes?: number;
  cacheMaxTtlSeconds?: number;
  /** Each upstream exchange's latency and whether it succeeded (metrics). */
  onUpstream(seconds: number, ok: boolean): void;
}

export class Forwarding {
  readonly cache: AnswerCache;
  readonly forwarder: Forwarder;
  private readonly inflight = new Map<string, Promise<UpstreamAnswer>>();

  constructor(private readonly opts: ForwardingOptions) {
    this.cache = new AnswerCache({
      maxEntries: opts.cacheMaxEntries ?? 10000,
      maxBytes: opts.cacheMaxBytes ?? 16 * 1024 * 1024,
      maxTtlSeconds: opts.cacheMaxTtlSeconds ?? 3600,
    });
    this.forwarder = new Forwarder({ servers: opts.servers, timeoutMs: opts.timeoutMs });
  }

  /** Too many upstream queries in flight, and this question would add one more. */
  saturated(key: string): boolean {
    return this.forwarder.inflight >= MAX_UPSTREAM_INFLIGHT && !this.inflight.has(key);
  }

  /**
   * Single-flight upstream exchange: concurrent identical questions share one
   * upstream query. Resolves with the upstream bytes (shared: copy before
   * patching) and stores cacheable answers.
   */
  forwardShared(key: string, query: Buffer, questionEnd: number): Promise<UpstreamAnswer> {
    let p = this.inflight.get(key);
    if (p) return p;
    const started = performance.now();
    p = this.forwarder.query(query, questionEnd).then(
      (resp) => {
        this.opts.onUpstream((performance.now() - started) / 1000, true);
        this.cache.store(key, resp, Date.now());
        return { response: resp, cached: false };
      },
      (err) => {
        this.opts.onUpstream((performance.now() - started) / 1000, false);
        throw err;
      },
    );
    p = p.finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** A/AAAA of an out-of-cluster ExternalName target, through cache and single-flight; TTLs capped at `maxTtl`. */
  async resolveExternal(name: string, qtype: number, maxTtl: number): Promise<RecordSpec[]> {
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
      const ttl = Math.min(maxTtl, (a as { ttl?: number }).ttl ?? maxTtl);
      if (a.type === 'CNAME') out.push({ name: a.name, type: TYPE_CNAME, ttl, rdata: encodeName(a.data) });
      else if ((a.type === 'A' || a.type === 'AAAA') && typeof a.data === 'string') out.push({ name: a.name, ttl, ...rdataForIp(a.data) });
    }
    return out;
  }

  close(): Promise<void> {
    return this.forwarder.close();
  }
}
