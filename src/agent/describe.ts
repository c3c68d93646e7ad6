// `weir describe NS/POD`: one answer to "what does weir do to this pod?" —
// captured or not and why, the backend, the proxy's readiness and the config
// version it acknowledged, the Services it serves and routes to, the mesh
// policy weir applies (mTLS mode and AuthorizationPolicies as the proxy
// enforces them; what describe does not work out is said so),
// the last errors, and what to do next. Built from the same PodView as
// `weir pods` and from the proxy's own /config_dump read through its netns.
import type { PodView } from './pod-view.js';
import type { ConfigDump } from '../proxy/config-dump.js';

export interface ProxyFacts {
  reachable: boolean;
  error?: string;
  ready?: { ready: boolean; reason: string };
  dump?: ConfigDump & { agent?: { identity?: { namespace: string; name: string } }; mesh?: MeshDump };
}

/** What the proxy's config_dump says it enforces inbound (src/proxy/mtls/start.ts dump()). */
interface MeshDump {
  securitySource?: 'control-plane' | 'static-file' | 'none';
  compiled?: { mode: string; portLevel: Record<string, string>; peerAuthentications: string[]; deny: { name: string }[]; allow: { name: string }[]; audit: { name: string }[] };
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

// What describe does not report per pod yet (the proxy applies them: its
// config_dump and `weir proxy-config routes|clusters` show the result):
// saying "none" would read as "nothing selects this pod", which describe
// does not work out.
const NOT_READ = 'not supported yet by describe: see weir proxy-config routes / clusters for what the proxy applies';

const SOURCE: Record<string, string> = { 'control-plane': 'from the control plane', 'static-file': 'pinned by --static-security', none: 'no policy received' };

/** The PeerAuthentication and AuthorizationPolicy lines, from what the proxy says it enforces. */
function securityLines(dump: ProxyFacts['dump']): { peerAuthentication: string; authorizationPolicies: string } {
  if (!dump) return { peerAuthentication: 'unknown (no proxy config)', authorizationPolicies: 'unknown (no proxy config)' };
  const m = dump.mesh;
  if (!m?.compiled) return { peerAuthentication: 'mesh security off in this proxy (--mtls off): plaintext, no policy enforced', authorizationPolicies: 'none enforced (--mtls off)' };
  const c = m.compiled;
  const src = SOURCE[m.securitySource ?? 'none'] ?? m.securitySource;
  const ports = Object.entries(c.portLevel).map(([p, mode]) => `; port ${p}: ${mode}`).join('');
  const by = c.peerAuthentications.length ? c.peerAuthentications.join(', ') : 'default';
  const groups = (['deny', 'allow', 'audit'] as const).filter((k) => c[k].length).map((k) => `${k.toUpperCase()} ${c[k].map((p) => p.name).join(', ')}`);
  return {
    peerAuthentication: `${c.mode} (${by})${ports} — ${src}`,
    authorizationPolicies: groups.length ? `${groups.join('; ')} — ${src}` : `none apply: everything is allowed — ${src}`,
  };
}

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
    istioConfig: { virtualServices: NOT_READ, destinationRules: NOT_READ, ...securityLines(dump) },
    lastErrors: view.lastErrors,
    next,
  };
}
