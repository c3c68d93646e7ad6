// identifyPeer for the control plane: which pod does a connecting process
// (pid from SO_PEERCRED) run in? First by netns identity against the
// sandboxes weir programmed (covers runtimes without kubelet cgroups), then
// by the pod UID in the process's cgroup. The answer comes from the kernel,
// never from what the proxy claims.
import type { PeerPodIdentity } from '../controlplane/server.js';
import type { Pod } from '../kube/pod-types.js';
import type { SandboxStore } from './sandbox-store.js';
import { netnsInode, pidNetnsInode, pidPodUid } from './netns-scan.js';

export interface PeerIdentifierDeps {
  procRoot: string;
  store?: SandboxStore;
  /** Pods of this node (informer cache). */
  pods: () => Pod[];
}

function identityOf(pod: Pod, ips: string[]): PeerPodIdentity {
  const podIps = pod.status?.podIPs?.map((p) => p.ip) ?? (pod.status?.podIP ? [pod.status.podIP] : []);
  return {
    namespace: pod.metadata.namespace ?? 'default',
    name: pod.metadata.name ?? '',
    uid: pod.metadata.uid ?? '',
    ips: podIps.length > 0 ? podIps : ips,
    serviceAccount: (pod.spec as { serviceAccountName?: string }).serviceAccountName,
  };
}

export function createPeerIdentifier(deps: PeerIdentifierDeps): (pid: number) => Promise<PeerPodIdentity | undefined> {
  return async (pid: number) => {
    const inode = await pidNetnsInode(pid, deps.procRoot);
    if (inode === undefined) return undefined;
    const pods = deps.pods();
    for (const rec of deps.store?.list() ?? []) {
      if (!rec.podName || (await netnsInode(rec.netns)) !== inode) continue;
      const pod = pods.find((p) => (rec.podUid ? p.metadata.uid === rec.podUid : p.metadata.name === rec.podName && (p.metadata.namespace ?? 'default') === (rec.podNamespace ?? 'default')));
      if (pod) return identityOf(pod, rec.ips);
    }
    const uid = await pidPodUid(pid, deps.procRoot);
    if (!uid) return undefined;
    const pod = pods.find((p) => p.metadata.uid === uid);
    return pod ? identityOf(pod, []) : undefined;
  };
}
