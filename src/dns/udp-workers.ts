// The main thread's side of the UDP worker threads. One Node.js UDP socket
// saturates (one recvmsg and one sendto per datagram through libuv) well
// before the kernel does, so UDP is served by N threads, each with its own
// SO_REUSEPORT socket on the same address:port; the kernel spreads clients
// across them by 4-tuple hash.
//
// The main thread stays the owner of everything shared:
//  - the registry: every snapshot is posted to each worker (on 'update', and
//    by a periodic identity check for views that change without an event);
//  - upstream forwarding, its cache and single-flight: a worker that misses
//    its own cache asks the main thread, which answers from its cache or
//    through one upstream query per question for all workers together;
//  - metrics: workers count into SharedArrayBuffers the main thread sums.
// Sockets are created here (native addon, SO_REUSEPORT) and handed to the
// worker by fd; the worker's dgram socket owns and closes it.
import { closeSync, existsSync } from 'node:fs';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Registry, RegistryView } from '../controlplane/types.js';
import type { Logger } from '../common/log.js';
import { nativeAvailable, socketInNetns } from '../netns/native.js';
import type { DnsServer } from './server.js';
import { SharedQueryStats } from './shared-stats.js';

/** What a worker needs to build its DnsServer (everything else arrives by message). */
export interface UdpWorkerOptions {
  podNamespace: string;
  firstSearchDomain: string | undefined;
  cacheMaxEntries?: number;
  cacheMaxBytes?: number;
  cacheMaxTtlSeconds?: number;
}

export interface UdpWorkerData {
  index: number;
  sockets: { fd: number; family: 4 | 6 }[];
  stats: SharedArrayBuffer;
  registry: Registry | undefined;
  options: UdpWorkerOptions;
}

/** main → worker */
export type ToWorker =
  | { t: 'registry'; registry: Registry }
  | { t: 'answer'; id: number; response: Uint8Array; cached: boolean }
  | { t: 'answer-error'; id: number; message: string }
  | { t: 'close' };

/** worker → main */
export type FromWorker =
  | { t: 'ready'; addresses: net.AddressInfo[] }
  | { t: 'forward'; id: number; key: string; query: Uint8Array; questionEnd: number }
  | { t: 'closed' };

/** How often a registry view that never emits 'update' is checked for a new snapshot. */
const REGISTRY_POLL_MS = 250;
const WORKER_START_TIMEOUT_MS = 20_000;
const WORKER_CLOSE_TIMEOUT_MS = 5_000;

/** Worker threads need the addon (SO_REUSEPORT sockets) and a worker entry in this build. */
export function udpWorkersAvailable(): boolean {
  return nativeAvailable() && udpWorkerEntry() !== undefined;
}

interface StartOptions {
  count: number;
  hosts: string[];
  port: number;
  registry: RegistryView;
  server: DnsServer;
  log: Logger;
  workerOptions: UdpWorkerOptions;
}

interface Slot {
  worker: Worker;
  exited: Promise<void>;
  stats: SharedQueryStats;
  addresses: net.AddressInfo[];
}

/**
 * The worker thread's entry, or undefined when this build has none. Beside
 * this module: udp-worker.ts (run from source), udp-worker.js (compiled
 * tree), or dns-udp-worker.mjs next to a bundle (dist/weir.mjs), which the
 * bundler must emit as a second entry point.
 */
