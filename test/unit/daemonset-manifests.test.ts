// The DaemonSet base validates against the Kubernetes schema (offline, via
// kubernetes-models' shipped JSON schemas) and keeps the properties the
// agent depends on: host network, host /proc read-only, capabilities instead
// of privileged, probes on :15014, all-node tolerations, least-privilege RBAC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { parseListenAddress } from '../../src/agent/metrics.js';
import { AGENT_NODE_FLAGS } from '../../src/agent/node-flags.js';

const DIR = path.resolve(import.meta.dirname, '../../daemonset');

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };

const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  'apps/v1/DaemonSet': DaemonSet as never,
  'apps/v1/Deployment': Deployment as never,
  'v1/Service': Service as never,
  'rbac.authorization.k8s.io/v1/Role': Role as never,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding as never,
  'v1/Namespace': Namespace as never,
  'v1/ConfigMap': ConfigMap as never,
  'v1/ServiceAccount': ServiceAccount as never,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole as never,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding as never,
  // daemonset/injector/ (the sidecar injection webhook; its own checks: injector-manifests.test.ts)
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration as never,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as never,
};

function validate(doc: Doc): void {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) throw new Error(`no schema for ${doc.apiVersion} ${doc.kind}`);
  new Model(structuredClone(doc) as never).validate();
}

