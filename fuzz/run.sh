#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer's coverage instrumentation on the stable
# toolchain and runs each for SECONDS (default 30), with its committed seed corpus.
# Exits non-zero if any target crashes; the crashing input is left in fuzz/artifacts/.
#
#   fuzz/run.sh 60            # every target, 60 s each
#   fuzz/run.sh 600 channel   # one target
#
# Stable rustc refuses -Z flags; RUSTC_BOOTSTRAP=1 allows them (the same compiler, its
# nightly-only flags unlocked), which is how cargo-fuzz's flags work on stable. We pass
# the flags cargo-fuzz would pass, so cargo-fuzz itself is not needed.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
all=(frame_decoder handshake_responder handshake_initiator channel registry_server
     registry_client onion_address key_binding_certificate tor_control_reply config)
targets=("${@:-${all[@]}}")
if [ "$#" -eq 0 ]; then targets=("${all[@]}"); fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks ${FUZZ_EXTRA_RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# --target keeps build scripts and proc-macros uninstrumented.
cargo build --locked --release --target "$triple" $(printf -- '--bin %s ' "${targets[@]}")

mkdir -p artifacts
status=0
for t in "${targets[@]}"; do
  mkdir -p "runs/$t"
  echo "== $t (${seconds}s)"
  if ! "$CARGO_TARGET_DIR/$triple/release/$t" "runs/$t" "corpus/$t" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="artifacts/$t-" -print_final_stats=1 2> "runs/$t.log"; then
    echo "!! $t crashed; see fuzz/runs/$t.log and fuzz/artifacts/"
    tail -n 30 "runs/$t.log"
    status=1
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|cov: ' "runs/$t.log" | tail -n 3 || true
done
exit "$status"
