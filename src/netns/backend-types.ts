// The contract every capture backend (nftables in-process, iptables-restore)
// fulfils. Callers (CNI server, repair loop, CLI) only see this.
import type { RedirectPlan } from '../redirect/types.js';

/** The capture backends weir has (netns/backends.ts turns a name into one; ebpf = cgroup socket programs + an nft inbound ruleset). */
export type BackendName = 'nftables' | 'iptables' | 'ebpf';

/** A network namespace by path: /run/netns/X, /var/run/netns/cni-..., /proc/PID/ns/net. */
export type NetnsPath = string;

/**
 * The pod sandbox a backend programs. nftables and iptables need only the
 * netns; the eBPF backend will attach to the pod's cgroup and match its IPs,
 * so those have a place here rather than a new parameter on every call.
 */
export interface SandboxTarget {
  netnsPath: NetnsPath;
  /** The pod's cgroup v2 directory, when known. */
  cgroupPath?: string;
  /** The pod's IPs (from the CNI result), when known. */
  podIPs?: string[];
}

/** The target for a sandbox known only by its netns path. */
export function sandboxAt(netnsPath: string): SandboxTarget {
  return { netnsPath };
}

export interface ProgrammedState {
  backend: BackendName;
  /** True when any weir-owned table/chain exists in the netns. */
  present: boolean;
  /** Canonical text listing of what weir owns in the netns (as the kernel reports it). */
  listing: string;
  /** Plan hash recorded in the netns when it was programmed, if readable. */
  planHash?: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Human-readable, precise differences: "missing: ...", "unexpected: ...". Empty when ok. */
  differences: string[];
}

export interface CaptureBackend {
  readonly name: BackendName;
  /** Atomically replace weir's rules in the netns with the plan's. Idempotent. */
  apply(target: SandboxTarget, plan: RedirectPlan): Promise<void>;
  /** Read back what weir programmed. */
  read(target: SandboxTarget): Promise<ProgrammedState>;
  /** Compare the netns with the plan, precisely. */
  verify(target: SandboxTarget, plan: RedirectPlan): Promise<VerifyResult>;
  /** Remove exactly weir's rules. Idempotent; a missing netns is not an error. */
  remove(target: SandboxTarget): Promise<void>;
}
