// Real traffic through weir's capture rules, for each backend: the pod netns
// gets the plan, listeners stand in for the proxy (15001, 15006) and the DNS
// proxy (15053, dnsmasq running as the proxy uid), the peer netns has real
// servers. Every assertion is about where a real connection or query landed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPodPair, podPairAddresses, sh, skipUnlessRoot, uniq, type Netns, type PodPair } from '../support/netns.js';
import { originalDst, socketFd, socketInNetns } from '../../src/native/addon.js';
import { getBackend } from '../../src/netns/backends.js';
import { buildPlan } from '../../src/redirect/plan.js';
import type { BackendName } from '../../src/netns/backend-types.js';
import { sandboxAt } from '../../src/netns/backend-types.js';
import { EbpfBackend } from '../../src/netns/ebpf-backend.js';
import { createBpfSandbox, type BpfSandbox } from '../support/bpf-sandbox.js';

const skip = skipUnlessRoot();
const execFileAsync = promisify(execFile);
const PROXY_UID = '1337';
/** net1's subnet exists only inside this suite's two netns. */
const NET1_POD = '192.168.77.2';
const NET1_PEER = '192.168.77.1';

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** A dual-stack TCP listener inside `ns` that answers every connection with one line and closes. */
async function listen(ns: Netns, port: number, name: string, reportOriginalDst: boolean): Promise<net.Server> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-listen', family: 6, address: '::', port });
  const server = net.createServer((s) => {
    let line = name;
    if (reportOriginalDst) {
      const d = originalDst(socketFd(s));
      line += ` ${hostPort(d.address, d.port)}`;
    }
    s.end(`${line}\n`);
  });
  server.listen({ fd });
  await once(server, 'listening');
  return server;
}

const asUid = (uid?: string): string[] => (uid ? ['setpriv', '--reuid', uid, '--regid', uid, '--clear-groups'] : []);

/** Connects from inside `ns` (optionally as a uid) and returns the line the server sent. */
async function tcpFrom(ns: Netns, address: string, port: number, uid?: string, bind?: string): Promise<string> {
  const target = address.includes(':') ? `TCP6:[${address}]:${port}` : `TCP4:${address}:${port}`;
  const options = `connect-timeout=3${bind ? `,bind=${bind}` : ''}`;
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns.name, ...asUid(uid), 'socat', '-u', `${target},${options}`, '-'], { timeout: 10_000 });
  return stdout.trim();
}

/** A query from inside `ns`; returns dig's +short answer. */
async function digFrom(ns: Netns, server: string, name: string, opts: { tcp?: boolean; uid?: string } = {}): Promise<string> {
  const args = [`@${server}`, '-p', '53', '+short', '+time=2', '+tries=1', ...(opts.tcp ? ['+tcp'] : []), name, 'A'];
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns.name, ...asUid(opts.uid), 'dig', ...args], { timeout: 10_000 });
  return stdout.trim();
}

