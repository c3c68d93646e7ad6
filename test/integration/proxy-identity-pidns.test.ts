// Proxy identity as the DaemonSet really runs: the agent in its own pid
// namespace (hostPID: false, the host's /proc bind-mounted at a side path as
// /host/proc is), pods created through the real CNI chain (bridge +
// host-local + weir-cni chained by the agent), and `weir proxy` in each pod
// netns in ANOTHER pid namespace of its own, with no flag and no shared
// path: it dials the default @weir/proxy. Each proxy must get its snapshot
// under its own pod's identity; a process in pod A must only ever be told
// it is A, whatever it claims; the legacy host socket must identify no one
// (the kernel reports pid 0); DEL closes the pod's socket without leaking an
// fd; an agent restart re-opens the sockets from its sandbox records.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Netns, sh, skipUnlessRoot, uniq } from '../support/netns.js';
import { TestApiServer, type KubeObject } from '../support/apiserver.js';
import { CniRuntime, type SandboxSpec } from '../support/cni-runtime.js';

const REPO = path.resolve(import.meta.dirname, '../..');

/** SIGKILL `pid` and every descendant (found through /proc/<pid>/stat's ppid). */
function killTree(pid: number): void {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) killTree(Number(d));
    } catch { /* gone meanwhile */ }
  }
  try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
}
const MAIN = path.join(REPO, 'src/cli/main.ts');
const PLUGIN = path.join(REPO, 'dist/weir-cni');
const NODE = `wi-node-${randomUUID().slice(0, 6)}`;
const NS = 'wi-apps';

/** A hostile (or merely curious) client: speaks the protocol to `address` and prints the agent's first answer. */
const PROBE = `
const net = require('node:net');
const [address, claimNs, claimName] = process.argv.slice(1);
const s = net.connect(address.startsWith('@') ? '\\0' + address.slice(1) : address);
let buf = '';
s.on('connect', () => s.write(JSON.stringify({ type: 'hello', versions: [1], claimed: { namespace: claimNs, name: claimName } }) + '\\n'));
s.on('data', (d) => { buf += d; const nl = buf.indexOf('\\n'); if (nl >= 0) { console.log(buf.slice(0, nl)); process.exit(0); } });
s.on('error', (e) => { console.log(JSON.stringify({ type: 'connect-error', code: e.code })); process.exit(0); });
`;

