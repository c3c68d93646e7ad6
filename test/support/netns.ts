// Test hosts in network namespaces: create, wire with veth, run commands in
// them, and clean up everything. Names carry a random suffix so suites (and
// helpers' suites running side by side) never collide.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after } from 'node:test';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Use as `test('x', { skip: skipUnlessRoot() }, ...)`. */
export function skipUnlessRoot(): string | false {
  return isRoot() ? false : 'needs root (network namespaces); CI runs as root';
}

export function uniq(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

export function sh(cmd: string, args: string[], opts: { input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export class Netns {
  readonly name: string;
  readonly path: string;
  private readonly children = new Set<ChildProcess>();

  private constructor(name: string) {
    this.name = name;
    this.path = `/run/netns/${name}`;
  }

  /** `ip netns add` with lo up. Keep names short: interface names are ≤ 15 chars. */
  static create(prefix: string): Netns {
    const ns = new Netns(uniq(prefix));
    sh('ip', ['netns', 'add', ns.name]);
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  ip(...args: string[]): string {
    return sh('ip', ['-n', this.name, ...args]);
  }

  /** Run a command inside the netns and return stdout. */
  exec(cmd: string, args: string[] = [], opts: { input?: string } = {}): string {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Start a long-running process inside the netns; killed by destroy(). */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'pipe', ...opts });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  destroy(): void {
    for (const c of this.children) c.kill('SIGKILL');
    this.children.clear();
    try { sh('ip', ['netns', 'del', this.name]); } catch { /* already gone */ }
  }
}

/**
 * Netns for one test file: `create()` makes one (with `prefix`), `all` lists
 * them, and every one is destroyed after the file's tests. Call at the top
 * level of a test file.
 */
export function suiteNetns(prefix: string): { create(): Netns; all: Netns[] } {
  const all: Netns[] = [];
  after(() => { for (const ns of all) ns.destroy(); });
  return { all, create() { const ns = Netns.create(prefix); all.push(ns); return ns; } };
}

export interface PodPair { pod: Netns; peer: Netns; podIf: string; peerIf: string; destroy(): void }

/**
 * Two netns joined by a veth pair, with addresses:
 *   pod  10.<a>.<b>.2/24  fd00:<a>:<b>::2/64
 *   peer 10.<a>.<b>.1/24  fd00:<a>:<b>::1/64
 * The subnet is random per call so parallel suites do not overlap (the
 * addresses only exist inside these netns).
 */
export function createPodPair(prefix = 'wp'): PodPair {
  const a = 200 + Math.floor(Math.random() * 50);
  const b = Math.floor(Math.random() * 250) + 1;
  const pod = Netns.create(`${prefix}p`);
  const peer = Netns.create(`${prefix}q`);
  const podIf = 'eth0';
  const peerIf = 'eth0';
  const tmp = uniq('wv').slice(0, 12);
  sh('ip', ['link', 'add', tmp, 'type', 'veth', 'peer', 'name', `${tmp}b`]);
  sh('ip', ['link', 'set', tmp, 'netns', pod.name]);
  sh('ip', ['link', 'set', `${tmp}b`, 'netns', peer.name]);
  pod.ip('link', 'set', tmp, 'name', podIf);
  peer.ip('link', 'set', `${tmp}b`, 'name', peerIf);
  for (const [ns, ifn, host] of [[pod, podIf, 2], [peer, peerIf, 1]] as const) {
    ns.ip('addr', 'add', `10.${a}.${b}.${host}/24`, 'dev', ifn);
    ns.ip('-6', 'addr', 'add', `fd00:${a}:${b}::${host}/64`, 'dev', ifn, 'nodad');
    ns.ip('link', 'set', ifn, 'up');
  }
  pod.ip('route', 'add', 'default', 'via', `10.${a}.${b}.1`);
  pod.ip('-6', 'route', 'add', 'default', 'via', `fd00:${a}:${b}::1`);
  return {
    pod, peer, podIf, peerIf,
    destroy() { pod.destroy(); peer.destroy(); },
  };
}

export function podPairAddresses(pair: PodPair): { pod4: string; peer4: string; pod6: string; peer6: string } {
  const v4 = pair.pod.ip('-4', '-o', 'addr', 'show', 'dev', pair.podIf).match(/inet (\S+)\//)![1];
  const v6 = pair.pod.ip('-6', '-o', 'addr', 'show', 'dev', pair.podIf, 'scope', 'global').match(/inet6 (\S+)\//)![1];
  const [, a, b] = v4.split('.');
  return { pod4: v4, peer4: `10.${a}.${b}.1`, pod6: v6, peer6: v6.replace(/::2$/, '::1') };
}
