#!/usr/bin/env bash
# Regenerates src/generated from proto/ (ts-proto through buf). CI runs it and
# fails when the committed output differs.
set -euo pipefail
cd "$(dirname "$0")/.."
npx --no-install buf lint
rm -rf src/generated
npx --no-install buf generate
