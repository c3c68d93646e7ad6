// The proxy's certificate life over its control-plane client: CA down → not
// ready (the reason says why), retried with backoff; CA back → certificate and
// ready; an agent without a CA → no wait at all. The agent side is a real
// EventEmitter speaking the csr protocol messages; signing is the CA's code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { certToPem, generateRoot, signLeaf } from '../../src/ca/pki.js';
import { checkCsr } from '../../src/ca/csr.js';
import { resolveProxyConfig } from '../../src/proxy/config.js';
import { startMesh } from '../../src/proxy/mtls/start.js';
import type { RegistryClient } from '../../src/proxy/registry-client.js';
import type { CsrMsg } from '../../src/controlplane/protocol.js';

async function agent(offers: boolean) {
  const ca = await generateRoot({ trustDomain: 'cluster.local' });
  const a = Object.assign(new EventEmitter(), {
    identity: { namespace: 'shop', name: 'web-1', uid: 'u', ips: [], serviceAccount: 'web' }, certificatesOffered: offers, connected: true, caUp: false, csrs: 0,
    send(msg: CsrMsg) {
      a.csrs++;
      void (async () => {
        if (!a.caUp) { a.emit('certificate-answer', { type: 'error', nonce: msg.nonce, reason: 'CA unreachable: ECONNREFUSED' }); return; }
        const csr = await checkCsr(msg.pem);
        const leaf = await signLeaf(ca, { publicKey: csr.publicKey, uris: csr.requestedUris, notAfter: new Date(Date.now() + 24 * 3600e3) });
        a.emit('certificate-answer', { type: 'certificate', nonce: msg.nonce, chain: [certToPem(leaf)], roots: ca.roots.map(certToPem) });
      })();
      return true;
    },
  });
  return a;
}

test('CA down: not ready with the reason, retried; CA up: certificate installed and ready', async () => {
  const a = await agent(true);
  const mesh = startMesh(resolveProxyConfig({}, {}), a as unknown as RegistryClient, {}, pino({ level: 'silent' }), new Registry(), () => 'shop');
  try {
    await new Promise((r) => setTimeout(r, 1200));
    assert.match(mesh.waitingForCertificate() ?? '', /waiting for the workload certificate \(CA unreachable: ECONNREFUSED\)/);
    assert.ok(a.csrs >= 2, `retried (${a.csrs} requests)`);
    a.caUp = true;
    const end = Date.now() + 10_000;
    while (mesh.waitingForCertificate() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    assert.equal(mesh.waitingForCertificate(), undefined);
    assert.equal(mesh.identity.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
    assert.match(String((mesh.dump().certificate as { notAfter: string }).notAfter), /^\d{4}-/);
  } finally {
    mesh.identity.close();
  }
});

test('an agent that issues no certificates: no csr sent, no wait (unless a STRICT policy or --mtls required)', async () => {
  const a = await agent(false);
  const mesh = startMesh(resolveProxyConfig({}, {}), a as unknown as RegistryClient, {}, pino({ level: 'silent' }), new Registry(), () => 'shop');
  const required = startMesh(resolveProxyConfig({ mtls: 'required' }, {}), a as unknown as RegistryClient, {}, pino({ level: 'silent' }), new Registry(), () => 'shop');
  try {
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.csrs, 0);
    assert.equal(mesh.waitingForCertificate(), undefined);
    assert.match(required.waitingForCertificate() ?? '', /issues no certificates/);
  } finally {
    mesh.identity.close();
    required.identity.close();
  }
});
