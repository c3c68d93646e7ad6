// Control plane v2 over a real unix socket, with the real proxy client:
// typed per-kind pushes, acks recorded per kind, a v1 and a v2 proxy served
// by one agent, Istio resources reaching the proxy's CompiledConfigStore, a
// NACK keeping the last good config (and healing on the next good version),
// per-kind resume, and hostile acks/nacks.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { startControlPlane, type ControlPlane } from '../../src/controlplane/server.js';
import { encode, LineDecoder, type PodIdentity } from '../../src/controlplane/protocol.js';
import { IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { istioCompiledSource, type CompiledSource } from '../../src/controlplane/v2/compiled-source.js';
import { RegistryClient } from '../../src/proxy/registry-client.js';
import { until } from '../support/poll.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wx-cp2-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const ME: PodIdentity = { namespace: 'shop', name: 'web-1', uid: 'u1', ips: ['10.0.0.1'] };
const silent = pino({ level: 'silent' });

async function agent(name: string, compiled?: CompiledSource, metrics = new Registry()): Promise<{ cp: ControlPlane; socketPath: string; metrics: Registry }> {
  const socketPath = path.join(dir, `${name}.sock`);
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: silent, metrics, clusterDomain: 'cluster.local', compileDebounceMs: 5,
    identifyPeer: async (pid) => (pid === process.pid ? ME : undefined), source: () => ({ start: async () => {}, stop: async () => {} }), compiled,
  });
  cp.apply((b) => b.upsertService({ metadata: { namespace: 'shop', name: 'api' }, spec: { clusterIP: '10.96.0.2', ports: [{ name: 'http', port: 80 }] } }));
  return { cp, socketPath, metrics };
}

type ProxyStat = { pod: string; protocol: number; ackedVersion: number; kinds?: Record<string, { sent: number; acked: number; pushes: number; nacks: number }>; lastNack?: { kind: string; errors: { name: string; field: string; message: string }[] } };
const proxies = (cp: ControlPlane) => (cp.stats() as { proxies: ProxyStat[] }).proxies;

const vs = (name: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z') => ({
  apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { namespace: 'shop', name, creationTimestamp: created }, spec,
});

test('a v1 and a v2 proxy are served by one agent; v2 gets every kind, acked per kind', async () => {
  const store = new IstioConfigStore();
  const { cp, socketPath } = await agent('mixed', istioCompiledSource({ store, rootNamespace: 'istio-system' }));
  const v2 = new RegistryClient({ socketPath, logger: silent });
  const v1 = new RegistryClient({ socketPath, logger: silent, versions: [1] });
  try {
    v2.start();
    v1.start();
    await until('both proxies hold the registry', () => v1.current()?.services.has('shop/api') === true && v2.current()?.services.has('shop/api') === true);
    assert.equal(v1.protocol, 1);
    assert.equal(v2.protocol, 2);
    assert.equal(v1.snapshots, 1, 'the v1 proxy got a v1 snapshot');
    // The compiled kinds arrive without any Istio resource: Services alone imply routes and clusters.
    await until('v2 compiled', () => v2.compiled.cluster('outbound|80||api.shop.svc.cluster.local') !== undefined);
    assert.equal(v2.compiled.routeTable(80)?.virtualHosts[0].name, 'api.shop.svc.cluster.local:80');
    assert.equal(v2.compiled.outboundTrafficPolicy, 'ALLOW_ANY');
    await until('acks recorded', () => proxies(cp).every((p) => p.protocol === 1 ? p.ackedVersion === 1 : p.kinds!.RouteTable.acked >= 1 && p.kinds!.Registry.acked === 1));

    // A VirtualService reaches the v2 proxy's store; the v1 proxy sees no change (its registry did not change).
    store.upsert(vs('api-canary', { hosts: ['api'], http: [{ match: [{ uri: { prefix: '/canary' } }], directResponse: { status: 418 } }, { route: [{ destination: { host: 'api' } }] }] }));
    await until('route pushed', () => v2.compiled.routeTable(80)?.virtualHosts[0].routes[0].source === 'shop/api-canary#http[0]');
    const rtVersion = v2.v2.versions().RouteTable!;
    await until('route acked', () => proxies(cp).find((p) => p.protocol === 2)!.kinds!.RouteTable.acked === rtVersion);
    assert.equal(v1.deltas, 0);

    // A registry change reaches both.
    cp.apply((b) => b.upsertService({ metadata: { namespace: 'shop', name: 'db' }, spec: { clusterIP: '10.96.0.3', ports: [{ name: 'tcp', port: 5432 }] } }));
    await cp.waitAcked(2, 3000);
    assert.ok(v1.current()!.services.has('shop/db') && v2.current()!.services.has('shop/db'));
    await until('db l4 compiled', () => v2.compiled.l4Services(5432).length === 1);
  } finally {
    v1.stop(); v2.stop();
    await cp.close();
  }
});