export function udpWorkerEntry(): URL | undefined {
  if (!import.meta.url.endsWith('.ts')) {
    for (const name of ['./udp-worker.js', './dns-udp-worker.mjs']) {
      const url = new URL(name, import.meta.url);
      if (existsSync(url)) return url;
    }
    return undefined;
  }
  // Run from source: Node 20 does not carry tsx's loader (`--import tsx`)
  // into worker threads, so a small ESM bootstrap registers it in the
  // worker before importing the TypeScript entry.
  const entry = new URL('./udp-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`);
}

export class UdpWorkerPool {
  private readonly slots: Slot[] = [];
  /** Counters of workers that died and were replaced: their counts must not vanish from the totals. */
  private readonly retired: SharedQueryStats[] = [];
  private ports: number[] = [];
  private closing = false;
  private lastPushed: Registry | undefined;
  private readonly onUpdate = (r: Registry) => this.push(r);
  private poll: NodeJS.Timeout | undefined;

  private constructor(private readonly o: StartOptions) {}

  static async start(o: StartOptions): Promise<UdpWorkerPool> {
    const pool = new UdpWorkerPool(o);
    try {
      pool.lastPushed = o.registry.current();
      o.registry.on('update', pool.onUpdate);
      pool.poll = setInterval(() => {
        const r = o.registry.current();
        if (r && r !== pool.lastPushed) pool.push(r);
      }, REGISTRY_POLL_MS);
      pool.poll.unref();
      // The first worker binds the asked port (maybe 0 = any); the others join whatever it got.
      pool.ports = o.hosts.map(() => o.port);
      for (let i = 0; i < o.count; i++) {
        const slot = await pool.spawn(i);
        if (i === 0) pool.ports = slot.addresses.map((a) => a.port);
        pool.slots.push(slot);
      }
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Every worker binds the same addresses and ports: report them once. */
  addresses(): net.AddressInfo[] {
    return this.slots[0]?.addresses ?? [];
  }

  stats(): SharedQueryStats[] {
    return [...this.slots.map((s) => s.stats), ...this.retired];
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.poll) clearInterval(this.poll);
    const off = (this.o.registry as { off?: (e: string, l: (r: Registry) => void) => unknown }).off;
    if (typeof off === 'function') off.call(this.o.registry, 'update', this.onUpdate);
    await Promise.all(this.slots.map((s) => stopWorker(s)));
    this.slots.length = 0;
  }

  private push(registry: Registry): void {
    this.lastPushed = registry;
    // Only the data the DNS answers need (the view's object may carry more).
    const snapshot: Registry = { version: registry.version, clusterDomain: registry.clusterDomain, services: registry.services };
    for (const s of this.slots) {
      try {
        s.worker.postMessage({ t: 'registry', registry: snapshot } satisfies ToWorker);
      } catch (err) {
        // Never throw into the registry's event emitter; the worker keeps its last snapshot.
        this.o.log.error({ err, version: registry.version }, 'could not post the registry snapshot to a DNS UDP worker');
      }
    }
  }

  private async spawn(index: number): Promise<Slot> {
    const sockets: { fd: number; family: 4 | 6 }[] = [];
    try {
      for (let h = 0; h < this.o.hosts.length; h++) {
        const family = net.isIPv6(this.o.hosts[h]) ? 6 : 4;
        const fd = await socketInNetns(null, { kind: 'udp-bind', family, address: this.o.hosts[h], port: this.ports[h], reusePort: true });
        sockets.push({ fd, family });
      }
    } catch (err) {
      for (const s of sockets) closeSync(s.fd);
      throw err;
    }
    const stats = new SharedQueryStats();
    const current = this.o.registry.current();
    const data: UdpWorkerData = {
      index, sockets, stats: stats.buffer, options: this.o.workerOptions,
      registry: current && { version: current.version, clusterDomain: current.clusterDomain, services: current.services },
    };
    let worker: Worker;
    try {
      worker = new Worker(udpWorkerEntry()!, { workerData: data, name: `weir-dns-udp-${index}` });
    } catch (err) {
      for (const s of sockets) closeSync(s.fd);
      throw err;
    }
    // From here the worker owns the fds: its dgram sockets close them, and
    // it closes any it could not bind (closing them here could hit an fd
    // number already reused by then).
    const slot: Slot = { worker, exited: new Promise((resolve) => worker.once('exit', () => resolve())), stats, addresses: [] };
    let ready = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`DNS UDP worker ${index} did not start within ${WORKER_START_TIMEOUT_MS} ms`)), WORKER_START_TIMEOUT_MS);
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') { ready = true; slot.addresses = m.addresses; clearTimeout(timer); resolve(); }
        else if (m.t === 'forward') this.forward(worker, m);
      });
      worker.once('error', (err) => {
        clearTimeout(timer);
        if (!ready) reject(err);
        else this.o.log.error({ err, worker: index }, 'DNS UDP worker failed');
      });
      worker.once('exit', (code) => {
        clearTimeout(timer);
        if (!ready) { reject(new Error(`DNS UDP worker ${index} exited with code ${code} before it was ready`)); return; }
        if (!this.closing) this.replace(slot, index, code);
      });
    }).catch(async (err) => {
      await worker.terminate();
      throw err;
    });
    // The registry may have moved on while the worker started.
    const now = this.o.registry.current();
    if (now && now !== current) worker.postMessage({ t: 'registry', registry: { version: now.version, clusterDomain: now.clusterDomain, services: now.services } } satisfies ToWorker);
    return slot;
  }

  /** A worker died (a bug, or out of memory): its socket is gone, so start another on the same port. */
  private replace(dead: Slot, index: number, code: number): void {
    this.o.log.error({ worker: index, code }, 'DNS UDP worker exited; starting a replacement');
    const i = this.slots.indexOf(dead);
    if (i < 0) return;
    this.slots.splice(i, 1);
    this.retired.push(dead.stats);
    this.spawn(index).then(
      (slot) => { if (this.closing) void stopWorker(slot); else this.slots.push(slot); },
      (err) => this.o.log.error({ err, worker: index }, 'DNS UDP worker replacement failed; the remaining workers serve UDP'),
    );
  }

  private forward(worker: Worker, m: Extract<FromWorker, { t: 'forward' }>): void {
    const query = Buffer.from(m.query.buffer, m.query.byteOffset, m.query.byteLength);
    this.o.server.answerForWorker(m.key, query, m.questionEnd).then(
      (a) => {
        // A fresh copy the worker can take over without cloning (the answer may be shared with other waiters).
        const response = new Uint8Array(a.response);
        worker.postMessage({ t: 'answer', id: m.id, response, cached: a.cached } satisfies ToWorker, [response.buffer]);
      },
      (err: Error) => worker.postMessage({ t: 'answer-error', id: m.id, message: err.message } satisfies ToWorker),
    );
  }
}

/** Asks a worker to close its sockets and exit; terminates it if it does not in time. */
async function stopWorker(slot: Slot): Promise<void> {
  slot.worker.postMessage({ t: 'close' } satisfies ToWorker);
  const timer = setTimeout(() => void slot.worker.terminate(), WORKER_CLOSE_TIMEOUT_MS);
  await slot.exited;
  clearTimeout(timer);
}
