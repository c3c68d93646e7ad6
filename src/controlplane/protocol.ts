// Wire protocol between the node agent (control plane) and the proxies on
// its node. Newline-delimited JSON over a unix stream socket: one JSON object
// per line, UTF-8, no embedded newlines (JSON.stringify never emits them).
// See docs/proxy-protocol.md for the conversation.
import type { RegistryService } from './types.js';
import type { Kind } from './v2/kinds.js';

/** The v1 registry protocol; still served to proxies that only speak it. */
export const PROTOCOL_VERSION = 1;
/** Typed kinds with per-kind versions, ack and nack (docs/proxy-protocol.md, "Version 2"). */
export const PROTOCOL_V2 = 2;
/** What this build speaks, preferred first (the proxy's hello.versions). */
export const PROTOCOL_VERSIONS = [PROTOCOL_V2, PROTOCOL_VERSION];
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
  /**
   * Resume token from an earlier welcome: v1 sends the last registry version
   * it applied, v2 the last version it applied of each kind.
   */
  resume?: { epoch: string; version?: number; versions?: Partial<Record<Kind, number>> };
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
  /** v2: the cluster domain (v1 sends it in each snapshot). */
  clusterDomain?: string;
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

/**
 * v2: one change of one kind. `full` replaces the kind wholesale; otherwise
 * it applies only to a holder of exactly `fromVersion`. Applied whole or not
 * at all, then acked or nacked with the same kind, version and nonce.
 */
export interface PushMsg {
  type: 'push';
  kind: Kind;
  version: number;
  nonce: string;
  full?: boolean;
  fromVersion?: number;
  upserts: unknown[];
  /** Keys within the kind (kinds.ts keyOf). */
  deletes: string[];
}

/** v1: `{version}`; v2 adds the kind and the nonce of the push it answers. */
export interface AckMsg { type: 'ack'; version: number; kind?: Kind; nonce?: string }
/** What a proxy found wrong in one push: the item's key, the field, why. */
export interface NackError { name: string; field: string; message: string }
/** v2: the push was not applied; the proxy keeps its last good version of that kind. */
export interface NackMsg { type: 'nack'; kind: Kind; version: number; nonce: string; errors: NackError[] }
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

export type AgentToProxy = WelcomeMsg | RefusedMsg | SnapshotMsg | DeltaMsg | PushMsg | ErrorMsg | CertificateMsg;
export type ProxyToAgent = HelloMsg | AckMsg | NackMsg | CsrMsg;

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
