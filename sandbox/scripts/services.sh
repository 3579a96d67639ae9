#!/usr/bin/env bash
# Makes sure Redis and Postgres answer on their default loopback ports, starting Debian's
# servers where none answers, and that the Debian packages the tests use are installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. sandbox/scripts/apt.sh

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Headless Chromium drives the browser tests.
command -v chromium >/dev/null || apt_install chromium

# The local control plane runs Prometheus (scraping kwok's resource metrics) for the
# router's metric history; the package starts no service here, the plane runs the binary.
command -v prometheus >/dev/null || apt_install --no-install-recommends prometheus

if answers 6379; then
  echo "services: redis answers on 127.0.0.1:6379"
else
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/dwp.log
  for _ in $(seq 50); do answers 6379 && break; sleep 0.1; done
  answers 6379 || { echo "services: redis did not start" >&2; exit 1; }
  echo "services: started redis on 127.0.0.1:6379"
fi

if answers 5432; then
  echo "services: postgres answers on 127.0.0.1:5432"
else
  ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 100); do answers 5432 && break; sleep 0.1; done
  answers 5432 || { echo "services: postgres did not start" >&2; exit 1; }
  # The control plane connects over TCP as postgres/postgres; set that password where the
  # cluster uses password authentication (trust clusters ignore it).
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  echo "services: started postgres on 127.0.0.1:5432"
fi
