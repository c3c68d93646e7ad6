// `weir analyze`: validates Istio resources before they are applied. Reads
// every document with the same readers the agent uses (so what analyze
// accepts is exactly what weir applies), then checks references across
// documents: hosts, subsets, overlapping Sidecars and DestinationRules,
// routes that can never match. Services and ServiceEntries among the inputs
// form the registry; without any, host checks are skipped (said once).
import { readIstioResource, NETWORKING_VERSIONS } from './read.js';
import { readSecurityResource } from '../security/read.js';
import { hostMatches, resolveHost } from './hosts.js';
import type { DestinationRule, IstioResource, Sidecar, VirtualService } from './types.js';
import { RegistryBuilder } from '../controlplane/registry-builder.js';
import type { KubeService } from '../controlplane/kube-shapes.js';
import { Catalogue } from '../controlplane/translate/catalogue.js';
import { destinationRuleFor } from '../controlplane/translate/clusters.js';

export interface AnalyzeInput { file: string; doc: unknown }
export interface Finding { file: string; resource: string; field: string; severity: 'error' | 'unsupported' | 'warning' | 'info'; message: string }

const UNREAD_KINDS: Record<string, string> = {
  Gateway: 'Gateway is not read by weir (weir has no ingress gateway yet)',
  WorkloadEntry: 'WorkloadEntry is not read by weir yet', WorkloadGroup: 'WorkloadGroup is not read by weir yet',
  EnvoyFilter: 'EnvoyFilter has no meaning for weir\'s proxy (it is not Envoy)', ProxyConfig: 'ProxyConfig is not read by weir yet',
  RequestAuthentication: 'RequestAuthentication is not supported by weir yet', Telemetry: 'Telemetry is not read by weir yet',
};

