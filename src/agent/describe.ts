// `weir describe NS/POD`: one answer to "what does weir do to this pod?" —
// captured or not and why, the backend, the proxy's readiness and the config
// version it acknowledged, the Services it serves and routes to, the mesh
// policy weir applies (honestly: what weir does not read yet is said so),
// the last errors, and what to do next. Built from the same PodView as
// `weir pods` and from the proxy's own /config_dump read through its netns.
import type { PodView } from './pod-view.js';
import type { ConfigDump } from '../proxy/config-dump.js';

export interface ProxyFacts {
  reachable: boolean;
  error?: string;
  ready?: { ready: boolean; reason: string };
  dump?: ConfigDump & { agent?: { identity?: { namespace: string; name: string } } };
}

export interface ControlPlaneFacts {
  sentVersion?: number; ackedVersion?: number; connectedAt?: string; registryVersion?: number;
  /** v2: the protocol the proxy speaks, and the last push it rejected (it kept its last good config of that kind). */
  protocol?: number;
  lastNack?: { kind: string; version: number; errors: { name: string; field: string; message: string }[]; at: string };
}

export interface Description {
  pod: string;
  capture: { state: string; captured: boolean; reason: string; backend?: string; planHash?: string; verified: string; verifiedAt?: string; field?: string; error?: string };
  proxy: { reachable: boolean; ready?: boolean; readyReason?: string; acknowledgedVersion?: number; agentSentVersion?: number; agentRegistryVersion?: number; identity?: string; error?: string; protocol?: number; lastNack?: ControlPlaneFacts['lastNack'] };
  /** Services whose endpoints include this pod (inbound), from the proxy's registry. */
  services: string[];
  /** Clusters the proxy routes this pod's outbound connections to, with routable endpoint counts. */
  routesTo: { cluster: string; endpoints: number }[];
  istioConfig: { virtualServices: string; destinationRules: string; peerAuthentication: string; authorizationPolicies: string };
  lastErrors: PodView['lastErrors'];
  next: string[];
}

// The agent does not feed these resources to the proxies yet (`weir analyze`
// validates them offline): saying "none" would read as "no policy selects
// this pod", which weir cannot know.
const NOT_READ = 'not supported yet: weir\'s proxies do not apply this resource yet (weir analyze -f validates it offline); traffic is plain L4, no mTLS';

export function describePod(view: PodView, proxy: ProxyFacts, cp: ControlPlaneFacts | undefined): Description {
  const pod = `${view.namespace}/${view.name}`;
  const dump = proxy.dump;
  const serviceOf = new Map(dump?.clusters.map((c) => [c.name, c.service]) ?? []);
  const services = dump ? [...new Set(dump.endpoints.filter((e) => e.pod === pod).map((e) => serviceOf.get(e.cluster) ?? e.cluster))].sort() : [];
  const routesTo = dump ? dump.clusters.map((c) => ({ cluster: c.name, endpoints: dump.endpoints.filter((e) => e.cluster === c.name && e.routable).length })) : [];
  const next: string[] = [];
  switch (view.state) {
    case 'invalid': next.push(`fix the annotation ${view.field ?? ''} (see the error), then delete the pod so it is re-created: nothing was programmed`); break;
    case 'failed': next.push(`weir logs --tail 50 | grep ${view.name}`, `weir check ${pod}`, `weir repair ${pod}`); break;
    case 'pending': next.push('the sandbox has not been programmed yet: if the pod is Running, check that weir-cni is chained (weir status, weir precheck) and that the pod was created after the agent'); break;
    case 'stale': next.push(`weir repair ${pod} (reprograms the rules with the current annotations)`); break;
    case 'not-captured': if (view.reason === 'no-proxy') next.push('add the proxy container (weir-proxy or istio-proxy) if this pod should be in the mesh'); break;
    default: break;
  }
  if (view.captured && !proxy.reachable) next.push(`the proxy admin is unreachable (${proxy.error ?? 'unknown'}): is the proxy container running? kubectl logs ${view.name} -n ${view.namespace} -c weir-proxy`);
  if (proxy.ready && !proxy.ready.ready) next.push(`the proxy is not ready (${proxy.ready.reason}): weir proxy-config log ${pod}, kubectl logs -c weir-proxy`);
  if (dump && dump.version.acknowledged < 0) next.push('the proxy has no registry from the agent: weir status (control plane), and the proxy\'s log for "refused"');
  if (cp?.lastNack) {
    const e = cp.lastNack.errors[0];
    next.push(`the proxy rejected ${cp.lastNack.kind} version ${cp.lastNack.version} (${e ? `${e.name} ${e.field}: ${e.message}` : 'no reason'}); it keeps its last good ${cp.lastNack.kind}: fix the resource that produced it`);
  }
  if (view.verified === 'never' && view.captured) next.push(`weir check ${pod} (rules not verified since they were programmed)`);
  return {
    pod,
    capture: { state: view.state, captured: view.captured, reason: view.reason, backend: view.backend, planHash: view.planHash, verified: view.verified, verifiedAt: view.verifiedAt, field: view.field, error: view.error },
    proxy: {
      reachable: proxy.reachable, ready: proxy.ready?.ready, readyReason: proxy.ready?.reason, acknowledgedVersion: dump?.version.acknowledged,
      agentSentVersion: cp?.sentVersion, agentRegistryVersion: cp?.registryVersion,
      identity: dump?.agent?.identity ? `${dump.agent.identity.namespace}/${dump.agent.identity.name}` : undefined, error: proxy.error,
      protocol: cp?.protocol, lastNack: cp?.lastNack,
    },
    services, routesTo,
    istioConfig: { virtualServices: NOT_READ, destinationRules: NOT_READ, peerAuthentication: NOT_READ, authorizationPolicies: NOT_READ },
    lastErrors: view.lastErrors,
    next,
  };
}
