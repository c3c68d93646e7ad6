#!/usr/bin/env bash
# End to end on a kind cluster: build the weir image, create a cluster whose
# nodes use kindnet as the primary CNI, deploy weir (which chains weir-cni
# behind kindnet), run a meshed pod (with a weir-proxy container) and a plain
# pod, and assert: the meshed pod is annotated weir.io/capture=enabled and its
# netns holds weir's nftables tables; the plain pod is disabled:no-proxy and
# has none.
# Exits 0 with "skipped: ..." where docker or kind are missing.
#   test/e2e/kind/run.sh            # KEEP_CLUSTER=1 to keep it afterwards
set -euo pipefail
cd "$(dirname "$0")/../../.."

for tool in docker kind kubectl; do
  if ! command -v "$tool" >/dev/null 2>&1; then echo "skipped: docker/kind not available ($tool not found)"; exit 0; fi
done
if ! docker info >/dev/null 2>&1; then echo "skipped: docker/kind not available (docker daemon not reachable)"; exit 0; fi

CLUSTER="wk-e2e-$RANDOM"
IMAGE="weir:e2e-$RANDOM"
cleanup() { [ "${KEEP_CLUSTER:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== building $IMAGE"
docker build -f daemonset/Dockerfile -t "$IMAGE" .

echo "== creating kind cluster $CLUSTER (kindnet)"
kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== deploying weir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"; cleanup' EXIT
cp -r daemonset "$tmp/base"
cat > "$tmp/kustomization.yaml" <<YAML
resources: [base]
images:
  - name: ghcr.io/weir/weir
    newName: ${IMAGE%%:*}
    newTag: ${IMAGE##*:}
YAML
kubectl apply -k "$tmp"
kubectl -n weir-system rollout status ds/weir-agent --timeout=180s

echo "== sample pods"
kubectl create namespace wk-demo --dry-run=client -o yaml | kubectl apply -f -
kubectl -n wk-demo apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: { name: meshed }
spec:
  containers:
    - { name: app, image: busybox:1.36, command: [sleep, "3600"] }
    - name: weir-proxy
      image: busybox:1.36
      command: [sleep, "3600"]
      securityContext: { runAsUser: 1337, runAsGroup: 1337 }
---
apiVersion: v1
kind: Pod
metadata: { name: plain }
spec:
  containers:
    - { name: app, image: busybox:1.36, command: [sleep, "3600"] }
YAML
kubectl -n wk-demo wait --for=condition=Ready pod/meshed pod/plain --timeout=180s

fail=0
check() { # pod expected-annotation expect-tables(yes|no)
  local ann node
  ann=$(kubectl -n wk-demo get pod "$1" -o jsonpath='{.metadata.annotations.weir\.io/capture}')
  node=$(kubectl -n wk-demo get pod "$1" -o jsonpath='{.spec.nodeName}')
  agent=$(kubectl -n weir-system get pod -l app.kubernetes.io/name=weir-agent --field-selector spec.nodeName="$node" -o name)
  echo "$1: weir.io/capture=$ann"
  [ "$ann" = "$2" ] || { echo "FAIL: $1 annotation is '$ann', want '$2'"; fail=1; }
  rc=0; kubectl -n weir-system exec "$agent" -- node /usr/local/lib/weir/weir.mjs check "wk-demo/$1" || rc=$?
  if [ "$3" = yes ] && [ "$rc" != 0 ]; then echo "FAIL: weir check wk-demo/$1 exit $rc"; fail=1; fi
}
check meshed enabled yes
check plain disabled:no-proxy no
[ "$fail" = 0 ] && echo "PASS: kind e2e" || { echo "FAIL: kind e2e"; exit 1; }
