// `weir precheck`: what this node offers and lacks for weir, one line per
// fact with what to do about it. Each check probes the real thing (the
// kernel accepts weir's ruleset in check mode, the conf dir is read the way
// libcni reads it), never a guess from a version number alone.
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { execa } from 'execa';
import { findPrimaryConf, pluginsOf } from '../../agent/installer-conf.js';
import { detectIptablesMode } from '../../netns/iptables-detect.js';
import { ADDON_NOT_BUILT, nativeAvailable, nftRun } from '../../native/addon.js';
import { buildPlan } from '../../redirect/plan.js';
import { renderNftables } from '../../redirect/render-nftables.js';
import { adminCall } from '../admin-client.js';
import { ebpfChecks } from './ebpf-check.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';
export interface CheckLine { check: string; status: CheckStatus; detail: string; fix?: string }

export interface PrecheckOptions { cniConfDir: string; socket: string; procRoot?: string }

/** Where the primary CNI keeps its conf on common distributions (first that exists is suggested). */
export const KNOWN_CNI_CONF_DIRS = ['/etc/cni/net.d', '/var/lib/rancher/k3s/agent/etc/cni/net.d', '/etc/cni/multus/net.d'];

const SAMPLE_POD = { metadata: { name: 'precheck', namespace: 'default' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } };

async function kernel(): Promise<CheckLine> {
  const r = release();
  const [maj, min] = r.split('.').map(Number);
  // inet-family NAT chains (one table for v4 and v6) need Linux 5.2.
  const ok = maj > 5 || (maj === 5 && min >= 2);
  return { check: 'kernel', status: ok ? 'ok' : 'fail', detail: r, fix: ok ? undefined : 'Linux 5.2+ is needed for inet NAT (nftables backend); use --backend iptables or upgrade the kernel' };
}

async function nftablesBackend(): Promise<CheckLine> {
  if (!nativeAvailable()) return { check: 'backend nftables', status: 'fail', detail: ADDON_NOT_BUILT, fix: 'install libnftables1 and the weir native addon (npm run build), or use --backend iptables' };
  try {
    // Check mode: libnftables validates the whole batch with the kernel and commits nothing.
    await nftRun(null, renderNftables(buildPlan(SAMPLE_POD)), { check: true });
    return { check: 'backend nftables', status: 'ok', detail: 'the kernel accepts weir\'s ruleset (nat hooks, redirect, fib, meta skuid)' };
  } catch (e) {
    return { check: 'backend nftables', status: 'fail', detail: (e as Error).message.split('\n')[0], fix: 'load nf_tables, nft_chain_nat, nft_redir, nft_fib_inet (modprobe), or use --backend iptables' };
  }
}

async function iptablesBackend(): Promise<CheckLine[]> {
  const det = await detectIptablesMode();
  const bin = det.mode === 'nft' ? 'iptables-nft' : 'iptables-legacy';
  const v = await execa(bin, ['--version'], { reject: false, timeout: 5000 });
  const mode: CheckLine = { check: 'iptables in use', status: 'ok', detail: `${det.mode} (${det.reason})` };
  if (v.exitCode !== 0) return [mode, { check: 'backend iptables', status: 'warn', detail: `${bin} not found`, fix: `install the iptables package (${bin}) to use --backend iptables` }];
  return [mode, { check: 'backend iptables', status: 'ok', detail: `${String(v.stdout).trim()}; pods get the ${det.mode} variant`, fix: det.mode === 'legacy' ? 'legacy iptables needs NET_RAW in the DaemonSet (it is added)' : undefined }];
}

async function cniConf(dir: string): Promise<CheckLine[]> {
  if (!existsSync(dir)) {
    const other = KNOWN_CNI_CONF_DIRS.find((d) => d !== dir && existsSync(d));
    return [{ check: 'CNI conf dir', status: 'fail', detail: `${dir} does not exist`, fix: other ? `this node's CNI conf is in ${other}: --cni-conf-dir ${other} (WEIR_CNI_CONF_DIR)` : 'install the primary CNI first, or pass --cni-conf-dir' }];
  }
  const primary = await findPrimaryConf(dir).catch(() => undefined);
  if (!primary) return [{ check: 'CNI conf dir', status: 'warn', detail: `${dir}: no valid .conf/.conflist yet`, fix: 'the primary CNI has not written its conf; weir chains itself once it appears' }];
  const types = pluginsOf(primary).map((p) => String(p.type));
  const lines: CheckLine[] = [{ check: 'CNI conf dir', status: 'ok', detail: `${dir}, primary ${primary.path.split('/').pop()}` }];
  const chained = types.includes('weir-cni');
  lines.push({ check: 'primary CNI', status: 'ok', detail: `${types.join(' → ')}${chained ? '' : ' (weir-cni not chained yet)'}`, fix: chained ? undefined : 'the agent chains weir-cni when it starts' });
  if (types.includes('cilium-cni')) lines.push({ check: 'cilium', status: 'warn', detail: 'Cilium overwrites other plugins\' confs by default', fix: 'install Cilium with --set cni.exclusive=false so weir-cni stays chained' });
  return lines;
}

async function agent(socket: string): Promise<CheckLine> {
  try {
    const s = await adminCall(socket, 'GET', '/v1/status', 3000) as { ready: boolean; readyReason: string; backend: string };
    return { check: 'agent', status: s.ready ? 'ok' : 'warn', detail: `${socket}: ${s.ready ? 'ready' : `not ready (${s.readyReason})`}, backend ${s.backend}`, fix: s.ready ? undefined : 'weir status; weir logs --tail 50' };
  } catch (e) {
    return { check: 'agent', status: 'warn', detail: (e as Error).message, fix: 'kubectl -n weir-system get pods -l app.kubernetes.io/name=weir-agent -o wide (or pass --socket)' };
  }
}

export async function runPrechecks(o: PrecheckOptions): Promise<CheckLine[]> {
  const [k, n, ipt, cni, a] = await Promise.all([kernel(), nftablesBackend(), iptablesBackend(), cniConf(o.cniConfDir), agent(o.socket)]);
  return [k, n, ...ipt, ...ebpfChecks(), ...cni, a];
}
