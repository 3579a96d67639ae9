#!/usr/bin/env bash
# Runs a command with a fresh local control plane (free ports, a temporary state folder)
# named by DWP_CLUSTER_DIR, then stops the plane. Used by `make test` and `make bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."

go build -o bin/dwp-cluster ./sandbox/cmd/dwp-cluster
bin/dwp-cluster build

dir=$(mktemp -d "${TMPDIR:-/tmp}/dwp-cluster.XXXXXX")
log="$dir.log"
bin/dwp-cluster up --dir "$dir" --ports auto --archive-db "dwp_test_$$" --drop-archive-db >"$log" 2>&1 &
pid=$!
cleanup() {
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 600); do
  [ -f "$dir/info.json" ] && break
  if ! kill -0 "$pid" 2>/dev/null || [ -f "$dir/failed" ]; then
    echo "the local control plane failed to start:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 0.2
done
[ -f "$dir/info.json" ] || { echo "the local control plane did not become ready" >&2; tail -n 40 "$log" >&2; exit 1; }
grep 'ready in' "$log" || true

export DWP_CLUSTER_DIR="$dir"
"$@"
