#!/usr/bin/env bash
# Fuzzes every parser of outside input (the targets in fuzz/, entry points and
# invariants in agent/src/fuzz.rs) with cargo-fuzz (libFuzzer, AddressSanitizer,
# debug assertions on), each for a bounded time.
#
# Installs what it needs: a nightly toolchain through rustup (it fails, saying so,
# when the toolchain server cannot be reached) and cargo-fuzz, cached under
# target/tools. The committed corpus (fuzz/corpus/<target>) seeds each run; what
# the fuzzer finds new goes to target/fuzz/corpus/<target>, so the repository is
# not changed by a run. FUZZ_MERGE=1 merges those finds, minimised, into
# fuzz/corpus for committing (the corpora are replayed on stable by `make test`:
# agent/tests/fuzz_corpus.rs).
#
# A crash or a broken invariant stops that target: the input is saved under
# target/fuzz/artifacts/<target>/, and the run fails naming it. Add it to
# fuzz/corpus/<target>/ (it then runs in every `make test`) and fix the cause.
#
#   FUZZ_SECONDS   per target (default 60)
#   FUZZ_TARGETS   which (default: all, as listed in fuzz/Cargo.toml)
#   FUZZ_MERGE=1   merge new inputs into fuzz/corpus afterwards
#
# usage: scripts/fuzz.sh
set -euo pipefail
repo=$(dirname "$(dirname "$(realpath "$0")")")
cd "$repo"
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hark-fuzz$')}

command -v rustup >/dev/null || { echo "fuzz: needs rustup (for a nightly toolchain)" >&2; exit 1; }
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain (cargo-fuzz needs it)" >&2
    rustup toolchain install nightly --profile minimal >&2 ||
        { echo "fuzz: cannot install a nightly toolchain (is the rustup server reachable?)" >&2; exit 1; }
fi
tools=$repo/target/tools
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    echo "fuzz: installing cargo-fuzz under $tools" >&2
    cargo install cargo-fuzz --locked --root "$tools" >&2
fi
export PATH=$tools/bin:$PATH
# fuzz/Cargo.lock is not tracked: every Cargo.lock in the tree is listed in the
# Yocto recipe's crates (the cargo class walks the whole source), and the fuzz
# crate ships nowhere. Seeded from the workspace's lock, so the agent's
# dependencies are the versions it is built and tested with; cargo adds
# libfuzzer-sys and what it needs.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
# The fuzz builds live under target/ with every other build.
build=(--fuzz-dir fuzz --target-dir "$repo/target/fuzz/build")

failed=()
for t in $targets; do
    work=$repo/target/fuzz/corpus/$t
    artifacts=$repo/target/fuzz/artifacts/$t
    mkdir -p "$work" "$artifacts"
    before=$(ls "$work" | wc -l)
    echo "=== fuzz: $t for $seconds s" >&2
    log=$repo/target/fuzz/$t.log
    # The first directory receives new inputs; the committed corpus only seeds.
    if cargo +nightly fuzz run "${build[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "fuzz: $t: ${runs:-?} inputs run, $(($(ls "$work" | wc -l) - before)) new to the corpus, no failure" >&2
    else
        tail -40 "$log" >&2
        echo "fuzz: $t: FAILED; input(s): $(ls "$artifacts" | sed "s|^|$artifacts/|" | tr '\n' ' ')" >&2
        failed+=("$t")
    fi
    if [ "${FUZZ_MERGE:-}" = 1 ]; then
        cargo +nightly fuzz run "${build[@]}" "$t" -- -merge=1 "fuzz/corpus/$t" "$work" >/dev/null 2>&1 || true
        echo "fuzz: $t: fuzz/corpus/$t now holds $(ls "fuzz/corpus/$t" | wc -l) inputs" >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs under target/fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: every target ran $seconds s without a failure: $targets" | tr '\n' ' ' >&2
echo >&2
