// A UDP worker thread of the DNS proxy (see udp-workers.ts): serves its
// SO_REUSEPORT sockets with the same DnsServer code as the main thread,
// answering cluster names from the registry snapshots the main thread posts,
// and asking the main thread for anything its own cache does not hold.
import { EventEmitter } from 'node:events';
import { closeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { Registry, RegistryView } from '../controlplane/types.js';
import { createLogger } from '../common/log.js';
import { sharedDnsMetrics } from './metrics.js';
import { DnsServer, type UpstreamAnswer } from './server.js';
import { SharedQueryStats } from './shared-stats.js';
import type { FromWorker, ToWorker, UdpWorkerData } from './udp-workers.js';

async function run(port: NonNullable<typeof parentPort>, data: UdpWorkerData): Promise<void> {
  const stats = new SharedQueryStats(data.stats);
  let registry: Registry | undefined = data.registry;
  stats.registryVersion = registry?.version;
  const events = new EventEmitter();
  const view: RegistryView = { current: () => registry, on: (e, l) => events.on(e, l) };

  const pending = new Map<number, { resolve: (a: UpstreamAnswer) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  const remoteUpstream = (key: string, query: Buffer, questionEnd: number): Promise<UpstreamAnswer> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      // A copy: the query Buffer may be a view into a larger pooled buffer, which would be cloned whole.
      const bytes = new Uint8Array(query);
      port.postMessage({ t: 'forward', id, key, query: bytes, questionEnd } satisfies FromWorker, [bytes.buffer]);
    });

  const server = new DnsServer(
    {
      registry: view,
      podNamespace: data.options.podNamespace,
      logger: createLogger({ name: `dns-udp-${data.index}`, fd: 2 }),
      cacheMaxEntries: data.options.cacheMaxEntries,
      cacheMaxBytes: data.options.cacheMaxBytes,
      cacheMaxTtlSeconds: data.options.cacheMaxTtlSeconds,
    },
    [],
    data.options.firstSearchDomain,
    1,
    { remoteUpstream, metrics: sharedDnsMetrics(stats) },
  );

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'registry':
        registry = m.registry;
        stats.registryVersion = registry.version;
        events.emit('update', registry);
        break;
      case 'answer': {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p?.resolve({ response: Buffer.from(m.response.buffer, m.response.byteOffset, m.response.byteLength), cached: m.cached });
        break;
      }
      case 'answer-error': {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p?.reject(new Error(m.message));
        break;
      }
      case 'close':
        for (const p of pending.values()) p.reject(new Error('DNS proxy closing'));
        pending.clear();
        server.close().finally(() => {
          port.postMessage({ t: 'closed' } satisfies FromWorker);
          // Nothing else keeps the thread alive once the port is closed: it exits.
          port.close();
        });
        break;
    }
  });

  let bound = 0;
  try {
    for (const s of data.sockets) { await server.listenUdpFd(s.fd, s.family); bound++; }
  } catch (err) {
    // The fds are ours: the bound ones close with the server, the ones never
    // tried here; the one that failed is left alone (dgram may have closed it).
    for (const s of data.sockets.slice(bound + 1)) { try { closeSync(s.fd); } catch { /* not open */ } }
    await server.close();
    throw err;
  }
  port.postMessage({ t: 'ready', addresses: server.addresses().udp } satisfies FromWorker);
}

// A failure to start is left unhandled on purpose: it ends the thread with
// an 'error' event carrying the cause, which the main thread reports.
if (parentPort) void run(parentPort, workerData as UdpWorkerData);
