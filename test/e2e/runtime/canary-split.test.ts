// The canary case on a real container runtime: containerd's CRI runs
// the pods, weir-cni (chained by the agent's installer) captures them, and
// `weir agent` reads a DestinationRule (subsets by the pods' version labels)
// and a VirtualService sending 90 % to v1 and 10 % to v2 from the API
// server, compiles them and pushes them to the client pod's weir-proxy
// sidecar. 1,000 requests from the client's app container to the Service's
// ClusterIP: which server answered is read from each response body, and the
// split must be 90/10 within ±5 points.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { skipUnlessRoot } from '../../support/netns.js';
import { runPod, type RunningPod, type PodSpec } from '../../support/cri.js';
import { APP_IMAGE } from '../../support/images.js';
import { startRuntimeNode, type RuntimeNode } from './fixture.js';
import { proxySidecar, waitFor } from './pods.js';
import { AgentProcess, WEIR_CNI } from './agent-process.js';

const skip = skipUnlessRoot() || (fs.existsSync(WEIR_CNI) ? false : 'needs dist/weir-cni (npm run build)');
const VIP = `10.96.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
const N = 1000;
let node: RuntimeNode;
let agent: AgentProcess;
let client: RunningPod;
const servers: RunningPod[] = [];

const whoApp = (name: string): string[] => ['/usr/bin/node', '-e',
  `require('node:http').createServer((q, s) => s.end(JSON.stringify({ pod: '${name}' }) + '\\n')).listen(8080, '0.0.0.0')`];

/** Run in the client's app container (root: captured): N keep-alive GETs to the ClusterIP, one JSON line of who answered how often. */
const loadScript = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const get = () => new Promise((ok) => http.get({ host: '${VIP}', port: 80, path: '/', agent, headers: { host: 'api.shop.svc.cluster.local' } }, (r) => {
  let b = ''; r.setEncoding('utf8'); r.on('data', (d) => { b += d; }); r.on('end', () => { try { ok(r.statusCode + ' ' + JSON.parse(b).pod); } catch { ok(r.statusCode + ' ?'); } });
}).on('error', (e) => ok('error ' + e.code)));
(async () => { const seen = {}; for (let i = 0; i < ${N}; i += 4) { for (const k of await Promise.all([get(), get(), get(), get()])) seen[k] = (seen[k] || 0) + 1; } console.log(JSON.stringify(seen)); agent.destroy(); })();
`;

before(async () => {
  if (skip) return;
  node = await startRuntimeNode({ withApp: true });
  agent = await AgentProcess.create(node.containerd, node.cri);
  for (const [kind, plural] of [['VirtualService', 'virtualservices'], ['DestinationRule', 'destinationrules']]) agent.api.installCrd({ group: 'networking.istio.io', versions: ['v1'], kind, plural });
  const serverSpecs: PodSpec[] = (['v1', 'v2'] as const).map((v) => ({
    name: `api-${v}`, namespace: 'shop', labels: { app: 'api', version: v },
    containers: [{ name: 'app', image: APP_IMAGE, command: whoApp(`api-${v}`) }, proxySidecar('shop', `api-${v}`)],
  }));
  const clientSpec: PodSpec = { name: 'client', namespace: 'shop', labels: { app: 'client' }, containers: [{ name: 'app', image: APP_IMAGE, command: ['/bin/sleep', '3600'] }, proxySidecar('shop', 'client')] };
  for (const s of [...serverSpecs, clientSpec]) agent.declare(s);
  await agent.start();
  const track = (p: string) => node.containerd.trackNetns(p);
  for (const s of serverSpecs) servers.push(await runPod(node.cri, s, track));
  client = await runPod(node.cri, clientSpec, track).catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${agent.log.slice(-3000)}`); });
  agent.putObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' },
    spec: { type: 'ClusterIP', clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } });
  agent.putObject({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'api-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'api' } },
    endpoints: servers.map((s) => ({ addresses: [s.ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: s.spec.name, namespace: 'shop' } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
  for (const p of [...servers, client]) {
    await waitFor(async () => (await p.exec('weir-proxy', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15021/healthz/ready'])).exitCode === 0, 30_000, `${p.spec.name} proxy ready`);
  }
});

after(async () => {
  await agent?.stop();
  await node?.stop();
});

test('canary VirtualService 90/10 by subset (DestinationRule on version labels): 1,000 requests split within ±5 %', { skip, timeout: 240_000 }, async () => {
  agent.putObject({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'api', namespace: 'shop' },
    spec: { host: 'api', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] } });
  agent.putObject({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'api', namespace: 'shop' },
    spec: { hosts: ['api'], http: [{ route: [{ destination: { host: 'api', subset: 'v1' }, weight: 90 }, { destination: { host: 'api', subset: 'v2' }, weight: 10 }] }] } });
  // The client's proxy holds the compiled split (pushed by the agent, acked): its config_dump shows both weighted subsets.
  const dump = () => client.exec('weir-proxy', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15000/config_dump']).then((r) => r.stdout);
  await waitFor(async () => { const d = await dump(); return d.includes('outbound|80|v2|api.shop.svc.cluster.local') && /"weight": ?10\b/.test(d); }, 30_000, 'the 90/10 route in the client proxy')
    .catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${agent.log.slice(-3000)}`); });
  const r = await client.exec('app', ['/usr/bin/node', '-e', loadScript], 180);
  assert.equal(r.exitCode, 0, r.stderr);
  const seen = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
  const v1 = seen['200 api-v1'] ?? 0;
  const v2 = seen['200 api-v2'] ?? 0;
  console.log(`# containerd canary 90/10 over ${N} requests: ${JSON.stringify(seen)} → v2 ${(100 * v2 / N).toFixed(1)} %`);
  assert.equal(v1 + v2, N, `every request answered by v1 or v2: ${JSON.stringify(seen)}`);
  assert.ok(Math.abs(v2 / N - 0.1) <= 0.05, `v2 got ${(100 * v2 / N).toFixed(1)} % (want 10 ± 5 %)`);
  // The access log of the client's proxy names the subset clusters it picked.
  const log = client.logs('weir-proxy');
  assert.match(log, /"upstream_cluster":"outbound\|80\|v2\|api\.shop\.svc\.cluster\.local"/);
});
