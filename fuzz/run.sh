#!/usr/bin/env bash
# fuzz/run.sh — runs every fuzz target for FUZZ_SECONDS (default 120) each: `make fuzz`, and briefly in
# `make test` (FUZZ_DEV=1 there: an unoptimised build, which compiles in about half the time — enough for a
# smoke run that replays the corpus and fuzzes a few seconds). Installs cargo-fuzz when it is missing. New inputs the fuzzer finds go to target/fuzz-corpus/
# (the seeds in fuzz/corpus/ are only read); a crash fails the run and leaves its input in fuzz/artifacts/.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
SECONDS_EACH=${FUZZ_SECONDS:-120}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-dtab config request namers}"

say() { echo "==> $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

# libFuzzer's instrumentation needs a nightly compiler; without one, the stable compiler is told to accept the
# nightly flags (RUSTC_BOOTSTRAP), and AddressSanitizer is left out (the targets still check their invariants).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
  SANITIZER=address
else
  say "no nightly toolchain: fuzzing with the stable compiler, without AddressSanitizer"
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
  SANITIZER=none
fi

PROFILE=--release
if [[ ${FUZZ_DEV:-0} == 1 ]]; then PROFILE=--dev; fi
say "building the fuzz targets (sanitizer: $SANITIZER, ${PROFILE#--})"
(cd fuzz && "${FUZZ[@]}" build -s "$SANITIZER" "$PROFILE")

status=0
mkdir -p target/fuzz-logs
for t in "${TARGETS[@]}"; do
  work="target/fuzz-corpus/$t"
  log="target/fuzz-logs/$t.log"
  mkdir -p "$work"
  say "fuzzing $t for ${SECONDS_EACH}s (seeds: fuzz/corpus/$t; log: $log)"
  if (cd fuzz && "${FUZZ[@]}" run -s "$SANITIZER" "$PROFILE" "$t" "../$work" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" | sed "s/^/    $t: /" || true
  else
    say "!!! $t failed: the end of its log follows; the input is in fuzz/artifacts/$t/"
    tail -n 40 "$log"
    status=1
  fi
done
exit "$status"
