#!/usr/bin/env bash
# `make run`: the local control plane and every dwp-sre service on it, in the foreground.
# Ctrl-C stops everything; the cluster's state is kept in .state/cluster (`make reset` forgets it).
set -euo pipefail
cd "$(dirname "$0")/../.."

state=.state
mkdir -p "$state/logs"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping"
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -INT "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

echo "starting the local control plane (state in $state/cluster, log $state/logs/cluster.log)"
bin/dwp-cluster up --dir "$state/cluster" >"$state/logs/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
  [ -f "$state/cluster/info.json" ] && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the control plane failed:" >&2; tail -n 30 "$state/logs/cluster.log" >&2; exit 1
  fi
  sleep 0.2
done
[ -f "$state/cluster/info.json" ] || { echo "the control plane did not become ready" >&2; exit 1; }
grep 'ready in' "$state/logs/cluster.log"

info() { sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$state/cluster/info.json" | head -n 1; }
export DWP_KUBECONFIG
DWP_KUBECONFIG=$(info kubeconfig)
archive=$(info archiveDSN)
server=$(info server)
alice=$(sed -n 's/.*"alice": "\([0-9a-f]*\)".*/\1/p' "$state/cluster/info.json" | tail -n 1)

gitops=$(info gitopsRepo)
argocd=$(info argoCDNamespace)

# A demo namespace the portal's users can look at: alice may edit it. The Task Runners
# (CI and CD templates) and the AppProject of the apps' Argo CD Applications, limited to
# the plane's GitOps repository.
bin/kubectl --kubeconfig "$DWP_KUBECONFIG" apply -k deploy/demo >/dev/null
bin/kubectl --kubeconfig "$DWP_KUBECONFIG" apply -k deploy/task-runner >/dev/null
bin/kubectl --kubeconfig "$DWP_KUBECONFIG" apply -f - >/dev/null <<YAML
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: dwp, namespace: $argocd}
spec:
  sourceRepos: ["$gitops"]
  destinations: [{server: "https://kubernetes.default.svc", namespace: "*"}]
  clusterResourceWhitelist: [{group: "", kind: Namespace}]
YAML

# The key that seals CD runs; kept with the plane's state, so runs survive a restart.
runkey="$state/run.key"
[ -s "$runkey" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$runkey")

# The watcher sends as its own ServiceAccount, with a token made for the function's
# audience (the TokenRequest API), kept in a file it re-reads; the function accepts
# events from that identity alone. The token lives 2 h and is renewed every hour.
audience=dwp-function
sender=system:serviceaccount:dwp-system:dwp-watcher
kc() { bin/kubectl --kubeconfig "$DWP_KUBECONFIG" "$@"; }
kc create namespace dwp-system --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n dwp-system create serviceaccount dwp-watcher --dry-run=client -o yaml | kc apply -f - >/dev/null
token="$state/watcher.token"
renew_token() {
  (umask 077; kc -n dwp-system create token dwp-watcher --audience "$audience" --duration 2h >"$token.new") &&
    mv "$token.new" "$token"
}
renew_token
# `sleep & wait`: a signal ends the wait at once, so Ctrl-C is not held up for an hour.
(trap 'kill "$s" 2>/dev/null; exit 0' INT TERM; while :; do sleep 3600 & s=$!; wait "$s"; renew_token || true; done) &
pids+=($!)

start() { # name, then the command; its output goes to .state/logs/<name>.log
  local name=$1; shift
  "$@" >"$state/logs/$name.log" 2>&1 &
  pids+=($!)
}

start function env LISTEN_ADDRESS=127.0.0.1:8080 DWP_ARCHIVE_DSN="$archive" DWP_ARCHIVE_CLUSTER_NAME=local \
  DWP_REDIS_ADDR=127.0.0.1:6379 DWP_GITOPS_REPO="$gitops" DWP_RUN_KEY_FILE="$runkey" \
  DWP_ARGOCD_NAMESPACE="$argocd" DWP_EVENTS_AUDIENCE="$audience" DWP_EVENT_SENDERS="$sender" bin/dwp-function
start watcher env K_SINK=http://127.0.0.1:8080/events DWP_SINK_TOKEN_FILE="$token" DWP_LISTEN_ADDRESS=127.0.0.1:8081 \
  DWP_REDIS_ADDR=127.0.0.1:6379 DWP_RESYNC_INTERVAL=1m bin/watcher
# The kubeconfig's context is dwp-local; the watcher names the cluster "default".
start sse-router env DWP_LISTEN_ADDRESS=127.0.0.1:8090 DWP_REDIS_ADDR=127.0.0.1:6379 \
  DWP_SUMMARY_CLUSTER_NAMES=dwp-local=default bin/sse-router

for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:8080/health/readiness >/dev/null 2>&1 && break; sleep 0.1
done

cat <<MSG

dwp-sre is running on the local control plane ($server).
  task function   http://127.0.0.1:8080/api/v1/openapi.json     (log: $state/logs/function.log)
  watcher         http://127.0.0.1:8081/metrics                  (log: $state/logs/watcher.log)
  SSE router      http://127.0.0.1:8090/metrics                  (log: $state/logs/sse-router.log)
  kubectl         bin/kubectl --kubeconfig $DWP_KUBECONFIG get pods -A

Try, as the demo user alice:
  curl -H "Authorization: Bearer $alice" http://127.0.0.1:8080/api/v1/namespaces/demo/apps
  curl -N -H "Authorization: Bearer $alice" http://127.0.0.1:8090/api/v1/stream/namespaces/demo/pods

Deploy an app service through GitOps (commit to $gitops, synced by Argo CD; Argo CD
can sync some seconds after the plane is ready), then follow its Argo CD Application:
  curl -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' \\
    -d '{"resourceKind":"ClusterWorkflowTemplate","resourceName":"dwp-cd-app-service","app":"shop","submitOptions":{"parameters":["image=registry.example/shop:1.0.0","replicas=2"]}}' \\
    http://127.0.0.1:8080/api/v1/namespaces/demo/workflows
  curl -N -H "Authorization: Bearer $alice" http://127.0.0.1:8090/api/v1/stream/namespaces/demo/apps/shop/application

Ctrl-C stops everything.
MSG
wait -n
echo "a component stopped; see $state/logs" >&2
