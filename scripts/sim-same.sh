#!/usr/bin/env bash
# Does a refactor change behaviour? Run the simulator's scenarios with two
# builds and compare their JSON figures (wall time and memory left out).
#
#   scripts/sim-same.sh OLD_RUMOR_SIM NEW_RUMOR_SIM [SEEDS]
#
# Build each with `cargo build --release -p rumor-sim` and copy
# target/release/rumor-sim aside before switching commits. Prints one line
# per scenario, "same" or "DIFF", and exits 1 if any differ. The set is
# crash and join at N = 100 and 1,000, and aggregate, writes, churn,
# random, partition, lossy, pause, skew, hostile and forged-icmp at
# N = 100; SEEDS seeds each (default 5). About two minutes per build.
set -euo pipefail
old=$1 new=$2 seeds=${3:-5}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
runs=()
for sc in crash join; do for n in 100 1000; do runs+=("$sc $n"); done; done
for sc in aggregate writes churn random partition lossy pause skew hostile forged-icmp; do
  runs+=("$sc 100")
done
status=0
for run in "${runs[@]}"; do
  read -r sc n <<<"$run"
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    "$bin" --scenario "$sc" --nodes "$n" --seed 1 --seeds "$seeds" --threads 1 --json |
      grep -v '"wall_s"\|"peak_rss_mib"' >"$dir/$side"
  done
  if cmp -s "$dir/old" "$dir/new"; then
    echo "same $sc N=$n"
  else
    echo "DIFF $sc N=$n"
    status=1
  fi
done
exit $status
