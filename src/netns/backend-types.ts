// The contract every capture backend (nftables in-process, iptables-restore)
// fulfils. Callers (CNI server, repair loop, CLI) only see this.
import type { RedirectPlan } from '../redirect/types.js';

/** The capture backends weir has (netns/backends.ts turns a name into one). */
export type BackendName = 'nftables' | 'iptables';

/** A network namespace by path: /run/netns/X, /var/run/netns/cni-..., /proc/PID/ns/net. */
export type NetnsPath = string;

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
  apply(netns: NetnsPath, plan: RedirectPlan): Promise<void>;
  /** Read back what weir programmed. */
  read(netns: NetnsPath): Promise<ProgrammedState>;
  /** Compare the netns with the plan, precisely. */
  verify(netns: NetnsPath, plan: RedirectPlan): Promise<VerifyResult>;
  /** Remove exactly weir's rules. Idempotent; a missing netns is not an error. */
  remove(netns: NetnsPath): Promise<void>;
}