function load(dir = DIR): Doc[] {
  const kust = parseAllDocuments(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'))[0].toJS() as { resources: string[] };
  const docs: Doc[] = [];
  for (const r of kust.resources) {
    assert.ok(existsSync(path.join(dir, r)), `kustomization resource ${r} exists`);
    for (const d of parseAllDocuments(readFileSync(path.join(dir, r), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${r} parses`);
      docs.push(d.toJS() as Doc);
    }
  }
  return docs;
}

test('every manifest in the kustomize base validates against the Kubernetes schema', () => {
  const docs = load();
  const kinds = new Set(docs.map((d) => d.kind));
  for (const k of ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Namespace', 'ServiceAccount', 'Deployment', 'Service', 'Role', 'RoleBinding', 'MutatingWebhookConfiguration', 'PodDisruptionBudget']) assert.ok(kinds.has(k), k);
  for (const d of docs) assert.doesNotThrow(() => validate(d), `${d.kind}/${d.metadata.name}`);
});

test('the validator rejects a broken DaemonSet (the check can fail)', () => {
  const ds = structuredClone(load().find((d) => d.kind === 'DaemonSet')!) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  ds.spec.template.spec.containers[0].ports[0].containerPort = 'fifteen';
  assert.throws(() => validate(ds), /containerPort|integer/);
  const ds2 = structuredClone(load().find((d) => d.kind === 'DaemonSet')!) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  delete ds2.spec.selector;
  assert.throws(() => validate(ds2), /selector/);
});

test('the DaemonSet keeps what the agent depends on', () => {
  const ds = load().find((d) => d.kind === 'DaemonSet') as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const pod = ds.spec.template.spec;
  const c = pod.containers[0];
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  assert.equal(pod.serviceAccountName, 'weir-agent');
  assert.equal(ds.spec.template.metadata.labels['app.kubernetes.io/name'], 'weir-agent');
  assert.equal(c.securityContext.privileged, false);
  assert.deepEqual(c.securityContext.capabilities.add.sort(), ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE']);
  assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  // Reading other pods' /proc entries: AppArmor unconfined, by field (1.30+) and by annotation (older).
  assert.deepEqual(c.securityContext.appArmorProfile, { type: 'Unconfined' });
  assert.equal(ds.spec.template.metadata.annotations[`container.apparmor.security.beta.kubernetes.io/${c.name}`], 'unconfined');
  for (const probe of [c.livenessProbe, c.readinessProbe]) assert.equal(probe.httpGet.port, 15014);
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.ok(c.resources.requests.cpu && c.resources.limits.memory);
  // The image's entrypoint (node on weir.mjs) with the agent's V8 flags, the ones bench/controlplane-scale.ts measured.
  const entrypoint = JSON.parse(/^ENTRYPOINT (.*)$/m.exec(readFileSync(path.join(DIR, 'Dockerfile'), 'utf8'))![1]) as string[];
  assert.deepEqual(c.command, [entrypoint[0], ...AGENT_NODE_FLAGS, ...entrypoint.slice(1)]);
  assert.deepEqual(c.args, ['agent']);
  const mounts = Object.fromEntries(c.volumeMounts.map((m: { name: string }) => [m.name, m]));
  const vols = Object.fromEntries(pod.volumes.map((v: { name: string; hostPath?: { path: string } }) => [v.name, v.hostPath?.path]));
  assert.equal(vols['host-proc'], '/proc');
  assert.equal(mounts['host-proc'].readOnly, true);
  assert.equal(mounts['run-netns'].mountPropagation, 'HostToContainer');
  for (const [vol, host] of [['cni-bin', '/opt/cni/bin'], ['cni-conf', '/etc/cni/net.d'], ['run-weir', '/var/run/weir']]) assert.equal(vols[vol], host);
  const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
  assert.equal(env.WEIR_HOST_PROC, mounts['host-proc'].mountPath);
  assert.equal(env.WEIR_CNI_CONF_DIR, mounts['cni-conf'].mountPath);
  assert.equal(env.WEIR_CNI_BIN_DIR, mounts['cni-bin'].mountPath);
  assert.equal(c.env.find((e: { name: string }) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName');
  // Fail closed across rollouts: the chain entry survives the agent's restart (weir uninstall removes it).
  assert.equal(env.WEIR_KEEP_CHAIN_ON_SHUTDOWN, 'true');
});

test('RBAC is least privilege: named resources and verbs only, no wildcards, no secrets', () => {
  const role = load().find((d) => d.kind === 'ClusterRole') as unknown as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
  const granted = new Set<string>();
  for (const r of role.rules) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) granted.add(`${g || 'core'}/${res}:${v}`);
  for (const g of granted) assert.doesNotMatch(g, /\*/);
  assert.ok(![...granted].some((g) => /secrets|configmaps|nodes/.test(g)), [...granted].join(' '));
  // Exactly what the agent's code calls (readNamespacedPod, informers, patchNamespacedPod, createNamespacedEvent, the Istio informers).
  assert.deepEqual([...granted].sort(), ['core/events:create', 'core/namespaces:list', 'core/namespaces:watch', 'core/pods:get', 'core/pods:list', 'core/pods:patch', 'core/pods:watch',
    'core/services:list', 'core/services:watch', 'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch',
    ...['destinationrules', 'serviceentries', 'sidecars', 'virtualservices'].flatMap((r) => ['get', 'list', 'watch'].map((v) => `networking.istio.io/${r}:${v}`)),
    ...['authorizationpolicies', 'peerauthentications'].flatMap((r) => ['list', 'watch'].map((v) => `security.istio.io/${r}:${v}`))].sort());
});

test('remote-cluster Secrets: a Role in the agent\'s namespace only, list/watch on secrets, bound to the agent; the DaemonSet tells the agent its namespace', () => {
  const docs = load();
  // No ClusterRole anywhere in the base grants secrets (a cluster-wide read of every Secret would be the agent's biggest risk).
  for (const cr of docs.filter((d) => d.kind === 'ClusterRole') as unknown as { metadata: { name: string }; rules: { resources: string[] }[] }[]) {
    assert.ok(!cr.rules.some((r) => r.resources.includes('secrets') || r.resources.includes('*')), `ClusterRole ${cr.metadata.name} grants no secrets`);
  }
  const role = docs.find((d) => d.kind === 'Role' && d.metadata.name === 'weir-agent-remote-secrets') as unknown as { metadata: { namespace: string }; rules: unknown[] };
  assert.ok(role, 'the Role exists');
  assert.equal(role.metadata.namespace, 'weir-system');
  assert.deepEqual(role.rules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] }]);
  const binding = docs.find((d) => d.kind === 'RoleBinding' && d.metadata.name === 'weir-agent-remote-secrets') as unknown as { metadata: { namespace: string }; roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] };
  assert.equal(binding.metadata.namespace, 'weir-system');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'weir-agent-remote-secrets' });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'weir-agent', namespace: 'weir-system' }]);
  const ds = docs.find((d) => d.kind === 'DaemonSet') as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const env = ds.spec.template.spec.containers[0].env as { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  assert.equal(env.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
  assert.equal(ds.metadata.namespace ?? 'weir-system', role.metadata.namespace, 'the agent runs where the Role is');
  const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'weir-agent-config') as unknown as { data: Record<string, string> };
  assert.equal(cm.data.CLUSTER_ID, 'Kubernetes');
  // The injector takes the same key, so every proxy's ISTIO_META_CLUSTER_ID names the cluster the agent does.
  const inj = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'weir-injector') as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const injEnv = inj.spec.template.spec.containers[0].env as { name: string; valueFrom?: { configMapKeyRef?: { name: string; key: string } } }[];
  assert.deepEqual(injEnv.find((e) => e.name === 'CLUSTER_ID')?.valueFrom?.configMapKeyRef, { name: 'weir-agent-config', key: 'CLUSTER_ID', optional: true });
});

test('delete on pods is granted only by the repair-delete component, which also sets the mode', () => {
  const comp = path.join(DIR, 'components/repair-delete');
  const k = parseAllDocuments(readFileSync(path.join(comp, 'kustomization.yaml'), 'utf8'))[0].toJS() as { kind: string; patches: { target: { kind: string; name: string }; patch: string }[] };
  assert.equal(k.kind, 'Component');
  const docs = load(comp);
  for (const d of docs) assert.doesNotThrow(() => validate(d), `${d.kind}/${d.metadata.name}`);
  const role = docs.find((d) => d.kind === 'ClusterRole') as unknown as { rules: { resources: string[]; verbs: string[] }[] };
  assert.deepEqual(role.rules, [{ apiGroups: [''], resources: ['pods'], verbs: ['delete'] }]);
  const binding = docs.find((d) => d.kind === 'ClusterRoleBinding') as unknown as { subjects: { name: string }[] };
  assert.equal(binding.subjects[0].name, 'weir-agent');
  assert.match(k.patches[0].patch, /WEIR_REPAIR_MODE[\s\S]*value: delete/);
  assert.deepEqual(k.patches[0].target, { kind: 'ConfigMap', name: 'weir-agent-config' });
});

/** The container's environment as the kubelet builds it: envFrom first, env over it, $(VAR) expanded. */
function containerEnv(hostIP: string): NodeJS.ProcessEnv {
  const docs = load();
  const ds = docs.find((d) => d.kind === 'DaemonSet') as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const c = ds.spec.template.spec.containers[0];
  const env: NodeJS.ProcessEnv = {};
  for (const from of c.envFrom) {
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === from.configMapRef.name) as unknown as { data: Record<string, string> };
    assert.ok(cm, `ConfigMap ${from.configMapRef.name} is in the base`);
    Object.assign(env, cm.data);
  }
  const fields: Record<string, string> = { 'spec.nodeName': 'node-a', 'status.hostIP': hostIP };
  for (const e of c.env) env[e.name] = e.valueFrom ? fields[e.valueFrom.fieldRef.fieldPath] : String(e.value).replace(/\$\(([A-Z_]+)\)/g, (_m: string, v: string) => env[v] ?? '');
  return env;
}

test('settings come from the ConfigMap (every key is a real agent variable) and resolve to a valid agent config', () => {
  const docs = load();
  const cm = docs.find((d) => d.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
  const config = readFileSync(path.resolve(DIR, '../src/agent/config.ts'), 'utf8');
  for (const key of Object.keys(cm.data)) assert.match(config, new RegExp(`env: '${key}'`), `${key} is read by the agent`);
  const cfg = resolveAgentConfig({}, containerEnv('10.0.0.5'));
  assert.equal(cfg.repairMode, 'repair');
  assert.deepEqual(cfg.excludeNamespaces, ['kube-system', 'weir-system']);
  assert.equal(cfg.backend, 'nftables');
  // Metrics on the node's own address, not on every host interface.
  assert.equal(cfg.metricsAddr, '10.0.0.5:15014');
  // Proxies get workload certificates through the agent from the weir CA of daemonset/ca.yaml.
  assert.equal(cfg.ca?.url, 'https://weir-ca.weir-system.svc:15012');
  assert.deepEqual(parseListenAddress(containerEnv('fd00::5').WEIR_METRICS_ADDR!, 'metrics-addr'), { host: 'fd00::5', port: 15014 });
  assert.deepEqual(parseListenAddress('[::1]:99', 'x'), { host: '::1', port: 99 });
  assert.throws(() => parseListenAddress('fd00::5', 'x'), /host:port/);
});

test('the Dockerfile builds from the repo with the project\'s build and ships the CNI plugin', () => {
  const df = readFileSync(path.join(DIR, 'Dockerfile'), 'utf8');
  assert.match(df, /npm run build/);
  assert.match(df, /FROM node:20/);
  // Every source of every COPY --from=build line (the last word is the destination).
  const sources = [...df.matchAll(/^COPY --from=build (.+)$/gm)].flatMap((m) => m[1].trim().split(/\s+/).slice(0, -1));
  for (const need of ['/src/dist/weir.mjs', '/src/dist/weir-proxy.mjs', '/src/dist/weir-cni', '/src/native/build/Release/weir_native.node']) {
    assert.ok(sources.includes(need), `the image ships ${need} (have: ${sources.join(' ')})`);
  }
  assert.match(df, /WEIR_NATIVE_ADDON=/);
  assert.ok(JSON.parse(readFileSync(path.resolve(DIR, '../package.json'), 'utf8')).scripts.build);
});

test('the CA Deployment passes Pod Security restricted and its RBAC reads only its own Secrets', () => {
  const docs = load() as any[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  const dep = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'weir-ca');
  const pod = dep.spec.template.spec;
  const c = pod.containers[0];
  assert.deepEqual(c.args, ['ca']);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.ok(!pod.hostNetwork && !(pod.volumes ?? []).some((v: { hostPath?: unknown }) => v.hostPath), 'no host access');
  const role = docs.find((d) => d.kind === 'Role' && d.metadata.name === 'weir-ca');
  assert.equal(role.metadata.namespace, 'weir-system');
  const getSecrets = role.rules.find((r: { verbs: string[] }) => r.verbs.includes('get'));
  assert.deepEqual(getSecrets.resourceNames.sort(), ['cacerts', 'weir-ca-root']);
  const cluster = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'weir-ca');
  const granted = cluster.rules.flatMap((r: { apiGroups: string[]; resources: string[]; verbs: string[] }) => r.resources.flatMap((res) => r.verbs.map((v) => `${r.apiGroups[0] || 'core'}/${res}:${v}`))).sort();
  assert.deepEqual(granted, ['authentication.k8s.io/tokenreviews:create', 'core/pods:get']);
  const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'weir-ca');
  assert.equal(svc.spec.ports[0].port, 15012);
});
