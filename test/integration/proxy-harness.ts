// Test topology for the weir proxy suites: pods (network namespaces) on one
// bridge, each with capture rules, a weir proxy running as UID 1337 and a
// small app; a node control plane in the test process that identifies the
// proxies from the kernel (peer pid → netns inode → pod).
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Registry as PromRegistry } from 'prom-client';
import { pino } from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import { Netns, sh, uniq } from '../support/netns.js';
import { OpenSockets } from '../support/open-sockets.js';
import { netnsInode, socketInNetns } from '../../src/native/addon.js';
import { getBackend } from '../../src/netns/backends.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { startControlPlane, type ControlPlane, type ControlPlaneDeps } from '../../src/controlplane/server.js';
import type { PodIdentity } from '../../src/controlplane/protocol.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';
import { sandboxAt, type CaptureBackend } from '../../src/netns/backend-types.js';
import { PROXY_NODE_FLAGS } from '../../src/proxy/node-flags.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Pod {
  name: string;
  namespace: string;
  ns: Netns;
  ip4: string;
  ip6: string;
  proxy?: ChildProcess;
  proxyLog: string[];
  app?: ChildProcess;
  /** For the node agent's identity (a CA checks uid and service account against the API). */
  uid?: string;
  serviceAccount?: string;
}

/**
 * The app: 8080 greets with its name then echoes; 8081 answers the sha256 of
 * what it received once the client half-closes; 8082 half-closes first and
 * logs how many bytes it still received.
 */
const APP = `
const net = require('node:net'); const crypto = require('node:crypto');
const name = process.argv[1];
net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.write('hello from ' + name + '\\n'); s.pipe(s); }).listen({ port: 8080, host: '::' });
net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  const h = crypto.createHash('sha256'); let n = 0;
  s.on('data', (d) => { h.update(d); n += d.length; });
  s.on('end', () => s.end(name + ' ' + n + ' ' + h.digest('hex') + '\\n'));
}).listen({ port: 8081, host: '::' }, () => console.log('app ready'));
net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {}); let n = 0;
  s.end('bye\\n');
  s.on('data', (d) => { n += d.length; });
  s.on('end', () => console.log('8082 got ' + n));
}).listen({ port: 8082, host: '::' });
`;

export class Cluster {
  readonly router: Netns;
  readonly pods: Pod[] = [];
  readonly sockDir = mkdtempSync(path.join(tmpdir(), 'wx-cp-'));
  readonly socketPath = path.join(this.sockDir, 'proxy.sock');
  /** connect()'s sockets, destroyed by destroy(). */
  readonly appSockets = new OpenSockets();
  cp?: ControlPlane;
  /**
   * How to start \`weir proxy\` (argv before the proxy's flags). Default: the
   * standalone proxy bundle of the current sources, the build every pod runs
   * (cni/proxy-bundle.mjs), made once per test process. tsx compiled the whole
   * proxy per start-up: 10-25 s on a loaded machine, past the start-up wait.
   * WX_PROXY_COMMAND overrides, as do benches that set their own.
   */
  proxyCommand: string[] | undefined = process.env.WX_PROXY_COMMAND ? JSON.parse(process.env.WX_PROXY_COMMAND) as string[] : undefined;
  readonly metrics = new PromRegistry();
  /** How pods are captured: the nftables backend as the agent's default, or another (the ebpf suite's). */
  captureBackend: CaptureBackend = getBackend('nftables');
  private readonly a = 100 + Math.floor(Math.random() * 100);
  private readonly b = 1 + Math.floor(Math.random() * 250);
  private nextHost = 10;
  /** Name prefix of this cluster's netns and veths (WX_NS_PREFIX): lets concurrent runs tell theirs apart. */
  private readonly prefix = (process.env.WX_NS_PREFIX ?? 'wx').slice(0, 4);

  constructor() {
    // Proxies run as UID 1337 and must reach the socket (mkdtemp makes 0700).
    chmodSync(this.sockDir, 0o755);
    this.router = Netns.create(`${this.prefix}r`);
    this.router.ip('link', 'add', 'br0', 'type', 'bridge');
    this.router.ip('addr', 'add', `10.${this.a}.${this.b}.1/24`, 'dev', 'br0');
    this.router.ip('link', 'set', 'br0', 'up');
    // The router routes: a SYN to an address it has no route for (a VIP nothing answers, TEST-NET) gets
    // ICMP unreachable at once, as from a node, instead of a silent drop and a 10 s connect timeout.
    // Set here, not inherited: a new netns copies the host's ip_forward, which is 0 on a fresh machine
    // and 1 only after something (the bridge CNI plugin of the containerd suites) turned it on.
    this.router.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  }

