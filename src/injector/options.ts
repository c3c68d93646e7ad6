// Flags and environment → InjectorConfig (shared by `weir inject` and
// `weir injector`). Bad values are FieldErrors naming the flag.
import { FieldError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from './config.js';
import { CLUSTER_NAME_RULE, isClusterName } from '../common/cluster-name.js';

export interface RawInjectOptions {
  proxyImage?: string;
  proxyCommand?: string;
  policy?: string;
  nativeSidecars?: string;
  excludeNamespaces?: string;
  revision?: string;
  proxyArgs?: string;
  clusterId?: string;
}

/** "auto" | true | false: auto asks the API server (webhook) or defaults to native (offline). */
export function nativeChoice(flag: string, v: string | undefined): 'auto' | boolean {
  if (v === undefined || v === 'auto') return 'auto';
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new FieldError(flag, 'must be auto, true or false', v);
}

function list(v: string): string[] { return v.split(/[,\s]+/).filter(Boolean); }

export function resolveInjectorConfig(raw: RawInjectOptions, env: NodeJS.ProcessEnv = process.env, native = true): InjectorConfig {
  const policy = raw.policy ?? env.WEIR_INJECTION_POLICY ?? DEFAULT_INJECTOR_CONFIG.policy;
  if (policy !== 'enabled' && policy !== 'disabled') throw new FieldError('--policy', 'must be enabled or disabled', policy);
  const image = raw.proxyImage ?? env.WEIR_PROXY_IMAGE ?? DEFAULT_INJECTOR_CONFIG.proxyImage;
  if (!/^[^\s]+$/.test(image)) throw new FieldError('--proxy-image', 'must be an image reference', image);
  const command = raw.proxyCommand ?? env.WEIR_PROXY_COMMAND;
  const revision = raw.revision ?? env.WEIR_REVISION ?? DEFAULT_INJECTOR_CONFIG.revision;
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(revision)) throw new FieldError('--revision', 'must be a label value', revision);
  // The same name the agent takes (CLUSTER_ID, Istio's): one ConfigMap key for both.
  const clusterId = raw.clusterId ?? env.CLUSTER_ID;
  if (clusterId !== undefined && !isClusterName(clusterId)) throw new FieldError('--cluster-id', CLUSTER_NAME_RULE, clusterId);
  return {
    ...DEFAULT_INJECTOR_CONFIG,
    ...(clusterId ? { clusterId } : {}),
    proxyImage: image,
    proxyCommand: command ? list(command) : DEFAULT_INJECTOR_CONFIG.proxyCommand,
    policy,
    nativeSidecars: native,
    excludeNamespaces: list(raw.excludeNamespaces ?? env.WEIR_INJECT_EXCLUDE_NAMESPACES ?? DEFAULT_INJECTOR_CONFIG.excludeNamespaces.join(',')),
    revision,
    extraProxyArgs: list(raw.proxyArgs ?? env.WEIR_PROXY_ARGS ?? ''),
  };
}

export interface RawServerOptions {
  port?: string;
  host?: string;
  namespace?: string;
  service?: string;
  webhookConfig?: string;
  caSecret?: string;
  certLifetime?: string;
  clusterDomain?: string;
}

export interface ServerSettings {
  host: string;
  port: number;
  namespace: string;
  service: string;
  webhookConfig: string;
  caSecret: string;
  certLifetimeMs: number;
  clusterDomain: string;
}

export function resolveServerSettings(raw: RawServerOptions, env: NodeJS.ProcessEnv = process.env): ServerSettings {
  const portStr = raw.port ?? env.WEIR_INJECTOR_PORT ?? '15017';
  if (!/^\d+$/.test(portStr) || Number(portStr) > 65535) throw new FieldError('--port', 'must be a port number 0-65535', portStr);
  const name = (flag: string, v: string) => {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v)) throw new FieldError(flag, 'must be a Kubernetes object name', v);
    return v;
  };
  return {
    host: raw.host ?? '::',
    port: Number(portStr),
    namespace: name('--namespace', raw.namespace ?? env.POD_NAMESPACE ?? 'weir-system'),
    service: name('--service', raw.service ?? 'weir-injector'),
    webhookConfig: raw.webhookConfig === '' ? '' : name('--webhook-config', raw.webhookConfig ?? 'weir-sidecar-injector'),
    caSecret: name('--ca-secret', raw.caSecret ?? 'weir-injector-ca'),
    certLifetimeMs: raw.certLifetime === undefined ? 7 * 86_400_000 : parseDuration('--cert-lifetime', raw.certLifetime, 365 * 86_400_000),
    clusterDomain: raw.clusterDomain ?? env.WEIR_CLUSTER_DOMAIN ?? 'cluster.local',
  };
}
