// The control plane fed by the real list/watch protocol (TestApiServer +
// @kubernetes/client-node): Services and EndpointSlices in all namespaces
// become registry deltas pushed to a connected proxy; API change → proxy ack
// latency measured; a watch the server closes is re-established.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { TestApiServer } from '../support/apiserver.js';
import { startControlPlane } from '../../src/controlplane/server.js';
import { encode, LineDecoder } from '../../src/controlplane/protocol.js';

test('API changes reach a connected proxy as acked deltas (list/watch, all namespaces)', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wx-kube-'));
  const api = await TestApiServer.start();
  const kc = new KubeConfig();
  kc.loadFromFile(api.writeKubeconfig(dir));
  api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.5.5', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
  const cp = await startControlPlane({
    kubeConfig: kc, socketPath: path.join(dir, 'cp.sock'), logger: pino({ level: 'silent' }), metrics: new Registry(), clusterDomain: 'cluster.local',
    identifyPeer: async () => ({ namespace: 'shop', name: 'client', uid: 'u', ips: [] }),
  });
  const sock = net.connect(path.join(dir, 'cp.sock'));
  try {
    for (let i = 0; i < 100 && !cp.ready(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(cp.ready(), 'synced after the initial list');
    const received: { type: string; version: number; services?: { name: string }[]; upserts?: { name: string; endpoints: { ip: string }[] }[] }[] = [];
    const d = new LineDecoder();
    let notify = () => {};
    sock.on('data', (c: Buffer) => {
      for (const m of d.push(c) as typeof received) {
        received.push(m);
        if (m.type === 'snapshot' || m.type === 'delta') sock.write(encode({ type: 'ack', version: m.version }));
        notify();
      }
    });
    const next = async (type: string) => {
      for (;;) {
        const i = received.findIndex((m) => m.type === type);
        if (i >= 0) return received.splice(i, 1)[0];
        await new Promise<void>((r) => { notify = r; });
      }
    };
    sock.write(encode({ type: 'hello', versions: [1] }));
    const snap = await next('snapshot');
    assert.deepEqual(snap.services!.map((s) => s.name), ['web']);

    const t0 = performance.now();
    api.put({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
      metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
      endpoints: [{ addresses: ['10.1.0.7'], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
    const delta = await next('delta');
    assert.deepEqual(delta.upserts!.map((s) => [s.name, s.endpoints.map((e) => e.ip)]), [['web', ['10.1.0.7']]]);
    await cp.waitAcked(delta.version, 5000);
    const ms = performance.now() - t0;
    console.log(`# API change → proxy acked: ${ms.toFixed(1)} ms`);
    assert.ok(ms < 1000);

    // The apiserver ends every watch: the informer re-watches, later changes still arrive.
    api.closeWatches();
    await new Promise((r) => setTimeout(r, 300));
    api.remove('Service', 'shop', 'web');
    const del = await next('delta') as unknown as { deletes: string[] };
    assert.deepEqual(del.deletes, ['shop/web']);

    // 410 Gone: the history expires while the watch is down; the informer
    // relists, and what changed meanwhile still reaches the proxy as a delta.
    api.expireHistory();
    api.closeWatches();
    api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'late', namespace: 'shop' }, spec: { clusterIP: '10.96.0.77', clusterIPs: ['10.96.0.77'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
    const late = await next('delta');
    assert.deepEqual(late.upserts!.map((u) => u.name), ['late']);
  } finally {
    sock.destroy();
    await cp.close();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
