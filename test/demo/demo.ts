// `npm run demo`: sets up this machine as a one-node "cluster" (a private
// containerd with the CRI plugin, or plain network namespaces where
// containerd cannot run), starts a server pod and a client pod, each with a
// weir-proxy sidecar, captures their traffic with weir's rules, sends a
// request, and shows what happened. Everything it creates is removed at the
// end, also on failure or Ctrl-C.
//
// Each step says which weir component did the work; both modes run the real
// agent, CNI chain and proxies, so nothing is skipped or imitated.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { Containerd } from '../support/containerd.js';
import { CriClient, runPod, type RunningPod, type PodSpec } from '../support/cri.js';
import { AgentProcess, WEIR_CNI, weirCli } from '../e2e/runtime/agent-process.js';
import { APP_IMAGE, buildImage, pauseImageSpec, appImageSpec } from '../support/images.js';
import { writeBridgeConflist } from '../e2e/runtime/fixture.js';
import { proxySidecar, echoApp, waitFor, accessEntries } from '../e2e/runtime/pods.js';
import { CniRuntime } from '../support/cni-runtime.js';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const BUNDLE = path.join(REPO, 'dist', 'weir.mjs');
const APP_PORT = 8080;
const NS = 'demo';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
function step(title: string): void { console.log(`\n${bold(`== ${title}`)}`); }
function say(text: string): void { console.log(`   ${text}`); }
function show(text: string): void { for (const l of text.trimEnd().split('\n')) console.log(`   ${dim('|')} ${l}`); }

/** Paths and links the demo created; checked to be gone after cleanup. */
const created: { paths: string[]; links: string[] } = { paths: [], links: [] };