export function analyze(inputs: AnalyzeInput[], opts: { clusterDomain?: string; rootNamespace?: string } = {}): Finding[] {
  const clusterDomain = opts.clusterDomain ?? 'cluster.local';
  const rootNamespace = opts.rootNamespace ?? 'istio-system';
  const findings: Finding[] = [];
  const builder = new RegistryBuilder();
  const read: { file: string; r: IstioResource }[] = [];
  let registryKnown = false;
  for (const { file, doc } of inputs) {
    const o = doc as { kind?: string; apiVersion?: string; metadata?: { namespace?: string; name?: string } } | null;
    if (!o || typeof o !== 'object') continue;
    const id = `${o.kind ?? '?'} ${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? '?'}`;
    if (o.kind === 'Service' && o.apiVersion === 'v1') { builder.upsertService(o as KubeService); registryKnown = true; continue; }
    const group = String(o.apiVersion ?? '').split('/')[0];
    if (group.endsWith('istio.io') && o.kind && UNREAD_KINDS[o.kind]) { findings.push({ file, resource: id, field: 'kind', severity: 'unsupported', message: UNREAD_KINDS[o.kind] }); continue; }
    if (!NETWORKING_VERSIONS.includes(String(o.apiVersion)) && !group.endsWith('istio.io')) continue; // not Istio: not ours to judge
    if (group === 'security.istio.io') {
      // The proxy's own reader (src/security/read.ts): CUSTOM, request.auth.* and requestPrincipals come back "unsupported".
      for (const p of readSecurityResource(o).problems) findings.push({ file, resource: id, field: p.field, severity: p.severity, message: p.message });
      continue;
    }
    const res = readIstioResource(o);
    for (const p of res.problems) findings.push({ file, resource: id, field: p.field, severity: p.severity, message: p.message });
    if (res.resource) { read.push({ file, r: res.resource }); if (res.resource.kind === 'ServiceEntry') registryKnown = true; }
  }
  const resources = read.map((x) => x.r);
  const fileOf = new Map(read.map((x) => [x.r, x.file]));
  const services = [...builder.snapshot().services.values()];
  const serviceEntries = resources.filter((r) => r.kind === 'ServiceEntry');
  const destinationRules = resources.filter((r): r is DestinationRule => r.kind === 'DestinationRule');
  const add = (r: IstioResource, field: string, severity: Finding['severity'], message: string): void => {
    findings.push({ file: fileOf.get(r) ?? '', resource: `${r.kind} ${r.meta.namespace}/${r.meta.name}`, field, severity, message });
  };
  for (const vs of resources.filter((r): r is VirtualService => r.kind === 'VirtualService')) {
    const cat = Catalogue.build({ clusterDomain, services, serviceEntries: serviceEntries as never, proxyNamespace: vs.meta.namespace });
    if (registryKnown) {
      vs.hosts.forEach((h, i) => {
        const p = resolveHost(h, vs.meta.namespace, clusterDomain);
        if (!cat.all().some((e) => hostMatches(p, e.host))) add(vs, `spec.hosts[${i}]`, 'warning', `no Service or ServiceEntry named ${p} among the inputs`);
      });
    }
    const checkDest = (d: { host: string; subset?: string }, field: string): void => {
      const host = resolveHost(d.host, vs.meta.namespace, clusterDomain);
      let entry = cat.get(host);
      if (!entry && registryKnown) add(vs, `${field}.host`, 'warning', `no Service or ServiceEntry named ${host} among the inputs`);
      if (!d.subset) return;
      // Subsets are checked even without a registry: the DestinationRule lookup needs only the host's namespace.
      const svcNs = host.endsWith(`.svc.${clusterDomain}`) ? host.split('.')[1] : vs.meta.namespace;
      entry ??= { host, namespace: svcNs, source: '', kind: 'Service', addresses: [], ports: [], aliases: [] };
      const dr = destinationRuleFor({ catalogue: cat, destinationRules, proxyNamespace: vs.meta.namespace, rootNamespace, ignored: [] }, entry);
      if (!dr) add(vs, `${field}.subset`, 'error', `subset ${d.subset}: no DestinationRule for ${host} is visible from namespace ${vs.meta.namespace}`);
      else if (!dr.subsets.some((s) => s.name === d.subset)) add(vs, `${field}.subset`, 'error', `subset ${d.subset} is not defined by DestinationRule ${dr.meta.namespace}/${dr.meta.name} (has: ${dr.subsets.map((s) => s.name).join(', ') || 'none'})`);
    };
    vs.http.forEach((r, i) => {
      r.route.forEach((w, j) => checkDest(w.destination, `spec.http[${i}].route[${j}].destination`));
      r.mirrors.forEach((m, j) => checkDest(m.destination, `spec.http[${i}].mirrors[${j}].destination`));
      if (r.match.length === 0 && i < vs.http.length - 1) add(vs, `spec.http[${i + 1}]`, 'warning', `can never match: spec.http[${i}] matches every request`);
    });
    for (const section of ['tcp', 'tls'] as const) vs[section].forEach((r, i) => r.route.forEach((w, j) => checkDest(w.destination, `spec.${section}[${i}].route[${j}].destination`)));
  }
  // Merged VirtualServices (same host, creation order): a catch-all shadows every later route, in any of them.
  const byHost = new Map<string, VirtualService[]>();
  for (const vs of resources.filter((r): r is VirtualService => r.kind === 'VirtualService' && (r.gateways.length === 0 || r.gateways.includes('mesh')))) {
    for (const h of vs.hosts) {
      const k = resolveHost(h, vs.meta.namespace, clusterDomain);
      byHost.set(k, [...(byHost.get(k) ?? []), vs]);
    }
  }
  for (const [host, list] of byHost) {
    if (list.length < 2) continue;
    const sorted = [...new Set(list)].sort((a, b) => a.meta.created - b.meta.created || `${a.meta.namespace}/${a.meta.name}`.localeCompare(`${b.meta.namespace}/${b.meta.name}`));
    let shadow: string | undefined;
    for (const vs of sorted) {
      vs.http.forEach((r, i) => {
        if (shadow && !shadow.startsWith(`${vs.meta.namespace}/${vs.meta.name}#`)) add(vs, `spec.http[${i}]`, 'warning', `can never match for ${host}: ${shadow} matches every request first (VirtualServices merge in creation order)`);
        if (!shadow && r.match.length === 0) shadow = `${vs.meta.namespace}/${vs.meta.name}#http[${i}]`;
      });
    }
  }
  // One namespace-wide Sidecar per namespace, and no two with the same selector (Istio's behaviour is then undefined).
  const sidecars = resources.filter((r): r is Sidecar => r.kind === 'Sidecar').sort((a, b) => a.meta.created - b.meta.created);
  const seenSc = new Map<string, Sidecar>();
  for (const sc of sidecars) {
    const key = `${sc.meta.namespace} ${JSON.stringify(Object.entries(sc.workloadSelector ?? {}).sort())}`;
    const prior = seenSc.get(key);
    if (prior) add(sc, sc.workloadSelector ? 'spec.workloadSelector' : 'spec', 'error', `conflicts with Sidecar ${prior.meta.namespace}/${prior.meta.name}: ${sc.workloadSelector ? 'same workloadSelector' : 'two Sidecars without workloadSelector in one namespace'}`);
    else seenSc.set(key, sc);
  }
  const seenDr = new Map<string, DestinationRule>();
  for (const dr of [...destinationRules].sort((a, b) => a.meta.created - b.meta.created)) {
    if (dr.workloadSelector) continue;
    const key = `${dr.meta.namespace} ${resolveHost(dr.host, dr.meta.namespace, clusterDomain)}`;
    const prior = seenDr.get(key);
    if (prior) add(dr, 'spec.host', 'warning', `DestinationRule ${prior.meta.namespace}/${prior.meta.name} is for the same host and older: this one is not used`);
    else seenDr.set(key, dr);
  }
  if (!registryKnown && resources.some((r) => r.kind === 'VirtualService')) {
    findings.push({ file: '', resource: '', field: '', severity: 'info', message: 'no Service or ServiceEntry among the inputs: host names were not checked' });
  }
  return findings;
}

export function formatFinding(f: Finding): string {
  const tag = f.severity === 'unsupported' ? 'unsupported: ' : f.severity === 'warning' ? 'warning: ' : f.severity === 'info' ? 'info: ' : '';
  return [f.file, f.resource, f.field].filter(Boolean).join(': ') + (f.file || f.resource ? ': ' : '') + tag + f.message;
}