test('a push the proxy rejects is NACKed: it keeps the last good version, the agent counts it and heals with the next good one', async () => {
  // An agent of another build whose compiled output this proxy cannot use (a route regex JavaScript cannot compile).
  const store = new IstioConfigStore();
  const base = istioCompiledSource({ store, rootNamespace: 'istio-system' });
  let poison = false;
  const skewed: CompiledSource = {
    ...base,
    compile(key, services, domain) {
      const out = base.compile(key, services, domain);
      if (poison) for (const t of out.routes) t.virtualHosts[0].routes.unshift({ source: 'shop/bad#http[0]', match: [{ uri: { regex: '(?i)^/admin' } }], action: { directResponse: { status: 403 } }, mirrors: [] });
      return out;
    },
  };
  const { cp, socketPath, metrics } = await agent('nack', skewed);
  const client = new RegistryClient({ socketPath, logger: silent });
  try {
    client.start();
    await until('first route table', () => client.compiled.routeTable(80) !== undefined);
    const good = JSON.stringify(client.compiled.routeTable(80));
    const goodVersion = client.v2.versions().RouteTable;
    poison = true;
    store.upsert(vs('noise', { hosts: ['api'], http: [{ route: [{ destination: { host: 'api' } }] }] })); // any change triggers a recompile
    await until('nack recorded at the agent', () => proxies(cp)[0]?.kinds?.RouteTable.nacks === 1);
    const st = proxies(cp)[0];
    assert.equal(st.lastNack!.kind, 'RouteTable');
    assert.equal(st.lastNack!.errors[0].name, '80|api.shop.svc.cluster.local:80');
    assert.equal(st.lastNack!.errors[0].field, 'virtualHost.routes[0].match[0].uri.regex');
    assert.match(st.lastNack!.errors[0].message, /invalid regex/);
    assert.equal(JSON.stringify(client.compiled.routeTable(80)), good, 'the last good route table stays');
    assert.equal(client.v2.versions().RouteTable, goodVersion);
    assert.match(await metrics.metrics(), /weir_controlplane_nacks_total\{kind="RouteTable"\} 1/);

    // The fix: the next version is whole and applies.
    poison = false;
    store.upsert(vs('noise', { hosts: ['api'], http: [{ name: 'fixed', route: [{ destination: { host: 'api' } }] }] }));
    await until('healed', () => client.compiled.routeTable(80)?.virtualHosts[0].routes[0].name === 'fixed');
    await until('acked after heal', () => proxies(cp)[0].kinds!.RouteTable.acked === client.v2.versions().RouteTable);
  } finally {
    client.stop();
    await cp.close();
  }
});

class RawPeer {
  readonly sock: net.Socket;
  readonly msgs: Record<string, unknown>[] = [];
  constructor(socketPath: string) {
    this.sock = net.connect(socketPath);
    const d = new LineDecoder();
    this.sock.on('data', (c: Buffer) => { for (const m of d.push(c)) this.msgs.push(m as Record<string, unknown>); });
  }
  send(m: object): void { this.sock.write(encode(m as never)); }
}

