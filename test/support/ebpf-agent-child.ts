// A stand-in for a (re)started agent, as its own process: loads weir's eBPF
// programs at the given pins (re-pointing the links an earlier process left)
// and re-applies a default weir pod's plan to each netns given, then exits.
// Prints one JSON line: the programs and whether each was attached anew.
// Usage: tsx ebpf-agent-child.ts PIN_DIR CGROUP [NETNS...]
import { EbpfBackend } from '../../src/netns/ebpf-backend.js';
import { ensureEbpfLoaded } from '../../src/netns/ebpf-loader.js';
import { buildPlan } from '../../src/redirect/plan.js';
import { sandboxAt } from '../../src/netns/backend-types.js';

const [pinDir, cgroup, ...netns] = process.argv.slice(2);
const programs = ensureEbpfLoaded({ pinDir, cgroup });
const backend = new EbpfBackend({ pinDir, cgroup });
for (const n of netns) await backend.apply(sandboxAt(n), buildPlan({ metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'app' }, { name: 'weir-proxy' }] } }));
process.stdout.write(JSON.stringify(programs) + '\n');
