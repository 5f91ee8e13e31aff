#!/usr/bin/env bash
# Installs the Debian packages agentsight-preload builds, tests and benchmarks with.
# Idempotent and quiet when everything is present; run as root or through sudo.
set -euo pipefail

# Build and run time: libcurl (HTTP sinks), zlib (gzip of large ingest bodies and of OTLP
# exports, opened only when asked), cJSON (JSON parsing), libelf and libdw
# (symbol tables, DWARF prototypes), capstone (instruction decoding for entry patches).
# Tests: cmocka (unit tests), sqlite3 and curl (real programs to instrument), python3
# (the local API emulator), clang with its sanitizer runtimes (libFuzzer target).
# Benchmarks compare against ltrace and uftrace. go-md2man writes the man pages of
# `make install` from the Markdown references. LLM calls: zlib1g-dev and libbrotli-dev
# (zlib.h, brotli/decode.h: compressed responses are decoded with libz and libbrotlidec
# opened on demand); libnghttp2-dev and libzstd-dev (nghttp2/nghttp2.h, zstd.h: HTTP/2
# header blocks are decoded with libnghttp2's HPACK decoder and zstd bodies with libzstd,
# both opened on demand); openssl (the tests' self-signed certificate); wget (a GnuTLS
# client). The node SDKs the LLM tests run (openai, @anthropic-ai/sdk) come from npm,
# pinned, into build/npm: scripts/npm-sdks.sh, called by
# tests/integration/test_llm_clients.py.
pkgs=(
  build-essential pkg-config
  libcurl4-openssl-dev libcjson-dev libelf-dev libdw-dev libcapstone-dev
  libcmocka-dev zlib1g-dev libbrotli-dev libnghttp2-dev libzstd-dev
  sqlite3 curl wget python3 openssl clang libclang-rt-14-dev
  ltrace uftrace
  go-md2man
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
