// The DNS proxy in a captured pod netns on the real kernel: the app's port-53
// traffic (UDP and TCP) is redirected to 15053 by the capture core's own
// nftables ruleset (buildPlan + NftablesBackend), the proxy runs as
// UID 1337 (exempt from capture) and forwards to a dnsmasq upstream in a
// peer netns that logs every query it receives. glibc (getent) and dig
// resolve through the pod's own resolv.conf (search list + ndots:5).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createPodPair, podPairAddresses, skipUnlessRoot, type PodPair } from '../support/netns.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../../src/redirect/render-nftables.js';
import { NftablesBackend } from '../../src/netns/nft-backend.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

const REPO = resolve(import.meta.dirname, '../..');
const PROXY_UID = 1337;

/** The capture core's real ruleset for a sidecar pod (DNS to 15053, proxy UID 1337 exempt, conntrack zones). */
async function programCapture(netnsPath: string): Promise<void> {
  const plan = buildPlan({
    metadata: { name: 'app', namespace: 'ns', annotations: {} },
    spec: { containers: [{ name: 'app' }, { name: 'weir-proxy', securityContext: { runAsUser: PROXY_UID, runAsGroup: PROXY_UID } }] },
  });
  assert.equal(plan.dns.enabled, true);
  assert.equal(plan.dns.port, 15053);
  const backend = new NftablesBackend({ tables: NFT_TABLES, render: renderNftables, renderDefinition: renderNftablesDefinition });
  await backend.apply(sandboxAt(netnsPath), plan);
}

function waitForLine(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 20000): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs} ms; stdout=${out} stderr=${err}`)), timeoutMs);
    child.stdout?.on('data', (d) => { out += d; if (pattern.test(out)) { clearTimeout(timer); resolvePromise(); } });
    child.stderr?.on('data', (d) => { err += d; if (pattern.test(err)) { clearTimeout(timer); resolvePromise(); } });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code}: ${err}`)); });
  });
}

