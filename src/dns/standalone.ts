// Runs the DNS proxy alone, from a registry snapshot in a JSON file. Used by
// the real-kernel tests (run as UID 1337 inside a pod netns) and by the
// benchmark; `weir proxy` embeds startDnsProxy instead.
//
//   tsx src/dns/standalone.ts --namespace NS [--registry FILE] [--port N]
//       [--resolv-conf PATH] [--upstream HOST:PORT ...] [--timeout-ms N]
//       [--udp-threads N]   (native UDP threads, 0 = Node dgram; default as startDnsProxy)
//
// Without --registry the proxy runs as before a first snapshot (forwards
// everything). Prints "ready" on stdout once listening; exits on SIGTERM.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FieldError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { startDnsProxy } from './server.js';
import { registryFromJson, staticRegistryView } from './static-registry.js';
import type { Upstream } from './resolv-conf.js';

function parseUpstream(text: string): Upstream {
  const m = text.match(/^\[?([^\]]+?)\]?:(\d+)$/);
  if (!m) throw new FieldError('--upstream', 'expected HOST:PORT or [V6]:PORT', text);
  return { host: m[1], port: Number(m[2]) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      namespace: { type: 'string' },
      registry: { type: 'string' },
      port: { type: 'string', default: '15053' },
      'resolv-conf': { type: 'string' },
      upstream: { type: 'string', multiple: true },
      'timeout-ms': { type: 'string' },
      'no-v6': { type: 'boolean', default: false },
      'udp-threads': { type: 'string' },
    },
  });
  if (!values.namespace) throw new FieldError('--namespace', 'the pod namespace is required');
  const registry = values.registry ? registryFromJson(readFileSync(values.registry, 'utf8'), values.registry) : undefined;
  const logger = createLogger({ name: 'dns', fd: 2 });
  const proxy = await startDnsProxy({
    registry: staticRegistryView(registry),
    podNamespace: values.namespace,
    resolvConfPath: values['resolv-conf'],
    listen: { port: Number(values.port), v6: values['no-v6'] ? null : undefined },
    upstreams: values.upstream?.map(parseUpstream),
    upstreamTimeoutMs: values['timeout-ms'] ? Number(values['timeout-ms']) : undefined,
    udpThreads: values['udp-threads'] !== undefined ? Number(values['udp-threads']) : undefined,
    logger,
  });
  process.stdout.write('ready\n');
  const stop = () => { proxy.close().then(() => process.exit(0), () => process.exit(1)); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// Only when run as a script (this module exports nothing, but guard anyway
// so a bundle that includes it never starts a second proxy).
if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`weir dns: ${(err as Error).message}\n`);
    process.exit(2);
  });
}
