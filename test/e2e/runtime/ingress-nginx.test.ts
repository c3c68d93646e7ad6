// The seeds' ingress case on a real container runtime: containerd's CRI
// creates the pods, weir-cni (chained by the agent's installer) captures
// them, `weir agent` serves the registry. An "ingress controller" pod runs
// Debian's nginx (its own image) with a weir proxy sidecar; nginx is
// configured the way ingress-nginx renders an Ingress with
//   nginx.ingress.kubernetes.io/service-upstream: "true"
//   nginx.ingress.kubernetes.io/upstream-vhost: "myservice.myns.svc"
// (proxy_pass to the Service's ClusterIP, keep-alive upstream, Host
// rewritten). The sidecar routes by Host to myservice's three pods, load
// balancing per request over nginx's kept-alive connection; without the
// override (Host: example.com) the request passes through to the ClusterIP
// as dialled, where a kube-proxy stand-in answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { skipUnlessRoot } from '../../support/netns.js';
import { runPod, type RunningPod, type PodSpec } from '../../support/cri.js';
import { APP_IMAGE, NGINX_IMAGE, buildImage, nginxImageSpec } from '../../support/images.js';
import { startRuntimeNode, type RuntimeNode } from './fixture.js';
import { proxySidecar, waitFor, accessEntries, httpGet } from './pods.js';
import { AgentProcess, WEIR_CNI } from './agent-process.js';

const skip = skipUnlessRoot()
  || (fs.existsSync(WEIR_CNI) ? false : 'needs dist/weir-cni (npm run build)')
  || (fs.existsSync('/usr/sbin/nginx') ? false : 'needs Debian nginx');

