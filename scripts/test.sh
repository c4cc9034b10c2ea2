#!/usr/bin/env bash
# The whole test suite: what README.md names and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
