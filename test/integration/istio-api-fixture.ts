// The setting the suites that drive weir through the API server share: the
// test API server (list/watch), pods in netns (proxy-harness's Cluster), and
// the agent's Istio networking source + control plane (v2, compiled per view)
// over them, as src/agent wires them. Suites put their objects, start the
// control plane, then start apps and proxies.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { KubeConfig } from '@kubernetes/client-node';
import { TestApiServer } from '../support/apiserver.js';
import { until, type PollOptions, type Probe } from '../support/poll.js';
import { loadKubeConfig } from '../../src/kube/informers.js';
import { IstioConfigSource, IstioConfigStore } from '../../src/controlplane/istio-source.js';
import { istioCompiledSource } from '../../src/controlplane/v2/compiled-source.js';
import { Cluster } from './proxy-harness.js';

export class IstioApiMesh {
  readonly c = new Cluster();
  istio?: IstioConfigSource;
  kubeConfig?: KubeConfig;

  private constructor(readonly api: TestApiServer, readonly dir: string) {}

  static async create(tmpPrefix: string): Promise<IstioApiMesh> {
    const dir = mkdtempSync(path.join(tmpdir(), tmpPrefix));
    return new IstioApiMesh(await TestApiServer.start({ bookmarkIntervalMs: 500 }), dir);
  }

  /** The Istio source and the control plane; resolves once both have synced with the API server. */
  async startControlPlane(): Promise<void> {
    this.kubeConfig = loadKubeConfig(this.api.writeKubeconfig(this.dir));
    this.istio = new IstioConfigSource(this.kubeConfig, new IstioConfigStore(), pino({ level: 'silent' }), { discoveryIntervalMs: 200 });
    await this.c.startControlPlane({
      kubeConfig: this.kubeConfig,
      compiled: istioCompiledSource({ store: this.istio.store, rootNamespace: 'istio-system' }),
      compiledReady: this.istio.start(),
    });
  }

  /** Polls with this setting's logs (agent, proxies, apps) in the timeout error. */
  until<T>(what: string, probe: Probe<T>, ms = 15_000, everyMs = 100): Promise<T> {
    const o: PollOptions = { ms, everyMs, detail: () => this.c.logs() };
    return until(what, probe, o);
  }

  async destroy(): Promise<void> {
    await this.istio?.stop();
    await this.c.destroy();
    await this.api.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
