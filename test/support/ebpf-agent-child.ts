// A stand-in for a (re)started agent, as its own process: loads weir's eBPF
// programs at the given pins (re-pointing the links an earlier process left)
// and re-applies each pod's plan to its netns, then exits. An argument is a
// netns path (a default weir pod's plan) or NETNS=POD_JSON (that pod's
// manifest: the plan a real agent would rebuild from the API).
// Prints one JSON line: the programs and whether each was attached anew.
// --shortcut: the entries get the same-node shortcut.
// Usage: tsx ebpf-agent-child.ts PIN_DIR CGROUP [--shortcut] [NETNS[=POD_JSON]...]
import { EbpfBackend } from '../../src/netns/ebpf-backend.js';
import { ensureEbpfLoaded } from '../../src/netns/ebpf-loader.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

const DEFAULT_POD = { metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } };
const [pinDir, cgroup, ...rest] = process.argv.slice(2);
const shortcut = rest[0] === '--shortcut';
const targets = shortcut ? rest.slice(1) : rest;
const programs = ensureEbpfLoaded({ pinDir, cgroup });
const backend = new EbpfBackend({ pinDir, cgroup, shortcut });
for (const t of targets) {
  const eq = t.indexOf('=');
  const netns = eq < 0 ? t : t.slice(0, eq);
  const pod = eq < 0 ? DEFAULT_POD : JSON.parse(t.slice(eq + 1));
  await backend.apply(sandboxAt(netns), buildPlan(pod));
}
process.stdout.write(JSON.stringify(programs) + '\n');
