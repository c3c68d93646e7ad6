// What the admin socket accepts, checked before routing: a request target
// that is an origin-form path (`/v1/...`, optional query), a method the API
// uses, and path parameters that are Kubernetes names. Anything else is an
// HttpError the server answers (400/405) — never an exception from `new URL`
// or a regexp on a hostile string reaching the event loop.
export class HttpError extends Error {
  /** exitCode: the CLI's exit code when it is not implied by the status (4: the pod's proxy is unreachable). */
  constructor(readonly status: number, message: string, readonly exitCode?: number) { super(message); }
}

export interface AdminRequest {
  method: 'GET' | 'POST';
  path: string;
  query: URLSearchParams;
}

const MAX_TARGET = 2048;
// RFC 3986 path + query characters; no fragment, no absolute-form, no '//' authority.
const ORIGIN_FORM = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*(\?[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*)?$/;

export function parseAdminRequest(method: string | undefined, target: string | undefined): AdminRequest {
  if (method !== 'GET' && method !== 'POST') throw new HttpError(405, `method: ${JSON.stringify(method)} is not used by the admin API (GET or POST)`);
  const t = target ?? '';
  if (t.length > MAX_TARGET) throw new HttpError(414, `request target longer than ${MAX_TARGET} characters`);
  if (!ORIGIN_FORM.test(t)) throw new HttpError(400, `request target: must be a path like /v1/status (bad value: ${JSON.stringify(t.slice(0, 100))})`);
  let url: URL;
  try {
    url = new URL(t, 'http://admin');
  } catch {
    throw new HttpError(400, `request target: not a valid path (bad value: ${JSON.stringify(t.slice(0, 100))})`);
  }
  return { method, path: url.pathname, query: url.searchParams };
}

/** A namespace or pod name from the path: a DNS-1123 label/subdomain, as Kubernetes allows. */
export function kubeName(value: string, field: string): string {
  let v: string;
  try { v = decodeURIComponent(value); } catch { throw new HttpError(400, `${field}: bad percent-encoding`); }
  if (v.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v)) throw new HttpError(400, `${field}: not a Kubernetes name (bad value: ${JSON.stringify(v.slice(0, 100))})`);
  return v;
}
