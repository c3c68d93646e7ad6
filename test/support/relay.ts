// Runs the C relay (dist/weir-cni) as a runtime would: env + stdin in, exit
// code + the CNI result/error on stdout out.
import { spawn } from 'node:child_process';
import { RELAY } from './agent-child.js';

export interface RelayOutcome { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; json?: { code?: number; msg?: string; details?: string } & Record<string, unknown> }

export function runRelay(env: Record<string, string | undefined>, stdin: string | Buffer, timeoutMs = 20_000): Promise<RelayOutcome> {
  return new Promise((resolve, reject) => {
    const clean: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
    const child = spawn(RELAY, [], { env: clean, stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.stdin.on('error', () => { /* the relay may stop reading early (input over the limit) */ });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      let json;
      try { json = stdout.trim() ? JSON.parse(stdout) : undefined; } catch { json = undefined; }
      resolve({ code, signal, stdout, stderr, json });
    });
    child.stdin.end(stdin);
  });
}

/** The env of a per-sandbox command for pod `name` in `namespace`. */
export function sandboxEnv(command: string, containerId: string, netns: string, namespace: string, name: string): Record<string, string> {
  return { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_UID=u-${name}` };
}

/** A chained conf with a prevResult, pointed at an agent socket. */
export function confText(agentSocket: string, prevResult: unknown = { cniVersion: '1.0.0', interfaces: [], ips: [{ address: '10.22.0.5/24' }] }, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion: '1.0.0', name: 'wk-net', type: 'weir-cni', agentSocket, agentTimeoutMs: 10000, prevResult, ...extra });
}
