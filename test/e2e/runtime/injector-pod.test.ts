// Injected pods on a real container runtime. The pod spec comes from the
// webhook (a real AdmissionReview over HTTPS, its JSONPatch applied), is
// stored in the API server the agent watches, and runs through containerd's
// CRI with weir-cni chained by weir's installer. A kubelet stand-in
// (test/support/kubelet.ts) supplies what containerd does not know: native
// sidecar start order, postStart hooks, probes, Job completion. Checked:
// capture programmed by the CNI chain, the proxy up before the app (native
// sidecar, and postStart hold), the rewritten readiness probe answered by the
// proxy probing the app from 127.0.0.6, Job-like pods completing when their
// app exits (native: the kubelet stops the sidecar; regular container: the
// proxy sees the app gone through the shared PID namespace and exits), and
// POST /quitquitquit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import jsonpatch from 'fast-json-patch';
import { pino } from 'pino';
import { skipUnlessRoot } from '../../support/netns.js';
import { APP_IMAGE } from '../../support/images.js';
import { runKubePod, waitForCompletion, type KPod, type KubeletPod } from '../../support/kubelet.js';
import { startRuntimeNode, type RuntimeNode } from './fixture.js';
import { AgentProcess, NODE_NAME, WEIR_CNI } from './agent-process.js';
import { httpGet, waitFor } from './pods.js';
import { startInjector, type RunningInjector } from '../../../src/injector/run.js';
import { resolveInjectorConfig, resolveServerSettings } from '../../../src/injector/options.js';

const NS = 'we-inject';
const skip = skipUnlessRoot() || (fs.existsSync(WEIR_CNI) && fs.existsSync('dist/weir.mjs') ? false : 'needs dist/ (npm run build)');
const logger = pino({ level: 'silent' });

let node: RuntimeNode;
let agent: AgentProcess;
const injectors: Record<'native' | 'regular', RunningInjector | undefined> = { native: undefined, regular: undefined };

// The app: logs whether the proxy was ready when it started, serves /ready
// (503 until /tmp/ready exists) on 8080 and logs who probed it.
const WEB_APP = `
const http = require('http'), fs = require('fs');
http.get('http://127.0.0.1:15021/healthz/ready', (r) => { console.log('proxy-ready-at-app-start ' + r.statusCode); r.resume(); })
  .on('error', (e) => console.log('proxy-ready-at-app-start error ' + e.code));
http.createServer((q, s) => {
  console.log('request ' + q.url + ' from ' + q.socket.remoteAddress + ' ua=' + q.headers['user-agent'] + ' x-probe=' + q.headers['x-probe']);
  s.writeHead(q.url === '/ready' && !fs.existsSync('/tmp/ready') ? 503 : 200); s.end('app\\n');
}).listen(8080, '0.0.0.0');`;

before(async () => {
  if (skip) return;
  node = await startRuntimeNode({ withApp: true });
  agent = await AgentProcess.create(node.containerd, node.cri);
  agent.putObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'istio-injection': 'enabled' } } });
  await agent.start();
  for (const mode of ['native', 'regular'] as const) {
    const opts = { proxyImage: APP_IMAGE, proxyCommand: '/usr/bin/node /weir/dist/weir.mjs', proxyArgs: '--ready-without-agent 1s --drain-timeout 1s' };
    injectors[mode] = await startInjector({
      settings: resolveServerSettings({ host: '127.0.0.1', port: '0' }), nativeChoice: mode === 'native',
      configFor: (native) => resolveInjectorConfig(opts, {}, native), logger,
    });
  }
});

after(async () => {
  for (const i of Object.values(injectors)) await i?.close();
  await agent?.stop();
  await node?.stop();
});

