#!/usr/bin/env bash
# Cache fan-out benchmark (see bench/cache/main.rs). Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup
cargo build --release --quiet
PANTHEROS_TEST_BIN="$PWD/target/release/pantheros" cargo run --release --quiet --example bench-cache
