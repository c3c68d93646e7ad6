// `weir ca`: load (or create) the mesh root, then serve node-scoped issuance.
// Kept apart from the CLI layer so the CA can be started by tests and by the
// command alike.
import { loadKubeConfig } from '../kube/informers.js';
import { createLogger, type Logger } from '../common/log.js';
import { NodeAuthority } from './node-auth.js';
import { loadOrCreateRoot } from './root-store.js';
import { CaServer } from './server.js';
import { publishRoots, ROOTS_CONFIGMAP } from './publish-roots.js';

export interface CaConfig {
  kubeconfig?: string;
  namespace: string;
  trustDomain: string;
  host: string;
  port: number;
  dnsNames: string[];
  ips: string[];
  agentServiceAccounts: string[];
  certTtlMs: number;
  maxCertTtlMs: number;
  logger?: Logger;
}

export async function startCa(cfg: CaConfig): Promise<{ server: CaServer; origin: string; logger: Logger }> {
  const logger = cfg.logger ?? createLogger({ name: 'weir-ca' });
  const kubeConfig = loadKubeConfig(cfg.kubeconfig);
  const root = await loadOrCreateRoot({ kubeConfig, namespace: cfg.namespace, trustDomain: cfg.trustDomain });
  logger.info({ origin: root.origin, subject: root.material.cert.subject, notAfter: root.material.cert.notAfter.toISOString() }, 'mesh CA material loaded');
  const authority = new NodeAuthority({ kubeConfig, trustDomain: cfg.trustDomain, agentServiceAccounts: cfg.agentServiceAccounts });
  const server = await CaServer.start({
    authority, material: root.material, host: cfg.host, port: cfg.port, dnsNames: cfg.dnsNames, ips: cfg.ips,
    certTtlMs: cfg.certTtlMs, maxCertTtlMs: cfg.maxCertTtlMs, logger,
  });
  logger.info({ host: cfg.host, port: server.port, trustDomain: cfg.trustDomain }, 'weir ca serving');
  // Agents verify this server against the roots in ConfigMap weir-mesh-roots; a failure here is logged, the CA keeps serving.
  try {
    const did = await publishRoots(kubeConfig, cfg.namespace, server.rootsPem());
    logger.info({ configMap: `${cfg.namespace}/${ROOTS_CONFIGMAP}`, did }, 'mesh roots published');
  } catch (e) {
    logger.error({ err: String(e), configMap: `${cfg.namespace}/${ROOTS_CONFIGMAP}` }, 'cannot publish the mesh roots (agents cannot verify the CA until it is there)');
  }
  return { server, origin: root.origin, logger };
}
