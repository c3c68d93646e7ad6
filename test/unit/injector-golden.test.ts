// Golden injected manifests: every fixture in test/fixtures/inject/ (all but
// bad-*.yaml) through `weir inject`'s code, native sidecar and regular
// container, compared byte for byte with test/golden/inject/, each output
// document validated against the Kubernetes schemas, and the proxy checked
// against Pod Security "restricted". UPDATE_GOLDEN=1 rewrites the files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injector/config.js';
import { injectYaml } from '../../src/injector/manifest-io.js';
import { injectPodTemplate } from '../../src/injector/mutate.js';
import type { Container, PodTemplate } from '../../src/injector/k8s.js';
import { unknownContainerFields, validateManifest } from '../support/kube-schema.js';
import { SEED_TABLE } from '../support/seed-table.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(root, 'fixtures', 'inject');
const golden = path.join(root, 'golden', 'inject');
const update = process.env.UPDATE_GOLDEN === '1';
const files = readdirSync(fixtures).filter((f) => f.endsWith('.yaml') && !f.startsWith('bad-')).sort();

const native: InjectorConfig = { ...DEFAULT_INJECTOR_CONFIG, nativeSidecars: true };
const regular: InjectorConfig = { ...DEFAULT_INJECTOR_CONFIG, nativeSidecars: false };

function compare(name: string, text: string): void {
  const target = path.join(golden, name);
  if (update || !existsSync(target)) { writeFileSync(target, text); if (!update) assert.fail(`${name} was missing: written, review it`); return; }
  assert.equal(text, readFileSync(target, 'utf8'), `${name} differs from the golden file (UPDATE_GOLDEN=1 to accept)`);
}

function podSpecs(obj: Record<string, unknown>): { metadata?: Record<string, unknown>; spec: { containers: Container[]; initContainers?: Container[]; volumes?: { hostPath?: unknown }[] } }[] {
  const kind = obj.kind as string;
  const s = obj.spec as Record<string, any>;
  if (kind === 'Pod') return [obj as never];
  if (kind === 'CronJob') return [s.jobTemplate.spec.template];
  if (s?.template) return [s.template];
  return [];
}

/** Pod Security "restricted" for the proxy container, and no hostPath anywhere we add. */
function assertRestrictedProxy(tpl: ReturnType<typeof podSpecs>[number], where: string): void {
  const all = [...(tpl.spec.initContainers ?? []), ...tpl.spec.containers];
  const proxies = all.filter((c) => c.name === 'weir-proxy');
  assert.equal(proxies.length, 1, `${where}: exactly one weir-proxy`);
  const sc = proxies[0].securityContext as Record<string, any>;
  assert.equal(sc.runAsUser, 1337); assert.equal(sc.runAsGroup, 1337);
  assert.equal(sc.runAsNonRoot, true); assert.equal(sc.allowPrivilegeEscalation, false);
  assert.deepEqual(sc.capabilities.drop, ['ALL']); assert.equal(sc.capabilities.add, undefined);
  assert.equal(sc.seccompProfile.type, 'RuntimeDefault');
  assert.ok(!(tpl.spec.volumes ?? []).some((v) => v.hostPath), `${where}: no hostPath volume`);
  // No iptables init container: capture is the CNI chain's job.
  assert.ok(!all.some((c) => /init|iptables/.test(c.name) && c.name !== 'migrate' && c.name !== 'weir-proxy'), `${where}: no capture init container`);
  assert.deepEqual(unknownContainerFields(proxies[0] as never), [], `${where}: proxy has only core/v1 Container fields`);
}

