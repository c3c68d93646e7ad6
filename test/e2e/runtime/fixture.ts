// Shared set-up for the runtime suites: one private containerd with the
// locally built images imported, and a CNI network (Debian's bridge +
// host-local) on a random subnet and bridge name of our own.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Containerd, type ContainerdOptions } from '../../support/containerd.js';
import { CriClient } from '../../support/cri.js';
import { buildImage, pauseImageSpec, appImageSpec } from '../../support/images.js';

export interface PodNetwork {
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  /** host-local's lease directory (one file per allocated IP). */
  ipamDir: string;
  conflistPath: string;
}

export interface RuntimeNode {
  containerd: Containerd;
  cri: CriClient;
  net: PodNetwork;
  stop(): Promise<void>;
}

/**
 * Write the bridge + host-local conflist that stands in for a node's primary
 * CNI. The subnet is random in 10.150-199.x so parallel suites (and other
 * engineers' tests, which use 10.200+) do not overlap.
 */
export function writeBridgeConflist(confDir: string, ipamRoot: string, extraPlugins: object[] = []): PodNetwork {
  const hex = randomBytes(3).toString('hex');
  const a = 150 + Math.floor(Math.random() * 50);
  const b = 1 + Math.floor(Math.random() * 250);
  const net: PodNetwork = {
    name: `we-net-${hex}`,
    bridge: `webr${hex}`,
    subnet: `10.${a}.${b}.0/24`,
    gateway: `10.${a}.${b}.1`,
    ipamDir: path.join(ipamRoot, 'host-local'),
    conflistPath: path.join(confDir, '10-we-bridge.conflist'),
  };
  const conflist = {
    cniVersion: '1.0.0',
    name: net.name,
    plugins: [
      {
        type: 'bridge',
        bridge: net.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: 'host-local', dataDir: net.ipamDir, ranges: [[{ subnet: net.subnet, gateway: net.gateway }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      ...extraPlugins,
    ],
  };
  fs.mkdirSync(confDir, { recursive: true });
  fs.writeFileSync(net.conflistPath, JSON.stringify(conflist, null, 2));
  return net;
}

/** Allocated IPs in host-local's lease dir for this network (file names are the IPs). */
export function ipamLeases(net: PodNetwork): string[] {
  try {
    return fs.readdirSync(path.join(net.ipamDir, net.name)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  } catch { return []; }
}

export async function startRuntimeNode(opts: ContainerdOptions & { withApp?: boolean } = {}): Promise<RuntimeNode> {
  const containerd = await Containerd.start({ prefix: 'we', ...opts });
  let cri: CriClient | null = null;
  try {
    containerd.importImage(buildImage(pauseImageSpec()));
    if (opts.withApp) containerd.importImage(buildImage(appImageSpec()));
    const net = writeBridgeConflist(containerd.cniConfDir, containerd.dir);
    cri = new CriClient(containerd.socket, containerd.dir);
    await cri.version();
    await cri.waitForCniConfig(net.name);
    const c = cri;
    return {
      containerd, cri: c, net,
      async stop() {
        // Remove whatever pods a failed test left, so CNI DEL frees IPs and netns.
        for (const sb of await c.listPodSandbox().catch(() => [])) {
          await c.stopPodSandbox(sb.id).catch(() => {});
          await c.removePodSandbox(sb.id).catch(() => {});
        }
        c.close();
        await containerd.stop();
        try { execFileSync('ip', ['link', 'del', net.bridge], { stdio: 'ignore' }); } catch { /* gone */ }
      },
    };
  } catch (err) {
    cri?.close();
    await containerd.stop();
    throw err;
  }
}