describe('DNS proxy in a captured pod netns', { skip: skipUnlessRoot() }, () => {
  let pair: PodPair;
  let dir: string;
  let etcNetns: string;
  let dnsmasq: ChildProcess;
  let dnsmasqLog: string;
  let addrs: ReturnType<typeof podPairAddresses>;
  let proxyStderr = '';

  const inPod = (cmd: string, args: string[]) => pair.pod.exec(cmd, args);
  const upstreamQueries = (type: string, name: string) =>
    (existsSync(dnsmasqLog) ? readFileSync(dnsmasqLog, 'utf8') : '').split('\n').filter((l) => l.includes(`query[${type}] ${name} from`)).length;

  before(async () => {
    pair = createPodPair('wd');
    addrs = podPairAddresses(pair);
    dir = mkdtempSync(join(tmpdir(), 'wd-pod-'));
    chmodSync(dir, 0o755);

    // Upstream DNS in the peer netns: one external name, and cluster.local
    // answered NXDOMAIN locally (as kube-dns would for unknown names).
    dnsmasqLog = join(dir, 'dnsmasq.log');
    dnsmasq = pair.peer.spawn('dnsmasq', [
      '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--user=root',
      '--bind-interfaces', `--listen-address=${addrs.peer4}`, '--port=53', '--pid-file=',
      '--address=/ext.example/203.0.113.7', '--local=/cluster.local/', '--local-ttl=300',
      '--log-queries', `--log-facility=${dnsmasqLog}`,
    ]);
    await waitForLine(dnsmasq, /started|listening/i, 'dnsmasq').catch(async () => {
      // dnsmasq logs its start to the log file, not stdio.
      for (let i = 0; i < 50 && !(existsSync(dnsmasqLog) && /started/.test(readFileSync(dnsmasqLog, 'utf8'))); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
    });

    // The pod's resolv.conf: `ip netns exec` bind-mounts this over /etc/resolv.conf.
    etcNetns = join('/etc/netns', pair.pod.name);
    mkdirSync(etcNetns, { recursive: true });
    writeFileSync(join(etcNetns, 'resolv.conf'),
      `nameserver ${addrs.peer4}\nsearch ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:4 attempts:1\n`);

    const registry = {
      version: 1,
      clusterDomain: 'cluster.local',
      services: [
        { namespace: 'ns', name: 'web', kind: 'ClusterIP', clusterIPs: ['10.96.0.10'] },
        { namespace: 'other', name: 'api', kind: 'ClusterIP', clusterIPs: ['10.96.0.20'] },
        {
          namespace: 'ns', name: 'db', kind: 'Headless', clusterIPs: [],
          endpoints: ['10.1.0.1', '10.1.0.2', '10.1.0.3'].map((ip) => ({ ip, ready: true, serving: true, terminating: false, ports: [] })),
        },
      ],
    };
    writeFileSync(join(dir, 'registry.json'), JSON.stringify(registry));
    chmodSync(join(dir, 'registry.json'), 0o644);

    await programCapture(pair.pod.path);

    // The proxy's own scratch space (tsx's cache), removed with `dir`.
    const proxyTmp = join(dir, 'proxy-tmp');
    mkdirSync(proxyTmp);
    chownSync(proxyTmp, PROXY_UID, PROXY_UID);
    const proxy = pair.pod.spawn('setpriv', [
      `--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups',
      process.execPath, '--import', 'tsx', join(REPO, 'src/dns/standalone.ts'),
      '--namespace', 'ns', '--registry', join(dir, 'registry.json'), '--timeout-ms', '1500',
    ], { cwd: REPO, env: { ...process.env, HOME: proxyTmp, TMPDIR: proxyTmp, TSX_DISABLE_CACHE: '1', WEIR_LOG_LEVEL: 'warn' } });
    await waitForLine(proxy, /^ready$/m, 'DNS proxy');
    proxy.stderr?.on('data', (d) => { proxyStderr += d; });
  });

  after(() => {
    if (proxyStderr) process.stderr.write(`DNS proxy stderr:\n${proxyStderr}\n`);
    pair?.destroy(); // kills dnsmasq and the proxy, deletes both netns (and the nft table with them)
    if (etcNetns) rmSync(etcNetns, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('getent (glibc, search list, ndots:5) resolves short name, name.ns and FQDN', () => {
    for (const name of ['web', 'web.ns', 'web.ns.svc.cluster.local']) {
      assert.match(inPod('getent', ['hosts', name]), /^10\.96\.0\.10\s/, name);
    }
    assert.match(inPod('getent', ['ahostsv4', 'api.other']), /^10\.96\.0\.20\s/m);
  });

  test('dig resolves over UDP and TCP through the capture', () => {
    assert.equal(inPod('dig', ['+short', '+search', 'web']).trim(), '10.96.0.10');
    assert.equal(inPod('dig', ['+short', '+tcp', 'web.ns.svc.cluster.local']).trim(), '10.96.0.10');
    const full = inPod('dig', ['web.ns.svc.cluster.local', 'A']);
    assert.match(full, /flags: qr aa rd ra/);
    assert.match(full, /\b30\s+IN\s+A\s+10\.96\.0\.10/);
    assert.equal(upstreamQueries('A', 'web.ns.svc.cluster.local'), 0, 'never reached the upstream');
  });

  test('headless service returns every pod IP', () => {
    const ips = inPod('dig', ['+short', 'db.ns.svc.cluster.local']).trim().split('\n').sort();
    assert.deepEqual(ips, ['10.1.0.1', '10.1.0.2', '10.1.0.3']);
    const glibc = inPod('getent', ['ahostsv4', 'db']).split('\n').map((l) => l.split(/\s+/)[0]).filter(Boolean);
    assert.deepEqual([...new Set(glibc)].sort(), ['10.1.0.1', '10.1.0.2', '10.1.0.3']);
  });

  test('AAAA for a v4-only service is NOERROR with no answer', () => {
    const out = inPod('dig', ['AAAA', 'web.ns.svc.cluster.local']);
    assert.match(out, /status: NOERROR/);
    assert.match(out, /ANSWER: 0/);
  });

  test('external name answered via the upstream, second query is a cache hit', () => {
    assert.equal(inPod('dig', ['+short', 'ext.example']).trim(), '203.0.113.7');
    assert.equal(inPod('dig', ['+short', 'EXT.example']).trim(), '203.0.113.7');
    assert.equal(inPod('dig', ['+short', '+tcp', 'ext.example']).trim(), '203.0.113.7');
    assert.equal(upstreamQueries('A', 'ext.example'), 1, `the upstream saw exactly one query; log:\n${readFileSync(dnsmasqLog, 'utf8')}`);
    assert.match(inPod('getent', ['ahostsv4', 'ext.example']), /^203\.0\.113\.7\s/m);
  });

  test('upstream down → SERVFAIL within the timeout', () => {
    dnsmasq.kill('SIGKILL');
    const t0 = Date.now();
    const out = inPod('dig', ['+time=5', '+tries=1', 'down.example']);
    const took = Date.now() - t0;
    assert.match(out, /status: SERVFAIL/);
    assert.ok(took < 4000, `SERVFAIL after ${took} ms (proxy budget 1500 ms)`);
    // Cluster names keep working without the upstream.
    assert.equal(inPod('dig', ['+short', 'web.ns.svc.cluster.local']).trim(), '10.96.0.10');
  });
});
