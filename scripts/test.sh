#!/usr/bin/env bash
# The whole test suite: what README.md names and .ci/run calls.
# Installs headless Chromium for the dashboard's browser test and Prometheus
# for the metrics test when it can (root and apt); otherwise those tests say
# loudly that they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-browser.sh || echo "test.sh: could not install chromium; the browser test will be skipped" >&2
bash scripts/install-prometheus.sh || echo "test.sh: could not install prometheus; the Prometheus test will be skipped" >&2
cargo test --workspace --all-targets
cargo test --workspace --doc
# The library's optional serde derives (off by default): their round trips.
cargo test -p rumor --features serde --lib events
