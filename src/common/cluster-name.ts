// One rule for cluster and network names (agent --cluster-id/--network, the
// proxy's ISTIO_META_CLUSTER_ID, the injector, remote Secret data keys):
// they become metric label values and registry fields, so keep them tame —
// 1-63 letters, digits, "-", "_" or ".", alphanumeric at both ends.
const CLUSTER_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

export const CLUSTER_NAME_RULE = 'must be 1-63 letters, digits, "-", "_" or ".", starting and ending alphanumeric';

export function isClusterName(v: string): boolean {
  return CLUSTER_NAME.test(v);
}