const VIP = `10.96.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
let node: RuntimeNode;
let agent: AgentProcess;
let confDir: string;
let ingress: RunningPod;
let standin: RunningPod;
const backends: RunningPod[] = [];
let hostRoute = false;

const whoApp = (name: string, port: number): string[] => ['/usr/bin/node', '-e',
  `require('node:http').createServer((q, s) => s.end(JSON.stringify({ pod: '${name}', host: q.headers.host, url: q.url }) + '\\n')).listen(${port}, '0.0.0.0')`];

function nginxConf(): string {
  return `
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  upstream myns-myservice-80 { server ${VIP}:80; keepalive 32; }
  server {
    listen 8081;
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host myservice.myns.svc; proxy_pass http://myns-myservice-80; }
  }
  server {
    listen 8082;
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_pass http://myns-myservice-80; }
  }
}
`;
}

/** A request with its own Host header, on a connection of its own (nginx is the one keeping connections here). */
const get = (url: string, host: string) => httpGet(url, 5000, { host });

before(async () => {
  if (skip) return;
  node = await startRuntimeNode({ withApp: true });
  node.containerd.importImage(buildImage(nginxImageSpec()));
  agent = await AgentProcess.create(node.containerd, node.cri);
  confDir = fs.mkdtempSync(path.join(os.tmpdir(), 'we-nginx-'));
  fs.writeFileSync(path.join(confDir, 'nginx.conf'), nginxConf());
  const specs: PodSpec[] = [1, 2, 3].map((i) => ({ name: `myservice-${i}`, namespace: 'myns', containers: [{ name: 'app', image: APP_IMAGE, command: whoApp(`myservice-${i}`, 8080) }, proxySidecar('myns', `myservice-${i}`)] }));
  const ingressSpec: PodSpec = {
    name: 'ingress-nginx-controller', namespace: 'ingress-nginx',
    containers: [
      // nginx as root: its upstream connections are the app's, captured (only UID 1337 is exempt).
      { name: 'controller', image: NGINX_IMAGE, command: ['/usr/sbin/nginx', '-e', 'stderr', '-c', '/etc/nginx/nginx.conf', '-g', 'daemon off;'], mounts: [{ host_path: confDir, container_path: '/etc/nginx', readonly: true }] },
      proxySidecar('ingress-nginx', 'ingress-nginx-controller'),
    ],
  };
  // No proxy container: not captured. Plays kube-proxy's part for the ClusterIP.
  const standinSpec: PodSpec = { name: 'clusterip-standin', namespace: 'kube-system', containers: [{ name: 'app', image: APP_IMAGE, command: whoApp('clusterip-as-dialled', 80) }] };
  for (const s of [...specs, ingressSpec, standinSpec]) agent.declare(s);
  await agent.start();
  const track = (p: string) => node.containerd.trackNetns(p);
  for (const s of specs) backends.push(await runPod(node.cri, s, track));
  standin = await runPod(node.cri, standinSpec, track);
  ingress = await runPod(node.cri, ingressSpec, track).catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${agent.log.slice(-3000)}`); });
  // The ClusterIP is answered by the stand-in: the address on its loopback, the host routes it there.
  execFileSync('nsenter', [`--net=${standin.netnsPath}`, 'ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
  execFileSync('ip', ['route', 'add', `${VIP}/32`, 'via', standin.ip]);
  hostRoute = true;
  agent.putObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'myservice', namespace: 'myns' },
    spec: { type: 'ClusterIP', clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } });
  agent.putObject({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'myservice-1', namespace: 'myns', labels: { 'kubernetes.io/service-name': 'myservice' } },
    endpoints: backends.map((b) => ({ addresses: [b.ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: b.spec.name, namespace: 'myns' } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
  for (const p of [...backends, ingress]) {
    await waitFor(async () => (await p.exec('weir-proxy', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15021/healthz/ready'])).exitCode === 0, 20_000, `${p.spec.name} proxy ready`);
  }
  await waitFor(async () => (await ingress.exec('weir-proxy', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15000/config_dump'])).stdout.includes(VIP), 10_000, 'ingress proxy knows myservice');
});

after(async () => {
  if (hostRoute) { try { execFileSync('ip', ['route', 'del', `${VIP}/32`]); } catch { /* gone */ } }
  await agent?.stop();
  await node?.stop();
  if (confDir) fs.rmSync(confDir, { recursive: true, force: true });
});

test('upstream-vhost: nginx → ClusterIP with Host myservice.myns.svc → the sidecar routes by Host, per request over the three pods', { skip }, async () => {
  const seen: string[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await get(`http://${ingress.ip}:8081/vhost-${i}`, 'shop.example.com').catch((e: Error) => { throw new Error(`${e.message}\ningress proxy:\n${ingress.logs('weir-proxy').slice(-3000)}\nnginx:\n${ingress.logs('controller').slice(-2000)}`); });
    assert.equal(r.status, 200, r.body);
    const b = JSON.parse(r.body) as { pod: string; host: string };
    assert.equal(b.host, 'myservice.myns.svc');
    seen.push(b.pod);
  }
  assert.deepEqual([...new Set(seen)].sort(), ['myservice-1', 'myservice-2', 'myservice-3'], seen.join(','));
  await waitFor(async () => accessEntries(ingress.logs('weir-proxy'), 'outbound').filter((e) => String(e.path).startsWith('/vhost-')).length === 30, 5000, '30 outbound access entries');
  const out = accessEntries(ingress.logs('weir-proxy'), 'outbound').filter((e) => String(e.path).startsWith('/vhost-'));
  for (const e of out) {
    assert.equal(e.upstream_cluster, 'outbound|80||myservice.myns.svc.cluster.local');
    assert.equal(e.authority, 'myservice.myns.svc');
    assert.equal(e.downstream_local_address, `${VIP}:80`, 'nginx dialled the ClusterIP');
  }
  const conns = new Set(out.map((e) => e.downstream_remote_address));
  console.log(`# containerd ingress: 30 requests over ${conns.size} nginx upstream connection(s): ${[...new Set(seen)].map((p) => `${p}×${seen.filter((s) => s === p).length}`).join(' ')}`);
  assert.ok(conns.size <= 5, `nginx kept its upstream connections (${conns.size})`);
});

test('without the override (Host: example.com): passthrough to the ClusterIP as dialled', { skip }, async () => {
  for (let i = 0; i < 5; i++) {
    const r = await get(`http://${ingress.ip}:8082/plain-${i}`, 'example.com');
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { pod: 'clusterip-as-dialled', host: 'example.com', url: `/plain-${i}` });
  }
  await waitFor(async () => accessEntries(ingress.logs('weir-proxy'), 'outbound').filter((e) => String(e.path).startsWith('/plain-')).length === 5, 5000, 'five outbound access entries');
  for (const e of accessEntries(ingress.logs('weir-proxy'), 'outbound').filter((x) => String(x.path).startsWith('/plain-'))) {
    assert.equal(e.upstream_cluster, 'PassthroughCluster');
    assert.equal(e.upstream_host, `${VIP}:80`);
  }
});
