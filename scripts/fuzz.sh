#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time, with overflow checks and
# debug assertions on, on inputs up to 64 KiB. Called by .ci/run after the
# tests; runnable by hand:
#
#   bash scripts/fuzz.sh                    # 30 s per target
#   bash scripts/fuzz.sh --seconds 300      # longer
#   bash scripts/fuzz.sh --seconds 60 node_messages
#
# Needs the nightly toolchain and cargo-fuzz. cargo-fuzz is installed from
# crates.io (`cargo install cargo-fuzz --locked`) when it is missing. When
# nightly is missing or the install fails, the script says so loudly and
# exits 0: fuzzing is skipped, CI does not fail for it. A crash fails the
# script (exit 1) and leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds)
            seconds="${2:?--seconds needs a value}"
            shift 2
            ;;
        --seconds=*)
            seconds="${1#--seconds=}"
            shift
            ;;
        -h | --help)
            sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown flag $1" >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done
case "$seconds" in
    '' | *[!0-9]*)
        echo "fuzz.sh: --seconds takes a whole number, not '$seconds'" >&2
        exit 2
        ;;
esac

skip() {
    {
        echo
        echo "************************************************************"
        echo "fuzz.sh: FUZZING SKIPPED: $*"
        echo "************************************************************"
        echo
    } >&2
    exit 0
}

if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    skip "no nightly toolchain (install it with: rustup toolchain install nightly)"
fi

# cargo-fuzz: use the installed one, or install it once into ~/.cargo/bin
# (later runs find it there: the install is the cache).
if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
    if ! cargo install cargo-fuzz --locked; then
        skip "cargo-fuzz is not installed and 'cargo install cargo-fuzz --locked' failed"
    fi
fi
echo "fuzz.sh: $(cargo fuzz --version), $(rustup run nightly rustc --version)" >&2

if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Overflow checks and debug assertions on (fuzz/Cargo.toml's profile sets
# both too; the flags make it explicit). No sanitizer: rumor-core has no
# unsafe code, and without ASan the targets build and run about twice as
# fast, which buys more executions in a bounded run.
flags=(-O --debug-assertions --sanitizer none)
export RUSTFLAGS="${RUSTFLAGS:-} -C overflow-checks=on"

cargo +nightly fuzz build "${flags[@]}"

# Saved regression inputs (scripts, see fuzz/fuzz_targets/script.rs) seed
# the targets that read scripts; new inputs go to fuzz/corpus/<target>.
saved=crates/rumor-core/tests/fuzz-corpus
seeds() {
    case "$1" in
        node_datagram) echo "$saved/node_datagram $saved/node_messages" ;;
        node_stream) echo "$saved/node_stream" ;;
    esac
}

failed=()
for target in "${targets[@]}"; do
    echo "fuzz.sh: $target for ${seconds} s" >&2
    mkdir -p "fuzz/corpus/$target"
    # -timeout: one input taking more than 10 s is a hang, reported as a crash.
    # shellcheck disable=SC2046 # seeds are word-split on purpose
    if ! cargo +nightly fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" $(seeds "$target") -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -print_final_stats=1 2> "fuzz/$target.log"; then
        failed+=("$target")
        tail -n 60 "fuzz/$target.log" >&2
    else
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+.*DONE" \
            "fuzz/$target.log" >&2 || true
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: CRASH in: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/<target>.log)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no crash" >&2
