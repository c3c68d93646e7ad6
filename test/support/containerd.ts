// A private containerd for the runtime tests: started by hand as a child
// process (this VM has no systemd), with root/state/socket under a temp dir,
// the CRI plugin on and pointed at a CNI bin/conf dir of our own, and torn
// down completely on stop(): containers and shims killed, mounts under the
// temp root unmounted, pod netns it left behind deleted.
//
// Settings that matter on this machine (issue 7): SystemdCgroup = false (no
// systemd; cgroup v1), restrict_oom_score_adj = true (no CAP_SYS_RESOURCE in
// the VM, RunPodSandbox fails without it), a local sandbox image (no pulls).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { PAUSE_IMAGE, type BuiltImage } from './images.js';

export const DEBIAN_CNI_DIR = '/usr/lib/cni';

export interface ContainerdOptions {
  /** Prefix for the temp dir name. */
  prefix?: string;
  /** Extra executables to place in the CNI bin dir (e.g. dist/weir-cni): name → host path. */
  extraCniBins?: Record<string, string>;
  /** Snapshotter; overlayfs works on this VM's ext4 root. */
  snapshotter?: 'overlayfs' | 'native';
}

// Plugins a CRI-only test node does not need; disabling them also avoids
// probing for filesystems this VM does not have.
const DISABLED_PLUGINS = [
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];

