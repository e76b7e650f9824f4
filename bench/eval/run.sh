#!/usr/bin/env bash
# Evaluation benchmark (see bench/eval/main.rs). Needs nixpkgs' lib.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup
cargo build --release --quiet
PANTHEROS_TEST_BIN="$PWD/target/release/pantheros" cargo run --release --quiet --example bench-eval