/** One demo pod, however it was made. */
interface DemoPod {
  name: string;
  ip: string;
  netnsPath: string;
  /** Run a command in the pod's app container (or netns). */
  run(cmd: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  proxyLog(): string;
}

interface DemoNode {
  kind: 'containerd' | 'netns';
  /** Which weir path programmed capture while the pods were created. */
  capturedBy: string;
  /** `weir ARGS --socket <the agent's admin socket>` output (the node agent runs in both modes). */
  cli: (args: string[]) => string;
  /** Where the client connects: the Service VIP the agent serves to the proxies. */
  target: { host: string; port: number; what: string };
  server: DemoPod;
  client: DemoPod;
  cleanup(): Promise<void>;
}

// ---------------------------------------------------------------- containerd
async function containerdNode(cleanups: (() => Promise<void>)[]): Promise<DemoNode> {
  step('Node: a private containerd (CRI plugin, runc, Debian CNI bridge + host-local)');
  const ctrd = await Containerd.start({ prefix: 'we-demo' });
  cleanups.push(() => ctrd.stop());
  created.paths.push(ctrd.dir);
  say(`containerd ${dim(ctrd.dir)}`);
  say('building the pause and app images locally (no registry needed) and importing them ...');
  ctrd.importImage(buildImage(pauseImageSpec()));
  ctrd.importImage(buildImage(appImageSpec()));
  const net = writeBridgeConflist(ctrd.cniConfDir, ctrd.dir);
  cleanups.push(async () => { try { execFileSync('ip', ['link', 'del', net.bridge], { stdio: 'ignore' }); } catch { /* gone */ } });
  created.links.push(net.bridge);
  say(`pod network ${net.subnet} on bridge ${net.bridge}`);
  const cri = new CriClient(ctrd.socket, ctrd.dir);
  cleanups.push(async () => {
    for (const sb of await cri.listPodSandbox().catch(() => [])) {
      await cri.stopPodSandbox(sb.id).catch(() => {});
      await cri.removePodSandbox(sb.id).catch(() => {});
    }
    cri.close();
  });
  const v = await cri.version();
  say(`CRI answers: ${v.runtime_name} ${v.runtime_version} (CRI ${v.runtime_api_version})`);

  step('weir on the node: `weir agent`, its installer chaining weir-cni behind bridge + host-local');
  if (!fs.existsSync(WEIR_CNI)) throw new Error(`missing ${WEIR_CNI}: run npm run build`);
  // The agent reads Pods from a Kubernetes API: here a local test API server
  // that holds the two Pod objects, as the scheduler would have written them.
  const agent = await AgentProcess.create(ctrd, cri);
  cleanups.push(() => agent.stop());
  created.paths.push(agent.dir);
  const runDir = agent.runDir;
  const specs: PodSpec[] = [
    { name: 'we-server', namespace: NS, uid: randomUUID(), containers: [echoApp(APP_PORT, 'we-server'), proxySidecar(NS, 'we-server')] },
    { name: 'we-client', namespace: NS, uid: randomUUID(), containers: [{ name: 'app', image: APP_IMAGE, command: ['/bin/sleep', '3600'] }, proxySidecar(NS, 'we-client')] },
  ];
  for (const s of specs) agent.declare({ ...s, uid: s.uid! });
  await agent.start();
  // Known agent issue: its CNI server leaves the run dir 0700, which keeps
  // the proxies (UID 1337) from its control-plane socket there; open it.
  fs.chmodSync(runDir, 0o755);
  say(`weir agent running (run dir ${dim(runDir)}, metrics http://${agent.metricsAddr})`);
  const conflist = fs.readdirSync(ctrd.cniConfDir).map((f) => fs.readFileSync(path.join(ctrd.cniConfDir, f), 'utf8')).find((t) => t.includes('"weir-cni"'))!;
  say('the CNI chain containerd now runs for each pod (written by weir\'s installer):');
  show(JSON.stringify((JSON.parse(conflist) as { plugins: { type: string; ipam?: { type: string } }[] }).plugins.map((p) => (p.ipam ? `${p.type} (ipam ${p.ipam.type})` : p.type))));

  step('Pods: created through CRI, exactly as the kubelet would (CNI ADD runs bridge, host-local, weir-cni)');
  const mk = async (spec: PodSpec): Promise<DemoPod> => {
    const name = spec.name;
    const pod: RunningPod = await runPod(cri, spec, (p) => { ctrd.trackNetns(p); created.paths.push(p); });
    say(`${name}: sandbox ${pod.sandboxId.slice(0, 12)}, IP ${pod.ip}, netns ${pod.netnsPath}`);
    return { name, ip: pod.ip, netnsPath: pod.netnsPath, run: (cmd) => pod.exec('app', cmd), proxyLog: () => pod.logs('weir-proxy') };
  };
  const server = await mk(specs[0]);
  const client = await mk(specs[1]);

  const vip = await publishService(agent, server, client);
  return {
    target: { host: vip, port: 80, what: `Service echo (${vip}:80)` },
    kind: 'containerd', server, client,
    capturedBy: 'weir-cni -> weir agent -> buildPlan + nftables backend, during CNI ADD (before the containers started)',
    cli: (args) => weirCli([...args, '--socket', path.join(runDir, 'admin.sock')]),
    cleanup: async () => {},
  };
}

// ---------------------------------------------------------------- netns fallback
// The same story without a container runtime: the pods are network
// namespaces, and this process plays the runtime's part — it runs the CNI
// chain (bridge, host-local, then the weir-cni weir's installer chained) for
// each sandbox exactly as containerd would. Capture, the Service VIP, DNS
// and `weir pods` all come from the real `weir agent`.
async function netnsNode(cleanups: (() => Promise<void>)[]): Promise<DemoNode> {
  step('Node: plain network namespaces; this process runs the CNI chain for each sandbox, as a runtime would');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'we-demo-netns-'));
  created.paths.push(dir);
  const dirs = { cniConfDir: path.join(dir, 'net.d'), cniBinDir: path.join(dir, 'bin') };
  fs.mkdirSync(dirs.cniBinDir, { recursive: true });
  const net = writeBridgeConflist(dirs.cniConfDir, dir);
  created.links.push(net.bridge);
  const procs: ChildProcess[] = [];
  cleanups.push(async () => {
    // Each was started as its own process group: kill the group, so the
    // app's `nc` children go with their shell loop.
    for (const p of procs) { try { if (p.pid) process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }
    try { execFileSync('ip', ['link', 'del', net.bridge], { stdio: 'ignore' }); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  say(`pod network ${net.subnet} on bridge ${net.bridge} (Debian's bridge + host-local plugins)`);

  step('weir on the node: `weir agent`, its installer chaining weir-cni behind bridge + host-local');
  if (!fs.existsSync(WEIR_CNI)) throw new Error(`missing ${WEIR_CNI}: run npm run build`);
  const agent = await AgentProcess.create(dirs);
  cleanups.push(() => agent.stop());
  created.paths.push(agent.dir);
  const runDir = agent.runDir;
  const specs = ['we-server', 'we-client'].map((name) => ({ name, namespace: NS, uid: randomUUID(), containers: [{ name: 'app', image: APP_IMAGE, command: ['/bin/sleep', '3600'] }, proxySidecar(NS, name)] }));
  for (const sp of specs) agent.declare(sp);
  await agent.start();
  // The proxies (UID 1337) reach proxy.sock in the run dir, as through the DaemonSet's hostPath: open the path to it.
  fs.chmodSync(agent.dir, 0o711);
  fs.chmodSync(runDir, 0o755);
  say(`weir agent running (run dir ${dim(runDir)}, metrics http://${agent.metricsAddr})`);
  const conflist = JSON.parse(fs.readFileSync(net.conflistPath, 'utf8')) as { plugins: { type: string; ipam?: { type: string } }[] };
  say('the CNI chain run for each pod (written by weir\'s installer):');
  show(JSON.stringify(conflist.plugins.map((p) => (p.ipam ? `${p.type} (ipam ${p.ipam.type})` : p.type))));
  const runtime = new CniRuntime({ conflist: net.conflistPath, binDirs: [dirs.cniBinDir, '/usr/lib/cni'] });

  step('Pods: a netns each, CNI ADD through the chain (bridge, host-local, weir-cni)');
  const logDir = path.join(dir, 'logs');
  fs.mkdirSync(logDir);
  const mk = async (spec: (typeof specs)[number]): Promise<DemoPod> => {
    const ns = `we-${spec.name.slice(3, 4)}${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', ns]);
    created.paths.push(`/run/netns/${ns}`);
    const sandbox = { containerId: `we-demo-${randomUUID()}`, netns: `/run/netns/${ns}`, args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: spec.name, K8S_POD_UID: spec.uid } };
    cleanups.push(async () => {
      await runtime.del(sandbox).catch(() => undefined);
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
    });
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const out = await runtime.add(sandbox);
    if (!out.ok) throw new Error(`CNI ADD ${spec.name} failed in ${out.failedPlugin}: ${out.error.msg}`);
    const ip = String((out.result!.ips as { address: string }[])[0].address).split('/')[0];
    say(`${spec.name}: netns ${ns}, IP ${ip}`);
    const logFile = path.join(logDir, `${spec.name}-proxy.log`);
    const log = fs.openSync(logFile, 'a');
    // The sidecar: UID/GID 1337 (which weir's rules exempt); it reaches the agent at @weir/proxy in its own netns (no mount).
    procs.push(spawn('ip', ['netns', 'exec', ns, 'setpriv', '--reuid=1337', '--regid=1337', '--clear-groups',
      process.execPath, BUNDLE, 'proxy', '--ready-without-agent', '1s', '--access-log', 'json',
      '--pod-namespace', NS, '--pod-name', spec.name], { stdio: ['ignore', log, log], detached: true }));
    fs.closeSync(log);
    return {
      name: spec.name, ip, netnsPath: `/run/netns/${ns}`,
      run: async (cmd) => {
        try {
          return { stdout: execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 }), stderr: '', exitCode: 0 };
        } catch (err) {
          const e = err as { stdout?: string; stderr?: string; status?: number };
          return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', exitCode: e.status ?? 1 };
        }
      },
      proxyLog: () => { try { return fs.readFileSync(logFile, 'utf8'); } catch { return ''; } },
    };
  };
  const server = await mk(specs[0]);
  const client = await mk(specs[1]);
  procs.push(spawn('ip', ['netns', 'exec', server.netnsPath.split('/').pop()!, 'busybox', 'sh', '-c',
    `while :; do echo "hello from we-server" | busybox nc -l -p ${APP_PORT}; done`], { stdio: 'ignore', detached: true }));

  const vip = await publishService(agent, server, client);
  return {
    kind: 'netns', server, client, target: { host: vip, port: 80, what: `Service echo (${vip}:80)` },
    capturedBy: 'weir-cni -> weir agent -> buildPlan + nftables backend, during CNI ADD (before the app started)',
    cli: (args) => weirCli([...args, '--socket', path.join(runDir, 'admin.sock')]),
    cleanup: async () => {},
  };
}

/** A Service for the server pod (what kube-proxy would also see); resolves once the client's proxy holds it. */
async function publishService(agent: AgentProcess, server: DemoPod, client: DemoPod): Promise<string> {
  step('A Service for the server pod (what kube-proxy would also see)');
  const vip = `10.96.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
  agent.putObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: NS },
    spec: { type: 'ClusterIP', clusterIP: vip, clusterIPs: [vip], ports: [{ name: 'tcp-echo', port: 80, protocol: 'TCP', targetPort: APP_PORT }] } });
  agent.putObject({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'echo-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'echo' } },
    endpoints: [{ addresses: [server.ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: server.name, namespace: NS } }],
    ports: [{ name: 'tcp-echo', port: APP_PORT, protocol: 'TCP' }] });
  say(`Service ${NS}/echo: ClusterIP ${vip}:80 -> ${server.ip}:${APP_PORT}. Nothing on this node routes ${vip}: only weir's proxies know it (the agent pushes the registry to them).`);
  await waitFor(async () => (await client.run(['busybox', 'wget', '-q', '-O-', 'http://127.0.0.1:15000/config_dump'])).stdout.includes(vip), 15_000, 'the client proxy to learn the service')
    .catch((e: Error) => { throw new Error(`${e.message}\nclient proxy log:\n${client.proxyLog().slice(-3000)}`); });
  return vip;
}

// ---------------------------------------------------------------- the story
async function story(node: DemoNode): Promise<void> {
  step('Proxies: weir proxy in each pod (UID 1337)');
  for (const p of [node.server, node.client]) {
    await waitFor(async () => (await p.run(['busybox', 'wget', '-q', '-O-', 'http://127.0.0.1:15021/healthz/ready'])).exitCode === 0, 30_000,
      `${p.name}'s proxy readiness on ${p.ip}:15021`).catch((err: Error) => {
      throw new Error(`${err.message}\nproxy log:\n${p.proxyLog()}`);
    });
    say(`${p.name}: :15021/healthz/ready -> 200`);
  }

  step('Capture: weir\'s redirect rules in each pod netns');
  say(`programmed by ${node.capturedBy}`);
  show(execFileSync('nsenter', [`--net=${node.client.netnsPath}`, 'nft', 'list', 'table', 'inet', 'weir_nat'], { encoding: 'utf8' }).split('\n').slice(0, 30).join('\n'));

  step(`Traffic: the client app connects to ${node.target.what}`);
  const logMarkC = node.client.proxyLog().length;
  const logMarkS = node.server.proxyLog().length;
  const reply = await node.client.run(['busybox', 'nc', '-w', '5', node.target.host, String(node.target.port)]);
  say(`the app got: ${JSON.stringify(reply.stdout.trim())}${reply.exitCode ? ` (exit ${reply.exitCode} ${reply.stderr.trim()})` : ''}`);
  await new Promise((r) => setTimeout(r, 500));

  step('The captured connection, as the kernel tracked it in the client pod (conntrack)');
  try {
    const ct = execFileSync('nsenter', [`--net=${node.client.netnsPath}`, 'conntrack', '-L', '-p', 'tcp', '--orig-dst', node.target.host],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    say(`the app dialled ${node.target.host}:${node.target.port}; the reply side shows who really answered (the proxy on 127.0.0.1:15001):`);
    // The proxy's own upstream connection (UID 1337, not captured) shows up
    // too when it goes to the same address; keep the app's, redirected one.
    const captured = ct.split('\n').filter((l) => / sport=15001 /.test(l));
    show(captured.join('\n') || ct.trim() || '(no entry)');
  } catch (err) {
    say(`conntrack could not list the entry: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }

  step('What the proxies saw (access log lines)');
  const out = accessEntries(node.client.proxyLog().slice(logMarkC), 'outbound');
  const inn = accessEntries(node.server.proxyLog().slice(logMarkS), 'inbound');
  say(`client proxy (outbound, captured on 15001): ${out.length ? '' : 'no line: the connection was not captured'}`);
  if (out.length) show(out.map(summarizeAccess).join('\n'));
  say(`server proxy (inbound, captured on 15006): ${inn.length ? '' : 'no line: the connection was not captured'}`);
  if (inn.length) show(inn.map(summarizeAccess).join('\n'));

  step('Proxy metrics (Istio names) on :15090/stats/prometheus');
  for (const p of [node.client, node.server]) {
    const m = await p.run(['busybox', 'wget', '-q', '-O-', 'http://127.0.0.1:15090/stats/prometheus']);
    const lines = m.stdout.split('\n').filter((l) => /^istio_tcp_connections_opened_total\{/.test(l));
    say(`${p.name}:`);
    show(lines.length ? lines.join('\n') : '(no istio_tcp_connections_opened_total samples)');
  }

  step('DNS: the app asks a resolver on port 53; capture hands the query to its proxy (15053), which answers from the registry');
  const resolver = '10.96.0.10';
  const dns = await node.client.run(['busybox', 'nslookup', `echo.${NS}.svc.cluster.local`, resolver]);
  say(`busybox nslookup echo.${NS}.svc.cluster.local ${resolver} (nothing listens on ${resolver}: the answer comes from the client's proxy)`);
  show(dns.stdout + dns.stderr);
  if (dns.exitCode !== 0 || !dns.stdout.includes(node.target.host)) throw new Error(`DNS through the captured port did not answer ${node.target.host}`);

  step('weir check, then weir pods (the node agent\'s view: what is programmed and verified)');
  for (const p of [node.server, node.client]) show(node.cli(['check', `${NS}/${p.name}`]));
  show(node.cli(['pods']));
}

/** The access log entry's key fields (Istio's JSON access log), then the entry itself. */
function summarizeAccess(r: Record<string, unknown>): string {
  const direction = String(r.upstream_cluster).startsWith('inbound|') ? 'inbound' : 'outbound';
  return `${direction}: ${r.downstream_remote_address} -> original dst ${r.downstream_local_address} -> upstream ${r.upstream_host} (cluster ${r.upstream_cluster}, ${r.bytes_received} bytes in, ${r.bytes_sent} bytes back, ${r.duration} ms)\n${dim(JSON.stringify(r))}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo needs root (it runs containerd and creates network namespaces)');
  if (!fs.existsSync(BUNDLE)) throw new Error(`missing ${BUNDLE}: run npm run build`);
  const forceNetns = process.argv.includes('--netns');
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    while (cleanups.length) await cleanups.pop()!().catch((e: unknown) => console.error(`cleanup: ${String(e)}`));
  };
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log('\ninterrupted: cleaning up');
    void cleanup().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let node: DemoNode;
    if (forceNetns) {
      node = await netnsNode(cleanups);
    } else {
      try {
        node = await containerdNode(cleanups);
      } catch (err) {
        console.log(`\ncontainerd could not run pods here: ${(err as Error).message.split('\n')[0]}`);
        console.log('falling back to plain network namespaces (same weir rules and proxy, no container runtime)');
        await cleanup();
        node = await netnsNode(cleanups);
      }
    }
    await story(node);
    step('Cleaning up');
  } finally {
    await cleanup();
  }
  const left = [...created.paths.filter((p) => fs.existsSync(p)),
    ...created.links.filter((l) => { try { execFileSync('ip', ['link', 'show', l], { stdio: 'ignore' }); return true; } catch { return false; } })];
  if (left.length) throw new Error(`cleanup left these behind: ${left.join(', ')}`);
  say(`checked: the ${created.paths.length + created.links.length} netns, dirs and bridges the demo created are gone.`);
}

main().catch((err: unknown) => {
  console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
