// Stand-in for `weir agent` in the runtime suite until that command exists:
// a separate process assembled from the agent's real parts — the installer
// (chains weir-cni into the runtime's CNI conf), the CNI server, the capture
// controller with the nftables backend and buildPlan — with pods read from
// JSON files (StaticResolver) instead of the Kubernetes API. Being a real
// process, the tests can kill it and start it again, as with the agent.
//
//   tsx agent-harness.ts --run-dir D --cni-conf-dir D --cni-bin-dir D --pods-dir D [--services-dir D]
// With --services-dir it also serves the proxies' control plane on
// <run-dir>/proxy.sock (weir's startControlPlane), its registry fed from the
// Service and EndpointSlice objects (JSON files) in that directory, re-read
// when they change — the stand-in for the agent's Kubernetes watch.
// Prints "ready" on stdout once chained and serving; exits on SIGTERM
// (keeping the weir-cni entry, so pods fail closed until it returns).
import { parseArgs } from 'node:util';
import * as path from 'node:path';
import { CniServer } from '../../../src/agent/cni-server.js';
import { CaptureController } from '../../../src/agent/capture-controller.js';
import { SandboxStore } from '../../../src/agent/sandbox-store.js';
import { StaticResolver } from '../../../src/agent/static-resolver.js';
import { Installer } from '../../../src/agent/installer.js';
import { NftablesBackend } from '../../../src/netns/nft-backend.js';
import { buildPlan } from '../../../src/redirect/plan.js';
import type { ControllerLogger } from '../../../src/agent/capture-controller.js';
import * as fs from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { Registry as PromRegistry } from 'prom-client';
import { startControlPlane, type ControlPlane } from '../../../src/controlplane/server.js';
import type { RegistryBuilder } from '../../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../../src/controlplane/kube-shapes.js';
import { createLogger } from '../../../src/common/log.js';

const { values } = parseArgs({
  options: {
    'run-dir': { type: 'string' },
    'cni-conf-dir': { type: 'string' },
    'cni-bin-dir': { type: 'string' },
    'pods-dir': { type: 'string' },
    'services-dir': { type: 'string' },
    'plugin-binary': { type: 'string', default: path.resolve('dist/weir-cni') },
  },
});
for (const flag of ['run-dir', 'cni-conf-dir', 'cni-bin-dir', 'pods-dir'] as const) {
  if (!values[flag]) { process.stderr.write(`agent-harness: --${flag} is required\n`); process.exit(2); }
}
const runDir = values['run-dir']!;

const logger: ControllerLogger = Object.fromEntries((['debug', 'info', 'warn', 'error'] as const).map((level) => [
  level, (obj: object, msg: string) => { if (level !== 'debug') process.stderr.write(`${JSON.stringify({ level, msg, ...obj })}\n`); },
])) as unknown as ControllerLogger;

// The CNI server makes its socket's directory 0700; the proxies (UID 1337)
// must still reach proxy.sock in the run dir, so the CNI socket gets a subdir.
const agentSocket = path.join(runDir, 'cni', 'cni.sock');
const store = await SandboxStore.open(runDir);
const controller = new CaptureController({
  resolver: await StaticResolver.fromDir(values['pods-dir']!),
  backend: new NftablesBackend(),
  planner: (pod) => buildPlan(pod),
  store,
  logger,
});
const installer = new Installer({
  confDir: values['cni-conf-dir']!,
  binDir: values['cni-bin-dir']!,
  pluginBinary: values['plugin-binary']!,
  pluginConf: { agentSocket, agentTimeoutMs: 3000 },
  keepOnShutdown: true,
  logger,
});
const server = new CniServer({ controller, socketPath: agentSocket, ready: () => installer.ready(), logger });
await server.start();
await installer.start();
let controlPlane: ControlPlane | undefined;
if (values['services-dir']) controlPlane = await startRegistry(values['services-dir']);

/** The proxies' control plane, with Services/EndpointSlices from files instead of the API server. */
async function startRegistry(dir: string): Promise<ControlPlane> {
  const seen = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  return startControlPlane({
    kubeConfig: new KubeConfig(),
    socketPath: path.join(runDir, 'proxy.sock'),
    logger: createLogger({ name: 'weir-agent-harness' }),
    metrics: new PromRegistry(),
    clusterDomain: 'cluster.local',
    // Which pod a proxy runs in: the sandbox whose netns the peer process is in.
    identifyPeer: async (pid) => {
      let ino: number;
      try { ino = fs.statSync(`/proc/${pid}/ns/net`).ino; } catch { return undefined; }
      for (const rec of store.list()) {
        try {
          if (fs.statSync(rec.netns).ino === ino && rec.podNamespace && rec.podName) {
            return { namespace: rec.podNamespace, name: rec.podName, uid: rec.podUid ?? '', ips: rec.ips };
          }
        } catch { /* netns gone */ }
      }
      return undefined;
    },
    source: (apply) => {
      const scan = () => {
        for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
          const file = path.join(dir, f);
          const mtime = fs.statSync(file).mtimeMs;
          if (seen.get(file) === mtime) continue;
          seen.set(file, mtime);
          const obj = JSON.parse(fs.readFileSync(file, 'utf8')) as { kind?: string };
          if (obj.kind === 'Service') apply((b: RegistryBuilder) => b.upsertService(obj as KubeService));
          else if (obj.kind === 'EndpointSlice') apply((b: RegistryBuilder) => b.upsertEndpointSlice(obj as KubeEndpointSlice));
          else throw new Error(`${file}: kind must be Service or EndpointSlice`);
        }
      };
      return {
        start: async () => { scan(); timer = setInterval(scan, 200); },
        stop: async () => { clearInterval(timer); },
      };
    },
  });
}
process.stdout.write('ready\n');

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    await controlPlane?.close().catch(() => {});
    await installer.stop().catch(() => {});
    await server.close().catch(() => {});
    process.exit(0);
  })();
});
