// weir end to end on a real container runtime: containerd's CRI creates the
// pods, its CNI chain is Debian's bridge + host-local with weir-cni chained
// behind them by weir's installer, and `weir agent` programs each pod's
// netns during CNI ADD and serves the proxies' registry.
//
// The agent is `weir agent` itself, a child process against a TestApiServer
// holding the Pods, Services and EndpointSlices (test/e2e/runtime/agent-process.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { execFileSync } from 'node:child_process';
import { skipUnlessRoot } from '../../support/netns.js';
import { runPod, type RunningPod, type PodSpec } from '../../support/cri.js';
import { APP_IMAGE } from '../../support/images.js';
import { startRuntimeNode, ipamLeases, type RuntimeNode } from './fixture.js';
import { proxySidecar, echoApp, waitFor, accessEntries } from './pods.js';
import { AgentProcess, WEIR_CNI } from './agent-process.js';
import { socketInNetns } from '../../../src/native/addon.js';

const NS = 'we-e2e';
const APP_PORT = 8080;

const skip = skipUnlessRoot()
  || (fs.existsSync(WEIR_CNI) ? false : 'needs dist/weir-cni (npm run build)');

let node: RuntimeNode;
let agent: AgentProcess;


function readLine(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let data = '';
    sock.setTimeout(2000, () => sock.destroy(new Error('timeout')));
    sock.on('data', (d) => { data += d.toString(); });
    sock.on('end', () => resolve(data));
    sock.on('error', reject);
  });
}

/** Captured traffic is refused until the sidecar listens: wait for its readiness, as the kubelet would. */
function waitForProxy(p: RunningPod): Promise<boolean> {
  return waitFor(async () => (await p.exec('app', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15021/healthz/ready'])).exitCode === 0,
    20_000, `${p.spec.name} proxy ready`);
}

function agentLogLines(): Record<string, unknown>[] {
  return agent.log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** weir's nat table with handles: a re-created table or rule gets new handles. */
function nftHandles(netnsPath: string): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, 'nft', '-a', 'list', 'table', 'inet', 'weir_nat'], { encoding: 'utf8' });
}

/** The run dir (cni.sock, admin.sock, proxy.sock) as the agent leaves it: proxies (UID 1337) mount it and must reach proxy.sock. */
let runDirModeFromAgent = 0;
function recordRunDirMode(): void {
  runDirModeFromAgent = fs.statSync(agent.runDir).mode & 0o777;
}

function nftTables(netnsPath: string): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, 'nft', 'list', 'tables'], { encoding: 'utf8' });
}

/** Access log entries with the fields these tests read: the original destination (the listener's local address) and the peer. */
function accessLines(pod: RunningPod, direction: 'inbound' | 'outbound'): Record<string, unknown>[] {
  return accessEntries(pod.logs('weir-proxy'), direction).map((r) => ({ ...r, originalDst: r.downstream_local_address, downstream: r.downstream_remote_address, upstream: r.upstream_host }));
}

const serverSpec: PodSpec = { name: 'we-server', namespace: NS, containers: [] };
// Cluster DNS settings as the kubelet writes them; 10.96.0.10 answers nothing here.
const clientSpec: PodSpec = {
  name: 'we-client', namespace: NS, containers: [],
  dnsServers: ['10.96.0.10'], dnsSearches: [`${NS}.svc.cluster.local`, 'svc.cluster.local', 'cluster.local'],
};
const plainSpec: PodSpec = { name: 'we-plain', namespace: NS, containers: [echoApp(APP_PORT, 'we-plain')] };
const lateSpec: PodSpec = { name: 'we-late', namespace: NS, containers: [] };
let server: RunningPod;
let vip = '';
let client: RunningPod;

before(async () => {
  if (skip) return;
  node = await startRuntimeNode({ withApp: true });
  agent = await AgentProcess.create(node.containerd, node.cri);
  const runDir = agent.runDir;
  serverSpec.containers = [echoApp(APP_PORT, 'we-server'), proxySidecar(NS, 'we-server')];
  clientSpec.containers = [{ name: 'app', image: APP_IMAGE, command: ['/bin/sleep', '3600'] }, proxySidecar(NS, 'we-client')];
  lateSpec.containers = [{ name: 'app', image: APP_IMAGE, command: ['/bin/sleep', '3600'] }, proxySidecar(NS, 'we-late')];
  for (const s of [serverSpec, clientSpec, plainSpec]) agent.declare(s);
  await agent.start();
  recordRunDirMode();
});

