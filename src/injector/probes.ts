// Probe rewrite. The kubelet cannot speak the mesh's mTLS, and with capture
// its probes would land on the proxy anyway; so httpGet/tcpSocket/grpc
// probes of app containers are pointed at the proxy's status port
// (:15020/app-health/<container>/{livez,readyz,startupz}) and the originals
// travel to the proxy in ISTIO_KUBE_APP_PROBERS (Istio's name and JSON
// shape, so tooling that reads it keeps working). The proxy then probes the
// app from 127.0.0.6, which capture lets through.
import { FieldError } from '../common/errors.js';
import { STATUS_PORT } from './config.js';
import type { Container, Probe } from './k8s.js';

export const PROBERS_ENV = 'ISTIO_KUBE_APP_PROBERS';

const KINDS = [['livenessProbe', 'livez'], ['readinessProbe', 'readyz'], ['startupProbe', 'startupz']] as const;

/** What the proxy performs for one rewritten probe (ports resolved to numbers). */
export interface AppProber {
  httpGet?: { path: string; port: number; scheme: 'HTTP' | 'HTTPS'; host?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port: number; host?: string };
  grpc?: { port: number; service?: string };
  timeoutSeconds: number;
}

export type AppProbers = Record<string, AppProber>;

export function appHealthPath(container: string, kind: 'livez' | 'readyz' | 'startupz'): string {
  return `/app-health/${container}/${kind}`;
}

function resolvePort(c: Container, field: string, port: number | string): number {
  if (typeof port === 'number') {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new FieldError(field, 'must be a port number 1-65535', String(port));
    return port;
  }
  if (/^\d+$/.test(port)) return resolvePort(c, field, Number(port));
  const named = c.ports?.find((p) => p.name === port);
  if (!named) throw new FieldError(field, `names no port of container ${c.name}`, port);
  return named.containerPort;
}

function toProber(c: Container, field: string, p: Probe): AppProber | undefined {
  const timeoutSeconds = p.timeoutSeconds ?? 1;
  if (p.httpGet) {
    const scheme = (p.httpGet.scheme ?? 'HTTP').toUpperCase();
    if (scheme !== 'HTTP' && scheme !== 'HTTPS') throw new FieldError(`${field}.httpGet.scheme`, 'must be HTTP or HTTPS', p.httpGet.scheme);
    return {
      httpGet: {
        path: p.httpGet.path ?? '/', port: resolvePort(c, `${field}.httpGet.port`, p.httpGet.port), scheme,
        ...(p.httpGet.host ? { host: p.httpGet.host } : {}),
        ...(p.httpGet.httpHeaders?.length ? { httpHeaders: p.httpGet.httpHeaders } : {}),
      },
      timeoutSeconds,
    };
  }
  if (p.tcpSocket) return { tcpSocket: { port: resolvePort(c, `${field}.tcpSocket.port`, p.tcpSocket.port), ...(p.tcpSocket.host ? { host: p.tcpSocket.host } : {}) }, timeoutSeconds };
  if (p.grpc) return { grpc: { port: resolvePort(c, `${field}.grpc.port`, p.grpc.port), ...(p.grpc.service ? { service: p.grpc.service } : {}) }, timeoutSeconds };
  return undefined; // exec probes run inside the app container: nothing to rewrite
}

/**
 * Rewrite the probes of `containers` in place (the caller passes copies) and
 * return the originals keyed by their new path. `fieldPrefix` names the
 * containers array in errors (e.g. "spec.containers").
 */
export function rewriteProbes(containers: Container[], fieldPrefix: string): AppProbers {
  const probers: AppProbers = {};
  containers.forEach((c, i) => {
    for (const [key, kind] of KINDS) {
      const probe = c[key];
      if (!probe) continue;
      const field = `${fieldPrefix}[${i}].${key}`;
      const prober = toProber(c, field, probe);
      if (!prober) continue;
      const path = appHealthPath(c.name, kind);
      probers[path] = prober;
      const { httpGet: _h, tcpSocket: _t, grpc: _g, ...timing } = probe;
      c[key] = { httpGet: { path, port: STATUS_PORT, scheme: 'HTTP' }, ...timing };
    }
  });
  return probers;
}

/** Parse ISTIO_KUBE_APP_PROBERS (the proxy's side); an error names the variable and the path. */
export function parseProbers(raw: string | undefined): AppProbers {
  if (!raw) return {};
  let v: unknown;
  try { v = JSON.parse(raw); } catch (err) { throw new FieldError(PROBERS_ENV, `is not JSON: ${(err as Error).message}`); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FieldError(PROBERS_ENV, 'must be a JSON object of path → probe');
  const out: AppProbers = {};
  for (const [path, p] of Object.entries(v as Record<string, unknown>)) {
    const f = `${PROBERS_ENV}["${path}"]`;
    if (!/^\/app-health\/[^/]+\/(livez|readyz|startupz)$/.test(path)) throw new FieldError(f, 'path must be /app-health/<container>/{livez,readyz,startupz}');
    if (typeof p !== 'object' || p === null) throw new FieldError(f, 'must be an object');
    const o = p as Record<string, unknown>;
    const timeoutSeconds = o.timeoutSeconds === undefined ? 1 : Number(o.timeoutSeconds);
    if (!(timeoutSeconds > 0)) throw new FieldError(`${f}.timeoutSeconds`, 'must be a positive number', String(o.timeoutSeconds));
    const portOf = (x: unknown, ff: string): number => {
      const n = typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw new FieldError(ff, 'must be a port number 1-65535', String(x));
      return n;
    };
    const h = o.httpGet as Record<string, unknown> | undefined;
    const t = o.tcpSocket as Record<string, unknown> | undefined;
    const g = o.grpc as Record<string, unknown> | undefined;
    if (h) {
      const scheme = String(h.scheme ?? 'HTTP').toUpperCase();
      if (scheme !== 'HTTP' && scheme !== 'HTTPS') throw new FieldError(`${f}.httpGet.scheme`, 'must be HTTP or HTTPS', String(h.scheme));
      const headers = Array.isArray(h.httpHeaders) ? (h.httpHeaders as { name: string; value: string }[]) : undefined;
      out[path] = { httpGet: { path: typeof h.path === 'string' ? h.path : '/', port: portOf(h.port, `${f}.httpGet.port`), scheme, ...(typeof h.host === 'string' ? { host: h.host } : {}), ...(headers ? { httpHeaders: headers } : {}) }, timeoutSeconds };
    } else if (t) {
      out[path] = { tcpSocket: { port: portOf(t.port, `${f}.tcpSocket.port`) }, timeoutSeconds };
    } else if (g) {
      out[path] = { grpc: { port: portOf(g.port, `${f}.grpc.port`), ...(typeof g.service === 'string' ? { service: g.service } : {}) }, timeoutSeconds };
    } else {
      throw new FieldError(f, 'needs one of httpGet, tcpSocket, grpc');
    }
  }
  return out;
}