/** What the API server does on CREATE: call the webhook over HTTPS, apply its JSONPatch, store the pod. */
async function admit(mode: 'native' | 'regular', pod: KPod): Promise<KPod> {
  const inj = injectors[mode]!;
  const review = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: randomUUID(), kind: { group: '', version: 'v1', kind: 'Pod' }, namespace: NS, operation: 'CREATE', object: pod } };
  const body = JSON.stringify(review);
  const answer = await new Promise<any>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: inj.server.port, path: '/inject', method: 'POST', servername: 'weir-injector.weir-system.svc', ca: inj.certs.caBundlePem, headers: { 'content-type': 'application/json' } }, (res) => {
      let t = ''; res.on('data', (d) => { t += d; }); res.on('end', () => resolve(JSON.parse(t)));
    });
    req.on('error', reject);
    req.end(body);
  });
  assert.equal(answer.response.allowed, true);
  assert.equal(answer.response.patchType, 'JSONPatch', 'the webhook injected the pod');
  const ops = JSON.parse(Buffer.from(answer.response.patch, 'base64').toString('utf8'));
  const injected = jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as KPod;
  injected.metadata.uid = randomUUID();
  agent.putObject({ apiVersion: 'v1', kind: 'Pod', ...injected, spec: { ...injected.spec, nodeName: NODE_NAME }, status: { phase: 'Pending' } });
  return injected;
}

async function run(pod: KPod): Promise<KubeletPod> {
  return runKubePod(node.cri, pod, { logRoot: node.containerd.dir, onNetns: (p) => node.containerd.trackNetns(p) })
    .catch((e: Error) => { throw new Error(`${e.message}\nagent log tail:\n${agent.log.slice(-2000)}`); });
}

function capturedByCni(kp: KubeletPod): void {
  const tables = execFileSync('nsenter', [`--net=${kp.netnsPath}`, 'nft', 'list', 'tables'], { encoding: 'utf8' });
  assert.match(tables, /table inet weir_nat/, 'the CNI chain programmed capture during ADD (no init container did)');
}