after(async () => {
  await agent?.stop();
  await node?.stop();
});

test('captured pods: client → server pod IP goes through both proxies (access logs, metrics)', { skip }, async () => {
  const track = (p: string) => node.containerd.trackNetns(p);
  server = await runPod(node.cri, serverSpec, track).catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${agent.log}`); });
  client = await runPod(node.cri, clientSpec, track);
  for (const p of [server, client]) {
    // weir's tables were programmed during CNI ADD, before any container started.
    assert.match(nftTables(p.netnsPath), /table inet weir_nat/, `${p.spec.name} has no weir rules`);
    await waitForProxy(p);
  }
  const reply = await client.exec('app', ['/bin/nc', '-w', '5', server.ip, String(APP_PORT)]);
  assert.equal(reply.stdout.trim(), 'hello from we-server', reply.stderr);

  await waitFor(async () => accessLines(client, 'outbound').length > 0 && accessLines(server, 'inbound').length > 0, 5000, 'access log lines');
  const out = accessLines(client, 'outbound').at(-1)!;
  assert.equal(out.originalDst, `${server.ip}:${APP_PORT}`);
  const inn = accessLines(server, 'inbound').at(-1)!;
  assert.equal(inn.originalDst, `${server.ip}:${APP_PORT}`);
  assert.equal(inn.downstream, `${client.ip}:${String(inn.downstream).split(':')[1]}`);

  const metrics = (await client.exec('app', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15090/stats/prometheus'])).stdout;
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="source",source_workload="we-client"[^}]*\} [1-9]/);
  const smetrics = (await server.exec('app', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15090/stats/prometheus'])).stdout;
  assert.match(smetrics, /istio_tcp_connections_opened_total\{reporter="destination"[^}]*destination_workload="we-server"[^}]*\} [1-9]/);
});

test('client → service VIP reaches the server app through both proxies, routed by the agent\'s registry', { skip }, async () => {
  assert.ok(server && client, 'needs the pods of the first case');
  // A ClusterIP nothing routes: only the client proxy's registry knows it.
  vip = `10.96.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
  agent.putObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'we-echo', namespace: NS },
    spec: { type: 'ClusterIP', clusterIP: vip, clusterIPs: [vip], ports: [{ name: 'tcp-echo', port: 80, protocol: 'TCP', targetPort: APP_PORT }] } } as never);
  agent.putObject({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'we-echo-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'we-echo' } },
    endpoints: [{ addresses: [server.ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: 'we-server', namespace: NS } }],
    ports: [{ name: 'tcp-echo', port: APP_PORT, protocol: 'TCP' }] } as never);

  // The client proxy learns the service from the agent (config_dump on its loopback admin port).
  await waitFor(async () => (await client.exec('app', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15000/config_dump'])).stdout.includes(vip),
    10_000, `client proxy registry with ${vip}`).catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${agent.log}\nclient proxy:\n${client.logs('weir-proxy')}`); });
  const reply = await client.exec('app', ['/bin/nc', '-w', '5', vip, '80']);
  assert.equal(reply.stdout.trim(), 'hello from we-server', reply.stderr);

  await waitFor(async () => accessLines(client, 'outbound').some((l) => l.originalDst === `${vip}:80`), 5000, 'client access line for the VIP');
  const out = accessLines(client, 'outbound').filter((l) => l.originalDst === `${vip}:80`).at(-1)!;
  assert.equal(out.upstream, `${server.ip}:${APP_PORT}`, JSON.stringify(out));
  // The server proxy saw it arrive (inbound capture) from the client pod.
  assert.ok(accessLines(server, 'inbound').some((l) => String(l.downstream).startsWith(`${client.ip}:`) && l.originalDst === `${server.ip}:${APP_PORT}`));
  const metrics = (await client.exec('app', ['/bin/wget', '-q', '-O-', 'http://127.0.0.1:15090/stats/prometheus'])).stdout;
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="source"[^}]*destination_service="we-echo\.we-e2e\.svc\.cluster\.local"[^}]*\} [1-9]/);
});
test('DNS of the service name is answered by the client\'s proxy (captured port 53 → 15053)', { skip }, async () => {
  assert.ok(client && vip, 'needs the client pod and the service of the first cases');
  const resolv = (await client.exec('app', ['/bin/cat', '/etc/resolv.conf'])).stdout;
  assert.match(resolv, /nameserver 10\.96\.0\.10/);
  // The pod's resolv.conf points at a cluster DNS address nothing serves
  // here; the answer can only come from the proxy that capture sends it to.
  const res = await client.exec('app', ['/bin/nslookup', `we-echo.${NS}.svc.cluster.local`]);
  assert.equal(res.exitCode, 0, res.stdout + res.stderr);
  // busybox prints "Address: IP" (newer) or "Address 1: IP" (older).
  assert.match(res.stdout, new RegExp(`Address[^\\n]*\\b${vip.replace(/\./g, '\\.')}\\b`));
});

/** From inside the client pod (captured like the app's own traffic) to the service VIP: the greeting line. */
async function greetVip(): Promise<string> {
  const fd = await socketInNetns(client.netnsPath, { kind: 'tcp-connect', family: 4, address: vip, port: 80, timeoutMs: 2000 });
  const sock = new net.Socket({ fd, readable: true, writable: true });
  try {
    return await new Promise<string>((resolve, reject) => {
      let data = '';
      const timer = setTimeout(() => reject(new Error('no greeting within 2 s')), 2000);
      sock.on('data', (d: Buffer) => {
        data += d.toString();
        if (data.includes('\n')) { clearTimeout(timer); resolve(data.split('\n')[0]); }
      });
      sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
  } finally {
    sock.destroy();
  }
}

function echoSlice(ip: string, pod: string): never {
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'we-echo-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'we-echo' } },
    endpoints: [{ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: pod, namespace: NS } }],
    ports: [{ name: 'tcp-echo', port: APP_PORT, protocol: 'TCP' }] } as never;
}

test('endpoint moved in the API: client traffic follows within a second, through the agent\'s informer and the real CNI chain', { skip }, async () => {
  assert.ok(server && client && vip, 'needs the pods and service of the first cases');
  // (That open connections survive such a move is shown in test/integration/proxy-l4.test.ts:
  // the app here is busybox `nc -l`, one connection at a time.)
  const spec: PodSpec = { name: 'we-server2', namespace: NS, containers: [echoApp(APP_PORT, 'we-server2'), proxySidecar(NS, 'we-server2')] };
  agent.declare(spec);
  const server2 = await runPod(node.cri, spec, (p) => node.containerd.trackNetns(p));
  try {
    await waitForProxy(server2);
    // Ready as the API would say it (all containers): the app answers through the pod's inbound capture.
    await waitFor(async () => (await readLine(server2.ip, APP_PORT)).startsWith('hello from we-server2'), 10_000, 'we-server2 app ready');
    assert.equal(await greetVip(), 'hello from we-server');

    // API server → agent's ResilientInformer → registry → proxy.sock → client proxy.
    const t0 = performance.now();
    agent.putObject(echoSlice(server2.ip, 'we-server2'));
    let followedMs = -1;
    while (performance.now() - t0 < 1000) {
      // A reset is possible in the instant `nc -l` restarts between connections: try again.
      if ((await greetVip().catch(() => '')) === 'hello from we-server2') { followedMs = performance.now() - t0; break; }
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(followedMs >= 0, `traffic did not move to we-server2 within 1 s\nagent log:\n${agent.log.slice(-2000)}`);
    console.log(`# endpoint moved in the API → client traffic followed in ${followedMs.toFixed(0)} ms`);
  } finally {
    // Back as the later cases expect it.
    agent.putObject(echoSlice(server.ip, 'we-server'));
    await waitFor(async () => (await greetVip().catch(() => '')) === 'hello from we-server', 5000, 'service back on we-server');
    await server2.remove();
  }
});

