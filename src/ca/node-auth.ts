// Who may ask for which identity (ztunnel's node-scoped model):
//   1. the caller presents its own service-account token; the API server
//      (TokenReview) says whose it is and which pod it is bound to;
//   2. only the node agents' service accounts may ask at all, and only with a
//      token bound to a pod, because that binding is what ties the caller to
//      a node (a legacy unbound token could be replayed from anywhere);
//   3. the caller's node is read from the token (node-name, Kubernetes ≥ 1.30)
//      or from its bound pod's spec.nodeName (uid checked);
//   4. the pod whose identity is asked for must be scheduled on that same node;
//      its service account gives the SPIFFE ID.
// A compromised node can therefore mint identities only of pods already
// scheduled on it — which it can impersonate anyway.
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

export class CaRequestError extends Error {
  constructor(readonly status: 400 | 401 | 403 | 404 | 503, readonly reason: string, message: string) {
    super(message);
    this.name = 'CaRequestError';
  }
}

export interface Caller {
  serviceAccount: string; // ns/name
  nodeName: string;
  podName: string;
}

export interface PodRef { namespace: string; name: string; uid?: string }

export interface IssuedIdentity {
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
  podUid: string;
  nodeName: string;
}

const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
const SA_PREFIX = 'system:serviceaccount:';
/** DNS-1123 label / subdomain, as Kubernetes validates namespaces and service accounts. */
const DNS1123 = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function first(extra: Record<string, string[]> | undefined, key: string): string | undefined {
  const v = extra?.[key];
  return Array.isArray(v) && typeof v[0] === 'string' && v[0] !== '' ? v[0] : undefined;
}

function apiStatus(e: unknown): number | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export interface NodeAuthorityOptions {
  kubeConfig: KubeConfig;
  trustDomain: string;
  /** Service accounts ("ns/name") allowed to request certificates: the node agents. */
  agentServiceAccounts: string[];
  /** Token audiences to require in the TokenReview; empty = the API server's default. */
  audiences?: string[];
}

export class NodeAuthority {
  private readonly authn: AuthenticationV1Api;
  private readonly core: CoreV1Api;
  private readonly agents: Set<string>;

  constructor(private readonly opts: NodeAuthorityOptions) {
    this.authn = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.agents = new Set(opts.agentServiceAccounts);
  }

  async authenticate(token: string): Promise<Caller> {
    if (!token) throw new CaRequestError(401, 'Unauthenticated', 'authorization: a bearer token is required');
    let review;
    try {
      review = await this.authn.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: this.opts.audiences?.length ? this.opts.audiences : undefined } },
      });
    } catch (e) {
      throw new CaRequestError(503, 'ApiUnavailable', `TokenReview failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    const st = review.status;
    if (!st?.authenticated || !st.user?.username) {
      throw new CaRequestError(401, 'Unauthenticated', `token not authenticated${st?.error ? `: ${st.error}` : ''}`);
    }
    const username = st.user.username;
    if (!username.startsWith(SA_PREFIX)) throw new CaRequestError(403, 'NotAnAgent', `${username} is not a service account`);
    const [ns, name] = username.slice(SA_PREFIX.length).split(':');
    const serviceAccount = `${ns}/${name}`;
    if (!this.agents.has(serviceAccount)) {
      throw new CaRequestError(403, 'NotAnAgent', `service account ${serviceAccount} may not request certificates (allowed: ${[...this.agents].join(', ')})`);
    }
    const extra = st.user.extra as Record<string, string[]> | undefined;
    const podName = first(extra, EXTRA_POD_NAME);
    const podUid = first(extra, EXTRA_POD_UID);
    if (!podName || !podUid) {
      throw new CaRequestError(403, 'TokenNotBound', 'token is not bound to a pod (use a projected service-account token): the caller\'s node cannot be established');
    }
    let nodeName = first(extra, EXTRA_NODE_NAME);
    if (!nodeName) {
      // Before Kubernetes 1.30 the token names only the pod: its node comes from the API.
      const pod = await this.readPod(ns, podName);
      if (!pod || pod.metadata?.uid !== podUid) throw new CaRequestError(403, 'TokenNotBound', `the token's pod ${ns}/${podName} no longer exists`);
      nodeName = pod.spec?.nodeName;
      if (!nodeName) throw new CaRequestError(403, 'TokenNotBound', `the token's pod ${ns}/${podName} is not scheduled`);
    }
    return { serviceAccount, nodeName, podName: `${ns}/${podName}` };
  }

  /** The identity `caller` may obtain for `target`, or a CaRequestError saying why not. */
  async authorize(caller: Caller, target: PodRef): Promise<IssuedIdentity> {
    const pod = await this.readPod(target.namespace, target.name);
    if (!pod) throw new CaRequestError(404, 'PodNotFound', `pod ${target.namespace}/${target.name} not found`);
    const uid = pod.metadata?.uid ?? '';
    if (target.uid && target.uid !== uid) {
      throw new CaRequestError(403, 'PodUidMismatch', `pod ${target.namespace}/${target.name} has uid ${uid}, not ${target.uid}`);
    }
    const podNode = pod.spec?.nodeName ?? '';
    if (podNode !== caller.nodeName) {
      throw new CaRequestError(403, 'OtherNode', `pod ${target.namespace}/${target.name} is scheduled on node ${JSON.stringify(podNode)}, the caller is node ${JSON.stringify(caller.nodeName)}`);
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') {
      throw new CaRequestError(403, 'PodFinished', `pod ${target.namespace}/${target.name} has finished (${phase})`);
    }
    const sa = pod.spec?.serviceAccountName || 'default';
    if (!DNS1123.test(sa) || !DNS1123.test(target.namespace)) {
      throw new CaRequestError(400, 'BadIdentity', `namespace/service account ${target.namespace}/${sa} cannot form a SPIFFE ID`);
    }
    return {
      spiffeId: spiffeId(this.opts.trustDomain, target.namespace, sa),
      namespace: target.namespace, serviceAccount: sa, podUid: uid, nodeName: podNode,
    };
  }

  private async readPod(namespace: string, name: string) {
    try {
      return await this.core.readNamespacedPod({ namespace, name });
    } catch (e) {
      if (apiStatus(e) === 404) return undefined;
      throw new CaRequestError(503, 'ApiUnavailable', `reading pod ${namespace}/${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
