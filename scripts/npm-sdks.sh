#!/usr/bin/env bash
# Installs the official model-API SDKs for node (openai, @anthropic-ai/sdk), pinned, into
# build/npm (never committed), for tests/integration/test_llm_clients.py: they are clients
# nobody here wrote, running on node's own fetch. Idempotent: nothing is fetched when the
# pinned versions are there. No lock file is written (it would record download addresses).
# Exit status 0 when both are installed; 2 when npm is missing or the registry cannot be
# reached (the tests then say why they are left out); the reason is on stderr.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dest="${AGENTSIGHT_NPM_DIR:-$here/build/npm}"
# openai 6.x and @anthropic-ai/sdk 0.60 use the global fetch and run on node 18 and later.
pins=(openai@6.9.0 @anthropic-ai/sdk@0.60.0)

have() { # name version
  local f="$dest/node_modules/$1/package.json"
  [ -f "$f" ] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' "$f" "$2"
}
if have openai 6.9.0 && have @anthropic-ai/sdk 0.60.0; then
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "npm-sdks: node or npm is not installed" >&2
  exit 2
fi
mkdir -p "$dest"
log="$dest/install.log"
if ! timeout 300 npm install --prefix "$dest" --no-package-lock --no-save --no-audit --no-fund \
    --ignore-scripts --loglevel=error "${pins[@]}" >"$log" 2>&1; then
  echo "npm-sdks: npm install ${pins[*]} failed (registry unreachable?): $(tail -n 3 "$log" | tr '\n' ' ')" >&2
  exit 2
fi
if ! have openai 6.9.0 || ! have @anthropic-ai/sdk 0.60.0; then
  echo "npm-sdks: npm install ran but ${pins[*]} are not in $dest/node_modules" >&2
  exit 2
fi