export class Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly cniBinDir: string;
  readonly cniConfDir: string;
  readonly logFile: string;
  private proc: ChildProcess | null = null;
  private readonly trackedNetns = new Set<string>();
  private exitInfo: string | null = null;

  private constructor(dir: string) {
    this.dir = dir;
    this.socket = path.join(dir, 'containerd.sock');
    this.cniBinDir = path.join(dir, 'cni-bin');
    this.cniConfDir = path.join(dir, 'cni-conf');
    this.logFile = path.join(dir, 'containerd.log');
  }

  /** Write the config, start containerd, wait until its socket answers. */
  static async start(opts: ContainerdOptions = {}): Promise<Containerd> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${opts.prefix ?? 'we'}-ctrd-`));
    const c = new Containerd(dir);
    try {
      c.prepareCniBinDir(opts.extraCniBins ?? {});
      fs.mkdirSync(c.cniConfDir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'config.toml'), c.configToml(opts.snapshotter ?? 'overlayfs'));
      await c.launch();
      return c;
    } catch (err) {
      await c.stop();
      throw err;
    }
  }

  private prepareCniBinDir(extra: Record<string, string>): void {
    fs.mkdirSync(this.cniBinDir, { recursive: true });
    for (const name of fs.readdirSync(DEBIAN_CNI_DIR)) {
      fs.symlinkSync(path.join(DEBIAN_CNI_DIR, name), path.join(this.cniBinDir, name));
    }
    for (const [name, host] of Object.entries(extra)) this.addCniBin(name, host);
  }

  /** Place (or replace) an executable in the CNI bin dir. */
  addCniBin(name: string, hostPath: string): void {
    const dest = path.join(this.cniBinDir, name);
    fs.rmSync(dest, { force: true });
    fs.copyFileSync(hostPath, dest);
    fs.chmodSync(dest, 0o755);
  }

  private configToml(snapshotter: string): string {
    const q = (s: string) => JSON.stringify(s);
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    return [
      'version = 2',
      `root = ${q(path.join(this.dir, 'root'))}`,
      `state = ${q(path.join(this.dir, 'state'))}`,
      `disabled_plugins = [${DISABLED_PLUGINS.map(q).join(', ')}]`,
      '',
      '[grpc]',
      `  address = ${q(this.socket)}`,
      '[ttrpc]',
      `  address = ${q(`${this.socket}.ttrpc`)}`,
      '',
      `[${cri}]`,
      `  sandbox_image = ${q(PAUSE_IMAGE)}`,
      '  restrict_oom_score_adj = true',
      '  enable_selinux = false',
      // Port 0: the streaming server (exec/attach) must not collide with
      // another containerd on the node.
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      `[${cri}.containerd]`,
      `  snapshotter = ${q(snapshotter)}`,
      '  default_runtime_name = "runc"',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.containerd.runtimes.runc.options]`,
      '  SystemdCgroup = false',
      `[${cri}.cni]`,
      `  bin_dir = ${q(this.cniBinDir)}`,
      `  conf_dir = ${q(this.cniConfDir)}`,
      '  max_conf_num = 1',
      '',
    ].join('\n');
  }

  private async launch(): Promise<void> {
    const log = fs.openSync(this.logFile, 'a');
    try {
      this.proc = spawn('containerd', ['--config', path.join(this.dir, 'config.toml'), '--log-level', 'info'], {
        stdio: ['ignore', log, log],
      });
    } finally {
      fs.closeSync(log);
    }
    this.proc.on('exit', (code, sig) => { this.exitInfo = `containerd exited (code ${code}, signal ${sig})`; });
    // Not installed / not executable: spawn reports it as an 'error' event.
    this.proc.on('error', (err) => { this.exitInfo = `containerd could not be started: ${err.message}`; });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (this.exitInfo) throw new Error(`${this.exitInfo} during start-up; log tail:\n${this.logTail()}`);
      if (fs.existsSync(this.socket)) {
        try { this.ctr('version'); return; } catch { /* not serving yet */ }
      }
      await delay(100);
    }
    throw new Error(`containerd did not serve ${this.socket} within 20 s; log tail:\n${this.logTail()}`);
  }

  get running(): boolean { return this.proc !== null && this.exitInfo === null; }

  logTail(lines = 40): string {
    try { return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n'); } catch { return '(no log)'; }
  }

  /** Run `ctr` against this containerd in the CRI namespace. */
  ctr(...args: string[]): string {
    return execFileSync('ctr', ['--address', this.socket, '--namespace', 'k8s.io', ...args], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000,
    });
  }

  /** Import a locally built OCI archive and unpack it for the CRI snapshotter. */
  importImage(img: BuiltImage): void {
    const present = this.ctr('images', 'list', '--quiet');
    if (present.split('\n').includes(img.ref)) return;
    this.ctr('images', 'import', '--snapshotter', this.snapshotterName(), img.tarPath);
    if (!this.ctr('images', 'list', '--quiet').split('\n').includes(img.ref)) {
      throw new Error(`ctr import of ${img.tarPath} did not create image ${img.ref}`);
    }
  }

  private snapshotterName(): string {
    const cfg = fs.readFileSync(path.join(this.dir, 'config.toml'), 'utf8');
    return cfg.match(/snapshotter = "([^"]+)"/)?.[1] ?? 'overlayfs';
  }

  /** Record a pod netns path so stop() deletes it if containerd left it behind. */
  trackNetns(p: string): void { if (p) this.trackedNetns.add(p); }

  /** PIDs of this containerd's shims (they carry our socket address on their command line). */
  shimPids(): number[] {
    const pids: number[] = [];
    for (const ent of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(ent)) continue;
      try {
        const cmd = fs.readFileSync(`/proc/${ent}/cmdline`, 'utf8').split('\0');
        if (cmd[0]?.endsWith('containerd-shim-runc-v2') && cmd.includes(this.socket)) pids.push(Number(ent));
      } catch { /* exited */ }
    }
    return pids;
  }

  /**
   * Tear everything down. Best effort at each step, so one failure does not
   * leave the rest behind: containerd first (so it restarts nothing), then the
   * containers (children of the shims, which are subreapers), the shims,
   * mounts under our dir, leftover netns, the dir itself.
   */
  async stop(): Promise<void> {
    if (this.proc && this.exitInfo === null) {
      const exited = new Promise<void>((r) => this.proc!.once('exit', () => r()));
      this.proc.kill('SIGTERM');
      await Promise.race([exited, delay(5000)]);
      if (this.exitInfo === null) { this.proc.kill('SIGKILL'); await Promise.race([exited, delay(2000)]); }
    }
    const shims = this.shimPids();
    for (const shim of shims) for (const child of descendants(shim)) tryKill(child);
    for (const shim of shims) tryKill(shim);
    if (shims.length) await delay(200);
    unmountUnder(this.dir);
    for (const ns of this.trackedNetns) {
      if (!fs.existsSync(ns)) continue;
      try { execFileSync('umount', ['-l', ns], { stdio: 'ignore' }); } catch { /* not mounted */ }
      fs.rmSync(ns, { force: true });
    }
    removeCgroupsOf(this.dir);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function tryKill(pid: number): void {
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
}

function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(ent));
      children.set(ppid, list);
    } catch { /* exited */ }
  }
  const out: number[] = [];
  const stack = [...(children.get(pid) ?? [])];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Unmount everything mounted at or below `dir`, deepest first. */
export function unmountUnder(dir: string): void {
  const real = fs.existsSync(dir) ? fs.realpathSync(dir) : dir;
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === real || m.startsWith(`${real}/`)))
    .map((m) => m.replace(/\\040/g, ' '));
  mounts.sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
}

/**
 * CRI with cgroupfs puts each container under /k8s.io/<id> unless a parent is
 * given; runc removes them when containers are deleted. This only clears
 * empty leftovers after a crash, and only those our containerd named (its
 * state dir lists the task ids).
 */
function removeCgroupsOf(dir: string): void {
  const tasks = path.join(dir, 'state', 'io.containerd.runtime.v2.task', 'k8s.io');
  let ids: string[] = [];
  try { ids = fs.readdirSync(tasks); } catch { return; }
  for (const ctl of safeReaddir('/sys/fs/cgroup')) {
    for (const id of ids) {
      try { fs.rmdirSync(path.join('/sys/fs/cgroup', ctl, 'k8s.io', id)); } catch { /* absent or busy */ }
    }
  }
}

function safeReaddir(d: string): string[] {
  try { return fs.readdirSync(d); } catch { return []; }
}
