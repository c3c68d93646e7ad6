// Assembles `weir injector`: native-sidecar choice (from the API server's
// version, re-read so a cluster upgrade switches it on), the serving
// certificate and caBundle, and the HTTPS server.
import type { Logger } from '../common/log.js';
import { serviceDnsNames } from './certs.js';
import { supportsNativeSidecars, type InjectorConfig } from './config.js';
import type { KubeRest } from './kube-rest.js';
import type { ServerSettings } from './options.js';
import { startInjectorServer, type InjectorServer } from './server.js';
import { ServingCerts } from './serving-certs.js';

export interface InjectorRunOptions {
  settings: ServerSettings;
  api?: KubeRest;
  nativeChoice: 'auto' | boolean;
  configFor(native: boolean): InjectorConfig;
  logger: Logger;
  /** How often "auto" re-reads the server version. */
  versionRecheckMs?: number;
  /** How often the caBundle is checked for drift. */
  caBundleReconcileMs?: number;
}

export interface RunningInjector {
  server: InjectorServer;
  certs: ServingCerts;
  native(): boolean;
  close(): Promise<void>;
}

export async function startInjector(o: InjectorRunOptions): Promise<RunningInjector> {
  const s = o.settings;
  let native = o.nativeChoice === 'auto' ? false : o.nativeChoice;
  let config = o.configFor(native);
  const readVersion = async () => {
    const v = await o.api!.serverVersion();
    const next = supportsNativeSidecars(v.major, v.minor);
    if (next !== native) o.logger.info({ version: v.gitVersion ?? `${v.major}.${v.minor}`, nativeSidecars: next }, 'native sidecars chosen from the API server version');
    native = next;
    config = o.configFor(native);
  };
  let versionTimer: NodeJS.Timeout | undefined;
  if (o.nativeChoice === 'auto') {
    // Fail start-up rather than guess: a wrong guess injects pods that do not start on old clusters.
    await readVersion();
    versionTimer = setInterval(() => { readVersion().catch((err: unknown) => o.logger.warn({ err: String(err) }, 'server version re-check failed; keeping the last choice')); }, o.versionRecheckMs ?? 600_000);
    versionTimer.unref();
  }
  const certs = new ServingCerts({
    api: o.api, namespace: s.namespace, caSecretName: s.caSecret, webhookConfigName: o.api ? s.webhookConfig : '',
    dnsNames: serviceDnsNames(s.service, s.namespace, s.clusterDomain), leafLifetimeMs: s.certLifetimeMs, reconcileMs: o.caBundleReconcileMs ?? 60_000,
    logger: o.logger.child({ component: 'certs' }),
  });
  await certs.start();
  const server = await startInjectorServer({ host: s.host, port: s.port, config: () => config, certs, logger: o.logger });
  o.logger.info({ port: server.port, nativeSidecars: native, policy: config.policy, image: config.proxyImage }, 'weir injector listening');
  return {
    server, certs, native: () => native,
    async close() { clearInterval(versionTimer); certs.stop(); await server.close(); },
  };
}