test('native sidecar: proxy first, capture from the CNI chain, the rewritten readiness probe answered through the proxy', { skip }, async () => {
  const pod = await admit('native', {
    metadata: { name: 'we-web', namespace: NS, labels: { app: 'web' } },
    spec: {
      containers: [{
        name: 'app', image: APP_IMAGE, command: ['/usr/bin/node', '-e', WEB_APP],
        readinessProbe: { httpGet: { path: '/ready', port: 8080, httpHeaders: [{ name: 'X-Probe', value: 'carried' }] } as never, periodSeconds: 1 },
        livenessProbe: { tcpSocket: { port: 8080 } } as never,
      } as never],
    },
  });
  // What the webhook wrote: a native sidecar, the probes pointed at 15020, no init container for iptables.
  assert.deepEqual(pod.spec.initContainers!.map((c) => [c.name, c.restartPolicy]), [['weir-proxy', 'Always']]);
  assert.deepEqual(pod.spec.containers[0].readinessProbe!.httpGet, { path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' });
  const kp = await run(pod);
  try {
    capturedByCni(kp);
    // The kubelet started the app only after the proxy's startup probe passed, and the app saw it ready.
    assert.ok(kp.when('weir-proxy started (startup probe passed)')! <= kp.when('started app')!);
    await waitFor(async () => /proxy-ready-at-app-start/.test(kp.logs('app')), 10_000, 'app start line');
    assert.match(kp.logs('app'), /proxy-ready-at-app-start 200/);
    // PSA restricted as injected: UID 1337, and the root filesystem is read-only.
    assert.equal((await kp.exec('weir-proxy', ['/bin/id', '-u'])).stdout.trim(), '1337');
    assert.notEqual((await kp.exec('weir-proxy', ['/bin/sh', '-c', 'echo x > /weir/x'])).exitCode, 0, 'read-only rootfs');

    // The kubelet's readiness probe, as rewritten: the app says 503, so does the proxy.
    const notReady = await kp.probe('app', 'readinessProbe');
    assert.equal(notReady.status, 503, notReady.body);
    await kp.exec('app', ['/bin/sh', '-c', 'echo > /tmp/ready']);
    const ready = await kp.probe('app', 'readinessProbe');
    assert.equal(ready.status, 200, ready.body);
    assert.match(ready.body, /HTTP GET \/ready → 200/);
    // The app was probed by the proxy from 127.0.0.6 (capture let it through), headers carried.
    await waitFor(async () => /request \/ready from 127\.0\.0\.6 ua=kube-probe\/weir x-probe=carried/.test(kp.logs('app')), 5000, 'probe seen by the app');
    // The rewritten tcpSocket liveness probe.
    const live = await kp.probe('app', 'livenessProbe');
    assert.equal(live.status, 200, live.body);
    // A probe path nobody declared is not a way to scan the pod.
    const stray = await httpGet(`http://${kp.ip}:15020/app-health/other/readyz`);
    assert.equal(stray.status, 404);
  } finally {
    await kp.remove();
  }
});

const JOB_APP = ['/bin/sh', '-c', 'wget -q -O- http://127.0.0.1:15021/healthz/ready && echo work-done && sleep 1 && exit 0'];

test('Job-like pod, native sidecar: completes when its app exits; the proxy stops cleanly', { skip }, async () => {
  const pod = await admit('native', { metadata: { name: 'we-job-native', namespace: NS }, spec: { restartPolicy: 'Never', containers: [{ name: 'report', image: APP_IMAGE, command: JOB_APP }] } });
  const kp = await run(pod);
  try {
    capturedByCni(kp);
    const done = await waitForCompletion(kp, 30_000);
    assert.equal(done.phase, 'Succeeded', JSON.stringify(done.exitCodes) + kp.logs('report'));
    assert.match(kp.logs('report'), /work-done/);
    assert.equal(done.exitCodes['weir-proxy'], 0, `proxy drained and exited 0 on SIGTERM:\n${kp.logs('weir-proxy').slice(-1500)}`);
    assert.ok(kp.when('weir-proxy stopped')! - kp.when('app containers exited')! < 10_000, 'the sidecar did not hold the pod');
  } finally {
    await kp.remove();
  }
});

test('Job-like pod, regular container (no native sidecars): app held until the proxy is ready, proxy exits with the app', { skip }, async () => {
  const pod = await admit('regular', { metadata: { name: 'we-job-regular', namespace: NS }, spec: { restartPolicy: 'Never', containers: [{ name: 'report', image: APP_IMAGE, command: JOB_APP }] } });
  assert.equal(pod.spec.containers[0].name, 'weir-proxy');
  assert.equal(pod.spec.shareProcessNamespace, true);
  const kp = await run(pod);
  try {
    capturedByCni(kp);
    assert.ok(kp.when('weir-proxy postStart done')! <= kp.when('started report')!, 'postStart held the app');
    const done = await waitForCompletion(kp, 40_000);
    assert.equal(done.phase, 'Succeeded', JSON.stringify(done.exitCodes) + kp.logs('report'));
    // wget of the readiness URL succeeded as the app's first step: the proxy was up before it.
    assert.match(kp.logs('report'), /work-done/);
    assert.equal(done.exitCodes['weir-proxy'], 0, kp.logs('weir-proxy').slice(-1500));
    assert.match(kp.logs('weir-proxy'), /app containers exited/);
  } finally {
    await kp.remove();
  }
});

test('POST :15020/quitquitquit ends a regular-container proxy', { skip }, async () => {
  const pod = await admit('regular', { metadata: { name: 'we-quit', namespace: NS }, spec: { containers: [{ name: 'app', image: APP_IMAGE, command: ['/bin/sh', '-c', 'sleep 1; wget -q -O- --post-data= http://127.0.0.1:15020/quitquitquit; sleep 3600'] }] } });
  const kp = await run(pod);
  try {
    await waitFor(async () => (await kp.state('weir-proxy')).state === 'CONTAINER_EXITED', 20_000, 'proxy exit after quitquitquit');
    assert.equal((await kp.state('weir-proxy')).exitCode, 0);
    assert.match(kp.logs('app'), /exiting/);
    assert.equal((await kp.state('app')).state, 'CONTAINER_RUNNING');
  } finally {
    await kp.remove();
  }
});