test('per-kind resume sends only what changed; bad acks and nacks are protocol errors naming the field', async () => {
  const { cp, socketPath } = await agent('resume');
  try {
    const p = new RawPeer(socketPath);
    p.send({ type: 'hello', versions: [2, 1] });
    await until('all kinds pushed', () => p.msgs.filter((m) => m.type === 'push').length === 6);
    const welcome = p.msgs[0];
    assert.deepEqual([welcome.type, welcome.version, welcome.clusterDomain], ['welcome', 2, 'cluster.local']);
    const pushes = p.msgs.filter((m) => m.type === 'push');
    assert.deepEqual(pushes.map((m) => m.kind), ['Registry', 'Cluster', 'RouteTable', 'L4Service', 'Listener', 'Ignored'], 'dependency order');
    assert.ok(pushes.every((m) => m.full === true));
    for (const m of pushes) p.send({ type: 'ack', kind: m.kind, version: m.version, nonce: m.nonce });
    const versions = Object.fromEntries(pushes.map((m) => [m.kind, m.version]));
    p.sock.destroy();

    cp.apply((b) => b.upsertService({ metadata: { namespace: 'shop', name: 'db' }, spec: { clusterIP: '10.96.0.3', ports: [{ name: 'tcp', port: 5432 }] } }));
    const r = new RawPeer(socketPath);
    r.send({ type: 'hello', versions: [2, 1], resume: { epoch: welcome.epoch, versions } });
    await until('resumed pushes', () => r.msgs.filter((m) => m.type === 'push').length >= 1);
    await new Promise((res) => setTimeout(res, 100));
    const again = r.msgs.filter((m) => m.type === 'push');
    const reg = again.find((m) => m.kind === 'Registry')!;
    assert.equal(reg.full, undefined, 'the registry resumes by delta');
    assert.deepEqual([reg.fromVersion, (reg.upserts as { name: string }[]).map((s) => s.name)], [versions.Registry, ['db']]);
    assert.ok(!again.some((m) => m.kind === 'Listener'), 'an unchanged kind is not resent');

    r.send({ type: 'ack', kind: 'Registry', version: reg.version, nonce: 'never-sent' });
    await until('error', () => r.msgs.some((m) => m.type === 'error'));
    assert.match(String(r.msgs.find((m) => m.type === 'error')!.reason), /ack.nonce "never-sent" does not name an unanswered Registry push/);

    const q = new RawPeer(socketPath);
    q.send({ type: 'hello', versions: [2] });
    await until('q pushes', () => q.msgs.some((m) => m.type === 'push'));
    q.send({ type: 'nack', kind: 'Registry', version: 1, nonce: String(q.msgs[1].nonce), errors: [] });
    await until('q error', () => q.msgs.some((m) => m.type === 'error'));
    assert.match(String(q.msgs.find((m) => m.type === 'error')!.reason), /nack.errors: must be a non-empty list/);

    const v1 = new RawPeer(socketPath);
    v1.send({ type: 'hello', versions: [1] });
    await until('v1 snapshot', () => v1.msgs.some((m) => m.type === 'snapshot'));
    v1.send({ type: 'nack', kind: 'Registry', version: 1, nonce: 'x', errors: [{ name: 'a', field: 'b', message: 'c' }] });
    await until('v1 error', () => v1.msgs.some((m) => m.type === 'error'));
    assert.match(String(v1.msgs.find((m) => m.type === 'error')!.reason), /nack is a protocol 2 message/);
    for (const s of [r, q, v1]) s.sock.destroy();
  } finally {
    await cp.close();
  }
});

test('a Sidecar that starts selecting a connected proxy moves it to that view: scoped config and REGISTRY_ONLY arrive whole', async () => {
  const store = new IstioConfigStore();
  const { cp, socketPath } = await agent('rekey', istioCompiledSource({ store, rootNamespace: 'istio-system', podLabels: (ns, n) => (ns === 'shop' && n === 'web-1' ? { app: 'checkout' } : undefined) }));
  cp.apply((b) => b.upsertService({ metadata: { namespace: 'pay', name: 'pay' }, spec: { clusterIP: '10.96.0.9', ports: [{ name: 'http', port: 80 }] } }));
  const client = new RegistryClient({ socketPath, logger: silent });
  try {
    client.start();
    await until('both hosts', () => client.compiled.routeTable(80)?.virtualHosts.length === 2);
    assert.equal((cp.stats() as { proxies: { view: string }[] }).proxies[0].view, 'shop');
    store.upsert({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { namespace: 'shop', name: 'checkout' }, spec: { workloadSelector: { labels: { app: 'checkout' } }, egress: [{ hosts: ['./*'] }], outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } });
    await until('REGISTRY_ONLY', () => client.compiled.outboundTrafficPolicy === 'REGISTRY_ONLY');
    assert.deepEqual(client.compiled.routeTable(80)!.virtualHosts.map((v) => v.name), ['api.shop.svc.cluster.local:80'], 'pay is out of scope');
    assert.equal((cp.stats() as { proxies: { view: string }[] }).proxies[0].view, 'shop#checkout');
    assert.equal(client.v2.nacks, 0, 'the move is a whole push, never a delta against the old view');
  } finally {
    client.stop();
    await cp.close();
  }
});
