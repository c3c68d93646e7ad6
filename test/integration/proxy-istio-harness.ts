// Topology for the Istio traffic-management suites: a client pod whose
// proxy runs with --static-config (the compiled VirtualService /
// DestinationRule config), three web pods (web-1, web-2 version v1; web-3
// version v2), a mirror pod, and a pod outside the mesh. Endpoint labels
// are put into the registry the test control plane pushes (the agent's pod
// informer fills them in production).
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { CompiledCluster, CompiledProxyConfig } from '../../src/controlplane/resources.js';
import type { RegistryDelta } from '../../src/controlplane/types.js';
import { Cluster, REPO, service, slice, waitForLine, type Pod } from './proxy-harness.js';
import { labelsFile, waitFor } from './proxy-http-harness.js';

export const WEB = '10.96.60.10';
export const MIRROR = '10.96.60.11';
export const DB = '10.96.60.12';
export const WEB_FQDN = 'web.shop.svc.cluster.local';
const APP = path.join(REPO, 'test/fixtures/http/istio-app.cjs');

export const LABELS: Record<string, Record<string, string>> = {
  'web-1': { app: 'web', version: 'v1' }, 'web-2': { app: 'web', version: 'v1' }, 'web-3': { app: 'web', version: 'v2' }, 'mirror-1': { app: 'mirror' },
};

/** Endpoint labels into a registry change, before the control plane sends it (stands in for the pod informer). */
function withLabels(d: RegistryDelta | undefined): RegistryDelta | undefined {
  for (const s of d?.upserts ?? []) for (const e of s.endpoints) if (e.podName && LABELS[e.podName]) e.labels = LABELS[e.podName];
  return d;
}

export function cluster(name: string, o: Partial<CompiledCluster> & { service: string; port: number; host: string }): CompiledCluster {
  return { name, protocol: 'http', selector: {}, loadBalancer: { simple: 'ROUND_ROBIN' }, connectionPool: { connectTimeoutMs: 10_000, idleTimeoutMs: 3_600_000 }, tls: { mode: 'AUTO' }, ...o };
}

export interface IstioTopology { c: Cluster; client: Pod; locked: Pod; servers: Pod[]; mirror: Pod; outside: Pod }

export async function startTopology(config: CompiledProxyConfig, lockedConfig: unknown): Promise<IstioTopology> {
  const c = new Cluster();
  await c.startControlPlane();
  const client = await c.addPod('client-6d4cf56db6-abcde', 'shop');
  const locked = await c.addPod('locked-6d4cf56db6-abcde', 'shop');
  const servers = [await c.addPod('web-1', 'shop'), await c.addPod('web-2', 'shop'), await c.addPod('web-3', 'shop')];
  const mirror = await c.addPod('mirror-1', 'shop');
  const outside = await c.addPod('outside', 'elsewhere', { capture: false });
  const ports = [{ name: 'http', port: 8080 }];
  c.cp!.apply((b) => b.upsertService(service('web', 'shop', WEB, [{ name: 'http', port: 80 }])));
  c.cp!.apply((b) => withLabels(b.upsertEndpointSlice(slice('web', 'shop', 'web-a', servers.map((pod) => ({ pod })), ports))));
  c.cp!.apply((b) => b.upsertService(service('mirror', 'shop', MIRROR, [{ name: 'http', port: 80 }])));
  c.cp!.apply((b) => withLabels(b.upsertEndpointSlice(slice('mirror', 'shop', 'mirror-a', [{ pod: mirror }], ports))));
  c.cp!.apply((b) => b.upsertService(service('db', 'shop', DB, [{ name: 'tcp-db', port: 5000 }])));
  c.cp!.apply((b) => withLabels(b.upsertEndpointSlice(slice('db', 'shop', 'db-a', servers.map((pod) => ({ pod })), [{ name: 'tcp-db', port: 9000 }]))));
  c.cp!.apply((b) => b.upsertService(service('tlsweb', 'shop', '10.96.60.13', [{ name: 'tls', port: 443 }])));
  c.cp!.apply((b) => withLabels(b.upsertEndpointSlice(slice('tlsweb', 'shop', 'tlsweb-a', servers.map((pod) => ({ pod })), [{ name: 'tls', port: 9443 }]))));
  await startIstioApps(c, [...servers, mirror, outside]);
  const file = path.join(c.sockDir, 'compiled.json');
  writeFileSync(file, JSON.stringify(config), { mode: 0o644 });
  const lockedFile = path.join(c.sockDir, 'locked.json');
  writeFileSync(lockedFile, JSON.stringify(lockedConfig), { mode: 0o644 });
  const clientLabels = labelsFile(c, client, { app: 'shopper', version: 'v7' });
  await Promise.all([
    c.startProxy(client, ['--no-dns', '--access-log', 'json', '--pod-labels', clientLabels, '--static-config', file]),
    c.startProxy(locked, ['--no-dns', '--access-log', 'json', '--static-config', lockedFile]),
    ...[...servers, mirror].map((p) => c.startProxy(p, ['--no-dns', '--pod-labels', labelsFile(c, p, LABELS[p.name])])),
  ]);
  await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 6, 10000, 'six proxies connected');
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
  return { c, client, locked, servers, mirror, outside };
}

/**
 * Runs test/fixtures/http/istio-app.cjs (HTTP/1.1, h2c, gRPC and TLS echo servers that name the pod
 * answering) in each pod, its log kept with the pod's proxy log.
 */
export async function startIstioApps(c: Cluster, pods: Pod[]): Promise<void> {
  // The apps' TLS server certificate (any name: clients in these tests do not verify it).
  const [cert, key] = [path.join(c.sockDir, 'tls.crt'), path.join(c.sockDir, 'tls.key')];
  if (!existsSync(cert)) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=example.com', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  }
  await Promise.all(pods.map((p) => startApp(p, cert, key)));
}

async function startApp(pod: Pod, cert: string, key: string): Promise<void> {
  pod.app = pod.ns.spawn(process.execPath, [APP, pod.name, cert, key]);
  const keep = (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) pod.proxyLog.push(`app: ${l}`); };
  pod.app.stdout!.on('data', keep);
  pod.app.stderr!.on('data', keep);
  await waitForLine(pod.app, /app ready/, 10000);
}

/** The requests an app saw: [request id, host, url]. */
export function appRequests(pod: Pod): { id: string; host: string; url: string }[] {
  return pod.proxyLog.filter((l) => l.startsWith('app: req ')).map((l) => { const [, , id, host, url] = l.split(' '); return { id, host, url }; });
}
