// The node debugging CLI against a real agent (TestApiServer, capture
// programmed in real network namespaces, a real `weir proxy` as UID 1337 in
// one of them), run as an operator runs it: `weir pods`, `pod-rules`,
// `describe`, `proxy-config`, `logs`, each through the admin socket, with
// the exit-code table. Proves that a pod with a bad annotation shows as not
// captured with the annotation named, that proxy-config shows the endpoints
// the proxy routes to and follows an EndpointSlice change, and describe for
// a captured and an uncaptured pod.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import type { AgentConfig } from '../../src/agent/config.js';
import { waitForLine } from './proxy-harness.js';
import { cliBundle, weirCli, weirSpawn } from '../support/cli.js';
import { waitFor } from '../e2e/runtime/pods.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const NODE = `wn-node-${randomUUID().slice(0, 6)}`;
const NS = 'wn-apps';
const BAD_ANNOTATION = 'traffic.sidecar.istio.io/excludeOutboundIPRanges';

function pod(name: string, opts: { proxy?: boolean; annotations?: Record<string, string>; labels?: Record<string, string> } = {}): KubeObject {
  const containers: Record<string, unknown>[] = [{ name: 'app' }];
  if (opts.proxy ?? true) containers.push({ name: 'weir-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } });
  return {
    kind: 'Pod',
    metadata: { name, namespace: NS, uid: randomUUID(), labels: opts.labels ?? {}, annotations: opts.annotations ?? {}, creationTimestamp: new Date(Date.now() - 600_000).toISOString() },
    spec: { nodeName: NODE, containers },
    status: { phase: 'Running' },
  };
}

const cli = (args: string[]) => weirCli(args);


function slice(name: string, ips: { ip: string; pod: string }[]): KubeObject {
  return {
    kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1',
    metadata: { name: `${name}-1`, namespace: NS, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: ips.map(({ ip, pod: p }) => ({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: p, namespace: NS } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

describe('node CLI against a real agent and proxy', { timeout: 300_000, skip: skipUnlessRoot() }, () => {
  let api: TestApiServer;
  let dir: string;
  let agent: Agent | undefined;
  let sock: string;
  const namespaces: Netns[] = [];
  let meshedNs: Netns;

  async function sandbox(obj: KubeObject, ip: string): Promise<{ ns: Netns; error?: string }> {
    api.put(obj);
    await waitFor(async () => agent!.pods.get(NS, obj.metadata.name!), 10_000, `${obj.metadata.name} in the informer`);
    const ns = Netns.create('wnp');
    namespaces.push(ns);
    try {
      await agent!.controller.add({ containerId: `wn-${randomUUID()}`, netns: ns.path, ifName: 'eth0', podNamespace: NS, podName: obj.metadata.name, podUid: obj.metadata.uid, ips: [ip], cniVersion: '1.0.0', network: 'wn' });
      return { ns };
    } catch (e) {
      return { ns, error: (e as Error).message };
    }
  }

  before(async () => {
    await cliBundle();
    api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
    dir = mkdtempSync(path.join(tmpdir(), 'wn-agent-'));
    api.put({ kind: 'Namespace', metadata: { name: NS } });
    api.put({ kind: 'Service', metadata: { name: 'echo', namespace: NS }, spec: { type: 'ClusterIP', clusterIP: '10.96.77.10', clusterIPs: ['10.96.77.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } });
    api.put(slice('echo', [{ ip: '10.77.0.11', pod: 'echo-a' }]));
    // A Service whose endpoint is the meshed pod itself: describe lists it under Services.
    api.put({ kind: 'Service', metadata: { name: 'meshed-svc', namespace: NS }, spec: { type: 'ClusterIP', clusterIP: '10.96.77.20', clusterIPs: ['10.96.77.20'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } });
    api.put(slice('meshed-svc', [{ ip: '10.77.0.5', pod: 'meshed' }]));
    const config: AgentConfig = {
      nodeName: NODE, kubeconfig: api.writeKubeconfig(dir), cniConfDir: path.join(dir, 'net.d'), cniBinDir: path.join(dir, 'bin'), cniPluginBinary: path.join(REPO, 'dist/weir-cni'),
      install: false, runDir: path.join(dir, 'run'), backend: 'nftables', ebpfFallback: 'nftables', bpfPinDir: '/sys/fs/bpf/weir', repairMode: 'repair', repairIntervalMs: 600_000,
      metricsAddr: '127.0.0.1:0', hostProc: '/proc', excludeNamespaces: ['kube-system'], keepChainOnShutdown: false,
      controlPlane: true, clusterDomain: 'cluster.local', logLevel: process.env.WN_LOG ?? 'silent',
    };
    agent = await startAgent(config);
    sock = agent.adminSocket;
    // The proxy runs as UID 1337 and must reach proxy.sock (the DaemonSet's run dir is 0755 too).
    chmodSync(dir, 0o755);
    chmodSync(config.runDir, 0o755);

    const meshed = await sandbox(pod('meshed'), '10.77.0.5');
    assert.equal(meshed.error, undefined);
    meshedNs = meshed.ns;
    const bad = await sandbox(pod('bad', { annotations: { [BAD_ANNOTATION]: '10.0.0.0/33' } }), '10.77.0.6');
    assert.match(bad.error ?? '', /excludeOutboundIPRanges/);
    assert.equal((await sandbox(pod('plain', { proxy: false }), '10.77.0.7')).error, undefined);

    const proxy = meshedNs.spawn('setpriv', ['--reuid', '1337', '--regid', '1337', '--clear-groups', process.execPath, '--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'proxy',
      '--control-plane-socket', path.join(config.runDir, 'proxy.sock'), '--pod-namespace', NS, '--pod-name', 'meshed', '--no-dns', '--no-access-log'], { cwd: REPO });
    await waitForLine(proxy, /weir proxy listening/, 30_000);
  });

  after(async () => {
    await agent?.close();
    for (const ns of namespaces) ns.destroy();
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('weir pods: the pod with a bad annotation is not captured, the annotation named; the programmed pod is', async () => {
    const json = await cli(['pods', '--socket', sock, '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as { name: string; captured: boolean; state: string; reason: string; field?: string; error?: string; backend?: string }[];
    const bad = rows.find((r) => r.name === 'bad')!;
    assert.equal(bad.captured, false);
    assert.equal(bad.state, 'invalid');
    assert.equal(bad.field, BAD_ANNOTATION);
    assert.match(bad.error!, /10\.0\.0\.0\/33/);
    const meshed = rows.find((r) => r.name === 'meshed')!;
    assert.equal(meshed.captured, true);
    assert.equal(meshed.backend, 'nftables');
    assert.equal(rows.find((r) => r.name === 'plain')!.reason, 'no-proxy');

    const tableOut = await cli(['pods', '--socket', sock]);
    assert.equal(tableOut.code, 0);
    assert.match(tableOut.stdout, new RegExp(`^${NS}/bad\\s+Running\\s+invalid\\s+invalid-annotation ${BAD_ANNOTATION.replace(/\./g, '\\.')}`, 'm'));
    assert.match(tableOut.stdout, new RegExp(`^${NS}/meshed\\s+Running\\s+yes\\s+captured\\s+nftables`, 'm'));
    assert.match(tableOut.stdout, new RegExp(`^${NS}/plain\\s+Running\\s+no\\s+no-proxy`, 'm'));
    const wide = await cli(['pods', '--socket', sock, '-o', 'wide']);
    assert.match(wide.stdout, /ERROR/);
    assert.match(wide.stdout, /10\.0\.0\.0\/33/);
    const yaml = await cli(['pods', '--socket', sock, '-o', 'yaml']);
    assert.match(yaml.stdout, new RegExp(`field: ${BAD_ANNOTATION.replace(/\./g, '\\.')}`));
  });

  test('weir pod-rules: the kernel listing for the captured pod; the invalid one says why there are none (exit 1)', async () => {
    const ok = await cli(['pod-rules', `${NS}/meshed`, '--socket', sock]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /state=captured/);
    assert.match(ok.stdout, /15001/);
    const bad = await cli(['pod-rules', `${NS}/bad`, '--socket', sock]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, new RegExp(`not captured \\(invalid: invalid-annotation ${BAD_ANNOTATION.replace(/\./g, '\\.')}\\)`));
  });

  test('weir proxy-config endpoints shows what the proxy routes to, and follows an EndpointSlice change', async () => {
    const eps = async () => {
      const r = await cli(['proxy-config', 'endpoints', `${NS}/meshed`, '--socket', sock, '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { address: string; port: number; cluster: string; routable: boolean }[];
    };
    const echoCluster = `outbound|80||echo.${NS}.svc.cluster.local`;
    await waitFor(async () => (await eps()).some((e) => e.address === '10.77.0.11' && e.port === 8080 && e.cluster === echoCluster && e.routable), 10_000, 'the proxy to hold echo\'s endpoint');
    api.put(slice('echo', [{ ip: '10.77.0.12', pod: 'echo-b' }, { ip: '10.77.0.13', pod: 'echo-c' }]));
    await waitFor(async () => {
      const mine = (await eps()).filter((e) => e.cluster === echoCluster).map((e) => e.address).sort();
      return mine.join(',') === '10.77.0.12,10.77.0.13';
    }, 10_000, 'the proxy to hold the new endpoints only');
    const human = await cli(['proxy-config', 'endpoints', `${NS}/meshed`, '--socket', sock, '--cluster', `${NS}/echo`]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^# registry version acknowledged: \d+/);
    assert.match(human.stdout, /^10\.77\.0\.12:8080\s+HEALTHY\s+yes\s+outbound\|80\|\|echo/m);
    assert.doesNotMatch(human.stdout, /10\.77\.0\.11/);
  });

  test('weir proxy-config listeners, routes, clusters, secrets, all, log', async () => {
    const listeners = await cli(['proxy-config', 'listeners', `${NS}/meshed`, '--socket', sock]);
    assert.equal(listeners.code, 0, listeners.stderr);
    assert.match(listeners.stdout, /^virtualOutbound\s+::\s+15001/m);
    assert.match(listeners.stdout, /^virtualInbound\s+::\s+15006/m);
    const routes = await cli(['proxy-config', 'routes', `${NS}/meshed`, '--socket', sock]);
    assert.match(routes.stdout, new RegExp(`^10\\.96\\.77\\.10:80\\s+${NS}/echo\\s+outbound\\|80\\|\\|echo`, 'm'));
    const clusters = await cli(['proxy-config', 'clusters', `${NS}/meshed`, '--socket', sock, '-o', 'yaml']);
    assert.match(clusters.stdout, /type: EDS/);
    const secrets = await cli(['proxy-config', 'secrets', `${NS}/meshed`, '--socket', sock]);
    assert.equal(secrets.code, 0);
    assert.match(secrets.stdout, /no mTLS yet/);
    const all = await cli(['proxy-config', 'all', `${NS}/meshed`, '--socket', sock, '-o', 'json']);
    const dump = JSON.parse(all.stdout) as { version: { acknowledged: number; connected: boolean }; agent: { identity: { name: string } } };
    assert.ok(dump.version.acknowledged >= 0 && dump.version.connected);
    assert.equal(dump.agent.identity.name, 'meshed', 'the agent identified the proxy from its netns');
    const set = await cli(['proxy-config', 'log', `${NS}/meshed`, '--socket', sock, '--level', 'debug']);
    assert.equal(set.code, 0, set.stderr);
    assert.match((await cli(['proxy-config', 'log', `${NS}/meshed`, '--socket', sock])).stdout, /level debug/);
    assert.equal((await cli(['proxy-config', 'log', `${NS}/meshed`, '--socket', sock, '--level', 'loud'])).code, 2);
  });

  test('weir proxy-config on a pod without a proxy: exit 4 (its proxy is unreachable), message names the netns', async () => {
    const r = await cli(['proxy-config', 'clusters', `${NS}/plain`, '--socket', sock]);
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /no proxy admin on 127\.0\.0\.1:15000 in \/run\/netns\//);
  });

  test('weir describe: captured pod (backend, proxy ready, version, services, honest Istio config), invalid and uncaptured pods', async () => {
    const r = await cli(['describe', `${NS}/meshed`, '--socket', sock]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^Captured:\s+yes, by nftables \(plan [0-9a-f]{12}\)/m);
    assert.match(r.stdout, /^Proxy:\s+ready .*identity wn-apps\/meshed/m);
    assert.match(r.stdout, /^Config:\s+registry version \d+ acknowledged by the proxy; agent is at \d+, sent \d+/m);
    assert.match(r.stdout, new RegExp(`^Services:\\s+${NS}/meshed-svc$`, 'm'));
    assert.match(r.stdout, /^VirtualServices:\s+not supported yet/m);
    // What the meshed pod's proxy enforces (no policy exists: PERMISSIVE, everything allowed), as it says in config_dump.
    assert.match(r.stdout, /^mTLS \(PeerAuthentication\):\s+PERMISSIVE \(default\)/m);
    assert.match(r.stdout, /^AuthorizationPolicies:\s+none apply: everything is allowed/m);
    const json = JSON.parse((await cli(['describe', `${NS}/meshed`, '--socket', sock, '-o', 'json'])).stdout) as { routesTo: { cluster: string; endpoints: number }[] };
    assert.deepEqual(json.routesTo.find((x) => x.cluster.includes('||echo.')), { cluster: `outbound|80||echo.${NS}.svc.cluster.local`, endpoints: 2 });

    const bad = await cli(['describe', `${NS}/bad`, '--socket', sock]);
    assert.equal(bad.code, 1, 'a pod that should be captured and is not exits 1');
    assert.match(bad.stdout, new RegExp(`^Captured:\\s+no — invalid: invalid-annotation \\(${BAD_ANNOTATION.replace(/\./g, '\\.')}\\)`, 'm'));
    assert.match(bad.stdout, /10\.0\.0\.0\/33/);
    assert.match(bad.stdout, /^Last errors: $/m);
    assert.match(bad.stdout, /failed: pod wn-apps\/bad: traffic\.sidecar/);
    assert.match(bad.stdout, /^Next:\n  fix the annotation/m);

    const plain = await cli(['describe', `${NS}/plain`, '--socket', sock]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^Captured:\s+no — not-captured: no-proxy/m);
    assert.match(plain.stdout, /^Proxy:\s+unreachable/m);
    assert.equal((await cli(['describe', `${NS}/nope`, '--socket', sock])).code, 1);
    assert.equal((await cli(['describe', 'Bad/Pod/x', '--socket', sock])).code, 2);
    assert.equal((await cli(['describe', `${NS}/meshed`, '--socket', path.join(dir, 'nope.sock')])).code, 4);
  });

  test('weir logs --tail N, -n refused with the flag to use, -f follows new lines', async () => {
    const r = await cli(['logs', '--socket', sock, '--tail', '3', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, 3);
    const n = await cli(['logs', '--socket', sock, '-n', '3']);
    assert.equal(n.code, 2);
    assert.match(n.stderr, /use --tail 3/);
    assert.equal((await cli(['logs', '--socket', sock, '--tail', 'x'])).code, 2);

    const follow = await weirSpawn(['logs', '--socket', sock, '--tail', '0', '-f', '-o', 'json', '--interval', '100']);
    try {
      let out = '';
      follow.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      // Lines written after the follower started must appear (its start-up time varies with load: keep writing).
      const marker = `follow-marker-${randomUUID()}`;
      let n = 0;
      await waitFor(async () => {
        agent!.logger.info({ marker, n: n++ }, 'a line for weir logs -f');
        return out.includes(marker);
      }, 60_000, 'the followed line');
      const line = out.split('\n').find((l) => l.includes(marker))!;
      assert.equal((JSON.parse(line) as { marker: string }).marker, marker);
    } finally {
      follow.kill('SIGTERM');
    }
  });
});
