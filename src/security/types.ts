// security.istio.io resources as weir reads them (read.ts validates; field
// names follow Istio's API). PeerAuthentication decides whether a workload's
// inbound must be mTLS; AuthorizationPolicy who may reach it.
import type { Meta } from '../istio/types.js';

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthentication {
  kind: 'PeerAuthentication';
  meta: Meta;
  selector?: Record<string, string>;
  mode: MtlsMode;
  /** Workload (target) port → mode. Istio honours it only with a selector. */
  portLevel: Record<number, MtlsMode>;
}

export interface Source {
  principals?: string[]; notPrincipals?: string[];
  namespaces?: string[]; notNamespaces?: string[];
  ipBlocks?: string[]; notIpBlocks?: string[];
  remoteIpBlocks?: string[]; notRemoteIpBlocks?: string[];
  /** request.auth: JWT principals — read, reported unsupported. */
  requestPrincipals?: string[]; notRequestPrincipals?: string[];
}

export interface Operation {
  hosts?: string[]; notHosts?: string[];
  ports?: string[]; notPorts?: string[];
  methods?: string[]; notMethods?: string[];
  paths?: string[]; notPaths?: string[];
}

export interface Condition { key: string; values?: string[]; notValues?: string[] }

export interface Rule { from?: Source[]; to?: Operation[]; when?: Condition[] }

export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

export interface AuthorizationPolicy {
  kind: 'AuthorizationPolicy';
  meta: Meta;
  selector?: Record<string, string>;
  action: AuthzAction;
  /** undefined = no rules field (ALLOW: allow-nothing; DENY: never matches). */
  rules: Rule[];
}

export type SecurityResource = PeerAuthentication | AuthorizationPolicy;
