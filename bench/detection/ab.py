#!/usr/bin/env python3
"""Silent-crash detection of two or more rumor-sim builds, side by side.

    python3 bench/detection/ab.py OLD_SIM,NEW_SIM --scenario crash --nodes 16 --seeds 40
    python3 bench/detection/ab.py OLD_SIM,NEW_SIM --scenario bench/detection/six-crashes.toml --seeds 16

Runs `SIM ARGS --json -q` for each build and prints, over the seeds: the
median and mean time to the first suspicion and until every live node
marks the crashed one dead, false failures, suspicions of live members and
bytes per node per second.
"""
import json
import statistics as st
import subprocess
import sys


def run(sim, args):
    out = subprocess.run([sim, *args, "--json", "-q"], capture_output=True, text=True, check=True)
    runs = json.loads(out.stdout)
    return runs if isinstance(runs, list) else [runs]


def summary(runs):
    det = [r["detection"] for r in runs if r.get("detection")]
    first = [d["first_suspect_s"] for d in det if d.get("first_suspect_s") is not None]
    dead = [d["all_dead_s"] for d in det if d.get("all_dead_s") is not None]

    def mm(v):
        return f"{st.median(v):.2f} / {st.mean(v):.2f}" if v else "-"

    return (
        f"first suspicion {mm(first)} s, all dead {mm(dead)} s (median / mean), "
        f"false failures {sum(r['false_positives'] for r in runs)}, "
        f"live suspicions {sum(r['live_suspicions'] for r in runs)}, "
        f"{st.mean(r['bytes_per_node_per_s'] for r in runs):.0f} B/s per node"
    )


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for sim in sys.argv[1].split(","):
        print(f"{sim}: {summary(run(sim, sys.argv[2:]))}")


if __name__ == "__main__":
    main()
