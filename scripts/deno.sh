#!/usr/bin/env bash
# Runs the Deno that npm installed (node_modules/.bin/deno, from the npm package `deno`) with a writable
# XDG_RUNTIME_DIR, which silences the Vulkan loader's harmless "XDG_RUNTIME_DIR is invalid or not set" error.
# Usage: scripts/deno.sh <deno arguments>   e.g. scripts/deno.sh test -A test/gpu/
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deno="${DENO_BIN:-$root/node_modules/.bin/deno}"
if [[ ! -x "$deno" ]]; then
  echo "scripts/deno.sh: $deno not found; run \`npm install\` first (Deno comes from the npm package \"deno\")." >&2
  exit 1
fi
if [[ -z "${XDG_RUNTIME_DIR:-}" || ! -w "${XDG_RUNTIME_DIR}" ]]; then
  XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/tandem-runtime-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  export XDG_RUNTIME_DIR
fi
exec "$deno" "$@"
