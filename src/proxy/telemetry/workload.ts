// Who a workload is, in the terms Istio's telemetry uses: workload name and
// namespace, app and version, and the canonical service and revision that
// Kiali groups by. The canonical service comes from
// service.istio.io/canonical-name, else app.kubernetes.io/name, else app,
// else the workload name; the canonical revision from
// service.istio.io/canonical-revision, else app.kubernetes.io/version, else
// version, else "latest" (Istio's injector does exactly this).
import { readFileSync } from 'node:fs';
import { FieldError } from '../../common/errors.js';

export interface WorkloadMeta {
  workload: string;
  namespace: string;
  app: string;
  version: string;
  canonicalService: string;
  canonicalRevision: string;
  /** The cluster the workload runs in (source_cluster / destination_cluster); unset = not known. */
  cluster?: string;
}

export type PodLabels = Record<string, string>;

export function workloadMeta(workload: string, namespace: string, labels: PodLabels = {}, cluster?: string): WorkloadMeta {
  const pick = (...keys: string[]) => keys.map((k) => labels[k]).find((v) => typeof v === 'string' && v !== '');
  return {
    workload: workload || 'unknown',
    namespace: namespace || 'unknown',
    app: pick('app', 'app.kubernetes.io/name') ?? 'unknown',
    version: pick('version', 'app.kubernetes.io/version') ?? 'unknown',
    canonicalService: pick('service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app') ?? (workload || 'unknown'),
    canonicalRevision: pick('service.istio.io/canonical-revision', 'app.kubernetes.io/version', 'version') ?? 'latest',
    ...(cluster ? { cluster } : {}),
  };
}

/**
 * Pod labels as the downward API writes them into a file (one
 * `key="value"` per line, values JSON-quoted) — Istio mounts the same at
 * /etc/istio/pod/labels. A missing file is no labels; a malformed line is an
 * error naming the line.
 */
export function parseDownwardLabels(text: string, field: string): PodLabels {
  const out: PodLabels = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const m = /^([A-Za-z0-9./_-]+)=(".*")$/.exec(line);
    if (!m) throw new FieldError(field, `line ${i + 1} is not key="value"`, line);
    let v: unknown;
    try { v = JSON.parse(m[2]); } catch { throw new FieldError(field, `line ${i + 1} has a badly quoted value`, line); }
    out[m[1]] = String(v);
  });
  return out;
}

export function readPodLabels(file: string | undefined): PodLabels {
  if (!file) return {};
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch { return {}; }
  return parseDownwardLabels(text, file);
}

// Metadata exchange between two weir proxies over HTTP (Istio does the same
// with x-envoy-peer-metadata): the client's proxy names its workload in a
// request header, the server's proxy answers with its own in a response
// header; each strips the other's before the app or client sees it. TCP has
// no such channel, so TCP telemetry knows the peer only from the registry.
export const PEER_HEADER = 'x-weir-peer';

const KEYS: (keyof WorkloadMeta)[] = ['workload', 'namespace', 'app', 'version', 'canonicalService', 'canonicalRevision'];

// Both ends of the exchange see the same few values over and over (this
// proxy's identity, its peers'): encoded once per identity object, decoded
// once per distinct header value (bounded; a header is network input).
const encoded = new WeakMap<WorkloadMeta, string>();
const decoded = new Map<string, WorkloadMeta>();
const DECODED_MAX = 256;

export function encodePeer(m: WorkloadMeta): string {
  let v = encoded.get(m);
  if (v === undefined) {
    v = Buffer.from(JSON.stringify(KEYS.map((k) => m[k]))).toString('base64url');
    encoded.set(m, v);
  }
  return v;
}

/** undefined for anything that is not exactly what encodePeer writes (a header is input from the network). */
export function decodePeer(v: string | string[] | undefined): WorkloadMeta | undefined {
  if (typeof v !== 'string' || v.length > 2048) return undefined;
  const known = decoded.get(v);
  if (known) return { ...known };
  const m = parsePeer(v);
  if (m) {
    if (decoded.size >= DECODED_MAX) decoded.clear();
    decoded.set(v, m);
    return { ...m };
  }
  return undefined;
}

function parsePeer(v: string): WorkloadMeta | undefined {
  let arr: unknown;
  try { arr = JSON.parse(Buffer.from(v, 'base64url').toString('utf8')); } catch { return undefined; }
  if (!Array.isArray(arr) || arr.length !== KEYS.length || !arr.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 253 && /^[\w.-]+$/.test(x))) return undefined;
  const m = {} as WorkloadMeta;
  KEYS.forEach((k, i) => { m[k] = arr[i] as string; });
  return m;
}
