#!/usr/bin/env bash
# `make run`: the local control plane and every dwp-sre service on it, in the foreground,
# kept up by bin/dwp-run (package sandbox/supervisor): a component that exits is restarted.
# Ctrl-C stops everything; the cluster's state is kept in .state/cluster (`make reset` forgets it).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bin/dwp-run "$@"
