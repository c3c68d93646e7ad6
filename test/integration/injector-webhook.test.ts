// The webhook over real HTTPS: the injector issues its CA into a Secret and
// its serving certificate, patches the caBundle into the
// MutatingWebhookConfiguration (via a real HTTP API server double), and
// answers real AdmissionReview payloads. Clients verify the certificate
// against that caBundle under the Service's DNS name, like kube-apiserver.
// The JSONPatch is applied with an independent RFC 6902 implementation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as https from 'node:https';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import jsonpatch from 'fast-json-patch';
import { parse } from 'yaml';
import { KubeConfig } from '@kubernetes/client-node';
import { TestApiServer } from '../support/apiserver.js';
import { validateManifest } from '../support/kube-schema.js';
import { KubeRest } from '../../src/injector/kube-rest.js';
import { startInjector, type RunningInjector } from '../../src/injector/run.js';
import { resolveInjectorConfig, resolveServerSettings } from '../../src/injector/options.js';
import { injectPodTemplate } from '../../src/injector/mutate.js';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injector/config.js';

const SNI = 'weir-injector.weir-system.svc';
// Async: the server under test runs in this process, a blocking exec would starve it.
const run = promisify(execFile);
const logger = pino({ level: 'silent' });
const webhookConfig = () => ({
  apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration',
  metadata: { name: 'weir-sidecar-injector' },
  webhooks: ['namespace.sidecar-injector.weir.io', 'object.sidecar-injector.weir.io'].map((name) => ({
    name, admissionReviewVersions: ['v1'], sideEffects: 'None', failurePolicy: 'Fail',
    clientConfig: { service: { name: 'weir-injector', namespace: 'weir-system', path: '/inject', port: 443 }, caBundle: '' },
  })),
});

let api: TestApiServer;
let dir: string;
let kubeRest: KubeRest;
const running: RunningInjector[] = [];

before(async () => {
  api = await TestApiServer.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-injector-'));
  const kc = new KubeConfig();
  kc.loadFromFile(api.writeKubeconfig(dir));
  kubeRest = new KubeRest(kc);
  api.put(webhookConfig() as never);
});
after(async () => {
  for (const r of running) await r.close();
  await api?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function start(extra: { certLifetime?: string; reconcileMs?: number } = {}): Promise<RunningInjector> {
  const settings = resolveServerSettings({ host: '127.0.0.1', port: '0', certLifetime: extra.certLifetime });
  const r = await startInjector({ settings, api: kubeRest, nativeChoice: 'auto', configFor: (native) => resolveInjectorConfig({}, {}, native), logger, caBundleReconcileMs: extra.reconcileMs });
  running.push(r);
  return r;
}

function caBundle(): string {
  const mwc = api.get('MutatingWebhookConfiguration', '', 'weir-sidecar-injector') as unknown as { webhooks: { clientConfig: { caBundle: string } }[] };
  const bundles = new Set(mwc.webhooks.map((w) => w.clientConfig.caBundle));
  assert.equal(bundles.size, 1, 'every webhook has the same caBundle');
  return Buffer.from([...bundles][0], 'base64').toString('utf8');
}

interface Answer { status: number; body: any; peerCert: X509Certificate }

/** POST like kube-apiserver: TLS verified against the caBundle, for the Service's DNS name. */
function post(port: number, body: string | object, contentType = 'application/json'): Promise<Answer> {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/inject', method: 'POST', servername: SNI, ca: caBundle(), agent: false, headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      const peer = new X509Certificate((res.socket as import('node:tls').TLSSocket).getPeerCertificate().raw);
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => { const t = Buffer.concat(chunks).toString('utf8'); resolve({ status: res.statusCode ?? 0, body: t ? JSON.parse(t) : undefined, peerCert: peer }); });
    });
    req.on('error', reject);
    req.end(data);
  });
}

function reviewOf(pod: object, extra: Record<string, unknown> = {}): object {
  const p = pod as { metadata?: { namespace?: string; name?: string } };
  return {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: {
      uid: `uid-${Math.random().toString(16).slice(2)}`, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' }, namespace: p.metadata?.namespace ?? 'default', operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' }, object: pod, oldObject: null, dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' }, ...extra,
    },
  };
}

const fixturePod = () => parse(fs.readFileSync(path.join(import.meta.dirname, '../fixtures/inject/pod.yaml'), 'utf8')) as Record<string, any>;

function applied(pod: object, patchB64: string): any {
  const ops = JSON.parse(Buffer.from(patchB64, 'base64').toString('utf8'));
  // validateOperation: RFC 6902 strictly (paths must exist for replace/remove, etc.).
  return jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument;
}