function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000, detail: () => string = () => ''): Promise<T> {
  const end = Date.now() + ms;
  return (async () => {
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${detail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
}

function run(cmd: string, args: string[], timeout = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** Run `args` inside `ns` in a fresh pid namespace of its own (as a container of that pod would be). */
function inPodPidns(ns: Netns, args: string[]): string[] {
  return ['netns', 'exec', ns.name, 'unshare', '--pid', '--fork', '--kill-child', '--mount-proc', ...args];
}

function pod(name: string, uid: string): KubeObject {
  return {
    kind: 'Pod',
    metadata: { name, namespace: NS, uid, creationTimestamp: new Date().toISOString() },
    spec: { nodeName: NODE, serviceAccountName: `sa-${name}`, containers: [{ name: 'app' }, { name: 'weir-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }] },
    status: { phase: 'Running' },
  };
}

/**
 * Abstract unix listeners inside `ns` (ss lists the netns's own sockets only;
 * it shows NULs in a name as '@'). The agent binds @weir/proxy twice: exact
 * and NUL-padded (pod-listeners.ts abstractAddresses), one pod socket.
 */
function abstractListeners(ns: Netns): string[] {
  return ns.exec('ss', ['-xlnH']).split('\n').map((l) => l.trim().split(/\s+/)[4]).filter((a): a is string => !!a && a.startsWith('@'))
    .map((a) => (/^@weir\/proxy@+$/.test(a) ? '@weir/proxy (NUL-padded)' : a)).sort();
}
const POD_SOCKET_LISTENERS = ['@weir/proxy', '@weir/proxy (NUL-padded)'];

describe('proxy identity with the agent in its own pid namespace (hostPID: false)', { timeout: 180_000, skip: skipUnlessRoot() || (!existsSync(PLUGIN) && 'dist/weir-cni not built (npm run build)') }, () => {
  const bridge = uniq('wib');
  const subnet = `10.${100 + Math.floor(Math.random() * 90)}.${1 + Math.floor(Math.random() * 250)}`;
  const netnss: Netns[] = [];
  const children: ChildProcess[] = [];
  let api: TestApiServer;
  let dir: string;
  let runDir: string;
  let kubeconfig: string;
  let runtime: CniRuntime;
  let agent: ChildProcess | undefined;
  let agentOut = '';
  const pods: { name: string; uid: string; ns: Netns; spec: SandboxSpec; ip: string; proxy?: ChildProcess; log: string[] }[] = [];

  async function startAgentInOwnPidns(): Promise<void> {
    agentOut = '';
    const hostProc = path.join(dir, 'hostproc');
    mkdirSync(hostProc, { recursive: true });
    // A mount ns that receives the host's mounts (/run/netns, as the DaemonSet's
    // HostToContainer volume), with the host's /proc bind-mounted (the host-proc
    // volume), then a new pid ns with its own /proc: the agent is pid 1 there.
    const agentCmd = [process.execPath, '--import', 'tsx', MAIN, 'agent', '--node-name', NODE, '--kubeconfig', kubeconfig,
      '--cni-conf-dir', path.join(dir, 'net.d'), '--cni-bin-dir', path.join(dir, 'bin'), '--cni-plugin-binary', PLUGIN,
      '--run-dir', runDir, '--host-proc', hostProc, '--metrics-addr', '127.0.0.1:0', '--repair-interval', '30s', '--exclude-namespaces', 'kube-system']
      .map((a) => `'${a}'`).join(' ');
    agent = spawn('unshare', ['--mount', '--propagation', 'slave', 'sh', '-c',
      `mount --bind /proc '${hostProc}' && exec unshare --pid --fork --kill-child --mount-proc ${agentCmd}`], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (c: Buffer): void => { agentOut += c.toString(); };
    agent.stdout!.on('data', keep);
    agent.stderr!.on('data', keep);
    await until('agent started', () => /"msg":"agent started"/.test(agentOut) || (agent!.exitCode !== null && Promise.reject(new Error(agentOut))), 60_000, () => agentOut);
  }

  /** The agent's host pid: unshare → sh → exec unshare --fork, so the node process is that process's only child. */
  function agentPid(): number {
    return Number(readFileSync(`/proc/${agent!.pid}/task/${agent!.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  }

  async function stopAgent(): Promise<void> {
    if (!agent || agent.exitCode !== null) return;
    const exited = new Promise((r) => agent!.once('exit', r));
    // unshare --fork ignores SIGTERM itself; the agent gets it, as from the kubelet.
    process.kill(agentPid(), 'SIGTERM');
    await exited;
  }

  function agentFds(): number {
    return readdirSync(`/proc/${agentPid()}/fd`).length;
  }

  async function configDump(p: (typeof pods)[number]): Promise<{ agent: { connected: boolean; identity?: { namespace: string; name: string; uid: string; serviceAccount?: string }; lastRefusal?: string; snapshots: number }; registry: { version: number; services: { name: string }[] } | null } | undefined> {
    try {
      return JSON.parse(await run('ip', ['netns', 'exec', p.ns.name, 'curl', '-s', '--max-time', '2', 'http://127.0.0.1:15000/config_dump']));
    } catch {
      return undefined;
    }
  }

  /** PROBE inside `ns` in a pid namespace of its own, as uid 1337 (a proxy) or as root (`asRoot`). */
  async function probe(ns: Netns, address: string, claimNs: string, claimName: string, asRoot = false): Promise<{ type: string; identity?: { name: string; namespace: string }; reason?: string; code?: string }> {
    const as = asRoot ? [] : ['setpriv', '--reuid', '1337', '--regid', '1337', '--clear-groups'];
    return JSON.parse((await run('ip', inPodPidns(ns, [...as, process.execPath, '-e', PROBE, address, claimNs, claimName]))).trim());
  }

  before(async () => {
    api = await TestApiServer.start({ bookmarkIntervalMs: 500 });
    dir = mkdtempSync(path.join(tmpdir(), 'wi-pidns-'));
    runDir = path.join(dir, 'run');
    mkdirSync(path.join(dir, 'net.d'), { recursive: true });
    kubeconfig = api.writeKubeconfig(dir);
    writeFileSync(path.join(dir, 'net.d', '10-wi.conflist'), JSON.stringify({
      cniVersion: '1.0.0', name: `wi-net-${bridge}`,
      plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: path.join(dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24` }]] } }],
    }, null, 2));
    api.put({ kind: 'Namespace', metadata: { name: NS } });
    api.put({ kind: 'Service', metadata: { name: 'web', namespace: NS, uid: randomUUID() }, spec: { clusterIP: '10.96.7.7', clusterIPs: ['10.96.7.7'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
    // The sandboxes' netns exist before the agent's mount ns is made (it copies
    // their mounts then): /run/netns here may not propagate to a new mount ns as
    // the DaemonSet's HostToContainer volume does.
    const sandboxNetns = ['alpha', 'beta'].map(() => { const ns = Netns.create('wip'); netnss.push(ns); return ns; });
    await startAgentInOwnPidns();
    runtime = new CniRuntime({ conflist: path.join(dir, 'net.d', '10-wi.conflist'), binDirs: [path.join(dir, 'bin'), '/usr/lib/cni'] });
    for (const [i, name] of ['alpha', 'beta'].entries()) {
      const uid = randomUUID();
      api.put(pod(name, uid));
      const ns = sandboxNetns[i];
      const spec: SandboxSpec = { containerId: `wi-${randomUUID()}`, netns: ns.path, args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: name, K8S_POD_UID: uid } };
      // Retried as the kubelet does: the informer may not have the pod yet (CNI code 11).
      let last = '';
      const out = await until(`ADD ${name}`, async () => {
        const r = await runtime.add(spec);
        if (!r.ok) { last = JSON.stringify(r.error); await runtime.del(spec); }
        return r.ok ? r : undefined;
      }, 20_000, () => `${last}\n${agentOut.slice(-2000)}`);
      pods.push({ name, uid, ns, spec, ip: String((out.result!.ips as { address: string }[])[0].address).split('/')[0], log: [] });
    }
  });

  after(async () => {
    // Kill each proxy's whole tree: setpriv changes the UID, which clears the
    // parent-death signal unshare --kill-child relies on, so the proxy (pid 1
    // of its pid namespace) would outlive its unshare.
    for (const c of children) if (c.pid !== undefined) killTree(c.pid);
    await stopAgent().catch(() => undefined);
    for (const ns of netnss) ns.destroy();
    try { sh('ip', ['link', 'del', bridge]); } catch { /* never created */ }
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the agent runs as pid 1 of its own pid namespace, as with hostPID: false', () => {
    const pid = agentPid();
    // NSpid: the pid in each pid namespace, outermost first.
    const nspid = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1].split(/\s+/).map(Number);
    assert.deepEqual(nspid, [pid, 1]);
    assert.notEqual(statSync(`/proc/${pid}/ns/pid`).ino, statSync('/proc/self/ns/pid').ino);
  });

  test('every proxy, in its own pid namespace and with no socket flag, gets its snapshot under its own pod identity', async () => {
    for (const p of pods) {
      // Deliberately claiming to be someone else: the claim must not matter.
      const proxy = spawn('ip', inPodPidns(p.ns, ['setpriv', '--reuid', '1337', '--regid', '1337', '--clear-groups',
        process.execPath, '--import', 'tsx', MAIN, 'proxy', '--pod-namespace', 'kube-system', '--pod-name', 'not-me', '--ready-without-agent', '60s']), { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(proxy);
      p.proxy = proxy;
      const keep = (d: Buffer): void => { for (const l of d.toString().split('\n')) if (l) p.log.push(l); };
      proxy.stdout!.on('data', keep);
      proxy.stderr!.on('data', keep);
    }
    for (const p of pods) {
      const dump = await until(`${p.name}'s proxy connected`, async () => { const d = await configDump(p); return d?.agent.connected && d.registry ? d : undefined; }, 60_000, () => `${p.log.slice(-15).join('\n')}\n${agentOut.slice(-3000)}`);
      assert.deepEqual({ namespace: dump.agent.identity!.namespace, name: dump.agent.identity!.name, uid: dump.agent.identity!.uid, sa: dump.agent.identity!.serviceAccount }, { namespace: NS, name: p.name, uid: p.uid, sa: `sa-${p.name}` });
      assert.ok(dump.registry!.services.some((s) => s.name === 'web'), JSON.stringify(dump.registry));
      assert.ok(dump.agent.snapshots >= 1);
    }
  });

  test('pod A can only ever be told it is A: its netns holds one listener, B\'s is unreachable by construction', async () => {
    const [a, b] = pods;
    // Each netns lists exactly the one abstract listener the agent bound there.
    assert.deepEqual(abstractListeners(a.ns), POD_SOCKET_LISTENERS);
    assert.deepEqual(abstractListeners(b.ns), POD_SOCKET_LISTENERS);
    // From A, claiming to be B: the only @weir/proxy A can reach is A's own listener.
    const asB = await probe(a.ns, '@weir/proxy', NS, b.name);
    assert.equal(asB.type, 'welcome', JSON.stringify(asB));
    assert.equal(asB.identity!.name, a.name);
    // There is no name by which A reaches B's listener: the abstract namespace is per netns.
    // A fresh netns without a listener (where B's name would have to live for A) refuses the connection.
    const empty = Netns.create('wie');
    netnss.push(empty);
    assert.equal((await probe(empty, '@weir/proxy', NS, b.name)).code, 'ECONNREFUSED');
    // The legacy host socket (reachable here only because the test shares the filesystem;
    // as root, since the run dir is 0700): the peer's pid namespace is invisible to the
    // agent (SO_PEERCRED reports pid 0), so it identifies no one.
    const host = await probe(a.ns, path.join(runDir, 'proxy.sock'), NS, b.name, true);
    assert.equal(host.type, 'refused', JSON.stringify(host));
    assert.match(host.reason!, /no peer pid|does not identify proxies by pid/);
  });

  test('DEL closes the pod socket and its fd; an agent restart re-opens the others from the sandbox records', async () => {
    const [a, b] = pods;
    const fdsBefore = agentFds();
    const del = await runtime.del(b.spec);
    assert.ok(del.ok, JSON.stringify(del));
    assert.deepEqual(abstractListeners(b.ns), []);
    // B's two listening fds and B's proxy connection are closed: three fewer fds.
    await until('agent fds to drop', () => agentFds() <= fdsBefore - 3, 5000, () => `before ${fdsBefore}, now ${agentFds()}`);

    const epochBefore = (await configDump(a))!.agent.snapshots;
    await stopAgent();
    assert.deepEqual(abstractListeners(a.ns), [], 'the listener dies with the agent');
    await startAgentInOwnPidns();
    assert.deepEqual(abstractListeners(a.ns), POD_SOCKET_LISTENERS);
    assert.deepEqual(abstractListeners(b.ns), [], 'a deleted sandbox gets no socket back');
    // A's proxy reconnects on its own (new epoch → a fresh snapshot) as A.
    const dump = await until('A reconnected after the restart', async () => { const d = await configDump(a); return d?.agent.connected && d.agent.snapshots > epochBefore ? d : undefined; }, 30_000, () => a.log.slice(-10).join('\n'));
    assert.equal(dump.agent.identity!.name, a.name);
  });
});
