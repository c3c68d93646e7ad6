// CNI ADD wall time: bridge + host-local vs bridge + host-local + weir-cni,
// interleaved sandbox by sandbox in one run, on this machine's kernel, with
// an in-process agent (CniServer + CaptureController + nftables backend)
// programming each captured pod's netns. Also measures the plugin's start-up
// (VERSION) for the start-up options tried. Writes bench/results/cni-add.md.
//   node --import tsx bench/cni-add.ts [sandboxes=120]
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir, cpus, release } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Netns, uniq, sh } from '../test/support/netns.js';
import { CniRuntime, type Conflist } from '../test/support/cni-runtime.js';
import { CniServer } from '../src/agent/cni-server.js';
import { CaptureController } from '../src/agent/capture-controller.js';
import { SandboxStore } from '../src/agent/sandbox-store.js';
import { StaticResolver } from '../src/agent/static-resolver.js';
import { buildPlan } from '../src/redirect/plan.js';
import { NFT_TABLES, renderNftables, renderNftablesDefinition } from '../src/redirect/render-nftables.js';
import { NftablesBackend } from '../src/netns/nft-backend.js';

const REPO = path.resolve(import.meta.dirname, '..');
const PLUGIN = path.join(REPO, 'dist/weir-cni');
const N = Number(process.argv[2] ?? 120);

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };
const f = (x: number) => x.toFixed(1);

function chain(name: string, bridge: string, subnet: string, dataDir: string, weir?: Record<string, unknown>): Conflist {
  const plugins: Record<string, unknown>[] = [{ type: 'bridge', bridge, isGateway: false, ipMasq: false, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]] } }];
  if (weir) plugins.push({ type: 'weir-cni', ...weir });
  return { cniVersion: '1.0.0', name, plugins };
}

function startupTimes(cmd: string[], runs: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    execFileSync(cmd[0], cmd.slice(1), { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}' });
    out.push(performance.now() - t);
  }
  return out;
}

