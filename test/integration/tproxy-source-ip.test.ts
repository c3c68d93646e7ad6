// TPROXY end to end on the real kernel, for both backends: a client in one
// netns connects to the app in a pod netns; the rules (nft tproxy / iptables
// TPROXY), the policy routing and weir's proxy with its IP_TRANSPARENT
// inbound listener deliver it, and the app sees the client's own address
// (not 127.0.0.6). Outbound from the app is still captured (REDIRECT to
// 15001). Apply, verify, read and remove cover the ip rule and route too,
// and a failing apply leaves nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createPodPair, podPairAddresses, skipUnlessRoot, type PodPair } from '../support/netns.js';
import { nativeAvailable, socketInNetns } from '../../src/native/addon.js';
import { getBackend } from '../../src/netns/backends.js';
import { buildPlan } from '../../src/redirect/plan.js';
import type { Pod } from '../../src/kube/pod-types.js';
import { sandboxAt, type BackendName } from '../../src/netns/backend-types.js';
import { readAll, REPO, waitForLine } from './proxy-harness.js';

const skip = skipUnlessRoot() || (nativeAvailable() ? false : 'needs the native addon');

const pod = (mode: 'TPROXY' | 'REDIRECT'): Pod => ({
  metadata: { name: 'tp', namespace: 'default', annotations: { 'sidecar.istio.io/interceptionMode': mode, 'weir.io/dns-capture': 'false' } },
  spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] },
});

