// Wire protocol between the node agent (control plane) and the proxies on
// its node. Newline-delimited JSON over a unix stream socket: one JSON object
// per line, UTF-8, no embedded newlines (JSON.stringify never emits them).
// See docs/proxy-protocol.md for the conversation.
import type { RegistryService } from './types.js';

export const PROTOCOL_VERSION = 1;
/**
 * Where a proxy reaches the agent: an abstract unix socket inside its own
 * pod's network namespace, bound there by the agent at CNI ADD. No mount,
 * no file; the listener that accepts tells the agent which pod it is.
 */
export const POD_SOCKET = '@weir/proxy';
/** A line longer than this is a protocol error (a registry of thousands of services fits easily). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

/**
 * Who a proxy is, as the agent decided it from the kernel (which pod-netns
 * listener accepted the connection, or the peer pid on the host socket) and
 * sent in `welcome`. The one identity type of agent, wire and proxy.
 */
export interface PodIdentity {
  namespace: string;
  name: string;
  uid: string;
  ips: string[];
  serviceAccount?: string;
}

export interface HelloMsg {
  type: 'hello';
  /** Protocol versions the proxy speaks; the agent picks the highest it also speaks. */
  versions: number[];
  /** Resume token from an earlier welcome, with the last version the proxy applied. */
  resume?: { epoch: string; version: number };
  /** What the proxy believes it is (logged, compared, never trusted). */
  claimed?: { namespace?: string; name?: string };
}

export interface WelcomeMsg {
  type: 'welcome';
  version: number;
  /** Identifies this agent's registry history; resume only works within one epoch. */
  epoch: string;
  /** Who the agent decided the peer is (docs/proxy-protocol.md, "Trust model"). */
  identity: PodIdentity;
  /** This agent answers `csr` (it forwards to a weir CA). Absent: never send one (older agents close on unknown types). */
  certificates?: boolean;
}

export interface RefusedMsg { type: 'refused'; reason: string }

export interface SnapshotMsg {
  type: 'snapshot';
  version: number;
  clusterDomain: string;
  services: RegistryService[];
}

export interface DeltaMsg {
  type: 'delta';
  fromVersion: number;
  version: number;
  upserts: RegistryService[];
  deletes: string[];
}

export interface AckMsg { type: 'ack'; version: number }
/** With a `nonce`: the answer to that csr (the connection stays up); without: a protocol error (it closes). */
export interface ErrorMsg { type: 'error'; reason: string; nonce?: string }

/**
 * A proxy asks for its workload certificate (docs/controlplane-v2.md, "csr"):
 * the PEM CSR and a nonce the answer carries back. The agent signs nothing
 * itself; it checks the CSR names this listener's identity and forwards it.
 */
export interface CsrMsg { type: 'csr'; nonce: string; pem: string }
/** The signed answer to one csr (becomes a `Secret` push with control plane v2). */
export interface CertificateMsg { type: 'certificate'; nonce: string; chain: string[]; roots: string[] }

export type AgentToProxy = WelcomeMsg | RefusedMsg | SnapshotMsg | DeltaMsg | ErrorMsg | CertificateMsg;
export type ProxyToAgent = HelloMsg | AckMsg | CsrMsg;

/**
 * Splits a byte stream into JSON messages. Buffers only the current partial
 * line; a line over the limit is an error instead of unbounded growth.
 */
export class LineDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  constructor(private readonly maxLine = MAX_LINE_BYTES) {}

  push(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.size = 0;
      start = nl + 1;
      if (line.length === 0) continue;
      out.push(JSON.parse(line.toString('utf8')));
    }
    if (start < chunk.length) {
      this.size += chunk.length - start;
      if (this.size > this.maxLine) throw new Error(`protocol: line longer than ${this.maxLine} bytes`);
      this.parts.push(chunk.subarray(start));
    }
    return out;
  }
}

export function encode(msg: AgentToProxy | ProxyToAgent): string {
  return JSON.stringify(msg) + '\n';
}
