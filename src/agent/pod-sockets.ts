// Keeps one control-plane socket open inside every captured pod's netns
// (controlplane/pod-listeners.ts), following the sandbox records: opened
// when CNI ADD (or repair through the controller) stores a captured record,
// closed when DEL/GC deletes it, and re-opened from the records when the
// agent restarts. Pods repaired from a /proc scan (started before weir, no
// record) get one keyed by pod UID, closed once the pod leaves the node.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import type { ControlPlane } from '../controlplane/server.js';
import { PodListeners } from '../controlplane/pod-listeners.js';
import type { Pod } from '../kube/pod-types.js';
import { identityOfPod, identityOfSandbox } from './identify.js';
import type { PodRepairOutcome } from './repair.js';
import type { SandboxStore } from './sandbox-store.js';

export interface PodSocketsDeps {
  controlPlane: Pick<ControlPlane, 'serve'>;
  store: SandboxStore;
  /** Pods of this node (informer cache). */
  pods: () => Pod[];
  logger: Logger;
  metrics: Registry;
}

export interface PodSockets {
  listeners: PodListeners;
  /** Repair loop hook: a pod found through the /proc scan gets its socket too. */
  onRepair(o: PodRepairOutcome): void;
  close(): Promise<void>;
}

const sandboxKey = (containerId: string): string => `sandbox/${containerId}`;
const podKey = (uid: string): string => `pod/${uid}`;

export async function startPodSockets(deps: PodSocketsDeps): Promise<PodSockets> {
  const log = deps.logger.child({ component: 'pod-sockets' });
  const open = new Gauge({ name: 'weir_controlplane_pod_sockets', help: 'Pod network namespaces with the control-plane socket open', registers: [deps.metrics] });
  const failures = new Counter({ name: 'weir_controlplane_pod_socket_failures_total', help: 'Failed attempts to open a pod control-plane socket, by reason', labelNames: ['reason'], registers: [deps.metrics] });
  const listeners = new PodListeners({
    serve: (sock, identify) => deps.controlPlane.serve(sock, identify),
    logger: log,
    onError: (reason) => failures.inc({ reason }),
  });
  const count = (): void => { open.set(listeners.keys().length); };

  const follow = async (containerId: string): Promise<void> => {
    const rec = deps.store.get(containerId);
    if (rec?.captured && rec.netns) {
      await listeners.open(sandboxKey(containerId), rec.netns, () => identityOfSandbox(deps.store.get(containerId), deps.pods()));
    } else {
      await listeners.close(sandboxKey(containerId));
    }
    count();
  };
  // Subscribe before the first pass, so nothing stored meanwhile is missed.
  deps.store.watch((containerId) => follow(containerId));
  await Promise.all(deps.store.list().map((r) => follow(r.containerId)));
  log.info({ open: listeners.keys().length }, 'pod control-plane sockets opened from the sandbox records');

  return {
    listeners,
    onRepair(o) {
      // Sockets of repaired pods that left the node (they have no record whose DEL would close them).
      const repaired = listeners.keys().filter((k) => k.startsWith('pod/'));
      if (repaired.length) {
        const uids = new Set(deps.pods().map((p) => p.metadata.uid));
        for (const key of repaired) if (!uids.has(key.slice(4))) void listeners.close(key).then(count);
      }
      if (o.via !== 'proc-scan' || !o.netns || !o.uid || (o.result !== 'ok' && o.result !== 'repaired')) return;
      const uid = o.uid;
      void listeners.open(podKey(uid), o.netns, () => {
        const pod = deps.pods().find((p) => p.metadata.uid === uid);
        return pod ? identityOfPod(pod) : undefined;
      }).then(count);
    },
    async close() {
      await listeners.closeAll();
      count();
    },
  };
}