for (const file of files) {
  const base = file.replace(/\.yaml$/, '');
  for (const [mode, cfg] of [['native', native], ['regular', regular]] as const) {
    test(`golden inject: ${base} (${mode})`, () => {
      const out = injectYaml(readFileSync(path.join(fixtures, file), 'utf8'), cfg, file);
      compare(`${base}.${mode}.yaml`, out.yaml);
      const docs = parseAllDocuments(out.yaml).map((d) => d.toJS() as Record<string, unknown>);
      assert.equal(docs.length, out.results.length);
      out.results.forEach((r, i) => {
        const doc = docs[i];
        if (!r.passedThrough) assert.ok(validateManifest(doc as never), `${r.kind}: has a schema`);
        if (!r.result?.injected) return;
        for (const tpl of podSpecs(doc)) {
          assertRestrictedProxy(tpl, `${file} ${r.kind} ${r.name}`);
          const initProxy = tpl.spec.initContainers?.find((c) => c.name === 'weir-proxy');
          if (mode === 'native') assert.equal(initProxy?.restartPolicy, 'Always', 'native sidecar: init container, restartPolicy Always');
          else assert.ok(!initProxy && tpl.spec.containers.some((c) => c.name === 'weir-proxy'), 'regular container');
        }
      });
      // Re-injection is idempotent: the output injected again is the same output.
      assert.equal(injectYaml(out.yaml, cfg, file).yaml, out.yaml);
    });
  }
}

test('golden inject: each kind is covered', () => {
  const kinds = new Set<string>();
  for (const f of files) for (const d of parseAllDocuments(readFileSync(path.join(fixtures, f), 'utf8'))) kinds.add((d.toJS() as { kind: string }).kind);
  for (const k of ['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob']) assert.ok(kinds.has(k), `no fixture of kind ${k}`);
});

test('golden inject: every row of the seeds\' table', () => {
  const docs: string[] = [];
  for (const row of SEED_TABLE) {
    const tpl: PodTemplate = {
      metadata: { name: `row-${row.row}`, namespace: 'shop', ...(row.override !== undefined ? { annotations: { 'sidecar.istio.io/inject': String(row.override) } } : {}) },
      spec: { containers: [{ name: 'app', image: 'example/app:1', readinessProbe: { httpGet: { path: '/ready', port: 8080 } } }] },
    };
    const r = injectPodTemplate(tpl, { config: { ...native, policy: row.policy }, namespace: 'shop', namespaceSelected: row.nsMatch });
    assert.equal(r.injected, row.injected, `row ${row.row}`);
    const pod = { apiVersion: 'v1', kind: 'Pod', ...r.template };
    validateManifest(pod);
    docs.push(`# row ${row.row}: namespaceSelector ${row.nsMatch ? 'yes' : 'no'}, policy ${row.policy}, sidecar.istio.io/inject ${row.override ?? '(unset)'} → ${row.injected ? 'injected' : 'not injected'} (${r.reason})\n${stringify(pod, { lineWidth: 0, aliasDuplicateObjects: false })}`);
  }
  compare('table-rows.yaml', docs.join('---\n'));
});

test('bad manifests: the error names the field', () => {
  const expect: Record<string, RegExp> = {
    'bad-quantity.yaml': /document 1 \(Pod bad\)\.metadata\.annotations\["sidecar\.istio\.io\/proxyMemory"\]: must be a Kubernetes quantity.*"lots"/,
    'bad-probe-port.yaml': /Deployment bad\)\.spec\.containers\[0\]\.readinessProbe\.httpGet\.port: names no port of container app.*"metrics"/,
    'bad-request-over-limit.yaml': /sidecar\.istio\.io\/proxyCPU.*request 2 is above the CPU limit 500m/,
    'bad-proxy-config.yaml': /proxy\.istio\.io\/config"\]\.holdApplicationUntilProxyStarts: must be true or false/,
  };
  const bad = readdirSync(fixtures).filter((f) => f.startsWith('bad-')).sort();
  assert.deepEqual(bad, Object.keys(expect).sort());
  for (const f of bad) assert.throws(() => injectYaml(readFileSync(path.join(fixtures, f), 'utf8'), native, f), expect[f], f);
});
