// Shared helpers for the DNS proxy tests: a scriptable upstream DNS server on
// loopback that counts what it receives, and UDP/TCP clients.
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export type Answer = dnsPacket.Answer;

/** The decoded fields the tests look at (dns-packet's own types are unions that hide them). */
export interface Rec { name: string; type: string; ttl: number; data: any } // eslint-disable-line @typescript-eslint/no-explicit-any
export interface Decoded {
  id: number;
  rcode: string;
  flag_aa: boolean;
  flag_tc: boolean;
  questions: { name: string; type: string }[];
  answers: Rec[];
  authorities: Rec[];
  raw: Buffer;
}

export function decode(raw: Buffer): Decoded {
  const p = dnsPacket.decode(raw) as unknown as Omit<Decoded, 'raw'>;
  return { ...p, answers: p.answers ?? [], authorities: p.authorities ?? [], questions: p.questions ?? [], raw };
}

export interface FakeUpstreamRule {
  answers?: Answer[];
  authorities?: Answer[];
  rcode?: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED';
  /** Delay before answering, ms. */
  delayMs?: number;
  /** Never answer. */
  drop?: boolean;
  /** Answer with TC over UDP (forces the TCP retry). */
  truncateUdp?: boolean;
}

export interface FakeUpstream {
  port: number;
  /** Queries received per "TYPE name" (lower-case), split by transport. */
  counts: { udp: Map<string, number>; tcp: Map<string, number> };
  count(type: string, name: string, transport?: 'udp' | 'tcp'): number;
  close(): Promise<void>;
}

/** Serves rules keyed by "TYPE name" or "* name"; unknown names → NXDOMAIN with SOA. */
export async function startFakeUpstream(rules: Record<string, FakeUpstreamRule>, host = '127.0.0.1'): Promise<FakeUpstream> {
  const counts = { udp: new Map<string, number>(), tcp: new Map<string, number>() };
  const soa: Answer = {
    name: 'example', type: 'SOA', ttl: 300,
    data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60 },
  };
  const answer = (msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> => {
    let q: dnsPacket.DecodedPacket;
    try { q = dnsPacket.decode(msg); } catch { counts[transport].set('malformed', (counts[transport].get('malformed') ?? 0) + 1); return Promise.resolve(undefined); }
    const question = q.questions![0];
    const key = `${question.type} ${question.name.toLowerCase()}`;
    counts[transport].set(key, (counts[transport].get(key) ?? 0) + 1);
    const rule = rules[key] ?? rules[`* ${question.name.toLowerCase()}`];
    if (rule?.drop) return Promise.resolve(undefined);
    const respond = (): Buffer => {
      if (!rule) {
        return dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (3 & 0xf), questions: q.questions, authorities: [soa] });
      }
      const rcode = { NOERROR: 0, NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5 }[rule.rcode ?? 'NOERROR'];
      if (rule.truncateUdp && transport === 'udp') {
        return dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.TRUNCATED_RESPONSE | rcode, questions: q.questions });
      }
      return dnsPacket.encode({
        type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | rcode, questions: q.questions,
        answers: rule.answers ?? [], authorities: rule.authorities ?? [],
      });
    };
    return new Promise((r) => setTimeout(() => r(respond()), rule?.delayMs ?? 0));
  };
  let closed = false;
  const onUdp = (udp: dgram.Socket) => (msg: Buffer, rinfo: dgram.RemoteInfo) => {
    answer(msg, 'udp').then((resp) => { if (resp && !closed) udp.send(resp, rinfo.port, rinfo.address); }, () => {});
  };
  const onTcp = (c: net.Socket) => {
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        answer(Buffer.from(msg), 'tcp').then((resp) => {
          if (!resp || c.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(resp.length);
          c.write(Buffer.concat([len, resp]));
        }, () => {});
      }
    });
    c.on('error', () => {});
  };
  // UDP and TCP on one port number: the kernel picks a free UDP port, and the
  // same number may be taken for TCP (an ephemeral client port), so retry.
  let udp!: dgram.Socket;
  let tcp!: net.Server;
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    udp.on('message', onUdp(udp));
    await new Promise<void>((r) => udp.bind(0, host, () => r()));
    port = udp.address().port;
    tcp = net.createServer(onTcp);
    try {
      await new Promise<void>((r, j) => { tcp.once('error', j); tcp.listen(port, host, () => r()); });
      break;
    } catch (e) {
      await new Promise<void>((r) => udp.close(() => r()));
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw e;
    }
  }
  return {
    port,
    counts,
    count(type, name, transport) {
      const k = `${type} ${name.toLowerCase()}`;
      if (transport) return counts[transport].get(k) ?? 0;
      return (counts.udp.get(k) ?? 0) + (counts.tcp.get(k) ?? 0);
    },
    close: async () => {
      closed = true;
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

export interface QueryOptions {
  id?: number;
  edns?: number;
  rd?: boolean;
  timeoutMs?: number;
}

export function encodeQuery(name: string, type: dnsPacket.RecordType, o: QueryOptions = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: o.id ?? Math.floor(Math.random() * 65536),
    flags: o.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
    additionals: o.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: o.edns, flags: 0, options: [] } as unknown as Answer] : [],
  });
}