test('agent restart while pods run: capture verified in place (not re-created), traffic keeps flowing', { skip }, async () => {
  assert.ok(server && client && vip, 'needs the pods and service of the first cases');
  const handlesBefore = [nftHandles(server.netnsPath), nftHandles(client.netnsPath)];
  await agent.kill('SIGTERM');
  // With the agent away, running pods are untouched and keep routing from their last registry.
  assert.equal((await client.exec('app', ['/bin/nc', '-w', '5', vip, '80'])).stdout.trim(), 'hello from we-server');

  await agent.start();
  recordRunDirMode();
  // The new agent looks at the pods it finds (startup repair pass) ...
  const pass = await waitFor(async () => agentLogLines().find((l) => l.msg === 'repair pass done' && Number(l.pods) >= 2),
    20_000, 'the restarted agent\'s repair pass over running pods')
    .catch((e: Error) => { throw new Error(`${e.message}\nagent log:\n${agent.log.slice(-3000)}`); });
  // Every pod it looked at verified OK: nothing needed repair.
  assert.equal(pass.ok, pass.pods, JSON.stringify(pass));
  // ... and leaves correct rules alone: same tables, chains and rule handles.
  assert.deepEqual([nftHandles(server.netnsPath), nftHandles(client.netnsPath)], handlesBefore);
  assert.doesNotMatch(agent.log, /"msg":"(capture programmed|repaired)"/);
  // The proxies reconnect and traffic through the VIP still flows.
  assert.equal((await client.exec('app', ['/bin/nc', '-w', '5', vip, '80'])).stdout.trim(), 'hello from we-server');
});

