// The node-local debug CLI: talks to the agent's admin socket.
//   weir status | pods | pod-rules POD | check POD | repair POD
// (logs, describe and proxy-config have their own modules.) POD is
// NAMESPACE/NAME or NAME (namespace "default"). Exit codes: src/cli/exit.ts.
import type { Command } from 'commander';
import { adminCall, adminSocket, parsePod, socketOption } from '../admin-client.js';
import { EXIT, runAction } from '../exit.js';
import { outputOption, printListing, printObject, table } from '../output.js';
import type { PodView } from '../../agent/pod-view.js';
import type { RemoteClusterStatus } from '../../controlplane/remote-clusters.js';

type Out = { output?: string; socket?: string };
interface CheckResult { namespace: string; name: string; result: string; capture?: boolean; reason?: string; via?: string; netns?: string; differences?: string[]; error?: string }

export function withAdmin(cmd: Command, formats?: Parameters<typeof outputOption>[0]): Command {
  return cmd.addOption(outputOption(formats)).addOption(socketOption());
}

/** Remote clusters and their sync state, as `weir status` prints them. */
export function remoteClustersTable(remotes: RemoteClusterStatus[]): string {
  return table(remotes.map((r) => [
    r.cluster, r.state, r.network ?? '-', String(r.services), String(r.endpoints), r.lastEventAt ?? 'never', r.secret, r.lastError ?? '',
  ]), ['REMOTE CLUSTER', 'STATE', 'NETWORK', 'SERVICES', 'ENDPOINTS', 'LAST SYNC', 'SECRET', 'ERROR']);
}

/** The CAPTURED column: what is programmed and verified, and why not. */
export function capturedCell(p: PodView): string {
  return p.captured ? 'yes' : p.state === 'not-captured' ? 'no' : p.state;
}

export function registerNodeCommands(program: Command): void {
  withAdmin(program.command('status').description('agent, install, backend and informer health'), ['table', 'json', 'yaml'])
    .action(runAction('weir', async (opts: Out) => {
      const s = await adminCall(adminSocket(opts), 'GET', '/v1/status') as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      printObject(opts.output, s, () => {
        const inf = Object.entries(s.informers as Record<string, { synced: boolean; restarts: number; lastError?: string }>)
          .map(([k, v]) => `${k}=${v.synced ? 'synced' : 'NOT SYNCED'} restarts=${v.restarts}${v.lastError ? ` lastError="${v.lastError}"` : ''}`).join('; ');
        const main = table([
          ['node', s.node], ['ready', `${s.ready} (${s.readyReason})`], ['backend', s.backend], ['repair mode', s.repairMode],
          ['install', `${s.install.ready} (${s.install.reason})`], ['informers', inf], ['sandboxes', `${s.sandboxes} (${s.captured} captured)`],
          ['last repair', s.lastRepair ? `${s.lastRepair.at}, ${s.lastRepair.outcomes.length} pods checked` : 'none'],
          ...(s.cluster ? [['cluster', `${s.cluster.id}${s.cluster.network ? ` network=${s.cluster.network}` : ''}${s.cluster.secretNamespace ? ` remote Secrets in ${s.cluster.secretNamespace}` : ' (remote clusters off)'}`]] : []),
        ], ['FIELD', 'VALUE']);
        return s.cluster?.remotes?.length ? `${main}\n${remoteClustersTable(s.cluster.remotes as RemoteClusterStatus[])}` : main;
      });
      return s.ready ? EXIT.ok : EXIT.failure;
    }));

  withAdmin(program.command('pods').description('pods on this node: captured (programmed and verified) or why not'))
    .action(runAction('weir', async (opts: Out) => {
      const pods = await adminCall(adminSocket(opts), 'GET', '/v1/pods') as PodView[];
      printListing<PodView>(opts.output, pods, [
        { header: 'POD', value: (p) => `${p.namespace}/${p.name}` },
        { header: 'PHASE', value: (p) => p.phase },
        { header: 'CAPTURED', value: capturedCell },
        { header: 'REASON', value: (p) => (p.field ? `${p.reason} ${p.field}` : p.reason) },
        { header: 'BACKEND', value: (p) => p.backend },
        { header: 'VERIFIED', value: (p) => p.verified },
        { header: 'IP', value: (p) => p.podIP, wide: true },
        { header: 'PLAN', value: (p) => p.planHash, wide: true },
        { header: 'SANDBOXES', value: (p) => p.sandboxes.length, wide: true },
        { header: 'STATUS', value: (p) => p.status, wide: true },
        { header: 'ERROR', value: (p) => p.error, wide: true },
      ]);
      return EXIT.ok;
    }));

  withAdmin(program.command('pod-rules').argument('<pod>', 'NAMESPACE/NAME').description('the capture rules weir owns in the pod\'s netns, as the kernel reports them'), ['table', 'json', 'yaml'])
    .action(runAction('weir', async (podArg: string, opts: Out) => {
      const { ns, name } = parsePod(podArg);
      const sock = adminSocket(opts);
      const view = await adminCall(sock, 'GET', `/v1/pods/${ns}/${name}`) as PodView;
      // A pod weir did not program has no rules to show: say why instead of an empty listing.
      if (!view.captured && view.state !== 'failed' && view.state !== 'stale') {
        printObject(opts.output, { namespace: ns, name, captured: false, state: view.state, reason: view.reason, field: view.field, error: view.error },
          () => `# ${ns}/${name}: not captured (${view.state}: ${view.reason}${view.field ? ` ${view.field}` : ''})${view.error ? `\n# ${view.error}` : ''}\n`);
        return view.state === 'not-captured' ? EXIT.ok : EXIT.failure;
      }
      const r = await adminCall(sock, 'GET', `/v1/pods/${ns}/${name}/rules`) as { netns: string; backend: string; present: boolean; listing: string; planHash?: string };
      printObject(opts.output, { ...r, captured: view.captured, state: view.state }, () => `# ${ns}/${name} state=${view.state} netns=${r.netns} backend=${r.backend} present=${r.present} planHash=${r.planHash ?? '-'}\n${r.listing}${r.listing.endsWith('\n') ? '' : '\n'}`);
      return r.present ? EXIT.ok : EXIT.drift;
    }));

  for (const verb of ['check', 'repair'] as const) {
    withAdmin(program.command(verb).argument('<pod>', 'NAMESPACE/NAME').description(verb === 'check' ? 'verify the pod\'s capture rules against its plan (exit 3 on drift)' : 'verify and fix the pod\'s capture rules (per the agent\'s repair mode)'), ['table', 'json', 'yaml'])
      .action(runAction('weir', async (podArg: string, opts: Out) => {
        const { ns, name } = parsePod(podArg);
        const r = await adminCall(adminSocket(opts), 'POST', `/v1/pods/${ns}/${name}/${verb}`) as CheckResult;
        printObject(opts.output, r, () => `${ns}/${name}: ${r.result}${r.reason ? ` (${r.reason})` : ''}${r.netns ? ` netns=${r.netns} via=${r.via}` : ''}${r.error ? `\n  error: ${r.error}` : ''}\n${(r.differences ?? []).map((d) => `  ${d}\n`).join('')}`);
        if (r.result === 'ok' || r.result === 'skipped' || r.result === 'repaired' || r.result === 'labeled' || r.result === 'deleted') return EXIT.ok;
        if (r.result === 'failed' && r.differences && r.differences.length > 0 && !r.error) return EXIT.drift;
        if (r.result === 'netns-not-found') return EXIT.drift;
        return EXIT.failure;
      }));
  }
}
