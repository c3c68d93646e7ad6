// The JavaScript side of the DNS UDP fast path (native/src/dns_fast.h).
//
// N addon threads own the UDP sockets (one SO_REUSEPORT socket per thread
// and address when N > 1; the kernel spreads clients by 4-tuple hash), read
// queries in batches and answer those whose exact answer they were taught,
// without entering JavaScript. Everything else (the first query for a name,
// anything forwarded, anything odd) comes here as a miss; the resolver
// (resolver.ts) answers it with its full logic, the answer goes back through
// the addon, and fast-teacher.ts teaches the addon the answer (put) when it
// may be repeated: local answers without a shuffle, and cacheable upstream
// answers for what is left of their cache lifetime. The addon ages cached TTLs itself.
//
// Why: Node's dgram path costs a libuv wakeup, a Buffer, an rinfo object and
// a sendto per datagram; measured, that (not weir's code) capped the DNS
// proxy below dnsmasq. Batched syscalls and no JS on a hit remove it.
import { closeSync } from 'node:fs';
import net from 'node:net';
import { socketInNetns } from '../native/addon.js';
import { createDnsFast, dnsFastAvailable, dnsLocalAddress, type DnsFastHandle } from '../native/dns-fast.js';
import { nativeStatsLayout, SharedQueryStats } from './shared-stats.js';

export { dnsFastAvailable as udpFastPathAvailable };

export interface UdpFastPathOptions {
  threads: number;
  /** Addresses to bind (one socket per thread per address). */
  hosts: string[];
  /** 0 = any free port (the same one on every thread). */
  port: number;
  maxEntries: number;
  /** A query the threads did not answer; reply (at most once) with the answer, or never to drop it. */
  onMiss(packet: Buffer, reply: (answer: Buffer) => void): void;
}

export type FastKind = 'local' | 'cached';

export class UdpFastPath {
  private constructor(
    private readonly handle: DnsFastHandle,
    private readonly threadStats: SharedQueryStats[],
    private readonly bound: net.AddressInfo[],
  ) {}

  /** Binds every socket first, so a taken port fails here with nothing left running. */
  static async start(o: UdpFastPathOptions): Promise<UdpFastPath> {
    const sockets: number[][] = [];
    const close = () => { for (const fds of sockets) for (const fd of fds) closeSync(fd); };
    let bound: net.AddressInfo[] = [];
    try {
      let ports = o.hosts.map(() => o.port);
      for (let t = 0; t < o.threads; t++) {
        const fds: number[] = [];
        sockets.push(fds);
        for (let h = 0; h < o.hosts.length; h++) {
          const family = net.isIPv6(o.hosts[h]) ? 6 : 4;
          fds.push(await socketInNetns(null, { kind: 'udp-bind', family, address: o.hosts[h], port: ports[h], reusePort: o.threads > 1 }));
        }
        if (t === 0) {
          // Port 0 asked: every other thread joins whatever the first got.
          bound = fds.map((fd) => dnsLocalAddress(fd));
          ports = bound.map((a) => a.port);
        }
      }
    } catch (err) {
      close();
      throw err;
    }
    const stats = sockets.map(() => new SharedQueryStats());
    // Misses arrive through the event loop, so never before `handle` is set.
    let handle: DnsFastHandle | undefined;
    try {
      handle = createDnsFast(
        { sockets, stats: stats.map((s) => s.values), layout: nativeStatsLayout(), maxEntries: o.maxEntries },
        (socket, peer, packet) => {
          let replied = false;
          o.onMiss(packet, (answer) => {
            if (replied) return;
            replied = true;
            handle?.send(socket, peer, answer);
          });
        },
      );
    } catch (err) {
      close(); // the addon takes the fds only once it started
      throw err;
    }
    return new UdpFastPath(handle, stats, bound);
  }

  /** Where the sockets are bound (every thread binds the same addresses). */
  addresses(): net.AddressInfo[] {
    return this.bound;
  }

  /** Per thread: its counters (the Prometheus metrics and stats() add them in). */
  stats(): SharedQueryStats[] {
    return this.threadStats;
  }

  /** Answers held, and what the threads answered, handed over, or dropped. */
  counters(): { answered: number; missed: number; dropped: number; entries: number } {
    return this.handle.stats();
  }

  /** Serve `answer` to questions like `query` for `lifetimeMs` without asking JavaScript. */
  teach(query: Buffer, answer: Buffer, lifetimeMs: number, kind: FastKind): boolean {
    if (!(lifetimeMs > 0)) return false;
    return this.handle.put(query, answer, Math.floor(lifetimeMs), kind);
  }

  /**
   * Forgets every answer: called when the registry changes. Cached upstream
   * answers go too, since a name that became a cluster service must now be
   * answered from the registry (the JavaScript cache still has them, so
   * each costs one trip through JavaScript).
   */
  forgetAll(registryVersion: number | undefined): void {
    this.handle.clear(3);
    for (const s of this.threadStats) s.registryVersion = registryVersion;
  }

  close(): void {
    this.handle.stop();
  }
}
