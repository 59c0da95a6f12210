#!/usr/bin/env bash
# Bundles the benchmarks into .gpu/ for the GPU machine (it reaches no registry), after ../shared/gpu/pack.sh.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu/enter.sh ] || bash ../shared/gpu/pack.sh
for f in opt_bench kernel_profile decode_profile engine_bench batch_decode_profile train_bench serving_bench; do
  node_modules/.bin/deno bundle --quiet -o ".gpu/$f.js" "bench/$f.ts"
done
# The actors' benchmarks; remote_bench runs its engine in a worker: pass --worker-module .gpu/model_worker.js
for f in remote_bench handle_bench; do node_modules/.bin/deno bundle --quiet -o ".gpu/$f.js" "bench/$f.ts"; done
node_modules/.bin/deno bundle --quiet -o .gpu/model_worker.js src/actors/model_worker.ts
ls -la .gpu/*.js
