// One control-plane listener inside each pod's network namespace: an
// abstract unix socket (POD_SOCKET, `@weir/proxy`) that the agent binds on a
// netns thread of the native addon. Abstract names are scoped to the network
// namespace, so only processes in that pod can connect, and the listener
// that accepted a connection IS the pod's identity: no pid, no mount, no
// claim to check (trust model: docs/proxy-protocol.md). Works with the agent
// in its own pid namespace (hostPID: false) and pods under Pod Security
// "baseline" (no hostPath).
import net, { type Server, type Socket } from 'node:net';
import { closeSync, statSync } from 'node:fs';
import type { Logger } from '../common/log.js';
import { abstractListenerInNetns } from '../native/addon.js';
import { POD_SOCKET, type PodIdentity } from './protocol.js';
import type { IdentifyConnection } from './server.js';

export interface PodListenersOptions {
  /** Hands an accepted connection to the control plane (ControlPlane.serve). */
  serve(sock: Socket, identify: IdentifyConnection): void;
  logger: Logger;
  /** Abstract name without '@'. Default from POD_SOCKET. */
  name?: string;
  /** The agent's own netns: never bound (a hostNetwork pod would share it). Default /proc/self/ns/net. */
  ownNetns?: string;
  /** Called on a failed open, with a short reason (EADDRINUSE, ENOENT, own-netns, ...). */
  onError?: (reason: string) => void;
}

/** Decides, at accept time, who is behind a listener (undefined: the pod is gone). */
export type ListenerIdentity = () => PodIdentity | undefined | Promise<PodIdentity | undefined>;

/**
 * The abstract addresses one pod socket is bound at: the name itself (what
 * any client, and Node builds whose libuv passes the exact length, connect
 * to) and the name NUL-padded to the whole sun_path, which is what Node 20's
 * libuv (1.46) sends for '\0name' (`ss -xl` shows it as @weir/proxy@@@…).
 * Binding both keeps the agent and proxies of different Node builds
 * compatible during upgrades.
 */
export function abstractAddresses(name: string): string[] {
  const SUN_PATH_NAME_BYTES = 107;
  return Buffer.byteLength(name) < SUN_PATH_NAME_BYTES ? [name, name + '\0'.repeat(SUN_PATH_NAME_BYTES - Buffer.byteLength(name))] : [name];
}

interface Listener {
  key: string;
  netns: string;
  netnsInode: number;
  servers: Server[];
  open: Set<Socket>;
  identify: ListenerIdentity;
}

function inodeOf(p: string): number | undefined {
  try {
    return statSync(p).ino;
  } catch {
    return undefined;
  }
}

export class PodListeners {
  private readonly listeners = new Map<string, Listener>();
  /** Per-key queue: open and close of one pod never interleave. */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly name: string;
  private closed = false;

  constructor(private readonly opts: PodListenersOptions) {
    this.name = opts.name ?? POD_SOCKET.slice(1);
  }

  private queue<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const next = (this.queues.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => { if (this.queues.get(key) === tail) this.queues.delete(key); });
    return next;
  }

  /**
   * Bind the pod socket in `netns` for `key` (idempotent: an open listener
   * for the same netns is kept). Never throws: a failure is logged and
   * reported through onError, and the caller may simply try again later.
   * Resolves true when a listener is open for `key` afterwards.
   */
  open(key: string, netns: string, identify: ListenerIdentity): Promise<boolean> {
    return this.queue(key, async () => {
      if (this.closed) return false;
      const log = this.opts.logger;
      const inode = inodeOf(netns);
      const have = this.listeners.get(key);
      if (have && have.netnsInode === inode) { have.identify = identify; return true; }
      if (have) this.drop(have);
      const fail = (reason: string, err: string): false => {
        log.warn({ key, netns, reason, err }, 'cannot open the pod control-plane socket; the proxy there cannot reach the agent until it is');
        this.opts.onError?.(reason);
        return false;
      };
      if (inode === undefined) return fail('ENOENT', `netns ${netns} does not exist`);
      if (inode === inodeOf(this.opts.ownNetns ?? '/proc/self/ns/net')) return fail('own-netns', `${netns} is the agent's own network namespace`);
      // Another key may already serve this netns (a sandbox record and a repaired-pod entry): one listener per netns.
      for (const l of this.listeners.values()) if (l.netnsInode === inode) { log.debug({ key, alias: l.key }, 'pod socket already open for this netns'); return true; }
      const l: Listener = { key, netns, netnsInode: inode, servers: [], open: new Set(), identify };
      const onConnection = (sock: Socket): void => {
        l.open.add(sock);
        sock.on('close', () => l.open.delete(sock));
        this.opts.serve(sock, async () => {
          const identity = await l.identify();
          return identity
            ? { identity, pid: 0, via: 'pod-listener' }
            : { pid: 0, via: 'pod-listener', refusal: `the pod of ${key} is no longer known to this agent` };
        });
      };
      for (const address of abstractAddresses(this.name)) {
        let fd: number;
        try {
          fd = await abstractListenerInNetns(netns, address);
        } catch (e) {
          for (const srv of l.servers) srv.close();
          // EADDRINUSE: something inside the pod took the name first (only possible
          // for pods whose processes ran before the agent bound it: see the trust model).
          return fail((e as NodeJS.ErrnoException).code ?? 'error', (e as Error).message);
        }
        const server = net.createServer(onConnection);
        server.on('error', (e) => log.warn({ key, err: e.message }, 'pod control-plane socket error'));
        try {
          await new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen({ fd }, () => { server.off('error', reject); resolve(); });
          });
        } catch (e) {
          closeFd(fd);
          for (const srv of l.servers) srv.close();
          return fail('listen', (e as Error).message);
        }
        l.servers.push(server);
      }
      if (this.closed) { for (const srv of l.servers) srv.close(); return false; }
      this.listeners.set(key, l);
      log.debug({ key, netns }, 'pod control-plane socket open');
      return true;
    });
  }

  /** Close `key`'s listener and the connections it accepted. Idempotent. */
  close(key: string): Promise<void> {
    return this.queue(key, async () => {
      const l = this.listeners.get(key);
      if (l) this.drop(l);
    });
  }

  private drop(l: Listener): void {
    this.listeners.delete(l.key);
    for (const srv of l.servers) srv.close();
    for (const s of l.open) s.destroy();
  }

  keys(): string[] {
    return [...this.listeners.keys()];
  }

  list(): { key: string; netns: string; connections: number }[] {
    return [...this.listeners.values()].map((l) => ({ key: l.key, netns: l.netns, connections: l.open.size }));
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.queues.values()]);
    for (const l of [...this.listeners.values()]) this.drop(l);
  }
}

/** An fd the addon returned that no net.Server took over. */
function closeFd(fd: number): void {
  try { closeSync(fd); } catch { /* already closed */ }
}