async function main(): Promise<void> {
  if (!existsSync(PLUGIN)) throw new Error('dist/weir-cni missing: npm run build');
  const dir = mkdtempSync(path.join(tmpdir(), 'wc-bench-'));
  const bridges = [uniq('wcb'), uniq('wcb')];
  const namespaces = new Set<Netns>();
  let server: CniServer | undefined;
  const agentMs: number[] = [];
  const requestMs: number[] = [];
  try {
    for (const b of bridges) { sh('ip', ['link', 'add', b, 'type', 'bridge']); sh('ip', ['link', 'set', b, 'up']); }
    const socketPath = path.join(dir, 'run', 'cni.sock');
    const resolver = new StaticResolver();
    const controller = new CaptureController({
      resolver,
      backend: new NftablesBackend({ tables: NFT_TABLES, render: renderNftables, renderDefinition: renderNftablesDefinition }),
      planner: (pod) => buildPlan(pod),
      store: await SandboxStore.open(path.join(dir, 'run')),
      onEvent: (e) => { if (e.kind === 'programmed' && e.durationMs !== undefined) agentMs.push(e.durationMs); },
    });
    server = new CniServer({ controller, socketPath, onRequest: (route, _o, ms) => { if (route.endsWith('/add')) requestMs.push(ms); } });
    await server.start();
    // The same plugin logic as a Node SEA (WEIR_CNI_IMPL=node), measured in the same run as the shipped C relay.
    const seaDir = path.join(dir, 'sea');
    execFileSync(process.execPath, [path.join(REPO, 'cni/build-plugin.mjs')], { env: { ...process.env, WEIR_CNI_IMPL: 'node', WEIR_CNI_OUT: path.join(seaDir, 'weir-cni') }, stdio: 'ignore' });
    const a = 100 + Math.floor(Math.random() * 90);
    const base = new CniRuntime({ conflist: chain('wc-bench-base', bridges[0], `10.${a}.0.0/24`, path.join(dir, 'ipam')), binDirs: ['/usr/lib/cni'] });
    const weir = new CniRuntime({ conflist: chain('wc-bench-weir', bridges[1], `10.${a}.1.0/24`, path.join(dir, 'ipam'), { agentSocket: socketPath }), binDirs: [path.dirname(PLUGIN), '/usr/lib/cni'] });
    const sea = new CniRuntime({ conflist: chain('wc-bench-sea', bridges[1], `10.${a}.2.0/24`, path.join(dir, 'ipam'), { agentSocket: socketPath }), binDirs: [seaDir, '/usr/lib/cni'] });

    type Variant = 'base' | 'weir' | 'sea';
    const total: Record<Variant, number[]> = { base: [], weir: [], sea: [] };
    const weirStep: number[] = [];
    const seaStep: number[] = [];
    const orders: Variant[][] = [['base', 'weir', 'sea'], ['weir', 'sea', 'base'], ['sea', 'base', 'weir']];
    for (let i = 0; i < N + 5; i++) {
      for (const variant of orders[i % 3]) {
        const ns = Netns.create('wc');
        namespaces.add(ns);
        const name = `bench-${ns.name}`;
        resolver.set({ metadata: { name, namespace: 'default', uid: name }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } });
        const rt = { base, weir, sea }[variant];
        const spec = { containerId: name.replace(/\W/g, ''), netns: ns.path, args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: name, K8S_POD_UID: name } };
        const t = performance.now();
        const r = await rt.add(spec);
        const dt = performance.now() - t;
        if (!r.ok) throw new Error(`${variant} ADD failed: ${JSON.stringify(r.error)}`);
        if (i >= 5) { // first 5 rounds warm caches (page cache of the binaries)
          total[variant].push(dt);
          if (variant === 'weir') weirStep.push(r.runs.at(-1)!.durationMs);
          if (variant === 'sea') seaStep.push(r.runs.at(-1)!.durationMs);
        }
        if (variant !== 'base' && !/weir_nat/.test(ns.exec('nft', ['list', 'tables']))) throw new Error('weir ADD did not program the netns');
        const d = await rt.del(spec);
        if (!d.ok) throw new Error(`${variant} DEL failed: ${JSON.stringify(d.error)}`);
        ns.destroy();
        namespaces.delete(ns);
        resolver.remove('default', name);
      }
    }

    // Start-up of the plugin process alone (VERSION: no agent call).
    const runs = 40;
    const variants: [string, string[]][] = [
      ['weir-cni C relay (shipped)', [PLUGIN]],
      ['weir-cni Node SEA + V8 code cache', [path.join(seaDir, 'weir-cni')]],
    ];
    const noCache = path.join(dir, 'weir-cni-nocache');
    execFileSync(process.execPath, [path.join(REPO, 'cni/build-plugin.mjs')], { env: { ...process.env, WEIR_CNI_IMPL: 'node', WEIR_CNI_OUT: noCache, WEIR_CNI_CODE_CACHE: '0' }, stdio: 'ignore' });
    variants.push(['weir-cni Node SEA without code cache', [noCache]]);
    variants.push(['same bundle under plain `node` (needs Node on the host)', [process.execPath, path.join(seaDir, 'weir-cni.build/main.cjs')]]);
    variants.push(['Debian `bridge` (Go), for reference', ['/usr/lib/cni/bridge']]);
    variants.push(['floor: `node -e 0` (Node 20 bootstrap alone)', [process.execPath, '-e', '0']]);
    const startup = variants.map(([label, cmd]) => { startupTimes(cmd, 3); return [label, startupTimes(cmd, runs)] as const; });

    const added50 = pct(total.weir, 50) - pct(total.base, 50);
    const cpu = cpus()[0]?.model ?? 'unknown';
    const md = [
      '# CNI ADD wall time: bridge + host-local vs bridge + host-local + weir-cni',
      '',
      `Date: ${new Date().toISOString()} · machine: ${cpus().length} vCPU (${cpu}), kernel ${release()}, Node ${process.version}, containernetworking-plugins (Debian) in /usr/lib/cni.`,
      `Shared machine (other engineers' builds and tests ran concurrently): treat absolute numbers as upper bounds.`,
      '',
      `Method: \`node --import tsx bench/cni-add.ts ${N}\`. ${N} sandboxes per chain (after 5 warm-up rounds), the three chains (base, base + weir-cni C relay, base + weir-cni Node SEA) interleaved sandbox by sandbox in rotating order in one run, each a fresh netns; ADD run as a runtime does (test/support/cni-runtime.ts: one process per plugin, env + stdin + prevResult). weir-cni asks an in-process agent (CniServer + CaptureController, StaticResolver, nftables backend) that programs the pod's capture rules (the pod has a weir-proxy container) before ADD returns. Every weir ADD is checked to have left weir's tables in the netns; every sandbox is DELeted.`,
      '',
      '| chain | p50 ms | p90 ms | p99 ms | max ms |',
      '|---|---:|---:|---:|---:|',
      `| bridge + host-local | ${f(pct(total.base, 50))} | ${f(pct(total.base, 90))} | ${f(pct(total.base, 99))} | ${f(pct(total.base, 100))} |`,
      `| bridge + host-local + weir-cni (C relay, shipped) | ${f(pct(total.weir, 50))} | ${f(pct(total.weir, 90))} | ${f(pct(total.weir, 99))} | ${f(pct(total.weir, 100))} |`,
      `| bridge + host-local + weir-cni (Node SEA) | ${f(pct(total.sea, 50))} | ${f(pct(total.sea, 90))} | ${f(pct(total.sea, 99))} | ${f(pct(total.sea, 100))} |`,
      `| weir-cni step alone, C relay (process start → rules programmed → exit) | ${f(pct(weirStep, 50))} | ${f(pct(weirStep, 90))} | ${f(pct(weirStep, 99))} | ${f(pct(weirStep, 100))} |`,
      `| weir-cni step alone, Node SEA | ${f(pct(seaStep, 50))} | ${f(pct(seaStep, 90))} | ${f(pct(seaStep, 99))} | ${f(pct(seaStep, 100))} |`,
      `| of which (both variants): agent handling of the add (resolve, plan, nft apply, persist) | ${f(pct(requestMs, 50))} | ${f(pct(requestMs, 90))} | ${f(pct(requestMs, 99))} | ${f(pct(requestMs, 100))} |`,
      `| of which: capture programming (controller, excl. HTTP) | ${f(pct(agentMs, 50))} | ${f(pct(agentMs, 90))} | ${f(pct(agentMs, 99))} | ${f(pct(agentMs, 100))} |`,
      '',
      `Added by weir (shipped C relay) at p50: **${f(added50)} ms** (goal ≤ 30 ms); ratio weir chain / base chain at p50: ${(pct(total.weir, 50) / pct(total.base, 50)).toFixed(2)}×, at p99: ${(pct(total.weir, 99) / pct(total.base, 99)).toFixed(2)}×. With the Node SEA plugin instead: ${f(pct(total.sea, 50) - pct(total.base, 50))} ms added at p50.`,
      '',
      `## Plugin start-up (CNI_COMMAND=VERSION, ${runs} runs each, no agent call)`,
      '',
      '| executable | p50 ms | p99 ms | vs shipped (p50) |',
      '|---|---:|---:|---:|',
      ...startup.map(([label, xs]) => `| ${label} | ${f(pct(xs, 50))} | ${f(pct(xs, 99))} | ${(pct(xs, 50) / pct(startup[0][1], 50)).toFixed(2)}× |`),
      '',
      '## Reading',
      '',
      '- The shipped `weir-cni` is a statically linked C relay (cni/relay/weir-cni.c, ~0.9 MB): it forwards env + stdin to the agent (`POST /v1/cni/exec`), where the plugin logic of src/cni/plugin.ts runs in-process, and keeps locally only what must work without the agent (VERSION, excluded namespaces, fail-closed code 11, DEL always succeeds).',
      '- The Node SEA variant runs the same logic in the plugin process; its cost is Node\'s own bootstrap (compare `node -e 0` above), which no bundling trick removes (useSnapshot cannot load node:http in Node 20; the V8 code cache is within noise).',
      '- The agent\'s share (pod lookup, plan, one nftables transaction in the pod netns, persisting the sandbox record) is the same for both variants.',
      '- Runtimes call plugins with a clean environment (this bench does too): with `NODE_EXTRA_CA_CERTS` set, a Node plugin would also read the whole CA bundle at every start.',
      '',
    ].join('\n');
    writeFileSync(path.join(REPO, 'bench/results/cni-add.md'), md);
    console.log(md);
  } finally {
    await server?.close();
    for (const ns of namespaces) ns.destroy();
    for (const b of bridges) { try { sh('ip', ['link', 'del', b]); } catch { /* not created */ } }
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
