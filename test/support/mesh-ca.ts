// A real mesh CA for netns suites and benches: the test API server (pods,
// TokenReview), `weir ca` on 127.0.0.1, a node agent token bound to node-a,
// and the agent's CSR forwarder for the control plane (onCsr). Pods are put
// into the API server as running on node-a with their service account.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry as PromRegistry } from 'prom-client';
import { TestApiServer } from './apiserver.js';
import { startCa } from '../../src/ca/main.js';
import type { CaClientOptions } from '../../src/ca/client.js';
import { createCsrForwarder } from '../../src/agent/csr-forwarder.js';
import type { CsrHandler } from '../../src/controlplane/csr-messages.js';

export interface MeshCa {
  api: TestApiServer;
  rootsPem: string;
  /** For CaClient in the test process (the agent's credentials). */
  caOpts: CaClientOptions;
  onCsr: CsrHandler;
  /** A running pod on node-a; returns its uid (the agent's PodIdentity must carry it). */
  addPod(namespace: string, name: string, serviceAccount: string): string;
  close(): Promise<void>;
}

export async function startMeshCa(dir: string): Promise<MeshCa> {
  const api = await TestApiServer.start();
  const addPod = (namespace: string, name: string, serviceAccount: string) => api.put({
    kind: 'Pod', metadata: { namespace, name }, spec: { nodeName: 'node-a', serviceAccountName: serviceAccount, containers: [{ name: 'c', image: 'x' }] }, status: { phase: 'Running' },
  }).metadata.uid!;
  const agentUid = addPod('weir-system', 'agent-a', 'weir-agent');
  api.addToken('tok-a', { username: 'system:serviceaccount:weir-system:weir-agent', extra: { 'authentication.kubernetes.io/pod-name': ['agent-a'], 'authentication.kubernetes.io/pod-uid': [agentUid], 'authentication.kubernetes.io/node-name': ['node-a'] } });
  writeFileSync(join(dir, 'agent-token'), 'tok-a\n');
  const ca = await startCa({
    kubeconfig: api.writeKubeconfig(dir), namespace: 'weir-system', trustDomain: 'cluster.local', host: '127.0.0.1', port: 0,
    dnsNames: ['localhost'], ips: ['127.0.0.1'], agentServiceAccounts: ['weir-system/weir-agent'], certTtlMs: 24 * 3600e3, maxCertTtlMs: 48 * 3600e3,
    logger: pino({ level: 'silent' }),
  });
  const rootsPem = ca.server.rootsPem();
  const caOpts = { url: `https://127.0.0.1:${ca.server.port}`, rootsPem, tokenFile: join(dir, 'agent-token'), servername: 'localhost' };
  const onCsr = createCsrForwarder({ ca: caOpts, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), metrics: new PromRegistry() });
  return {
    api, rootsPem, caOpts, onCsr, addPod,
    async close() { await ca.server.close(); await api.stop(); },
  };
}