test('a pod without the proxy is untouched: no weir tables, reachable directly', { skip }, async () => {
  const plain = await runPod(node.cri, plainSpec, (p) => node.containerd.trackNetns(p));
  try {
    assert.doesNotMatch(nftTables(plain.netnsPath), /weir/);
    const ipt = execFileSync('nsenter', [`--net=${plain.netnsPath}`, 'iptables-save'], { encoding: 'utf8' });
    assert.doesNotMatch(ipt, /15001|15006|15053/);
    // Straight from the host over the bridge to the app: nothing in between.
    const reply = await waitFor(() => readLine(plain.ip, APP_PORT), 10_000, `${plain.ip}:${APP_PORT}`);
    assert.equal(reply.trim(), 'hello from we-plain');
  } finally {
    await plain.remove();
  }
});

test('stop + remove of a captured pod leaves no rules, lease, netns or agent record', { skip }, async () => {
  assert.ok(server && client, 'needs the pods of the first case');
  const leasesBefore = ipamLeases(node.net);
  assert.ok(leasesBefore.includes(client.ip));
  const runDir = agent.runDir;
  const sandboxesFile = () => { try { return fs.readFileSync(path.join(runDir, fs.readdirSync(runDir).find((f) => f.endsWith('.json')) ?? ''), 'utf8'); } catch { return ''; } };
  assert.ok(sandboxesFile().includes(client.sandboxId), `agent store lacks ${client.sandboxId}`);
  // Hold the netns open with a bind mount of our own, so its rules can be
  // read after containerd lets go of it: DEL (with netns, on stop) must have
  // removed weir's tables, not just left them to die with the netns.
  const hold = path.join(node.containerd.dir, `hold-${client.sandboxId.slice(0, 12)}`);
  fs.writeFileSync(hold, '');
  execFileSync('mount', ['--bind', client.netnsPath, hold]);
  try {
    await node.cri.stopPodSandbox(client.sandboxId);
    await node.cri.removePodSandbox(client.sandboxId);
    client.removed = true;
    assert.doesNotMatch(nftTables(hold), /weir/, 'weir tables left in the netns after DEL');
  } finally {
    execFileSync('umount', [hold]);
    fs.rmSync(hold, { force: true });
  }
  assert.equal(fs.existsSync(client.netnsPath), false, 'netns left behind');
  assert.equal(ipamLeases(node.net).includes(client.ip), false, 'IPAM lease left behind');
  assert.equal(sandboxesFile().includes(client.sandboxId), false, 'agent kept the sandbox record');
});

test('agent killed: a new pod fails closed; after the agent returns it starts captured', { skip }, async () => {
  agent.declare(lateSpec);
  await agent.kill('SIGKILL');
  const leases = ipamLeases(node.net).length;
  await assert.rejects(runPod(node.cri, lateSpec, (p) => node.containerd.trackNetns(p)), /weir-cni|agent/i);
  assert.equal(ipamLeases(node.net).length, leases, 'failed ADD left an IP lease');
  // Pods that were running keep working while the agent is away.
  assert.match(nftTables(server.netnsPath), /table inet weir_nat/);

  await agent.start();
  recordRunDirMode();
  const late = await runPod(node.cri, lateSpec, (p) => node.containerd.trackNetns(p));
  try {
    assert.match(nftTables(late.netnsPath), /table inet weir_nat/);
    await waitForProxy(late);
    const reply = await late.exec('app', ['/bin/nc', '-w', '5', server.ip, String(APP_PORT)]);
    assert.equal(reply.stdout.trim(), 'hello from we-server');
  } finally {
    await late.remove();
  }
});

test('proxies (UID 1337) reach the agent\'s control plane with the run dir as the agent leaves it', {
  skip,
}, () => {
  assert.equal(runDirModeFromAgent & 0o001, 0o001, `run dir mode ${runDirModeFromAgent.toString(8)}: UID 1337 cannot reach proxy.sock`);
});
