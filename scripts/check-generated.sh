#!/usr/bin/env bash
# Fails when src/generated differs from what proto/ generates, or when the
# protos break lint or wire compatibility with main.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/generate.sh
git diff --exit-code -- src/generated
if git rev-parse --verify -q main >/dev/null; then
  npx --no-install buf breaking --against '.git#branch=main'
fi
