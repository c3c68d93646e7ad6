// DestinationRule trafficPolicy.tls: the reader names every bad field and
// reports credentialName unsupported; compiled clusters carry the fields;
// the proxy's plan per mode (plaintext, mesh mTLS, TLS origination with the
// pod's files) and its failures name the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readIstioResource } from '../../src/istio/read.js';
import { compileProxyConfig } from '../../src/controlplane/translate/compile.js';
import { validateCompiledConfig } from '../../src/proxy/compiled/validate.js';
import { tlsPlan } from '../../src/proxy/mtls/cluster-tls.js';
import type { OutboundDeps } from '../../src/proxy/mtls/outbound.js';
import type { IstioResource } from '../../src/istio/types.js';

const dr = (tls: unknown) => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'ext', namespace: 'shop' }, spec: { host: 'ext', trafficPolicy: { tls } } });
const problems = (tls: unknown) => Object.fromEntries(readIstioResource(dr(tls)).problems.map((p) => [p.field, `${p.severity}: ${p.message}`]));

test('reader: modes, files, credentialName unsupported, MUTUAL needs its files', () => {
  assert.deepEqual(problems({ mode: 'SIMPLE', sni: 'ext.example.com', caCertificates: '/etc/certs/ca.pem', subjectAltNames: ['ext.example.com'], insecureSkipVerify: false }), {});
  const p = problems({ mode: 'MUTUAL', caCertificates: 'ca.pem', insecureSkipVerify: 'yes' });
  assert.match(p['spec.trafficPolicy.tls.caCertificates'], /^error: must be an absolute file path/);
  assert.match(p['spec.trafficPolicy.tls.insecureSkipVerify'], /^error/);
  assert.equal(p['spec.trafficPolicy.tls'], 'error: mode MUTUAL needs clientCertificate and privateKey');
  const cred = problems({ mode: 'MUTUAL', credentialName: 'ext-certs' });
  assert.match(cred['spec.trafficPolicy.tls.credentialName'], /^unsupported: .*not supported/);
  assert.equal(cred['spec.trafficPolicy.tls'], undefined, 'with credentialName, MUTUAL is not an error: the credential is what is unsupported');
  assert.match(problems({ mode: 'TLS' })['spec.trafficPolicy.tls.mode'], /^error/);
});

test('compiled clusters carry the tls fields; the proxy validator names bad ones', () => {
  const r = readIstioResource(dr({ mode: 'MUTUAL', sni: 'ext.example.com', clientCertificate: '/c.pem', privateKey: '/k.pem', caCertificates: '/ca.pem', subjectAltNames: ['x'] }));
  const services = [{ namespace: 'shop', name: 'ext', kind: 'ClusterIP' as const, clusterIPs: ['10.96.0.9'], ports: [{ name: 'tcp', port: 443, protocol: 'TCP' as const }], endpoints: [] }];
  const c = compileProxyConfig({ clusterDomain: 'cluster.local', rootNamespace: 'istio-system', proxyNamespace: 'shop', services, resources: [r.resource as IstioResource] });
  assert.deepEqual(c.clusters[0].tls, { mode: 'MUTUAL', sni: 'ext.example.com', clientCertificate: '/c.pem', privateKey: '/k.pem', caCertificates: '/ca.pem', subjectAltNames: ['x'] });
  assert.doesNotThrow(() => validateCompiledConfig({ clusters: c.clusters }));
  const bad = (tls: unknown) => { try { validateCompiledConfig({ clusters: [{ ...c.clusters[0], tls }] }); return ''; } catch (e) { return (e as Error).message; } };
  assert.match(bad({ mode: 'SIMPLE', caCertificates: 'rel.pem' }), /clusters\[0\]\.tls\.caCertificates.*absolute/);
  assert.match(bad({ mode: 'STRICT' }), /clusters\[0\]\.tls\.mode/);
});

test('the proxy\'s plan per mode: plaintext, mesh mTLS, origination; failures name the field', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-drtls-'));
  try {
    writeFileSync(path.join(dir, 'ca.pem'), 'not really a CA, read as bytes');
    const noCert = { identity: { current: () => undefined }, trustDomain: 'cluster.local', required: false, handshakeTimeoutMs: 1000 } as unknown as OutboundDeps;
    const meshEp = { ip: '10.0.0.5', ready: true, serving: true, terminating: false, ports: [], tlsMode: 'istio' };
    assert.equal(tlsPlan(noCert, { tls: { mode: 'DISABLE' } }, meshEp, 'tcp').kind, 'plain');
    assert.equal(tlsPlan(noCert, undefined, meshEp, 'tcp').kind, 'plain', 'auto mTLS without a certificate: plaintext (the peer is PERMISSIVE)');
    assert.deepEqual(tlsPlan(noCert, { tls: { mode: 'ISTIO_MUTUAL' } }, undefined, 'tcp'), { kind: 'fail', code: 'ENOCERT', reason: 'DestinationRule tls mode ISTIO_MUTUAL but no workload certificate yet' });
    const simple = tlsPlan(noCert, { tls: { mode: 'SIMPLE', caCertificates: path.join(dir, 'ca.pem') }, host: 'ext.shop.svc.cluster.local' }, undefined, 'h1');
    assert.equal(simple.kind, 'tls');
    if (simple.kind === 'tls') {
      assert.equal(simple.options.servername, 'ext.shop.svc.cluster.local', 'no sni: the cluster host');
      assert.deepEqual(simple.options.ALPNProtocols, ['http/1.1']);
      assert.equal(String(simple.options.ca), 'not really a CA, read as bytes');
      assert.equal(simple.options.rejectUnauthorized, true);
    }
    const sni = tlsPlan(noCert, { tls: { mode: 'SIMPLE', sni: 'ext.example.com', insecureSkipVerify: true } }, undefined, 'tcp');
    assert.ok(sni.kind === 'tls' && sni.options.servername === 'ext.example.com' && sni.options.rejectUnauthorized === false && !sni.options.ALPNProtocols);
    assert.deepEqual(tlsPlan(noCert, { tls: { mode: 'MUTUAL', clientCertificate: path.join(dir, 'nope.pem'), privateKey: path.join(dir, 'k.pem') } }, undefined, 'tcp'),
      { kind: 'fail', code: 'ETLSCONFIG', reason: `DestinationRule tls.clientCertificate ${path.join(dir, 'nope.pem')}: ENOENT` });
    assert.equal(tlsPlan(noCert, { tls: { mode: 'MUTUAL' } }, undefined, 'tcp').kind, 'fail');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