/** One UDP exchange; rejects on timeout. */
export function udpRaw(port: number, query: Buffer, host = '127.0.0.1', timeoutMs = 3000): Promise<Buffer> {
  const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => { s.close(); reject(new Error(`UDP query timed out after ${timeoutMs} ms`)); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(timer); s.close(); resolve(m); });
    s.send(query, port, host);
  });
}

export async function udpQuery(port: number, name: string, type: dnsPacket.RecordType, o: QueryOptions = {}, host = '127.0.0.1'): Promise<Decoded> {
  const q = encodeQuery(name, type, o);
  return decode(await udpRaw(port, q, host, o.timeoutMs));
}

/** Sends several queries on one TCP connection (one write) and collects that many answers. */
export function tcpQueries(port: number, queries: Buffer[], host = '127.0.0.1', timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port });
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { c.destroy(); reject(new Error('TCP queries timed out')); }, timeoutMs);
    c.on('connect', () => {
      c.write(Buffer.concat(queries.map((q) => { const l = Buffer.alloc(2); l.writeUInt16BE(q.length); return Buffer.concat([l, q]); })));
    });
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= queries.length) { clearTimeout(timer); c.destroy(); resolve(out); }
    });
    c.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** A port for a test server: below the kernel's ephemeral range (32768+), so it never collides with a client socket's port. */
export function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 12000);
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;

export function rcodeOf(raw: Buffer): number {
  return raw.readUInt16BE(2) & 0xf;
}

import type { Registry, RegistryService } from '../../src/controlplane/types.js';

function svc(ns: string, name: string, extra: Partial<RegistryService>): RegistryService {
  return { namespace: ns, name, kind: 'ClusterIP', clusterIPs: [], ports: [], endpoints: [], ...extra };
}

function ep(ip: string, ready = true) {
  return { ip, ready, serving: ready, terminating: false, ports: [] };
}

/** The registry the DNS tests answer from (cluster domain cluster.local, pod namespace "ns"). */
export function testRegistry(): Registry {
  const services = [
    svc('ns', 'web', { clusterIPs: ['10.96.0.10'] }),
    svc('other', 'api', { clusterIPs: ['10.96.0.20', 'fd00::20'] }),
    svc('ns', 'db', { kind: 'Headless', endpoints: [{ ...ep('10.1.0.1'), hostname: 'db-0' }, { ...ep('10.1.0.2'), hostname: 'db-1' }, ep('10.1.0.3'), { ...ep('10.1.0.9', false), hostname: 'db-9' }] }),
    svc('ns', 'alias', { kind: 'ExternalName', externalName: 'api.other.svc.cluster.local' }),
    svc('ns', 'outside', { kind: 'ExternalName', externalName: 'ext.example' }),
  ];
  return { version: 7, clusterDomain: 'cluster.local', services: new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])) };
}
