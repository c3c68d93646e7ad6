// Istio YAML (Istio's own bookinfo samples and weir's precedence case) →
// compiled proxy config, byte for byte against test/golden/istio/*.json.
// After an intended change: UPDATE_GOLDEN=1 WEIR_SKIP_SETUP=1 npm test -- test/unit/istio-compile-golden.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { compileProxyConfig } from '../../src/controlplane/translate/compile.js';
import { loadIstioFixtures } from '../support/istio-fixtures.js';

const GOLDEN = path.resolve(import.meta.dirname, '../golden/istio');

export const SCENARIOS: Record<string, { files: string[]; proxyNamespace: string; sidecarName?: string }> = {
  'bookinfo-reviews-90-10': { files: ['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-reviews-90-10.yaml'], proxyNamespace: 'default' },
  'bookinfo-ratings-test-delay': { files: ['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-ratings-test-delay.yaml'], proxyNamespace: 'default' },
  'bookinfo-ratings-test-abort': { files: ['bookinfo-services.yaml', 'destination-rule-all.yaml', 'virtual-service-ratings-test-abort.yaml'], proxyNamespace: 'default' },
  'precedence-from-shop': { files: ['precedence.yaml'], proxyNamespace: 'shop' },
  'precedence-from-web': { files: ['precedence.yaml'], proxyNamespace: 'web' },
  // Sidecar scoping: the root default (other), a namespace's own (shop), a workload's (shop, app=checkout).
  'sidecar-root-default': { files: ['sidecar-scope.yaml'], proxyNamespace: 'other' },
  'sidecar-namespace': { files: ['sidecar-scope.yaml'], proxyNamespace: 'shop' },
  'sidecar-workload': { files: ['sidecar-scope.yaml'], proxyNamespace: 'shop', sidecarName: 'checkout' },
  // Egress listeners bound to a port: hosts visible on that port only (the registry side: sidecar-registry.test.ts).
  'sidecar-ports': { files: ['sidecar-ports.yaml'], proxyNamespace: 'shop' },
};

for (const [name, s] of Object.entries(SCENARIOS)) {
  test(`compiled config matches golden: ${name}`, () => {
    const { services, resources, problems } = loadIstioFixtures(s.files);
    assert.deepEqual(problems.filter((p) => p.problem.severity === 'error'), [], 'fixtures read without errors');
    const out = compileProxyConfig({ clusterDomain: 'cluster.local', rootNamespace: 'istio-system', proxyNamespace: s.proxyNamespace, sidecarName: s.sidecarName, services, resources });
    const text = JSON.stringify(out, null, 2) + '\n';
    const file = path.join(GOLDEN, `${name}.json`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
    assert.equal(text, readFileSync(file, 'utf8'));
  });
}