test('the injector creates its CA Secret, patches the caBundle, and mutates a pod over verified HTTPS', async () => {
  const inj = await start();
  assert.equal(inj.native(), true, 'API server 1.31: native sidecars');
  const secret = api.get('Secret', 'weir-system', 'weir-injector-ca') as unknown as { data: Record<string, string> };
  assert.ok(secret, 'CA secret created');
  assert.equal(caBundle(), Buffer.from(secret.data['ca-bundle.crt'], 'base64').toString('utf8'));

  const pod = fixturePod();
  const review = reviewOf(pod);
  const r = await post(inj.server.port, review);
  assert.equal(r.status, 200);
  assert.equal(r.body.apiVersion, 'admission.k8s.io/v1');
  assert.equal(r.body.kind, 'AdmissionReview');
  assert.equal(r.body.response.uid, (review as any).request.uid);
  assert.equal(r.body.response.allowed, true);
  assert.equal(r.body.response.patchType, 'JSONPatch');
  // The serving certificate names the Service and chains to the caBundle.
  assert.match(r.peerCert.subjectAltName ?? '', new RegExp(`DNS:${SNI.replace(/\./g, '\\.')}`));
  assert.ok(r.peerCert.checkIssued(new X509Certificate(caBundle())));

  const mutated = applied(pod, r.body.response.patch);
  const expected = injectPodTemplate({ metadata: pod.metadata, spec: pod.spec }, { config: resolveInjectorConfig({}, {}, true), namespace: 'shop', namespaceSelected: true });
  assert.deepEqual({ metadata: mutated.metadata, spec: mutated.spec }, expected.template);
  validateManifest(mutated);
  const proxy = mutated.spec.initContainers[0];
  assert.equal(proxy.name, 'weir-proxy');
  assert.equal(proxy.restartPolicy, 'Always');
  assert.equal(mutated.spec.containers[0].readinessProbe.httpGet.path, '/app-health/app/readyz');
  assert.equal(mutated.spec.containers[0].readinessProbe.httpGet.port, 15020);
  assert.ok(mutated.metadata.annotations['sidecar.istio.io/status']);
  // The original init container is kept, after the proxy.
  assert.deepEqual(mutated.spec.initContainers.map((c: { name: string }) => c.name), ['weir-proxy', 'migrate']);

  // Re-submitting the injected pod (a controller retry): no patch, idempotent.
  const again = await post(inj.server.port, reviewOf(mutated));
  assert.equal(again.body.response.allowed, true);
  assert.equal(again.body.response.patch, undefined);
});

test('curl, verifying against the caBundle, gets the same kind of answer', async () => {
  const inj = running[0] ?? await start();
  fs.writeFileSync(path.join(dir, 'ca.pem'), caBundle());
  fs.writeFileSync(path.join(dir, 'review.json'), JSON.stringify(reviewOf(fixturePod())));
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '--fail-with-body', '--cacert', path.join(dir, 'ca.pem'), '--resolve', `${SNI}:${inj.server.port}:127.0.0.1`,
    '-H', 'content-type: application/json', '--data-binary', `@${path.join(dir, 'review.json')}`, `https://${SNI}:${inj.server.port}/inject`]);
  const body = JSON.parse(stdout);
  assert.equal(body.response.allowed, true);
  assert.equal(body.response.patchType, 'JSONPatch');
  // And without the CA, curl refuses the certificate: it is not trusted by accident.
  await assert.rejects(run('curl', ['-sS', '--max-time', '10', '--resolve', `${SNI}:${inj.server.port}:127.0.0.1`, `https://${SNI}:${inj.server.port}/healthz`]), /certificate/);
});

test('pods it must not touch are allowed without a patch', async () => {
  const inj = running[0] ?? await start();
  const base = fixturePod();
  const cases: [string, object][] = [
    ['kube-system', { ...base, metadata: { ...base.metadata, namespace: 'kube-system' } }],
    ['kube-public', { ...base, metadata: { ...base.metadata, namespace: 'kube-public' } }],
    ['hostNetwork', { ...base, spec: { ...base.spec, hostNetwork: true } }],
    ['opted out (label)', { ...base, metadata: { ...base.metadata, labels: { 'sidecar.istio.io/inject': 'false' } } }],
    ['already has istio-proxy', { ...base, spec: { ...base.spec, containers: [...base.spec.containers, { name: 'istio-proxy', image: 'istio/proxyv2' }] } }],
  ];
  for (const [what, pod] of cases) {
    const r = await post(inj.server.port, reviewOf(pod));
    assert.equal(r.status, 200, what);
    assert.equal(r.body.response.allowed, true, what);
    assert.equal(r.body.response.patch, undefined, `${what}: no patch`);
  }
  // Not a CREATE, or not a pod: allowed untouched.
  const upd = await post(inj.server.port, reviewOf(base, { operation: 'UPDATE' }));
  assert.equal(upd.body.response.patch, undefined);
  const svc = await post(inj.server.port, reviewOf({ metadata: { name: 's' } }, { kind: { group: '', version: 'v1', kind: 'Service' } }));
  assert.equal(svc.body.response.allowed, true);
  assert.equal(svc.body.response.patch, undefined);
});