/** Replies with the address the server saw the connection come from. */
const WHO = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end(s.remoteAddress.replace(/^::ffff:/, '') + '\\n'); })
  .listen({ port: Number(process.argv[1]), host: '::' }, () => console.log('ready'));`;

let pair: PodPair;
let a: ReturnType<typeof podPairAddresses>;
let proxy: ChildProcess;
const proxyLog: string[] = [];

async function ask(netnsPath: string, ip: string, port: number): Promise<string> {
  try {
    const fd = await socketInNetns(netnsPath, { kind: 'tcp-connect', family: net.isIPv4(ip) ? 4 : 6, address: ip, port, timeoutMs: 3000 });
    return (await readAll(new net.Socket({ fd }))).trim();
  } catch (e) {
    throw new Error(`${ip}:${port} from ${netnsPath}: ${(e as Error).message}; proxy log tail:\n${proxyLog.slice(-5).join('\n')}`);
  }
}

async function logged(from: number, match: (line: string) => boolean): Promise<void> {
  for (let i = 0; i < 100 && !proxyLog.slice(from).some(match); i++) await new Promise((r) => setTimeout(r, 20));
}

function ruleLines(): string {
  return pair.pod.ip('-4', 'rule', 'show') + pair.pod.ip('-6', 'rule', 'show');
}

before(async () => {
  if (skip) return;
  pair = createPodPair('wt');
  a = podPairAddresses(pair);
  for (const [ns, port] of [[pair.pod, 8080], [pair.peer, 9000]] as const) {
    await waitForLine(ns.spawn(process.execPath, ['-e', WHO, String(port)]), /ready/, 5000);
  }
  // As in a TPROXY pod: uid 1337 with NET_ADMIN (IP_TRANSPARENT, SO_MARK).
  proxy = pair.pod.spawn('setpriv', [
    '--reuid', '1337', '--regid', '1337', '--clear-groups', '--inh-caps', '+net_admin', '--ambient-caps', '+net_admin',
    process.execPath, '--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'proxy',
    '--interception-mode', 'TPROXY', '--no-dns', '--control-plane-socket', '/nonexistent/weir.sock', '--ready-without-agent', '1s',
  ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) proxyLog.push(l); };
  proxy.stdout!.on('data', keep);
  proxy.stderr!.on('data', keep);
  await waitForLine(proxy, /weir proxy listening/, 30000);
});

after(() => { pair?.destroy(); });

for (const backendName of ['nftables', 'iptables'] as BackendName[]) {
  test(`${backendName}: TPROXY keeps the client's source address at the app; outbound still captured; verify, read, remove`, { skip }, async () => {
    const backend = getBackend(backendName);
    const plan = buildPlan(pod('TPROXY'));
    await backend.apply(sandboxAt(pair.pod.path), plan);
    try {
      assert.deepEqual(await backend.verify(sandboxAt(pair.pod.path), plan), { ok: true, differences: [] });
      const state = await backend.read(sandboxAt(pair.pod.path));
      assert.match(state.listing, /ipv4 rule: fwmark 0x539 lookup 133/);
      assert.match(state.listing, /ipv6 route table 133: local default dev lo/);

      const before = proxyLog.length;
      assert.equal(await ask(pair.peer.path, a.pod4, 8080), a.peer4, 'IPv4: the app sees the client');
      assert.equal(await ask(pair.peer.path, a.pod6, 8080), a.peer6, 'IPv6: the app sees the client');
      // Through the proxy, not around it (the access log line is written when the proxy sees the close).
      await logged(before, (l) => l.includes('"access":"inbound"') && l.includes(`"originalDst":"${a.pod6}:8080"`));
      const inbound = proxyLog.slice(before).filter((l) => l.includes('"access":"inbound"'));
      assert.ok(inbound.some((l) => l.includes(`"downstream":"${a.peer4}:`) && l.includes(`"originalDst":"${a.pod4}:8080"`)), inbound.join('\n'));
      assert.ok(inbound.some((l) => l.includes(`"originalDst":"${a.pod6}:8080"`)), inbound.join('\n'));

      // Outbound from the app still goes to 15001 (the proxy passes it through).
      const mark = proxyLog.length;
      assert.equal(await ask(pair.pod.path, a.peer4, 9000), a.pod4);
      await logged(mark, (l) => l.includes('"access":"outbound"'));
      assert.ok(proxyLog.slice(mark).some((l) => l.includes('"access":"outbound"') && l.includes(`"originalDst":"${a.peer4}:9000"`)), proxyLog.slice(mark).join('\n'));

      // Drift in the routing is seen.
      pair.pod.ip('-6', 'route', 'flush', 'table', '133');
      const drift = await backend.verify(sandboxAt(pair.pod.path), plan);
      assert.equal(drift.ok, false);
      assert.deepEqual(drift.differences, ['missing: ipv6 route table 133: local default dev lo']);
      await backend.apply(sandboxAt(pair.pod.path), plan);
      assert.equal((await backend.verify(sandboxAt(pair.pod.path), plan)).ok, true, 're-apply repairs it');
    } finally {
      await backend.remove(sandboxAt(pair.pod.path));
    }
    assert.doesNotMatch(ruleLines(), /fwmark/, 'remove takes the ip rules away');
    assert.equal((await backend.read(sandboxAt(pair.pod.path))).present, false);
    // Without capture the app is reached directly (the proxy is not in the path).
    assert.equal(await ask(pair.peer.path, a.pod4, 8080), a.peer4);
  });

  test(`${backendName}: REDIRECT over TPROXY drops the policy routing; the app sees 127.0.0.6 again`, { skip }, async () => {
    const backend = getBackend(backendName);
    await backend.apply(sandboxAt(pair.pod.path), buildPlan(pod('TPROXY')));
    const redirect = buildPlan(pod('REDIRECT'));
    await backend.apply(sandboxAt(pair.pod.path), redirect);
    try {
      assert.doesNotMatch(ruleLines(), /fwmark/);
      assert.deepEqual(await backend.verify(sandboxAt(pair.pod.path), redirect), { ok: true, differences: [] });
      // The running proxy is in TPROXY mode, but a REDIRECTed connection
      // reaches its listener port itself and is handed off the REDIRECT way.
      assert.equal(await ask(pair.peer.path, a.pod4, 8080), '127.0.0.6');
    } finally {
      await backend.remove(sandboxAt(pair.pod.path));
    }
  });

  test(`${backendName}: a TPROXY apply that fails half-way leaves no rule, route or table behind`, { skip }, async () => {
    const backend = getBackend(backendName);
    // IPv6 off on lo: the IPv4 rule and route go in, then the IPv6 route is refused.
    pair.pod.exec('sysctl', ['-qw', 'net.ipv6.conf.lo.disable_ipv6=1']);
    try {
      await assert.rejects(backend.apply(sandboxAt(pair.pod.path), buildPlan(pod('TPROXY'))), /policy routing apply .* failed: ip -6: .*IPv6 is disabled/);
      assert.doesNotMatch(ruleLines(), /fwmark/);
      assert.equal(pair.pod.ip('-4', 'route', 'show', 'table', 'all').includes('table 133'), false);
      assert.equal((await backend.read(sandboxAt(pair.pod.path))).present, false);
    } finally {
      pair.pod.exec('sysctl', ['-qw', 'net.ipv6.conf.lo.disable_ipv6=0']);
      await backend.remove(sandboxAt(pair.pod.path));
    }
  });
}
