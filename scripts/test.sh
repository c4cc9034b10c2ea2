#!/usr/bin/env bash
# The whole test suite: what README.md names and .ci/run calls.
# Installs headless Chromium for the dashboard's browser test when it can
# (root and apt); otherwise that test says loudly that it was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-browser.sh || echo "test.sh: could not install chromium; the browser test will be skipped" >&2
cargo test --workspace --all-targets
cargo test --workspace --doc
