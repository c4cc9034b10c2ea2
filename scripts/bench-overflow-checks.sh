#!/usr/bin/env bash
# What `overflow-checks = true` in the release profile costs on the
# handle_datagram bench: builds the bench twice (A: overflow checks off,
# B: on, everything else the release profile), then runs them interleaved
# A B B A A B B A on the same machine, back to back, printing the load
# before each run. With valgrind installed it also counts instructions per
# handle_datagram call under callgrind, a figure that other processes on a
# shared machine do not disturb.
#
#   bash scripts/bench-overflow-checks.sh            # 8 s per bench per run
#   bash scripts/bench-overflow-checks.sh --seconds 3
#   bash scripts/bench-overflow-checks.sh --pairs 40 # many short paired runs
#
# --pairs N instead runs N pairs of short runs (1 s warm-up, 2 s measured)
# of the redundant bench, A B then B A alternately, and prints the medians
# and the median of the paired ratios B/A: on a loaded machine many short
# pairs resolve a few percent better than a few long runs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=8
pairs=0
case "${1:-}" in
    --seconds) seconds="${2:?--seconds needs a value}" ;;
    --pairs) pairs="${2:?--pairs needs a value}" ;;
esac
out="target/overflow-checks-bench"
mkdir -p "$out"

build() { # build <true|false> <dest>
    local exe
    exe=$(CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS="$1" cargo bench -p rumor-core \
        --bench handle_datagram --no-run --message-format=json 2> /dev/null |
        sed -n 's/.*"executable":"\([^"]*handle_datagram[^"]*\)".*/\1/p' | tail -n 1)
    cp "$exe" "$2"
}
build false "$out/bench_A"
build true "$out/bench_B"

cd crates/rumor-core
if [ "$pairs" -gt 0 ]; then
    one() { # one <A|B>: the redundant bench's estimate in µs
        "../../$out/bench_$1" --bench --warm-up-time 1 --measurement-time 2 \
            handle_datagram/redundant 2>&1 | sed -n 's/.*time: *\[[^ ]* [^ ]* \([^ ]*\) .*/\1/p'
    }
    for i in $(seq 1 "$pairs"); do
        if [ $((i % 2)) -eq 1 ]; then a=$(one A); b=$(one B); else b=$(one B); a=$(one A); fi
        echo "$a $b $(cut -d' ' -f1 /proc/loadavg)"
    done | awk '{ print "pair " NR ": A " $1 " us, B " $2 " us, load " $3; a[NR] = $1; b[NR] = $2; r[NR] = $2 / $1 }
        function median(v, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
        END { n = NR; printf "median A %.3f us, B %.3f us; median ratio B/A %.3f\n", median(a, n), median(b, n), median(r, n) }'
    exit 0
fi
echo "A = overflow checks off, B = on; criterion time: [low estimate high]"
for x in A B B A A B B A; do
    echo "=== $x load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "../../$out/bench_$x" --bench --measurement-time "$seconds" handle_datagram 2>&1 |
        grep -E "^handle_datagram|time:" | sed 's/^ */    /'
done

if ! command -v valgrind > /dev/null || ! command -v callgrind_annotate > /dev/null; then
    echo "(valgrind not installed: no instruction counts)"
    exit 0
fi
echo "=== instructions per handle_datagram call (callgrind)"
for x in A B; do
    valgrind --tool=callgrind --callgrind-out-file="../../$out/cg_$x.out" \
        "../../$out/bench_$x" --bench --profile-time 3 handle_datagram/ > /dev/null 2>&1
    # Callers of Node::handle_datagram with their inclusive cost and calls:
    # Bencher::iter is the redundant bench, iter_batched the fresh one.
    callgrind_annotate --inclusive=yes --tree=caller "../../$out/cg_$x.out" 2> /dev/null |
        awk '/^ *[0-9,]+ .* < /{callers = callers $0 "\n"; next}
             /\*  .*rumor_core::node::Node::handle_datagram/{printf "%s", callers}
             {callers = ""}' |
        sed -n 's/^ *\([0-9,]*\) .*Bencher<M>::\(iter[a-z_]*\) (\([0-9,]*\)x).*/\1 \2 \3/p' |
        tr -d ',' |
        while read -r ir bench calls; do
            case "$bench" in iter) name=redundant ;; *) name=fresh ;; esac
            echo "$x $name: $((ir / calls)) instructions/packet ($calls calls)"
        done
done
