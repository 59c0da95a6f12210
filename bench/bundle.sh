#!/usr/bin/env bash
# Bundles the benchmarks into .gpu/ for the GPU machine (it reaches no registry), after ../shared/gpu/pack.sh.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu/enter.sh ] || bash ../shared/gpu/pack.sh
for f in opt_bench kernel_profile decode_profile engine_bench batch_decode_profile train_bench train_profile matmul_bench serving_bench; do
  node_modules/.bin/deno bundle --quiet -o ".gpu/$f.js" "bench/$f.ts"
done
# The actors' benchmarks; remote_bench runs its engine in a worker: pass --worker-module .gpu/model_worker.js
for f in remote_bench handle_bench host_latency; do node_modules/.bin/deno bundle --quiet -o ".gpu/$f.js" "bench/$f.ts"; done
node_modules/.bin/deno bundle --quiet -o .gpu/model_worker.js src/actors/model_worker.ts
# The colocate benchmark's workers and extension are modules of their own (run it with --worker-dir .gpu).
for f in training_worker engine_worker colocate_extension; do node_modules/.bin/deno bundle --quiet -o ".gpu/$f.js" "src/actors/$f.ts"; done
node_modules/.bin/deno bundle --quiet -o .gpu/colocate_bench.js bench/colocate_bench.ts
ls -la .gpu/*.js
# GPU time shared by weight under contention (issue 5): in-process actors, one file.
node_modules/.bin/deno bundle --quiet -o .gpu/fair_share_bench.js bench/fair_share_bench.ts
ls -la .gpu/fair_share_bench.js
