// Who a proxy is, for the control plane. Two ways, both from the kernel and
// never from what the proxy claims:
// - pod socket (the default): the pod-netns listener that accepted the
//   connection belongs to one sandbox record (CNI ADD) or one repaired pod;
//   identityOfSandbox / identityOfPod turn that into a PodIdentity.
// - host socket (legacy): the SO_PEERCRED pid → its netns (against the
//   sandbox records) or its cgroup's pod UID. Only sound when the agent sees
//   the proxies' pids, i.e. runs in the pid namespace of procRoot
//   (pidsResolvable); without hostPID the kernel reports pid 0 and the peer is refused.
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { PodIdentity } from '../controlplane/protocol.js';
import type { Pod } from '../kube/pod-types.js';
import type { SandboxStore, StoredSandbox } from './sandbox-store.js';
import { netnsInode, pidNetnsInode, pidPodUid } from './netns-scan.js';

export interface PeerIdentifierDeps {
  procRoot: string;
  store?: SandboxStore;
  /** Pods of this node (informer cache). */
  pods: () => Pod[];
}

/** A pod's identity; `ips` from its status, else `fallbackIps` (the CNI result). */
export function identityOfPod(pod: Pod, fallbackIps: string[] = []): PodIdentity {
  const podIps = pod.status?.podIPs?.map((p) => p.ip) ?? (pod.status?.podIP ? [pod.status.podIP] : []);
  return {
    namespace: pod.metadata.namespace ?? 'default',
    name: pod.metadata.name ?? '',
    uid: pod.metadata.uid ?? '',
    ips: podIps.length > 0 ? podIps : fallbackIps,
    serviceAccount: (pod.spec as { serviceAccountName?: string }).serviceAccountName,
  };
}

function podOfRecord(rec: StoredSandbox, pods: Pod[]): Pod | undefined {
  return pods.find((p) => (rec.podUid ? p.metadata.uid === rec.podUid : p.metadata.name === rec.podName && (p.metadata.namespace ?? 'default') === (rec.podNamespace ?? 'default')));
}

/**
 * The identity behind a sandbox record: the informer's pod when it has it
 * (service account, status IPs), else what the kubelet told CNI ADD
 * (K8S_POD_* args and the primary CNI's IPs). undefined once the record is gone.
 */
export function identityOfSandbox(rec: StoredSandbox | undefined, pods: Pod[]): PodIdentity | undefined {
  if (!rec?.podName) return undefined;
  const pod = podOfRecord(rec, pods);
  if (pod) return identityOfPod(pod, rec.ips);
  return { namespace: rec.podNamespace ?? 'default', name: rec.podName, uid: rec.podUid ?? '', ips: rec.ips };
}

/**
 * True when pids reported by SO_PEERCRED can be looked up under procRoot:
 * procRoot's pid namespace is the agent's own. False for
 * the DaemonSet (hostPID: false, host /proc at /host/proc): there a pid would
 * name a different process, so it must never be mapped to a pod.
 */
export async function pidsResolvable(procRoot: string): Promise<boolean> {
  // `<procRoot>/self` names this process by its pid in the pid namespace that
  // proc mount shows. It equals our own pid exactly when that namespace is
  // ours, i.e. when the pids SO_PEERCRED reports can be looked up there. (Not
  // by comparing /proc/1/ns/pid: reading pid 1's namespace links needs ptrace
  // rights over it, which sandboxes and hardened nodes refuse.)
  try {
    return (await readlink(join(procRoot, 'self'))) === String(process.pid);
  } catch {
    return false;
  }
}

export function createPeerIdentifier(deps: PeerIdentifierDeps): (pid: number) => Promise<PodIdentity | undefined> {
  return async (pid: number) => {
    if (pid <= 0) return undefined;
    const inode = await pidNetnsInode(pid, deps.procRoot);
    if (inode === undefined) return undefined;
    const pods = deps.pods();
    for (const rec of deps.store?.list() ?? []) {
      if (!rec.podName || (await netnsInode(rec.netns)) !== inode) continue;
      const pod = podOfRecord(rec, pods);
      if (pod) return identityOfPod(pod, rec.ips);
    }
    const uid = await pidPodUid(pid, deps.procRoot);
    if (!uid) return undefined;
    const pod = pods.find((p) => p.metadata.uid === uid);
    return pod ? identityOfPod(pod) : undefined;
  };
}
