// The prose of bench/results/controlplane-scale*.md: how to read the table,
// and the published Istio figures it is compared with (sources cited).
export const NOTES = `Reading it:
- agentRss*: the agent process's VmRSS (plain node on the bundle: the runtime itself is ~45 MB of it).
- coldStartAllProxiesMs: all proxies started at once → every proxy holds its whole registry and compiled config.
- endpointChange*: one EndpointSlice change in the API server → every proxy that holds that Service holds the new endpoint
  (watch + registry delta + push + apply; endpointChangeSeenByProxies says how many hold it). ackedByAll*: the agent's own
  fan-out time for that change: every connected proxy acked it (a scoped proxy whose registry does not hold the Service
  counts as acked as soon as the change is processed: it is sent nothing).
  An endpoint-only change never recompiles (compiled kinds carry no endpoints): it is one registry delta per proxy that sees it.
- bytesPerEndpointChange: bytes written to all proxies together for one change.
- vsChange*: one VirtualService changed; every view is recompiled (debounced), only views whose output changed push,
  and route tables travel per virtual host. Scoped, only the proxies of its namespace receive anything.
- compiledHeldPerProxyBytes / registryHeldPerProxyBytes: the JSON of what proxy 0 holds.
- oneProxyClientRss: RSS of worker 0 (node + one RegistryClient with its state); oneProxyStateRss: that minus the
  worker's RSS before connecting; perProxyStateRssShared: the same per proxy in the workers holding several.
`;
