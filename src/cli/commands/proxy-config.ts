// `weir proxy-config listeners|routes|clusters|endpoints|secrets|all|log NS/POD`:
// what the pod's proxy really holds, read from its admin /config_dump
// through the agent (which reaches 127.0.0.1:15000 inside the pod's netns).
// The header line says which registry version the proxy acknowledged, and
// anything it ignored or rejected is printed, never hidden.
import { Option, type Command } from 'commander';
import { adminCall, adminSocket, parsePod } from '../admin-client.js';
import { EXIT, runAction } from '../exit.js';
import { printListing, printObject, type Columns } from '../output.js';
import { withAdmin } from './node.js';
import type { ConfigDump, DumpCluster, DumpEndpoint, DumpListener, DumpRoute } from '../../proxy/config-dump.js';

type Opts = { output?: string; socket?: string; cluster?: string; level?: string };

const SECTIONS: Record<string, Columns<any>[]> = { // eslint-disable-line @typescript-eslint/no-explicit-any
  listeners: [
    { header: 'NAME', value: (l: DumpListener) => l.name },
    { header: 'ADDRESS', value: (l: DumpListener) => l.address },
    { header: 'PORT', value: (l: DumpListener) => l.port },
    { header: 'CHAIN', value: (l: DumpListener) => l.chain },
  ],
  routes: [
    { header: 'MATCH', value: (r: DumpRoute) => r.name },
    { header: 'SERVICE', value: (r: DumpRoute) => r.service },
    { header: 'CLUSTER', value: (r: DumpRoute) => r.cluster },
  ],
  clusters: [
    { header: 'CLUSTER', value: (c: DumpCluster) => c.name },
    { header: 'SERVICE', value: (c: DumpCluster) => c.service },
    { header: 'PORT', value: (c: DumpCluster) => `${c.servicePort}/${c.protocol}` },
    { header: 'TYPE', value: (c: DumpCluster) => c.type },
    { header: 'LB', value: (c: DumpCluster) => c.lbPolicy, wide: true },
    { header: 'APP PROTOCOL', value: (c: DumpCluster) => c.appProtocol, wide: true },
  ],
  endpoints: [
    { header: 'ENDPOINT', value: (e: DumpEndpoint) => (e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`) },
    { header: 'STATUS', value: (e: DumpEndpoint) => e.health },
    { header: 'ROUTABLE', value: (e: DumpEndpoint) => (e.routable ? 'yes' : 'no') },
    { header: 'CLUSTER', value: (e: DumpEndpoint) => e.cluster },
    { header: 'POD', value: (e: DumpEndpoint) => e.pod, wide: true },
    { header: 'ACTIVE', value: (e: DumpEndpoint) => e.activeConnections, wide: true },
  ],
  secrets: [
    { header: 'NAME', value: (s: { name: string }) => s.name },
    { header: 'NOTE', value: (s: { note: string }) => s.note },
  ],
};

function header(d: ConfigDump): string {
  const v = d.version;
  return `# registry version acknowledged: ${v.acknowledged}${v.connected ? '' : ' (agent NOT connected: stale or empty)'}; ${v.snapshots} snapshot(s), ${v.deltas} delta(s)\n`;
}

function problems(d: ConfigDump): string {
  const lines = [
    ...d.ignored.map((i) => `# ignored ${i.kind} ${i.name}: ${i.reason}\n`),
    ...d.rejected.map((r) => `# REJECTED ${r.what}: ${r.reason}\n`),
  ];
  return lines.join('');
}

export function registerProxyConfigCommand(program: Command): void {
  const pc = program.command('proxy-config').alias('pc').description('what a pod\'s proxy holds: listeners, routes, clusters, endpoints, secrets, log level (read through the agent)');
  for (const section of [...Object.keys(SECTIONS), 'all']) {
    const cmd = withAdmin(pc.command(section).argument('<pod>', 'NAMESPACE/NAME').description(section === 'all' ? 'every section, with the ignored and rejected config' : `the proxy's ${section}`));
    if (section === 'endpoints' || section === 'routes') cmd.addOption(new Option('--cluster <name>', 'only this cluster (outbound|PORT||SVC.NS.svc.DOMAIN) or service (NS/NAME)'));
    cmd.action(runAction('weir proxy-config', async (podArg: string, opts: Opts) => {
      const { ns, name } = parsePod(podArg);
      const dump = await adminCall(adminSocket(opts), 'GET', `/v1/pods/${ns}/${name}/proxy/config_dump`) as ConfigDump;
      if (section === 'all') {
        printObject(opts.output, dump, () => Object.keys(SECTIONS).map((s) => {
          const rows = (dump as unknown as Record<string, unknown[]>)[s] ?? [];
          return `== ${s} (${rows.length})\n`;
        }).join('') + header(dump) + problems(dump));
        return EXIT.ok;
      }
      let rows = (dump as unknown as Record<string, { cluster?: string; service?: string }[]>)[section] ?? [];
      if (opts.cluster) rows = rows.filter((r) => r.cluster === opts.cluster || r.service === opts.cluster);
      if (opts.output !== 'json' && opts.output !== 'yaml') {
        process.stdout.write(header(dump));
        if (section === 'secrets' && rows.length === 0) process.stdout.write('# no secrets: weir has no mTLS yet, the proxy holds no certificates\n');
      }
      printListing(opts.output, rows, SECTIONS[section]);
      if (opts.output !== 'json' && opts.output !== 'yaml') process.stdout.write(problems(dump));
      return EXIT.ok;
    }));
  }
  withAdmin(pc.command('log').argument('<pod>', 'NAMESPACE/NAME').description('the proxy\'s log level; --level sets it'), ['table', 'json', 'yaml'])
    .addOption(new Option('--level <level>', 'set the level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
    .action(runAction('weir proxy-config', async (podArg: string, opts: Opts) => {
      const { ns, name } = parsePod(podArg);
      const r = await adminCall(adminSocket(opts), opts.level ? 'POST' : 'GET', `/v1/pods/${ns}/${name}/proxy/logging${opts.level ? `?level=${opts.level}` : ''}`) as { level: string };
      printObject(opts.output, r, () => `${ns}/${name}: level ${r.level}\n`);
      return EXIT.ok;
    }));
}
