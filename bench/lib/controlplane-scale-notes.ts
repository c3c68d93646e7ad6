// The prose of bench/results/controlplane-scale*.md: how to read the table,
// and the published Istio figures it is compared with (sources cited).
export const NOTES = `Reading it:
- agentRss*: the agent process's VmRSS (plain node on the bundle: the runtime itself is ~45 MB of it), run with the
  DaemonSet's node flags (src/agent/node-flags.ts) and the agent's memory relief (src/common/memory-relief.ts).
  agentRssPeak: VmHWM, the most the agent ever held, up to the end of the VirtualService round. agentRssSettled: after
  that, once the agent was quiet for long enough that its memory relief ran (a full GC and malloc_trim; at most 30 s).
- coldStartAllProxiesMs: all proxies started at once → every proxy holds its whole registry and compiled config.
- endpointChange*: one EndpointSlice change in the API server → every proxy that holds that Service holds the new endpoint
  (watch + registry delta + push + apply; endpointChangeSeenByProxies says how many hold it). ackedByAll*: the agent's own
  fan-out time for that change: every connected proxy acked it (a scoped proxy whose registry does not hold the Service
  counts as acked as soon as the change is processed: it is sent nothing).
  An endpoint-only change never recompiles (compiled kinds carry no endpoints): it is one registry delta per proxy that sees it.
- bytesPerEndpointChange: bytes written to all proxies together for one change.
- layeredViews: views that are the shared base plus their namespace's own items (every view without a Sidecar and
  without namespace-specific resources; docs/controlplane-v2.md "Shared base view"); the others are compiled whole.
- vsChange*: one VirtualService changed. Layered views: the base recompiles only the hosts the VirtualService's old
  and new host patterns match, and every layered view takes the changed items in the same turn; views compiled whole
  (the Sidecar-scoped ones) recompile one per event-loop turn. vsChangeCompiles: compiles in that round (base: of
  the base); vsChangeRoundMs the whole round; vsChangeRecompileMs the last compile. Only views whose output changed
  push, and route tables travel per virtual host. Scoped, only the proxies of its namespace receive anything.
- agentHeapUsed*: V8 heapUsed (+ external: Buffers, e.g. encoded pushes still queued) at the same moment as the RSS row.
- compiledHeldPerProxyBytes / registryHeldPerProxyBytes: the JSON of what proxy 0 holds.
- oneProxyClientRss: RSS of worker 0 (node + one RegistryClient with its state); oneProxyStateRss: that minus the
  worker's RSS before connecting; perProxyStateRssShared: the same per proxy in the workers holding several.
`;

/** Published Istio figures the results are held against (each with its source). */
export const ISTIO_COMPARISON = `Published Istio figures, for comparison (not measured here):
- istio.io, "Performance and Scalability" (the page for Istio 1.13.4 … 1.16.2, e.g. https://istio.io/v1.15/docs/ops/deployment/performance-and-scalability):
  a mesh of 1000 services and 2000 sidecars at 70,000 requests/s; istiod uses 1 vCPU and 1.5 GB of memory (for the whole
  mesh: it serves every proxy of the cluster, where weir's agent serves the proxies of one node); an Envoy sidecar uses
  0.35 vCPU and 40 MB per 1000 requests/s through it.
- Envoy memory per service: istio/istio#7912 ("High memory utilization of istio-proxy proportional to number of services",
  https://github.com/istio/istio/issues/7912): the per-cluster overhead quoted there by the Envoy maintainers is ~118 KB,
  ~95 MB for 783 added clusters, i.e. roughly 100+ MB of sidecar memory per 1000 single-port services without Sidecar
  scoping (2018-era Envoy; later releases reduced it, the proportionality remains, which is what the Sidecar resource is for).
- istiod push (propagation) time in production: Airbnb Engineering, "Improving Istio Propagation Delay" (Ying Zhu, 2023;
  read at the mirror https://tool.lu/article/5d6/preview): pilot_proxy_convergence_time p90 went from 1.5 s (Istio 1.11)
  to 4.5 s (1.12) on their mesh before their fix; guides commonly treat a p99 convergence under 5 s as normal.
- weir's figures are per node: the agent compiles and pushes only for the proxies on its node, so the numbers to hold
  against istiod's are per-change latency and bytes, not its total memory; the proxies' held config (bytes above) is
  the figure to hold against Envoy's per-service memory.
`;
