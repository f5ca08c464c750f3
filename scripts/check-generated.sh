#!/usr/bin/env bash
# Fails when src/generated differs from what proto/ generates (including new,
# uncommitted files), or when the protos break lint or wire compatibility with main.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/generate.sh
git diff --exit-code -- src/generated
untracked="$(git ls-files --others --exclude-standard -- src/generated)"
if [ -n "$untracked" ]; then
  echo "check-generated: generated files not committed:" >&2
  echo "$untracked" >&2
  exit 1
fi
if git rev-parse --verify -q main >/dev/null; then
  npx --no-install buf breaking --against '.git#branch=main'
fi
