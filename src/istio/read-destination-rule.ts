// DestinationRule spec → typed, validated.
import type { Reader } from './schema.js';
import type { ClientTls, ConnectionPool, LoadBalancer, OutlierDetection, TrafficPolicy } from './types.js';

function readLb(r: Reader, field: string, v: unknown): LoadBalancer | undefined {
  const o = r.object(field, v, ['simple', 'consistentHash'], ['localityLbSetting', 'warmupDurationSecs', 'warmup']);
  if (!o) return undefined;
  if (o.simple !== undefined && o.consistentHash !== undefined) r.error(field, 'simple and consistentHash cannot both be set');
  const lb: LoadBalancer = { simple: r.oneOf(`${field}.simple`, o.simple, ['UNSPECIFIED', 'LEAST_REQUEST', 'LEAST_CONN', 'ROUND_ROBIN', 'RANDOM', 'PASSTHROUGH'] as const) };
  const ch = r.object(`${field}.consistentHash`, o.consistentHash, ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName', 'ringHash', 'maglev', 'minimumRingSize']);
  if (ch) {
    const keys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter((k) => ch[k] !== undefined);
    if (keys.length !== 1) r.error(`${field}.consistentHash`, 'must have exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName');
    const cookie = r.object(`${field}.consistentHash.httpCookie`, ch.httpCookie, ['name', 'path', 'ttl'], ['attributes']);
    const ring = r.object(`${field}.consistentHash.ringHash`, ch.ringHash, ['minimumRingSize']);
    const mag = r.object(`${field}.consistentHash.maglev`, ch.maglev, ['tableSize']);
    lb.consistentHash = {
      httpHeaderName: r.string(`${field}.consistentHash.httpHeaderName`, ch.httpHeaderName)?.toLowerCase(),
      httpCookie: cookie ? { name: r.string(`${field}.consistentHash.httpCookie.name`, cookie.name, { required: true }) ?? '', path: r.string(`${field}.consistentHash.httpCookie.path`, cookie.path), ttlMs: r.duration(`${field}.consistentHash.httpCookie.ttl`, cookie.ttl) } : undefined,
      useSourceIp: r.bool(`${field}.consistentHash.useSourceIp`, ch.useSourceIp),
      httpQueryParameterName: r.string(`${field}.consistentHash.httpQueryParameterName`, ch.httpQueryParameterName),
      ringHash: ring || ch.minimumRingSize !== undefined ? { minimumRingSize: r.int(`${field}.consistentHash.ringHash.minimumRingSize`, ring?.minimumRingSize ?? ch.minimumRingSize, { min: 1 }) } : undefined,
      maglev: mag ? { tableSize: r.int(`${field}.consistentHash.maglev.tableSize`, mag.tableSize, { min: 1 }) } : undefined,
    };
  }
  return lb;
}

function readPool(r: Reader, field: string, v: unknown): ConnectionPool | undefined {
  const o = r.object(field, v, ['tcp', 'http']);
  if (!o) return undefined;
  const t = r.object(`${field}.tcp`, o.tcp, ['maxConnections', 'connectTimeout'], ['tcpKeepalive', 'maxConnectionDuration', 'idleTimeout']);
  const h = r.object(`${field}.http`, o.http, ['http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries', 'idleTimeout'], ['h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams']);
  return {
    tcp: t ? { maxConnections: r.int(`${field}.tcp.maxConnections`, t.maxConnections, { min: 1 }), connectTimeoutMs: r.duration(`${field}.tcp.connectTimeout`, t.connectTimeout) } : undefined,
    http: h ? {
      http1MaxPendingRequests: r.int(`${field}.http.http1MaxPendingRequests`, h.http1MaxPendingRequests, { min: 1 }),
      http2MaxRequests: r.int(`${field}.http.http2MaxRequests`, h.http2MaxRequests, { min: 1 }),
      maxRequestsPerConnection: r.int(`${field}.http.maxRequestsPerConnection`, h.maxRequestsPerConnection, { min: 0 }),
      maxRetries: r.int(`${field}.http.maxRetries`, h.maxRetries, { min: 0 }),
      idleTimeoutMs: r.duration(`${field}.http.idleTimeout`, h.idleTimeout),
    } : undefined,
  };
}

function readOutlier(r: Reader, field: string, v: unknown): OutlierDetection | undefined {
  const o = r.object(field, v, ['consecutive5xxErrors', 'consecutiveGatewayErrors', 'interval', 'baseEjectionTime', 'maxEjectionPercent', 'minHealthPercent', 'consecutiveErrors'], ['splitExternalLocalOriginErrors', 'consecutiveLocalOriginFailures']);
  if (!o) return undefined;
  if (o.consecutiveErrors !== undefined) r.warning(`${field}.consecutiveErrors`, 'deprecated in Istio; read as consecutive5xxErrors');
  return {
    consecutive5xxErrors: r.int(`${field}.consecutive5xxErrors`, o.consecutive5xxErrors ?? o.consecutiveErrors, { min: 0 }),
    consecutiveGatewayErrors: r.int(`${field}.consecutiveGatewayErrors`, o.consecutiveGatewayErrors, { min: 0 }),
    intervalMs: r.duration(`${field}.interval`, o.interval),
    baseEjectionTimeMs: r.duration(`${field}.baseEjectionTime`, o.baseEjectionTime),
    maxEjectionPercent: r.int(`${field}.maxEjectionPercent`, o.maxEjectionPercent, { min: 0, max: 100 }),
    minHealthPercent: r.int(`${field}.minHealthPercent`, o.minHealthPercent, { min: 0, max: 100 }),
  };
}

/**
 * `tls`: DISABLE / ISTIO_MUTUAL (mesh mTLS, forced even to endpoints without
 * the mesh marker) / SIMPLE and MUTUAL (TLS originated to the destination,
 * with files the proxy reads in its pod, as Istio's sidecars do).
 * `credentialName` (a Secret the gateway reads) is not supported: reported.
 */
function readClientTls(r: Reader, field: string, v: unknown): ClientTls | undefined {
  const tls = r.object(field, v, ['mode', 'sni', 'subjectAltNames', 'credentialName', 'clientCertificate', 'privateKey', 'caCertificates', 'insecureSkipVerify'], ['caCrl']);
  if (!tls) return undefined;
  const mode = r.oneOf(`${field}.mode`, tls.mode, ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const) ?? (r.error(`${field}.mode`, 'is required') as never);
  const file = (k: string) => r.string(`${field}.${k}`, tls[k], { pattern: /^\//, what: 'an absolute file path in the proxy\'s pod' });
  const out: ClientTls = {
    mode, sni: r.string(`${field}.sni`, tls.sni), subjectAltNames: tls.subjectAltNames === undefined ? undefined : r.strings(`${field}.subjectAltNames`, tls.subjectAltNames),
    caCertificates: file('caCertificates'), clientCertificate: file('clientCertificate'), privateKey: file('privateKey'),
    insecureSkipVerify: tls.insecureSkipVerify === undefined ? undefined : r.bool(`${field}.insecureSkipVerify`, tls.insecureSkipVerify),
  };
  if (tls.credentialName !== undefined) r.unsupported(`${field}.credentialName`, 'Secrets as TLS credentials are not supported by weir (use caCertificates / clientCertificate / privateKey files in the pod); ignored');
  if (mode === 'MUTUAL' && (!out.clientCertificate || !out.privateKey) && tls.credentialName === undefined) r.error(field, 'mode MUTUAL needs clientCertificate and privateKey');
  if ((mode === 'DISABLE' || mode === 'ISTIO_MUTUAL') && (out.caCertificates || out.clientCertificate || out.privateKey)) r.warning(field, `caCertificates / clientCertificate / privateKey are ignored with mode ${mode}`);
  return out;
}

export function readTrafficPolicy(r: Reader, field: string, v: unknown, portLevel = true): TrafficPolicy | undefined {
  const o = r.object(field, v, ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls', ...(portLevel ? ['portLevelSettings'] : ['port'])], ['tunnel', 'proxyProtocol', 'retryBudget']);
  if (!o) return undefined;
  const policy: TrafficPolicy = {
    loadBalancer: readLb(r, `${field}.loadBalancer`, o.loadBalancer),
    connectionPool: readPool(r, `${field}.connectionPool`, o.connectionPool),
    outlierDetection: readOutlier(r, `${field}.outlierDetection`, o.outlierDetection),
    tls: readClientTls(r, `${field}.tls`, o.tls),
  };
  if (portLevel && o.portLevelSettings !== undefined) {
    policy.portLevelSettings = r.array(`${field}.portLevelSettings`, o.portLevelSettings, (x, f) => {
      const p = readTrafficPolicy(r, f, x, false) as (TrafficPolicy & { port?: number }) | undefined;
      const po = (x as Record<string, unknown>)?.port as Record<string, unknown> | undefined;
      const port = r.int(`${f}.port.number`, po?.number, { min: 1, max: 65535, required: true });
      return p && port ? { ...p, port } : undefined;
    });
  }
  return policy;
}
