#!/usr/bin/env bash
# Brings a fresh Debian machine to the point where `npm start`, `npm test` and
# `npm run bench` run: system servers (nats-server, Postgres 15, Prometheus,
# Python gRPC for the cross-language test, redis-server for the bench's Redis
# baseline), npm dependencies, and the TypeScript build. Idempotent and quick
# when everything is already there. Run by `npm start`, `npm test` and `npm run bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
# Local certificates for the two-command start and the tests (src/devcluster/local-ca.ts).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/lib/postgresql/15/bin/postgres ] || [ -n "${PG_BIN_DIR:-}" ] || [ -n "${TALLY_PG_BIN:-}" ] || missing+=(postgresql-15)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
/usr/bin/python3 -c 'import grpc, grpc_tools' >/dev/null 2>&1 || missing+=(python3-grpcio python3-grpc-tools)
# The bench starts this exact binary (bench/support/redis-server.ts).
[ -x "${TALLY_REDIS_BIN:-/usr/bin/redis-server}" ] || missing+=(redis-server)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# npm dependencies: install when absent or when the lockfile changed since.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

npx --no-install tsc -p tsconfig.json
