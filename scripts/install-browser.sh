#!/usr/bin/env bash
# Install headless Chromium for the dashboard browser test (crates/rumor-cli/tests/browser.rs).
# Does nothing when chromium is already there; skips with a message when not root or without apt.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "install-browser: chromium already installed at $(command -v chromium)"
    exit 0
fi
. "$(dirname "$0")/apt-guard.sh"
apt_guard chromium "browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "install-browser: installed $(chromium --version 2>/dev/null || echo chromium)"
