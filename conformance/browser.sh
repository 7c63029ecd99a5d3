#!/usr/bin/env bash
# The demo's page and @socket.io/admin-ui in headless Chromium.
#
#   conformance/browser.sh tokio|smol
#
# Installs what it needs on first use: Debian's chromium (apt, as root) and the npm
# packages of conformance/interop (puppeteer-core drives the system browser; the page
# gets socket.io-client from the npm copy, the admin UI comes from @socket.io/admin-ui
# with its icon font from @mdi/font). Then interop/browser.mjs starts `demo` on a free
# loopback port and runs the scenario (two chat pages, a server restart, the admin UI).
# Screenshots go to target/browser/RUNTIME/: chat.png and admin.png, and on a failure
# failure-PAGE.png for every page. Ends with `N passed, M failed`.
# WIRESTATE_BIN_DIR: prebuilt binaries (default: cargo build --release).
set -euo pipefail

runtime="${1:-}"
case "$runtime" in tokio|smol) ;; *) echo "usage: $0 tokio|smol" >&2; exit 2 ;; esac

[ -n "${WIRESTATE_BIN_DIR:-}" ] && WIRESTATE_BIN_DIR="$(cd "$WIRESTATE_BIN_DIR" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=ports.sh
. "$here/ports.sh"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
cd "$here/interop"
if [ ! -d node_modules/puppeteer-core ] || [ ! -d node_modules/@socket.io/admin-ui ] ||
   [ ! -d node_modules/@mdi/font ] || [ ! -d node_modules/socket.io-client ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
fi
if [ -z "${WIRESTATE_BIN_DIR:-}" ]; then
    (cd "$root" && cargo build --release --quiet -p wirestate-conformance --bin demo)
    bindir="$root/target/release"
else
    bindir="$WIRESTATE_BIN_DIR"
fi

echo "browser $runtime: $("$chromium" --version 2>/dev/null | head -1), puppeteer-core $(node -p 'require("./node_modules/puppeteer-core/package.json").version')"
CHROMIUM="$chromium" timeout 300 node browser.mjs --demo "$bindir/demo" --runtime "$runtime" \
    --port "$(free_port)" --out "$root/target/browser/$runtime"