test('malformed reviews get a clear 400 (or 415), and the server keeps serving', async () => {
  const inj = running[0] ?? await start();
  const notJson = await post(inj.server.port, '{"apiVersion": "admission.k8s.io/v1", ');
  assert.equal(notJson.status, 400);
  assert.match(notJson.body.error, /body: not JSON/);
  const noUid = await post(inj.server.port, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { kind: { kind: 'Pod' } } });
  assert.equal(noUid.status, 400);
  assert.match(noUid.body.error, /request\.uid: must be a non-empty string/);
  const v1beta1 = await post(inj.server.port, { apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } });
  assert.equal(v1beta1.status, 400);
  assert.match(v1beta1.body.error, /apiVersion: must be admission\.k8s\.io\/v1/);
  const noContainers = await post(inj.server.port, reviewOf({ metadata: { name: 'p' }, spec: { containers: 'app' } }));
  assert.equal(noContainers.status, 400);
  assert.match(noContainers.body.error, /request\.object\.spec\.containers: must be a list/);
  const arr = await post(inj.server.port, '[1,2,3]');
  assert.equal(arr.status, 400);
  const ctype = await post(inj.server.port, 'x', 'text/plain');
  assert.equal(ctype.status, 415);
  // A pod with a bad annotation is refused with the annotation named (not a 5xx).
  const bad = fixturePod();
  bad.metadata.annotations = { 'sidecar.istio.io/proxyMemory': 'lots' };
  const refused = await post(inj.server.port, reviewOf(bad));
  assert.equal(refused.status, 200);
  assert.equal(refused.body.response.allowed, false);
  assert.match(refused.body.response.status.message, /sidecar\.istio\.io\/proxyMemory.*quantity/);
  // Still alive and right.
  const ok = await post(inj.server.port, reviewOf(fixturePod()));
  assert.equal(ok.body.response.patchType, 'JSONPatch');
  assert.ok(inj.server.counters['http-400'] >= 4);
});

test('a second replica reuses the CA Secret: the caBundle does not change', async () => {
  const before = caBundle();
  const patchesBefore = api.requests.filter((r) => r.method === 'PATCH' && r.path.includes('mutatingwebhookconfigurations')).length;
  const second = await start();
  assert.equal(caBundle(), before);
  assert.equal(api.requests.filter((r) => r.method === 'PATCH' && r.path.includes('mutatingwebhookconfigurations')).length, patchesBefore);
  const r = await post(second.server.port, reviewOf(fixturePod()));
  assert.equal(r.body.response.allowed, true);
});

test('the serving certificate is renewed before it expires, and a wiped caBundle is patched back', async () => {
  const inj = await start({ certLifetime: '3s', reconcileMs: 200 });
  const first = await post(inj.server.port, reviewOf(fixturePod()));
  // Renewal at 2/3 of the life (incl. the 5 min backdate, so: immediately after the 1 s floor).
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(inj.certs.renewals >= 1, `renewals: ${inj.certs.renewals}`);
  const second = await post(inj.server.port, reviewOf(fixturePod()));
  assert.notEqual(second.peerCert.serialNumber, first.peerCert.serialNumber, 'a new certificate is served');
  assert.ok(second.peerCert.checkIssued(new X509Certificate(caBundle())));

  // Someone re-applies the manifests: caBundle empty again. The injector fixes it.
  const wanted = caBundle();
  api.put(webhookConfig() as never);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(caBundle(), wanted);
});

test('API server 1.28: the proxy is a regular container holding the app until ready', async () => {
  api.kubeVersion = { major: '1', minor: '28' };
  try {
    const inj = await start();
    assert.equal(inj.native(), false);
    const pod = fixturePod();
    const r = await post(inj.server.port, reviewOf(pod));
    const mutated = applied(pod, r.body.response.patch);
    validateManifest(mutated);
    assert.deepEqual(mutated.spec.initContainers.map((c: { name: string }) => c.name), ['migrate']);
    assert.equal(mutated.spec.containers[0].name, 'weir-proxy', 'first, so its postStart hook holds the app');
    assert.deepEqual(mutated.spec.containers[0].lifecycle.postStart.exec.command.slice(-3), ['proxy-wait', '--timeout', '120s']);
  } finally {
    api.kubeVersion = { major: '1', minor: '31' };
  }
});

test('options: bad flags name the flag', () => {
  assert.throws(() => resolveInjectorConfig({ policy: 'sometimes' }), /--policy: must be enabled or disabled/);
  assert.throws(() => resolveServerSettings({ port: 'https' }), /--port: must be a port number/);
  assert.equal(resolveInjectorConfig({}, {}).proxyImage, DEFAULT_INJECTOR_CONFIG.proxyImage);
});
