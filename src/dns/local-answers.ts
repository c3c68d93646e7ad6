// Answers for cluster names (the registry's Services), as an authoritative
// server would give them: A/AAAA (headless: every ready IP, shuffled),
// ExternalName as CNAME + the target's addresses, NOERROR/empty with the
// zone's SOA for a known name without the asked type. Answers that do not
// shuffle are pre-encoded once per registry (memo) and patched per query.
import type { Registry, RegistryService } from '../controlplane/types.js';
import type { Transport } from './fast-teacher.js';
import { LocalZone, type LocalMatch } from './local-zone.js';
import { buildResponse, encodeName, rdataForIp, soaRdata, type RecordSpec } from './wire-build.js';
import {
  FLAG_AA, FLAG_QR, FLAG_RA, FLAG_RD, HEADER_LEN, RCODE_NOERROR, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME,
  TYPE_SOA, type ParsedQuery,
} from './wire.js';

export const LOCAL_TTL = 30;
const MEMO_MAX = 20000;

export interface LocalAnswersOptions {
  podNamespace: string;
  firstSearchDomain: string | undefined;
  /** Lets the native UDP threads repeat a local answer (fast-teacher.ts). */
  teach(query: Buffer, answer: Buffer, lifetimeMs: number, kind: 'local', transport: Transport): void;
  /** Addresses of an ExternalName target outside the cluster (forwarding.ts). */
  resolveExternal(name: string, qtype: number, maxTtl: number): Promise<RecordSpec[]>;
}

export class LocalAnswers {
  private zone: LocalZone | undefined;
  private zoneRegistry: Registry | undefined;
  /** Pre-encoded local answers for the current registry, keyed like the cache. */
  private memo = new Map<string, Buffer>();
  /** Question keys known not to be cluster names under the current registry. */
  private notLocal = new Set<string>();

  constructor(private readonly opts: LocalAnswersOptions) {}

  /** The answer when `q` is a cluster name under `registry`; undefined when it is not (forward it). */
  answer(registry: Registry, msg: Buffer, q: ParsedQuery, transport: Transport): Buffer | Promise<Buffer> | undefined {
    const zone = this.zoneFor(registry);
    // Pre-encoded answer for this exact question under this registry.
    const memoised = this.memo.get(q.key);
    if (memoised) {
      const resp = this.patchFor(memoised, msg, q);
      this.opts.teach(msg, resp, LOCAL_TTL * 1000, 'local', transport);
      return resp;
    }
    const match = this.notLocal.has(q.key) ? undefined : zone.lookup(q.qname);
    if (!match) {
      // Forwarded names repeat too: skip the zone walk next time.
      if (this.notLocal.size >= MEMO_MAX) this.notLocal.clear();
      this.notLocal.add(q.key);
      return undefined;
    }
    return this.localAnswer(msg, q, zone, match, transport);
  }

  private zoneFor(registry: Registry): LocalZone {
    if (registry !== this.zoneRegistry || !this.zone) {
      this.zone = new LocalZone(registry, this.opts.podNamespace, this.opts.firstSearchDomain);
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
      return this.opts.resolveExternal(ext, q.qtype, LOCAL_TTL).then((records) => build(records), () => build([]));
    }

    const records = addressRecords(target.service, targetOwner, q.qtype, target.podAddresses);
    const resp = build(records);
    // Only answers without a shuffle are memoised.
    if (!(target.service.kind === 'Headless' && records.length > 1)) {
      if (this.memo.size >= MEMO_MAX) this.memo.clear();
      this.memo.set(q.key, resp);
      const patched = this.patchFor(resp, msg, q);
      this.opts.teach(msg, patched, LOCAL_TTL * 1000, 'local', transport);
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
}

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
