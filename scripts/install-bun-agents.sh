#!/bin/sh
# install-bun-agents.sh - installs the two programs the tests of BoringSSL without symbols
# run (tests/integration/test_llm_bun.py): the bun runtime and Claude Code's native
# executable (a program compiled by bun), both from npm, into a directory of the build
# tree (default build/npm-bun), never into the repository.
#
#   scripts/install-bun-agents.sh [DIR]
#
# The versions are the ones the signatures were checked against; AGENTSIGHT_BUN_PKG and
# AGENTSIGHT_CLAUDE_PKG override them (e.g. "bun@latest"). Exits 0 when both are
# installed (again: nothing is fetched twice), 2 when npm is missing, 1 when npm failed.
set -u
dir=${1:-build/npm-bun}
bun_pkg=${AGENTSIGHT_BUN_PKG:-bun@1.4.5}
claude_pkg=${AGENTSIGHT_CLAUDE_PKG:-@anthropic-ai/claude-code@2.1.197}

if ! command -v npm >/dev/null 2>&1; then
    echo "install-bun-agents: npm is not installed" >&2
    exit 2
fi
mkdir -p "$dir" || exit 1
stamp="$dir/.installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$bun_pkg $claude_pkg" ]; then
    exit 0
fi
# The packages' install scripts put the native executables in place: they must run.
if ! npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error \
    "$bun_pkg" "$claude_pkg" >"$dir/npm.log" 2>&1; then
    echo "install-bun-agents: npm install failed (see $dir/npm.log)" >&2
    tail -n 5 "$dir/npm.log" >&2
    exit 1
fi
echo "$bun_pkg $claude_pkg" >"$stamp"
