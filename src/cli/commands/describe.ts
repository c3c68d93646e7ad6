// `weir describe NS/POD`: one screen on what weir does to a pod (see
// src/agent/describe.ts for where each line comes from).
import type { Command } from 'commander';
import { adminCall, adminSocket, parsePod } from '../admin-client.js';
import { EXIT, runAction } from '../exit.js';
import { printObject } from '../output.js';
import { withAdmin } from './node.js';
import type { Description } from '../../agent/describe.js';

function human(d: Description): string {
  const c = d.capture;
  const out: string[] = [`Pod:        ${d.pod}`];
  out.push(`Captured:   ${c.captured ? `yes, by ${c.backend ?? '?'} (plan ${c.planHash ?? '?'})` : `no — ${c.state}: ${c.reason}${c.field ? ` (${c.field})` : ''}`}`);
  if (c.error) out.push(`            ${c.error}`);
  out.push(`Verified:   ${c.verified}${c.verifiedAt ? ` at ${c.verifiedAt}` : ''}`);
  const p = d.proxy;
  if (!p.reachable) out.push(`Proxy:      unreachable${p.error ? ` (${p.error})` : ''}`);
  else {
    out.push(`Proxy:      ${p.ready ? 'ready' : 'NOT ready'}${p.readyReason ? ` (${p.readyReason})` : ''}${p.identity ? `, identity ${p.identity}` : ''}`);
    out.push(`Config:     registry version ${p.acknowledgedVersion} acknowledged by the proxy${p.agentRegistryVersion !== undefined ? `; agent is at ${p.agentRegistryVersion}${p.agentSentVersion !== undefined ? `, sent ${p.agentSentVersion}` : ', no session for this pod'}` : ''}`);
  }
  out.push(`Services:   ${d.services.length ? d.services.join(', ') : p.reachable ? 'none select this pod' : 'unknown (proxy unreachable)'}`);
  if (d.routesTo.length) out.push(`Routes to:  ${d.routesTo.map((r) => `${r.cluster} (${r.endpoints} endpoint${r.endpoints === 1 ? '' : 's'})`).join('\n            ')}`);
  out.push(`VirtualServices:       ${d.istioConfig.virtualServices}`);
  out.push(`DestinationRules:      ${d.istioConfig.destinationRules}`);
  out.push(`mTLS (PeerAuthentication): ${d.istioConfig.peerAuthentication}`);
  out.push(`AuthorizationPolicies: ${d.istioConfig.authorizationPolicies}`);
  out.push(`Last errors: ${d.lastErrors.length ? '' : 'none'}`);
  for (const e of d.lastErrors) out.push(`  ${e.at} ${e.kind}: ${e.error}`);
  if (d.next.length) { out.push('Next:'); for (const n of d.next) out.push(`  ${n}`); }
  return `${out.join('\n')}\n`;
}

export function registerDescribeCommand(program: Command): void {
  withAdmin(program.command('describe').argument('<pod>', 'NAMESPACE/NAME').description('is the pod captured, by which backend, its proxy\'s readiness and config, the services and policy that apply, last errors, what to do next'), ['table', 'json', 'yaml'])
    .action(runAction('weir describe', async (podArg: string, opts: { output?: string; socket?: string }) => {
      const { ns, name } = parsePod(podArg);
      const d = await adminCall(adminSocket(opts), 'GET', `/v1/pods/${ns}/${name}/describe`) as Description;
      printObject(opts.output, d, () => human(d));
      // Exit 1 when the pod should be captured and is not, so scripts can gate on it.
      return d.capture.captured || d.capture.state === 'not-captured' ? EXIT.ok : EXIT.failure;
    }));
}
