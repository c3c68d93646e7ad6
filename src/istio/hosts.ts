// Host names as Istio resolves them: short names are relative to the
// namespace of the resource that wrote them; wildcards match by suffix;
// exportTo decides who sees a resource.

/** "reviews" in namespace "default" → reviews.default.svc.cluster.local; a name with a dot is taken as written. */
export function resolveHost(host: string, namespace: string, clusterDomain: string): string {
  if (host === '*' || host.startsWith('*.')) return host.toLowerCase();
  return (host.includes('.') ? host : `${host}.${namespace}.svc.${clusterDomain}`).toLowerCase();
}

/** Does `pattern` (a host or wildcard) cover the concrete host `host`? */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}

/**
 * How specific a pattern is for ranking overlapping matches: exact names
 * beat wildcards, longer wildcard suffixes beat shorter ones (Istio picks
 * the most specific VirtualService / DestinationRule host).
 */
export function specificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*.')) return pattern.length;
  return 10_000 + pattern.length;
}

/** Istio's exportTo: "*" everyone, "." the resource's namespace, "~" nobody, else the named namespaces. */
export function visibleTo(exportTo: string[], resourceNamespace: string, viewerNamespace: string): boolean {
  for (const e of exportTo.length ? exportTo : ['*']) {
    if (e === '*') return true;
    if (e === '.' && viewerNamespace === resourceNamespace) return true;
    if (e === viewerNamespace) return true;
  }
  return false;
}

export function clusterName(port: number, subset: string | undefined, host: string): string {
  return `outbound|${port}|${subset ?? ''}|${host}`;
}

/** Envoy's name for the inbound cluster of an app port: `inbound|port||`. */
export function inboundClusterName(port: number): string {
  return `inbound|${port}||`;
}
