// Assembles the proxy's mesh security from its settings: the identity
// (certificate through the agent), the static policies, the hooks the
// chains call, readiness, and the config_dump section.
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import type { ProxyConfig } from '../config.js';
import type { RegistryClient } from '../registry-client.js';
import { meshHooks, type MeshHooks } from './hooks.js';
import { MeshIdentity } from './mesh-identity.js';
import { SecurityState } from './security-state.js';
import type { SecurityItem } from '../../security/items.js';

export interface Mesh {
  identity: MeshIdentity;
  security: SecurityState;
  hooks: MeshHooks;
  /** A reason while readiness must wait for the first certificate, else undefined. */
  waitingForCertificate(): string | undefined;
  dump(): Record<string, unknown>;
}

export function startMesh(cfg: ProxyConfig, client: RegistryClient, labels: Record<string, string>, logger: Logger, metrics: Registry, namespace: () => string): Mesh {
  const log = logger.child({ component: 'mtls' });
  const identity = new MeshIdentity({ client, trustDomain: cfg.trustDomain, logger: log, rotationMs: cfg.certRotationMs });
  const security = new SecurityState(labels, log, metrics, cfg.staticSecurityFile);
  // v2 Security pushes: a bad one throws here and is nacked (the last good policies stay).
  if (client.securityItems) security.applyPushed(client.securityItems);
  client.on('security', (items: SecurityItem[]) => security.applyPushed(items));
  const handshakeTimeoutMs = Math.min(cfg.connectTimeoutMs, 10_000);
  const hooks = meshHooks(
    { identity, security, namespace, trustDomain: cfg.trustDomain, logger: log, peekTimeoutMs: cfg.inboundProtocolDetectionTimeoutMs, handshakeTimeoutMs },
    { identity, trustDomain: cfg.trustDomain, required: cfg.mtls === 'required', handshakeTimeoutMs },
  );
  return {
    identity, security, hooks,
    waitingForCertificate() {
      if (identity.current()) return undefined;
      // Wait when this pod will have a certificate (the agent issues them: peers will dial it with mTLS, which
      // it could not accept yet) or must have one (--mtls required, a STRICT PeerAuthentication here).
      // An agent without a CA: plaintext, no wait.
      if (!client.certificatesOffered && cfg.mtls !== 'required' && !security.strictAnywhere(namespace())) return undefined;
      return `waiting for the workload certificate${identity.lastError ? ` (${identity.lastError})` : ''}`;
    },
    dump() {
      const wi = identity.current();
      const c = wi?.credentials();
      return {
        mode: cfg.mtls, trustDomain: cfg.trustDomain, spiffeId: identity.spiffeId,
        certificate: c ? { serial: c.serial, notAfter: c.notAfter.toISOString(), rotations: identity.rotations } : undefined,
        lastError: identity.lastError, staticSecurity: cfg.staticSecurityFile, securitySource: security.source(), securityPushes: security.pushes,
        compiled: security.snapshot(namespace()), ...(security.overridden() ? { overriddenByStaticSecurity: security.overridden() } : {}),
      };
    },
  };
}
