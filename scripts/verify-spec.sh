#!/usr/bin/env bash
# Larger simulation of the executable specification (spec/*.qnt) than `npm test`
# runs. TypeScript backend: it works offline. Prints samples, steps, time and
# result per model; exits non-zero on any violation (the output names the seed).
# Sizes can be overridden: SAMPLES_TALLY, SAMPLES_LOTS, SAMPLES_HOLDS, SAMPLES_HA, STEPS.
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${STEPS:-40}"
status=0
run() {
  local file="$1" samples="$2"
  local start end out rc
  start=$(date +%s.%N)
  out=$(npx --no-install quint run "$file" --backend=typescript --max-samples="$samples" --max-steps="$steps" \
    --invariant=safety --verbosity=1 2>&1)
  rc=$?
  end=$(date +%s.%N)
  printf '%s: %s samples x %s steps, %.1f s, %s\n' "$file" "$samples" "$steps" "$(echo "$end - $start" | bc)" \
    "$([ $rc -eq 0 ] && echo ok || echo VIOLATION)"
  echo "$out" | grep -E '^\[(ok|violation)\]|--seed=|❌' | sed 's/^/  /'
  [ $rc -eq 0 ] || status=1
}
run spec/tally.qnt "${SAMPLES_TALLY:-200}"
run spec/lots.qnt "${SAMPLES_LOTS:-100}"
run spec/holds.qnt "${SAMPLES_HOLDS:-100}"
run spec/ha.qnt "${SAMPLES_HA:-2000}"
exit $status
