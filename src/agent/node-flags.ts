// V8 flags the node agent runs with: the DaemonSet's command line
// (daemonset/daemonset.yaml, checked against this list by
// test/unit/daemonset-manifests.test.ts) and bench/controlplane-scale.ts, which
// runs the agent's control plane the way the DaemonSet does.
//
// --max-semi-space-size (MiB): as for the proxy (src/proxy/node-flags.ts), V8
// grows the young generation's semi-spaces up to 16 MiB each under the
// allocation rate of a cold start (pages of the LIST, compiles, push bodies)
// and keeps them. MEASURED below (bench/results/controlplane-scale.md).
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=30'];
