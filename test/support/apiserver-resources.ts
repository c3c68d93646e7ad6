// The resource types the test API server serves: the built-in ones weir
// reads and the custom resources a test installs (all versions of a CRD share
// one store, as conversion would), with discovery and path parsing for them.
export interface ResourceType { kind: string; plural: string; apiVersion: string; namespaced: boolean }
export interface CrdSpec { group: string; versions: string[]; kind: string; plural: string; namespaced?: boolean }

const RESOURCES: ResourceType[] = [
  { kind: 'Pod', plural: 'pods', apiVersion: 'v1', namespaced: true },
  { kind: 'Namespace', plural: 'namespaces', apiVersion: 'v1', namespaced: false },
  { kind: 'Service', plural: 'services', apiVersion: 'v1', namespaced: true },
  { kind: 'MutatingWebhookConfiguration', plural: 'mutatingwebhookconfigurations', apiVersion: 'admissionregistration.k8s.io/v1', namespaced: false },
  { kind: 'EndpointSlice', plural: 'endpointslices', apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  { kind: 'Event', plural: 'events', apiVersion: 'v1', namespaced: true },
  { kind: 'Secret', plural: 'secrets', apiVersion: 'v1', namespaced: true },
  { kind: 'ConfigMap', plural: 'configmaps', apiVersion: 'v1', namespaced: true },
];

export class ResourceCatalogue {
  private readonly kinds = new Map(RESOURCES.map((r) => [r.kind, r]));
  /** "group/version" → custom resource types served under it. */
  private readonly crds = new Map<string, ResourceType[]>();

  byKind(kind: string): ResourceType | undefined { return this.kinds.get(kind); }

  install(c: CrdSpec): void {
    const type: ResourceType = { kind: c.kind, plural: c.plural, apiVersion: `${c.group}/${c.versions[0]}`, namespaced: c.namespaced ?? true };
    this.kinds.set(c.kind, type);
    for (const v of c.versions) this.crds.set(`${c.group}/${v}`, [...(this.crds.get(`${c.group}/${v}`) ?? []).filter((t) => t.kind !== c.kind), type]);
  }

  /** Discovery for custom resources: /apis (groups) and /apis/{group}/{version} (resources). */
  discovery(pathname: string): object | undefined {
    const parts = pathname.split('/').filter(Boolean);
    if (parts[0] !== 'apis') return undefined;
    if (parts.length === 1) {
      const groups = new Map<string, string[]>();
      for (const gv of this.crds.keys()) { const [g, v] = gv.split('/'); groups.set(g, [...(groups.get(g) ?? []), v]); }
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: [...groups].map(([name, vs]) => ({ name, versions: vs.map((version) => ({ groupVersion: `${name}/${version}`, version })), preferredVersion: { groupVersion: `${name}/${vs[0]}`, version: vs[0] } })) };
    }
    const types = parts.length === 3 ? this.crds.get(`${parts[1]}/${parts[2]}`) : undefined;
    if (!types) return undefined;
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${parts[1]}/${parts[2]}`, resources: types.map((t) => ({ name: t.plural, singularName: t.kind.toLowerCase(), namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] })) };
  }

  /** Parse a path into resource, namespace and name. */
  route(pathname: string): { type: ResourceType; namespace?: string; name?: string } | undefined {
    const parts = pathname.split('/').filter(Boolean);
    let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
    else if (parts[0] === 'apis' && parts.length >= 3) {
      const group = `${parts[1]}/${parts[2]}`;
      const custom = this.crds.get(group);
      if (custom) {
        rest = parts.slice(3);
        let namespace: string | undefined;
        if (rest[0] === 'namespaces' && rest.length >= 3) { namespace = rest[1]; rest = rest.slice(2); }
        const type = custom.find((r) => r.plural === rest[0]);
        return type && rest.length <= 2 ? { type, namespace, name: rest[1] } : undefined;
      }
      if (group !== 'discovery.k8s.io/v1' && group !== 'events.k8s.io/v1' && group !== 'admissionregistration.k8s.io/v1') return undefined;
      rest = parts.slice(3);
    } else return undefined;
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) { namespace = rest[1]; rest = rest.slice(2); }
    const type = RESOURCES.find((r) => r.plural === rest[0]);
    if (!type || rest.length > 2) return undefined;
    if (type.kind === 'Namespace' && namespace !== undefined) return undefined;
    return { type, namespace, name: rest[1] };
  }
}