/** dnsmasq in `ns`; resolves once it answers on its first listen address. */
async function startDnsmasq(ns: Netns, dir: string, args: string[], uid?: string): Promise<{ child: ChildProcess; log: () => string }> {
  // Its own empty config and pid file: never a system path (dnsmasq replaces the pid file).
  const conf = path.join(dir, `${ns.name}.conf`);
  writeFileSync(conf, '');
  const child = spawn('ip', ['netns', 'exec', ns.name, ...asUid(uid), 'dnsmasq', '-k', '-C', conf, '-x', path.join(dir, `${ns.name}.pid`),
    '--bind-interfaces', '--no-resolv', '--no-hosts', '--log-queries', '--log-facility=-', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => { log += d; });
  child.stderr!.on('data', (d) => { log += d; });
  for (let i = 0; i < 50; i++) {
    if (/started, version/.test(log)) break;
    if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, log: () => log };
}

/** Ruleset text without counters, for exact before/after comparisons. */
function kernelListing(ns: Netns): string {
  const nft = ns.exec('nft', ['list', 'ruleset']).replace(/counter packets \d+ bytes \d+/g, 'counter');
  const strip = (s: string): string => s.split('\n').filter((l) => !l.startsWith('#')).join('\n').replace(/\[\d+:\d+\]/g, '');
  return `${nft}\n${strip(ns.exec('iptables-nft-save'))}\n${strip(ns.exec('ip6tables-nft-save'))}`;
}

for (const backendName of ['iptables', 'nftables', 'ebpf'] as BackendName[]) {
  describe(`capture traffic through ${backendName}`, { skip }, () => {
    let pair: PodPair;
    let a: ReturnType<typeof podPairAddresses>;
    let extra4: string;
    let extra6: string;
    const servers: net.Server[] = [];
    const children: ChildProcess[] = [];
    let podDnsLog: () => string = () => '';
    let dir: string;
    // ebpf: programs attached to a cgroup of this test's own, which this process (and so every socat, dnsmasq, listener) joins.
    let bpf: BpfSandbox | undefined;
    let backend = backendName === 'ebpf' ? undefined! : getBackend(backendName);

    const podManifest = () => ({
      metadata: {
        name: 'wr-app',
        annotations: {
          'traffic.sidecar.istio.io/excludeOutboundPorts': '9090',
          'traffic.sidecar.istio.io/excludeOutboundIPRanges': `${extra4}/32,${extra6}/128`,
          'traffic.sidecar.istio.io/excludeInboundPorts': '9443',
          'traffic.sidecar.istio.io/excludeInterfaces': 'net1',
        },
      },
      spec: { containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 }, env: [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }] }] },
    });

    before(async () => {
      if (backendName === 'ebpf') {
        bpf = createBpfSandbox();
        backend = new EbpfBackend({ pinDir: bpf.pinDir, cgroup: bpf.cgroup });
      }
      dir = mkdtempSync(path.join(tmpdir(), 'wr-dns-'));
      chmodSync(dir, 0o777); // the stand-in DNS proxy runs as uid 1337 and writes its pid here
      pair = createPodPair('wr');
      a = podPairAddresses(pair);
      extra4 = a.peer4.replace(/\.1$/, '.9');
      extra6 = a.peer6.replace(/::1$/, '::9');
      pair.peer.ip('addr', 'add', `${extra4}/32`, 'dev', pair.peerIf);
      pair.peer.ip('-6', 'addr', 'add', `${extra6}/128`, 'dev', pair.peerIf, 'nodad');
      // A second link, net1 (think Multus), whose traffic is excluded both ways.
      const tmp = uniq('wrx').slice(0, 12);
      sh('ip', ['link', 'add', tmp, 'type', 'veth', 'peer', 'name', `${tmp}b`]);
      sh('ip', ['link', 'set', tmp, 'netns', pair.pod.name]);
      sh('ip', ['link', 'set', `${tmp}b`, 'netns', pair.peer.name]);
      pair.pod.ip('link', 'set', tmp, 'name', 'net1');
      pair.peer.ip('link', 'set', `${tmp}b`, 'name', 'net1');
      pair.pod.ip('addr', 'add', `${NET1_POD}/24`, 'dev', 'net1');
      pair.peer.ip('addr', 'add', `${NET1_PEER}/24`, 'dev', 'net1');
      pair.pod.ip('link', 'set', 'net1', 'up');
      pair.peer.ip('link', 'set', 'net1', 'up');
      // A rule and a table weir does not own: must survive apply and remove.
      pair.pod.exec('iptables-nft', ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '7777', '-j', 'RETURN']);
      pair.pod.exec('nft', ['add table inet wr_foreign; add chain inet wr_foreign c; add rule inet wr_foreign c tcp dport 7777 accept']);

      servers.push(await listen(pair.peer, 8080, 'peer8080', false));
      servers.push(await listen(pair.peer, 9090, 'peer9090', false));
      servers.push(await listen(pair.pod, 15001, '15001', true));
      servers.push(await listen(pair.pod, 15006, '15006', true));
      servers.push(await listen(pair.pod, 9443, 'pod9443', false));
      servers.push(await listen(pair.pod, 15021, 'pod15021', false));
      servers.push(await listen(pair.pod, 8080, 'pod8080', false));
      const peerDns = await startDnsmasq(pair.peer, dir, ['--port', '53', `--listen-address=${a.peer4}`, `--listen-address=${a.peer6}`, `--listen-address=${NET1_PEER}`, '--address=/wr.test/10.9.9.1']);
      children.push(peerDns.child);
      // The stand-in DNS proxy runs as the proxy uid, answers local.wr.test
      // itself and forwards the rest to the peer (its own, uncaptured, query).
      const podDns = await startDnsmasq(pair.pod, dir, ['--port', '15053', '--listen-address=127.0.0.1', '--listen-address=::1',
        '--address=/local.wr.test/10.9.9.2', `--server=${a.peer4}`], PROXY_UID);
      children.push(podDns.child);
      podDnsLog = podDns.log;
      await backend.apply(sandboxAt(pair.pod.path), buildPlan(podManifest()));
    });

    after(async () => {
      for (const s of servers) s.close();
      for (const c of children) c.kill('SIGKILL');
      pair?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
      bpf?.destroy();
    });

    test('app TCP to the peer arrives at 15001 with the dialled address (IPv4, IPv6)', async () => {
      assert.equal(await tcpFrom(pair.pod, a.peer4, 8080), `15001 ${a.peer4}:8080`);
      assert.equal(await tcpFrom(pair.pod, a.peer6, 8080), `15001 [${a.peer6}]:8080`);
    });

    test('inbound TCP from the peer arrives at 15006 with the original port (IPv4, IPv6)', async () => {
      assert.equal(await tcpFrom(pair.peer, a.pod4, 8080), `15006 ${a.pod4}:8080`);
      assert.equal(await tcpFrom(pair.peer, a.pod6, 8080), `15006 [${a.pod6}]:8080`);
    });

    test('the proxy uid connects out directly to the real peer', async () => {
      assert.equal(await tcpFrom(pair.pod, a.peer4, 8080, PROXY_UID), 'peer8080');
      assert.equal(await tcpFrom(pair.pod, a.peer6, 8080, PROXY_UID), 'peer8080');
    });

    test('excluded outbound port and CIDRs, and excluded inbound ports, are not captured', async () => {
      assert.equal(await tcpFrom(pair.pod, a.peer4, 9090), 'peer9090');
      assert.equal(await tcpFrom(pair.pod, a.peer6, 9090), 'peer9090');
      assert.equal(await tcpFrom(pair.pod, extra4, 8080), 'peer8080');
      assert.equal(await tcpFrom(pair.pod, extra6, 8080), 'peer8080');
      assert.equal(await tcpFrom(pair.peer, a.pod4, 9443), 'pod9443');
      assert.equal(await tcpFrom(pair.peer, a.pod6, 15021), 'pod15021');
    });

    test('traffic over an excluded interface is not captured, in either direction', async () => {
      assert.equal(await tcpFrom(pair.pod, NET1_PEER, 8080), 'peer8080');
      assert.equal(await tcpFrom(pair.peer, NET1_POD, 8080), 'pod8080');
      assert.equal(await digFrom(pair.pod, NET1_PEER, 'local.wr.test'), '10.9.9.1', 'app DNS over net1');
      assert.equal(await digFrom(pair.pod, NET1_PEER, 'local.wr.test', { tcp: true }), '10.9.9.1', 'app TCP DNS over net1');
      assert.equal(await digFrom(pair.pod, NET1_PEER, 'local.wr.test', { uid: PROXY_UID }), '10.9.9.1', 'proxy DNS over net1');
      // The same ports over eth0 are captured.
      assert.equal(await tcpFrom(pair.peer, a.pod4, 8080), `15006 ${a.pod4}:8080`);
    });

    test("loopback: the proxy calling its pod's own address goes to 15006; the app and 127.0.0.6 passthrough do not", async () => {
      assert.equal(await tcpFrom(pair.pod, a.pod4, 8080, PROXY_UID), `15006 ${a.pod4}:8080`);
      assert.equal(await tcpFrom(pair.pod, a.pod6, 8080, PROXY_UID), `15006 [${a.pod6}]:8080`);
      // The proxy handing inbound traffic to the app leaves from 127.0.0.6: never captured again.
      assert.equal(await tcpFrom(pair.pod, a.pod4, 8080, PROXY_UID, '127.0.0.6'), 'pod8080');
      // The app calling its own pod address or localhost stays local.
      assert.equal(await tcpFrom(pair.pod, a.pod4, 8080), 'pod8080');
      assert.equal(await tcpFrom(pair.pod, '127.0.0.1', 8080), 'pod8080');
      assert.equal(await tcpFrom(pair.pod, '127.0.0.1', 8080, PROXY_UID), 'pod8080');
    });

    test('app DNS to any :53, UDP and TCP, IPv4 and IPv6, lands on 15053', async () => {
      for (const tcp of [false, true]) {
        assert.equal(await digFrom(pair.pod, a.peer4, 'local.wr.test', { tcp }), '10.9.9.2', `tcp=${tcp} v4`);
        assert.equal(await digFrom(pair.pod, a.peer6, 'local.wr.test', { tcp }), '10.9.9.2', `tcp=${tcp} v6`);
        // An address with no server at all: only capture can answer.
        assert.equal(await digFrom(pair.pod, '192.0.2.53', 'local.wr.test', { tcp }), '10.9.9.2', `tcp=${tcp} nowhere`);
      }
    });

    test("the proxy uid's own DNS reaches the peer's server; forwarded app queries work", async () => {
      assert.equal(await digFrom(pair.pod, a.peer4, 'local.wr.test', { uid: PROXY_UID }), '10.9.9.1');
      assert.equal(await digFrom(pair.pod, a.peer4, 'local.wr.test', { uid: PROXY_UID, tcp: true }), '10.9.9.1');
      // App → 15053 (zone 2) → the stand-in proxy forwards as uid 1337 (zone 1) → peer.
      for (let i = 0; i < 5; i++) assert.equal(await digFrom(pair.pod, a.peer4, `r${i}.remote.wr.test`), '10.9.9.1');
      assert.match(podDnsLog(), new RegExp(`forwarded r4\\.remote\\.wr\\.test to ${a.peer4.replace(/\./g, '\\.')}`));
    });

    test('ebpf: outbound TCP and DNS are captured by the map entry alone; nft holds only inbound', { skip: backendName !== 'ebpf' }, async () => {
      const listing = kernelListing(pair.pod);
      assert.doesNotMatch(listing, /:15001|:15053|ct zone/, 'no outbound or DNS redirect (nor its zones) in nftables');
      assert.match(listing, /oifname "lo" ip saddr \{ 127\.0\.0\.1, 127\.0\.0\.6 \} ip daddr \{ 127\.0\.0\.1, 127\.0\.0\.6 \} notrack/, 'loopback untracked');
      assert.match(listing, /redirect to :15006/);
      const state = await backend.read(sandboxAt(pair.pod.path));
      assert.match(state.listing, /^ebpf pod plan=[0-9a-f]{12}\n/);
      assert.match(state.listing, new RegExp(`exclude cidrs ${extra4}/32,${extra6}/128`));
      assert.match(state.listing, /never captured \(excluded interfaces' subnets\) 192\.168\.77\.0\/24/);
    });

    test('apply twice gives the identical listing and verify is clean', async () => {
      const plan = buildPlan(podManifest());
      const before1 = (await backend.read(sandboxAt(pair.pod.path))).listing;
      const kernel1 = kernelListing(pair.pod);
      await backend.apply(sandboxAt(pair.pod.path), plan);
      await backend.apply(sandboxAt(pair.pod.path), plan);
      assert.equal((await backend.read(sandboxAt(pair.pod.path))).listing, before1);
      assert.equal(kernelListing(pair.pod), kernel1);
      assert.deepEqual(await backend.verify(sandboxAt(pair.pod.path), plan), { ok: true, differences: [] });
      // Capture still works after the re-apply.
      assert.equal(await tcpFrom(pair.pod, a.peer4, 8080), `15001 ${a.peer4}:8080`);
    });

    test('remove leaves nothing of weir and keeps foreign rules; a second remove is a no-op', async () => {
      await backend.remove(sandboxAt(pair.pod.path));
      await backend.remove(sandboxAt(pair.pod.path));
      const state = await backend.read(sandboxAt(pair.pod.path));
      assert.equal(state.present, false, state.listing);
      const listing = kernelListing(pair.pod);
      assert.doesNotMatch(listing, /weir|WEIR_/);
      assert.match(listing, /table inet wr_foreign/);
      assert.match(listing, /-A OUTPUT -p tcp -m tcp --dport 7777 -j RETURN/);
      // Without rules, traffic goes straight to the peer.
      assert.equal(await tcpFrom(pair.pod, a.peer4, 8080), 'peer8080');
      assert.equal(await digFrom(pair.pod, a.peer4, 'local.wr.test'), '10.9.9.1');
    });
  });
}

test('removing from a netns that does not exist is not an error', { skip }, async () => {
  for (const name of ['iptables', 'nftables'] as BackendName[]) await getBackend(name).remove(sandboxAt('/run/netns/wr-does-not-exist'));
  assert.ok(!sh('ip', ['netns', 'list']).includes('wr-does-not-exist'));
});