  /** A pod on the bridge with capture rules (no proxy yet). */
  async addPod(name: string, namespace = 'default', opts: { capture?: boolean } = {}): Promise<Pod> {
    const host = this.nextHost++;
    const ns = Netns.create(`${this.prefix}p`);
    const pod: Pod = { name, namespace, ns, ip4: `10.${this.a}.${this.b}.${host}`, ip6: `fd00:${this.a}:${this.b}::${host}`, proxyLog: [] };
    this.pods.push(pod);
    const v = uniq(`${this.prefix}v`).slice(0, 11);
    sh('ip', ['link', 'add', v, 'type', 'veth', 'peer', 'name', `${v}b`]);
    sh('ip', ['link', 'set', v, 'netns', ns.name]);
    sh('ip', ['link', 'set', `${v}b`, 'netns', this.router.name]);
    ns.ip('link', 'set', v, 'name', 'eth0');
    ns.ip('addr', 'add', `${pod.ip4}/24`, 'dev', 'eth0');
    ns.ip('-6', 'addr', 'add', `${pod.ip6}/64`, 'dev', 'eth0', 'nodad');
    ns.ip('link', 'set', 'eth0', 'up');
    this.router.ip('link', 'set', `${v}b`, 'master', 'br0');
    this.router.ip('link', 'set', `${v}b`, 'up');
    // A default route so a SYN to a VIP nothing routes leaves the app (then capture takes it).
    ns.ip('route', 'add', 'default', 'via', `10.${this.a}.${this.b}.1`);
    // Capture exactly as the agent programs it: weir's plan for a pod with a proxy container.
    if (opts.capture !== false) await this.captureBackend.apply(sandboxAt(ns.path), buildPlan({ metadata: { name, namespace }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } }));
    return pod;
  }

  /**
   * `kubeConfig`: feed the registry from that API server (as the agent does); default an empty registry the
   * test drives. Other deps (onCsr, builder options) are passed through.
   */
  async startControlPlane(extra: Partial<ControlPlaneDeps> = {}): Promise<ControlPlane> {
    const byInode = () => new Map(this.pods.map((p) => [netnsInode(p.ns.path), p]));
    this.cp = await startControlPlane({
      kubeConfig: extra.kubeConfig ?? new KubeConfig(),
      socketPath: this.socketPath,
      logger: pino({ level: process.env.WX_LOG ?? 'silent' }),
      metrics: this.metrics,
      clusterDomain: 'cluster.local',
      // The agent's real identifyPeer maps netns → pod the same way (via CNI ADD records).
      identifyPeer: async (pid: number): Promise<PodIdentity | undefined> => {
        let ino: number;
        try { ino = statSync(`/proc/${pid}/ns/net`).ino; } catch { return undefined; }
        const p = byInode().get(ino);
        return p ? { namespace: p.namespace, name: p.name, uid: p.uid ?? `uid-${p.name}`, ips: [p.ip4, p.ip6], serviceAccount: p.serviceAccount } : undefined;
      },
      ...(extra.kubeConfig ? {} : { source: () => ({ start: async () => {}, stop: async () => {} }) }),
      ...extra,
    });
    return this.cp;
  }

  async startApp(pod: Pod): Promise<void> {
    pod.app = pod.ns.spawn(process.execPath, ['-e', APP, pod.name]);
    await waitForLine(pod.app, /app ready/, 5000);
  }

  async startProxy(pod: Pod, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<void> {
    pod.proxy = pod.ns.spawn('setpriv', [
      '--reuid', '1337', '--regid', '1337', '--clear-groups',
      ...(this.proxyCommand ?? [process.execPath, ...PROXY_NODE_FLAGS, await freshProxyBundle()]),
      '--control-plane-socket', this.socketPath, '--pod-namespace', pod.namespace, '--pod-name', pod.name,
      '--ready-without-agent', '2s', ...extra,
    ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WEIR_NATIVE_ADDON: NATIVE_ADDON, ...env } });
    const keep = (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) pod.proxyLog.push(l); };
    pod.proxy.stdout!.on('data', keep);
    pod.proxy.stderr!.on('data', keep);
    await waitForLine(pod.proxy, /weir proxy listening/, 20000);
    // As the kubelet would: no traffic before the proxy is ready (registry applied, or the no-agent grace over).
    const end = Date.now() + 10000;
    while ((await this.httpGet(pod, 15021, '/healthz/ready')).status !== 200) {
      if (Date.now() > end) throw new Error(`${pod.name}: proxy not ready after 10 s:\n${pod.proxyLog.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** A TCP connection made by an app process (uid 0) inside the pod, so capture applies. */
  async connect(pod: Pod, address: string, port: number): Promise<net.Socket> {
    const fd = await socketInNetns(pod.ns.path, { kind: 'tcp-connect', family: net.isIPv6(address) ? 6 : 4, address, port, timeoutMs: 5000 });
    const sock = this.appSockets.add(new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true }));
    // Resets are expected in several tests; a test that cares listens itself. Unheard errors are kept for inspection.
    sock.on('error', (e) => { (sock as net.Socket & { lastError?: Error }).lastError = e; });
    return sock;
  }

  /** GET over loopback inside the pod (admin is localhost-only). */
  async httpGet(pod: Pod, port: number, urlPath: string): Promise<{ status: number; body: string }> {
    const s = await this.connect(pod, '127.0.0.1', port);
    s.end(`GET ${urlPath} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    await once(s, 'close');
    const text = Buffer.concat(chunks).toString();
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0);
    let body = text.slice(text.indexOf('\r\n\r\n') + 4);
    if (/transfer-encoding: chunked/i.test(text)) body = dechunk(body);
    return { status, body };
  }

  async metric(pod: Pod, name: string, match: Record<string, string> = {}): Promise<number> {
    const { body } = await this.httpGet(pod, 15090, '/stats/prometheus');
    let sum = 0;
    for (const line of body.split('\n')) {
      if (!line.startsWith(name + '{') && line.split(' ')[0] !== name) continue;
      if (!Object.entries(match).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  /** Proxy output, for failure messages. */
  logs(): string {
    return this.pods.map((p) => `--- ${p.name}\n${p.proxyLog.slice(-30).join('\n')}`).join('\n');
  }

  async destroy(): Promise<void> {
    if (process.env.WX_DEBUG) console.log(this.logs());
    // What a failed test left open would keep the test process alive.
    this.appSockets.destroyAll();
    for (const p of this.pods) p.ns.destroy();
    await this.cp?.close().catch(() => {});
    this.router.destroy();
    rmSync(this.sockDir, { recursive: true, force: true });
  }
}

function dechunk(s: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const nl = s.indexOf('\r\n', i);
    if (nl < 0) break;
    const n = parseInt(s.slice(i, nl), 16);
    if (!n) break;
    out += s.slice(nl + 2, nl + 2 + n);
    i = nl + 2 + n + 2;
  }
  return out;
}

/** The bundle lives outside the package: it finds the addon through WEIR_NATIVE_ADDON. */
const NATIVE_ADDON = process.env.WEIR_NATIVE_ADDON ?? path.join(REPO, 'native/build/Release/weir_native.node');
let proxyBundle: Promise<string> | undefined;

/** The standalone proxy bundle of the current sources, built once per test process (readable by UID 1337). */
export function freshProxyBundle(): Promise<string> {
  proxyBundle ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wx-proxy-bundle-'));
    chmodSync(dir, 0o755);
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const { buildProxyBundle } = await import(path.join(REPO, 'cni/proxy-bundle.mjs')) as { buildProxyBundle(out: string, o?: { sourcemap?: boolean | string }): Promise<string> };
    const out = path.join(dir, 'weir-proxy.mjs');
    await buildProxyBundle(out, { sourcemap: false });
    chmodSync(out, 0o644);
    return out;
  })();
  return proxyBundle;
}

