// The HTTP suites' shared topology (proxy-http, proxy-http-native,
// proxy-http2-native): a control plane, a client pod, three server pods and
// one pod outside the mesh (no capture), the test app (fixtures/http/app.cjs:
// HTTP/1.1 on 8080, h2c on 8090, gRPC on 50051) in each server pod and the
// outside one, the suite's services, then one weir proxy per mesh pod with
// the suite's arguments — connected and acked before the first test.
import { Cluster, type Pod } from '../integration/proxy-harness.js';
import { startHttpApp, waitFor } from '../integration/proxy-http-harness.js';

export interface HttpMesh { c: Cluster; client: Pod; servers: Pod[]; outside: Pod }

export interface HttpMeshSpec {
  client: string;
  servers: [string, string, string];
  outside: string;
  namespace?: string;
  /** Services and endpoint slices, applied before the apps and proxies start. */
  services(m: HttpMesh): void;
  /** Extra processes (apps) to start in the pods before the proxies. */
  apps?(m: HttpMesh): Promise<void>;
  /** Each proxy's arguments (called once the pods exist: labels files name them); default `--no-dns`. */
  clientArgs?(m: HttpMesh): string[];
  serverArgs?(i: number, m: HttpMesh): string[];
}

export async function startHttpMesh(spec: HttpMeshSpec): Promise<HttpMesh> {
  const ns = spec.namespace ?? 'shop';
  const c = new Cluster();
  await c.startControlPlane();
  const client = await c.addPod(spec.client, ns);
  const servers: Pod[] = [];
  for (const name of spec.servers) servers.push(await c.addPod(name, ns));
  const outside = await c.addPod(spec.outside, 'elsewhere', { capture: false });
  const m: HttpMesh = { c, client, servers, outside };
  spec.services(m);
  await Promise.all([...servers, outside].map((p) => startHttpApp(p)));
  await spec.apps?.(m);
  await Promise.all([c.startProxy(client, spec.clientArgs?.(m) ?? ['--no-dns']), ...servers.map((p, i) => c.startProxy(p, spec.serverArgs?.(i, m) ?? ['--no-dns']))]);
  await waitFor(() => (c.cp!.stats().proxies as unknown[]).length === 4, 10000, 'four proxies connected');
  await c.cp!.waitAcked(c.cp!.stats().version as number, 5000);
  return m;
}
