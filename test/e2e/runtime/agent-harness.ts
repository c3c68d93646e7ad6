// Stand-in for `weir agent` in the runtime suite until that command exists:
// a separate process assembled from the agent's real parts — the installer
// (chains weir-cni into the runtime's CNI conf), the CNI server, the capture
// controller with the nftables backend and buildPlan — with pods read from
// JSON files (StaticResolver) instead of the Kubernetes API. Being a real
// process, the tests can kill it and start it again, as with the agent.
//
//   tsx agent-harness.ts --run-dir D --cni-conf-dir D --cni-bin-dir D --pods-dir D
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

const { values } = parseArgs({
  options: {
    'run-dir': { type: 'string' },
    'cni-conf-dir': { type: 'string' },
    'cni-bin-dir': { type: 'string' },
    'pods-dir': { type: 'string' },
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

const agentSocket = path.join(runDir, 'cni.sock');
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
process.stdout.write('ready\n');

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    await installer.stop().catch(() => {});
    await server.close().catch(() => {});
    process.exit(0);
  })();
});