export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const t = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${re} in output: ${seen.slice(-2000)}`)); }, timeoutMs);
    const on = (d: Buffer) => { seen += d.toString(); if (re.test(seen)) { cleanup(); resolve(); } };
    const onExit = (code: number | null) => { cleanup(); reject(new Error(`process exited (${code}) before ${re}: ${seen.slice(-2000)}`)); };
    const cleanup = () => { clearTimeout(t); child.stdout?.off('data', on); child.stderr?.off('data', on); child.off('exit', onExit); };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.on('exit', onExit);
  });
}

/** Reads until the peer ends; resolves with everything received. */
export async function readAll(s: net.Socket): Promise<string> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  await once(s, 'end');
  return Buffer.concat(chunks).toString();
}

/** Reads one line. */
export function readLine(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const on = (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) { s.off('data', on); s.pause(); resolve(buf.slice(0, i)); }
    };
    s.on('data', on);
    s.once('error', reject);
    s.once('end', () => reject(new Error(`ended before a line; got ${JSON.stringify(buf)}`)));
  });
}

export function service(name: string, namespace: string, clusterIP: string, ports: { name: string; port: number }[], headless = false): KubeService {
  return { metadata: { name, namespace }, spec: { type: 'ClusterIP', clusterIP: headless ? 'None' : clusterIP, ports: ports.map((p) => ({ ...p, protocol: 'TCP' })) } };
}

export function slice(svc: string, namespace: string, sliceName: string, pods: { pod: Pod; ready?: boolean; terminating?: boolean }[], ports: { name: string; port: number }[]): KubeEndpointSlice {
  return {
    metadata: { name: sliceName, namespace, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: pods.map(({ pod, ready = true, terminating = false }) => ({
      addresses: [pod.ip4], conditions: { ready, serving: ready || terminating, terminating },
      targetRef: { kind: 'Pod', name: pod.name, namespace: pod.namespace },
    })),
    ports: ports.map((p) => ({ ...p, protocol: 'TCP' })),
  };
}
