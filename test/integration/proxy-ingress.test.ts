// The ingress case from the seeds, in network namespaces on the real
// kernel: an "ingress controller" pod running Debian's real nginx with a
// weir proxy. nginx is configured as ingress-nginx configures it for
//   nginx.ingress.kubernetes.io/service-upstream: "true"
//   nginx.ingress.kubernetes.io/upstream-vhost: "myservice.myns.svc"
// — proxy_pass to the Service's ClusterIP (an upstream with keep-alive
// connections, as ingress-nginx has) with the Host rewritten — so the
// sidecar routes by Host to myservice's pods, load balancing each request
// across the three pods although nginx reuses one or two connections.
// Without the vhost override the client's Host (example.com) goes on, no
// service has that name, and the request passes through to the ClusterIP
// as dialled (a kube-proxy stand-in answers there).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { skipUnlessRoot } from '../support/netns.js';
import { Cluster, service, slice, waitForLine, type Pod } from './proxy-harness.js';
import { accessLines, curl, REPO_DIR, waitFor } from './proxy-http-harness.js';

const skip = skipUnlessRoot();
const VIP = '10.96.58.10';
const EDGE_APP = path.join(REPO_DIR, 'test/fixtures/http/edge-app.cjs');

let c: Cluster;
let ingress: Pod;
let user: Pod;
let legacy: Pod;
let pods: Pod[];

/** ingress-nginx's rendering of the two Ingress variants, reduced to what matters here. */
function nginxConf(prefix: string): string {
  return `
daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  # service-upstream: "true" — the Service's ClusterIP, not the endpoints; keep-alive as ingress-nginx sets it.
  upstream myns-myservice-80 {
    server ${VIP}:80;
    keepalive 32;
  }
  # With upstream-vhost: "myservice.myns.svc"
  server {
    listen 8081;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host myservice.myns.svc;
      proxy_pass http://myns-myservice-80;
    }
  }
  # Without it: the client's own Host goes upstream.
  server {
    listen 8082;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_pass http://myns-myservice-80;
    }
  }
}
`;
}

before(async () => {
  if (skip) return;
  c = new Cluster();
  await c.startControlPlane();
  ingress = await c.addPod('ingress-nginx-controller-7d9c5b6f4-abcde', 'ingress-nginx');
  pods = [await c.addPod('myservice-1', 'myns'), await c.addPod('myservice-2', 'myns'), await c.addPod('myservice-3', 'myns')];
  user = await c.addPod('user', 'outside', { capture: false });
  // kube-proxy's part, played by hand: the ClusterIP answers at a pod outside the mesh (the router sends the VIP there).
  legacy = await c.addPod('kube-proxy-standin', 'outside', { capture: false });
  legacy.ns.ip('addr', 'add', `${VIP}/32`, 'dev', 'lo');
  c.router.ip('route', 'add', `${VIP}/32`, 'via', legacy.ip4);
  c.cp!.apply((b) => b.upsertService(service('myservice', 'myns', VIP, [{ name: 'http', port: 80 }])));
  c.cp!.apply((b) => b.upsertEndpointSlice(slice('myservice', 'myns', 'myservice-a', pods.map((pod) => ({ pod })), [{ name: 'http', port: 8080 }])));
  for (const p of pods) {
    p.app = p.ns.spawn(process.execPath, [EDGE_APP, p.name]);
  }
  legacy.app = legacy.ns.spawn(process.execPath, ['-e', "require('node:http').createServer((q, s) => s.end(JSON.stringify({ pod: 'clusterip-as-dialled', host: q.headers.host }) + '\\n')).listen(80, '0.0.0.0', () => console.log('app ready'))"]);
  await Promise.all([...pods, legacy].map((p) => waitForLine(p.app!, /app ready/, 10000)));
  const prefix = path.join(c.sockDir, 'nginx');
  for (const d of ['', 'body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(prefix, d), { recursive: true });
  writeFileSync(path.join(prefix, 'nginx.conf'), nginxConf(prefix));
  // Debian's nginx, as root in the ingress pod's netns: its upstream connections are captured like any app's.
  ingress.app = ingress.ns.spawn('/usr/sbin/nginx', ['-p', prefix, '-e', 'stderr', '-c', path.join(prefix, 'nginx.conf')]);
  ingress.app.stderr!.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) ingress.proxyLog.push(`nginx: ${l}`); });
  await Promise.all([c.startProxy(ingress, ['--access-log', 'text', '--no-dns']), ...pods.map((p) => c.startProxy(p, ['--no-dns']))]);
  await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 4, 10000, 'four proxies connected');
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
  await waitFor(async () => (await curl(user, ['-o', '/dev/null', '-w', '%{http_code}', `http://${ingress.ip4}:8081/warm`])).stdout === '200', 10000, 'nginx up');
});

after(async () => { await c?.destroy(); });

test('upstream-vhost: nginx → ClusterIP with Host myservice.myns.svc → the sidecar routes by Host, each request load balanced over the three pods', { skip, timeout: 60_000 }, async () => {
  const seen: string[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await curl(user, ['-H', 'Host: shop.example.com', `http://${ingress.ip4}:8081/vhost-${i}`]);
    assert.equal(r.code, 0, r.stderr + c.logs());
    seen.push((JSON.parse(r.stdout) as { pod: string }).pod);
  }
  assert.deepEqual([...new Set(seen)].sort(), ['myservice-1', 'myservice-2', 'myservice-3'], seen.join(','));
  // The ingress pod's proxy logs each request twice: inbound (user → nginx) and outbound (nginx → the service).
  const outbound = () => accessLines(ingress).filter((l) => /"GET \/vhost-\d+ HTTP\/1\.1" 200 /.test(l) && !l.includes(' inbound|'));
  await waitFor(() => outbound().length === 30, 3000, '30 outbound access lines');
  for (const l of outbound()) {
    assert.match(l, / "myservice\.myns\.svc" "10\.\d+\.\d+\.\d+:8080" outbound\|80\|\|myservice\.myns\.svc\.cluster\.local /, l);
  }
  // nginx kept its upstream connections alive: far fewer connections than requests, yet all three pods served.
  const nginxConns = new Set(outbound().map((x) => x.trim().split(' ').at(-3)));
  console.log(`# ingress: 30 requests over ${nginxConns.size} nginx upstream connection(s), pods ${[...new Set(seen)].map((p) => `${p}×${seen.filter((s) => s === p).length}`).join(' ')}`);
  assert.ok(nginxConns.size <= 5, `nginx reused its connections (${nginxConns.size})`);
});

test('without the override (Host: example.com): passthrough to the ClusterIP as dialled, still proxied as HTTP', { skip, timeout: 60_000 }, async () => {
  for (let i = 0; i < 5; i++) {
    const r = await curl(user, ['-H', 'Host: example.com', `http://${ingress.ip4}:8082/plain-${i}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { pod: 'clusterip-as-dialled', host: 'example.com' });
  }
  const outbound = () => accessLines(ingress).filter((l) => /"GET \/plain-\d HTTP\/1\.1" 200 /.test(l) && !l.includes(' inbound|'));
  await waitFor(() => outbound().length === 5, 3000, 'five outbound access lines');
  for (const l of outbound()) {
    assert.match(l, new RegExp(` "example\\.com" "${VIP.replace(/\./g, '\\.')}:80" PassthroughCluster `), l);
  }
  assert.ok(await c.metric(ingress, 'istio_requests_total', { reporter: 'source', destination_service_name: 'PassthroughCluster', response_code: '200' }) >= 5);
});
