#!/usr/bin/env bash
# Bundles the benchmarks into .gpu/ for the GPU machine (it reaches no registry), after ../shared/gpu/pack.sh.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu/enter.sh ] || bash ../shared/gpu/pack.sh
for f in opt_bench kernel_profile decode_profile engine_bench batch_decode_profile train_bench serving_bench; do
  node_modules/.bin/deno bundle --quiet -o ".gpu/$f.js" "bench/$f.ts"
done
ls -la .gpu/*.js
