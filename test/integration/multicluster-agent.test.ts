// The real agent (startAgent) with remote clusters on: it reads the remote
// Secrets from its namespace (--remote-secret-namespace), serves cluster B's
// Services through its control plane, and `weir status` (the CLI through
// the admin socket) lists every remote cluster with its sync state, counts
// and last sync — synced, error (a broken kubeconfig, named), and stale
// once B's API server is gone.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { skipUnlessRoot } from '../support/netns.js';
import { TestApiServer } from '../support/apiserver.js';
import { cliBundle, weirCli } from '../support/cli.js';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import type { AgentConfig } from '../../src/agent/config.js';
import type { RemoteClusterStatus } from '../../src/controlplane/remote-clusters.js';
import { until } from '../support/poll.js';

const REPO = path.resolve(import.meta.dirname, '../..');

describe('agent with remote clusters: weir status lists them with their sync state', { skip: skipUnlessRoot() }, () => {
  let a: TestApiServer;
  let b: TestApiServer;
  let agent: Agent | undefined;
  let dir: string;
  const status = async (): Promise<{ cluster: { id: string; network?: string; secretNamespace?: string; remotes: RemoteClusterStatus[] } }> => {
    const r = await weirCli(['status', '--socket', agent!.adminSocket, '-o', 'json']);
    assert.ok(r.stdout, r.stderr);
    return JSON.parse(r.stdout);
  };

  before(async () => {
    await cliBundle();
    a = await TestApiServer.start({ bookmarkIntervalMs: 300 });
    b = await TestApiServer.start({ bookmarkIntervalMs: 300 });
    dir = mkdtempSync(path.join(tmpdir(), 'wmc-agent-'));
    b.put({ kind: 'Service', metadata: { namespace: 'ns', name: 'b-only' }, spec: { clusterIP: '10.20.0.5', clusterIPs: ['10.20.0.5'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
    b.put({ kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { namespace: 'ns', name: 'b-only-1', labels: { 'kubernetes.io/service-name': 'b-only' } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: ['10.2.0.7'] }, { addresses: ['10.2.0.8'] }] });
    const config: AgentConfig = {
      nodeName: `wmc-${randomUUID().slice(0, 6)}`, kubeconfig: a.writeKubeconfig(dir), cniConfDir: path.join(dir, 'net.d'), cniBinDir: path.join(dir, 'bin'), cniPluginBinary: path.join(REPO, 'dist/weir-cni'),
      install: false, runDir: path.join(dir, 'run'), backend: 'nftables', repairMode: 'repair', repairIntervalMs: 600_000,
      metricsAddr: '127.0.0.1:0', hostProc: '/proc', excludeNamespaces: ['kube-system'], keepChainOnShutdown: false,
      controlPlane: true, clusterDomain: 'cluster.local', logLevel: process.env.WMC_LOG ?? 'silent',
      clusterId: 'east', network: 'net-east', remoteSecretNamespace: 'weir-system',
    };
    agent = await startAgent(config);
  });

  after(async () => {
    await agent?.close();
    await a?.stop();
    await b?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  test('synced and error entries, then stale when B\'s API server dies; the table shows them', async () => {
    assert.deepEqual((await status()).cluster, { id: 'east', network: 'net-east', secretNamespace: 'weir-system', remotes: [] });
    const kubeconfigB = readFileSync(b.writeKubeconfig(path.join(dir, 'b')), 'utf8');
    a.put({ kind: 'Secret', metadata: { namespace: 'weir-system', name: 'istio-remote-secret-west', labels: { 'istio/multiCluster': 'true' } }, data: {
      west: Buffer.from(kubeconfigB).toString('base64'), broken: Buffer.from('current-context: nowhere\n').toString('base64'),
    } });
    // A Secret in another namespace is not read (the Role is for the agent's namespace only, and so is the watch).
    a.put({ kind: 'Secret', metadata: { namespace: 'default', name: 'elsewhere', labels: { 'istio/multiCluster': 'true' } }, data: { north: Buffer.from(kubeconfigB).toString('base64') } });
    const synced = await until('west synced in weir status', async () => {
      const r = (await status()).cluster.remotes;
      return r.find((x) => x.cluster === 'west')?.state === 'synced' ? r : undefined;
    });
    assert.deepEqual(synced.map((r) => r.cluster), ['broken', 'west']);
    const west = synced.find((r) => r.cluster === 'west')!;
    assert.deepEqual([west.services, west.endpoints, west.secret], [1, 2, 'istio-remote-secret-west']);
    assert.ok(west.lastEventAt && Date.now() - Date.parse(west.lastEventAt) < 10_000, west.lastEventAt);
    const broken = synced.find((r) => r.cluster === 'broken')!;
    assert.equal(broken.state, 'error');
    assert.match(broken.lastError!, /^Secret weir-system\/istio-remote-secret-west data\["broken"\]: current-context "nowhere" names no cluster/);
    const table = await weirCli(['status', '--socket', agent!.adminSocket]);
    assert.match(table.stdout, /cluster\s+east network=net-east remote Secrets in weir-system/);
    assert.match(table.stdout, /REMOTE CLUSTER\s+STATE\s+NETWORK\s+SERVICES\s+ENDPOINTS\s+LAST SYNC/);
    assert.match(table.stdout, /\nwest\s+synced\s+-\s+1\s+2\s+\d{4}-/);
    assert.match(table.stdout, /\nbroken\s+error\s+/);
    assert.doesNotMatch(table.stdout + JSON.stringify(synced), /test-token/);

    await b.stop();
    const stale = await until('west stale', async () => (await status()).cluster.remotes.find((x) => x.cluster === 'west' && x.state === 'stale'), 10_000);
    assert.equal(stale.services, 1, 'its data is still served');
    assert.ok(stale.lastError, 'and why it is stale');
    assert.match(await (await fetch(`${agent!.metricsUrl}/metrics`)).text(), /weir_controlplane_remote_cluster_stale\{cluster="west"\} 1/);
    assert.match((await weirCli(['status', '--socket', agent!.adminSocket])).stdout, /\nwest\s+stale\s+/);
  });
});
