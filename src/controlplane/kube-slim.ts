// Services and EndpointSlices reduced to what the registry reads
// (kube-shapes.ts) before the informers cache them. The registry builder
// keeps the same objects the informer caches, so these are what the agent
// holds for the whole cluster: at 10k Services / 100k endpoints the full
// client-node objects (a class instance per endpoint and per condition set,
// managedFields, annotations, owner references, Dates) were the agent's
// largest heap owner (52.6 MB of 151 MB live, bench/results/controlplane-scale.md).
// Every field the registry, networks.ts and cluster-objects.ts read is kept;
// an unset field stays unset (never `undefined`-valued keys: they cost a slot).
import type { KubeEndpoint, KubeEndpointSlice, KubeService, KubeServicePort } from './kube-shapes.js';
import { SERVICE_NAME_LABEL } from './kube-shapes.js';
import { NETWORK_LABEL } from './networks.js';

interface Meta { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> }

/** Only the labels named in `keep` (the rest of a Service's labels are never read). */
function someLabels(labels: Record<string, string> | undefined, keep: string): Record<string, string> | undefined {
  const v = labels?.[keep];
  return v === undefined ? undefined : { [keep]: v };
}

function meta(m: Meta | undefined, label: string): Meta {
  const out: Meta = { namespace: m?.namespace, name: m?.name, resourceVersion: m?.resourceVersion };
  const labels = someLabels(m?.labels, label);
  if (labels) out.labels = labels;
  return out;
}

type FullService = KubeService & { metadata?: Meta; spec?: KubeService['spec'] & { externalIPs?: string[] }; status?: { loadBalancer?: { ingress?: { ip?: string }[] } } };

/** A Service as the registry reads it: kind, addresses, ports, the network label and a gateway's addresses. */
export function slimService(s: FullService): KubeService {
  const spec = s.spec ?? {};
  const out: FullService = { metadata: meta(s.metadata, NETWORK_LABEL), spec: {} };
  const o = out.spec!;
  if (spec.type) o.type = spec.type;
  if (spec.clusterIP) o.clusterIP = spec.clusterIP;
  // clusterIPs usually repeats clusterIP: share nothing, but skip the copy when it says nothing more.
  if (spec.clusterIPs?.length && !(spec.clusterIPs.length === 1 && spec.clusterIPs[0] === spec.clusterIP)) o.clusterIPs = [...spec.clusterIPs];
  if (spec.externalName) o.externalName = spec.externalName;
  if (spec.externalIPs?.length) o.externalIPs = [...spec.externalIPs];
  if (spec.ports) o.ports = spec.ports.map(slimPort);
  const ingress = s.status?.loadBalancer?.ingress?.filter((i) => i.ip).map((i) => ({ ip: i.ip }));
  if (ingress?.length) out.status = { loadBalancer: { ingress } };
  return out;
}

function slimPort(p: KubeServicePort): KubeServicePort {
  const out: KubeServicePort = { port: p.port };
  if (p.name) out.name = p.name;
  if (p.protocol && p.protocol !== 'TCP') out.protocol = p.protocol;
  if (p.appProtocol) out.appProtocol = p.appProtocol;
  if (p.targetPort !== undefined && p.targetPort !== null) out.targetPort = p.targetPort;
  return out;
}

/** An EndpointSlice as cluster-objects.ts merges it: its Service, address type, ports, and per endpoint what a registry endpoint carries. */
export function slimEndpointSlice(s: KubeEndpointSlice & { metadata?: Meta }): KubeEndpointSlice {
  const out: KubeEndpointSlice = { metadata: meta(s.metadata, SERVICE_NAME_LABEL) };
  if (s.addressType) out.addressType = s.addressType;
  if (s.ports) out.ports = s.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), ...(typeof p.port === 'number' ? { port: p.port } : {}), ...(p.protocol && p.protocol !== 'TCP' ? { protocol: p.protocol } : {}) }));
  if (s.endpoints) out.endpoints = s.endpoints.map(slimEndpoint);
  return out;
}

function slimEndpoint(e: KubeEndpoint): KubeEndpoint {
  // A copy: client-node builds arrays by push, which leaves room for 17 elements (152 bytes for one address).
  const out: KubeEndpoint = { addresses: (e.addresses ?? []).slice() };
  // Only conditions that differ from what an unset one means (cluster-objects.ts: ready defaults to true,
  // serving to ready, terminating to false): the common ready endpoint keeps none.
  const c = e.conditions ?? {};
  const ready = c.ready ?? true;
  const serving = c.serving ?? ready;
  const terminating = c.terminating ?? false;
  if (!ready || serving !== ready || terminating) {
    out.conditions = {};
    if (!ready) out.conditions.ready = false;
    if (serving !== ready) out.conditions.serving = serving;
    if (terminating) out.conditions.terminating = true;
  }
  if (e.hostname) out.hostname = e.hostname;
  if (e.nodeName) out.nodeName = e.nodeName;
  if (e.targetRef?.kind === 'Pod' && e.targetRef.name) out.targetRef = { kind: 'Pod', name: e.targetRef.name, ...(e.targetRef.namespace ? { namespace: e.targetRef.namespace } : {}) };
  return out;
}
