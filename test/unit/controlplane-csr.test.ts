// The csr exchange on the proxy connection, against the real control plane
// and the agent's forwarder: the identity is the connection's (kernel-derived),
// never the CSR's; schema errors close the connection like any bad message;
// a refused or failed request is an answer with the same nonce, and the
// connection stays up. (Issuance through a real CA: test/integration/mesh-mtls.test.ts.)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { startControlPlane } from '../../src/controlplane/server.js';
import { LineDecoder, type PodIdentity } from '../../src/controlplane/protocol.js';
import { createCsrForwarder } from '../../src/agent/csr-forwarder.js';
import { createWorkloadCsr } from '../../src/ca/csr.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wx-csr-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const ME: PodIdentity = { namespace: 'shop', name: 'web-1', uid: 'u1', ips: ['10.0.0.1'], serviceAccount: 'web' };

async function session(sock: string, after: string[], waitFor: number): Promise<{ msgs: Record<string, unknown>[]; closed: boolean }> {
  const s = net.connect(sock);
  const msgs: Record<string, unknown>[] = [];
  const d = new LineDecoder();
  let closed = false;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 5000);
    s.on('connect', () => s.write('{"type":"hello","versions":[1]}\n'));
    s.on('data', (c: Buffer) => {
      for (const m of d.push(c)) {
        msgs.push(m as Record<string, unknown>);
        if ((m as { type: string }).type === 'snapshot') for (const l of after) s.write(l);
        if (msgs.length >= waitFor) { clearTimeout(t); resolve(); }
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => { closed = true; clearTimeout(t); resolve(); });
  });
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
  return { msgs, closed };
}

test('csr: only the connection\'s own SPIFFE ID is forwarded; refusals answer by nonce; schema errors close', async () => {
  writeFileSync(path.join(dir, 'token'), 'tok\n');
  const metrics = new Registry();
  const socketPath = path.join(dir, 'proxy.sock');
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: pino({ level: 'silent' }), metrics, clusterDomain: 'cluster.local', identifyPeer: async () => ME,
    source: () => ({ start: async () => {}, stop: async () => {} }),
    // Nothing listens on port 1: a request that passes the agent's checks fails at the CA, as an answer.
    onCsr: createCsrForwarder({ ca: { url: 'https://127.0.0.1:1', rootsPem: '', tokenFile: path.join(dir, 'token'), timeoutMs: 2000 }, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), metrics }),
  });
  try {
    const other = await createWorkloadCsr('spiffe://cluster.local/ns/shop/sa/admin');
    const mine = await createWorkloadCsr('spiffe://cluster.local/ns/shop/sa/web');
    const csr = (nonce: string, pem: string) => JSON.stringify({ type: 'csr', nonce, pem }) + '\n';
    // The same CSR with its signature's last byte flipped: proof of possession fails.
    const der = Buffer.from(mine.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] ^= 0xff;
    const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    const r = await session(socketPath, [csr('n1', other.csrPem), csr('n2', forged), csr('n3', mine.csrPem), '{"type":"ack","version":0}\n'], 5);
    assert.equal(r.msgs[0].type, 'welcome');
    assert.equal(r.msgs[0].certificates, true, 'welcome says this agent answers csr');
    const byNonce = Object.fromEntries(r.msgs.filter((m) => m.nonce).map((m) => [m.nonce, m]));
    assert.match(String(byNonce.n1.reason), /asks for spiffe:\/\/cluster\.local\/ns\/shop\/sa\/admin, but this connection is spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/);
    assert.match(String(byNonce.n2.reason), /^csr\.pem: /);
    assert.match(String(byNonce.n3.reason), /^CA unreachable/);
    assert.ok(Object.values(byNonce).every((m) => (m as { type: string }).type === 'error'));
    assert.equal(r.closed, false, 'refusals do not close the connection');
    const text = await metrics.metrics();
    assert.match(text, /weir_agent_csr_total\{outcome="wrong_identity"\} 1/);
    assert.match(text, /weir_agent_csr_total\{outcome="ca_unreachable"\} 1/);

    for (const [line, why] of [
      ['{"type":"csr","nonce":"a b","pem":"x"}\n', /csr\.nonce: must be 1-64 characters/],
      ['{"type":"csr","nonce":"n","pem":7}\n', /csr\.pem: must be a PEM/],
      [JSON.stringify({ type: 'csr', nonce: 'n', pem: 'x'.repeat(9000) }) + '\n', /csr\.pem: longer than 8192 bytes/],
      ['{"type":"csr","nonce":"n","pem":"hello"}\n', /csr\.pem: no PEM "CERTIFICATE REQUEST" block/],
    ] as const) {
      const bad = await session(socketPath, [line], 3);
      assert.deepEqual(bad.msgs.map((m) => m.type), ['welcome', 'snapshot', 'error'], line);
      assert.match(String(bad.msgs[2].reason), why);
      assert.equal(bad.msgs[2].nonce, undefined, 'a protocol error, not an answer');
    }
  } finally {
    await cp.close();
  }
});

test('csr to an agent without a CA: welcome does not offer certificates, and a csr still gets an answer', async () => {
  const socketPath = path.join(dir, 'plain.sock');
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: pino({ level: 'silent' }), metrics: new Registry(), clusterDomain: 'cluster.local', identifyPeer: async () => ME,
    source: () => ({ start: async () => {}, stop: async () => {} }),
  });
  try {
    const mine = await createWorkloadCsr('spiffe://cluster.local/ns/shop/sa/web');
    const r = await session(socketPath, [JSON.stringify({ type: 'csr', nonce: 'x1', pem: mine.csrPem }) + '\n'], 3);
    assert.equal(r.msgs[0].certificates, undefined);
    assert.deepEqual({ type: r.msgs[2].type, nonce: r.msgs[2].nonce }, { type: 'error', nonce: 'x1' });
    assert.match(String(r.msgs[2].reason), /issues no certificates/);
  } finally {
    await cp.close();
  }
});
