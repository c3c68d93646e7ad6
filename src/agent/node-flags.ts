// V8 flags the node agent runs with: the DaemonSet's command line
// (daemonset/daemonset.yaml, checked against this list by
// test/unit/daemonset-manifests.test.ts) and bench/controlplane-scale.ts, which
// runs the agent's control plane the way the DaemonSet does.
//
// --max-semi-space-size=2 (MiB): as for the proxy (src/proxy/node-flags.ts), V8
// grows the young generation's semi-spaces up to 16 MiB each under the
// allocation rate of a cold start (LIST pages, compiles, push bodies) and
// keeps them.
// --heap-growing-percent=30: after a full GC V8 lets the old generation grow
// to a multiple of the live heap before the next one (up to 4x on a fast
// machine); the agent's live heap is mostly its copy of the cluster (~110 MB at
// 10k Services / 100k endpoints), so the garbage of a cold start or a
// recompile round stayed resident up to that limit. 30 % keeps the next full
// GC near the live size; the marking is concurrent, and the push latency held.
// Measured (bench/controlplane-scale.ts, 5k Services / 50k endpoints / 50
// proxies unscoped, one shared VM, same hour): agent RSS peak 228 MB without
// flags, 217 MB with the semi-space cap, 187-192 MB with both; push p99
// (acked by all) 23-125 ms across those runs, following the machine's load.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=30'];
