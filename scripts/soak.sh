#!/usr/bin/env bash
# The long soak of foresight-serve (tests/serve_soak.rs): the real binary under mixed load,
# SIGKILLed SOAK_KILLS times (default 200) at seeded random moments, every acknowledged update
# and a recomputed margin checked after each restart. Prints the counts for the README.
#   ./scripts/soak.sh            # 200 kills, seed 1
#   SOAK_KILLS=500 SOAK_SEED=3 ./scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins
SOAK_KILLS="${SOAK_KILLS:-200}" SOAK_SEED="${SOAK_SEED:-1}" \
    cargo test --test tests serve_soak::soak_long -- --ignored --nocapture --exact 2>&1 | grep -E "^soak:|test result|panicked" 
