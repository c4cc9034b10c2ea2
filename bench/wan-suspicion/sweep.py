#!/usr/bin/env python3
"""The WAN suspicion-timeout sweep of docs/protocol.md ("Defaults").

Runs the simulator's `crash` scenario on the WAN profile (50 ms one-way,
log-normal) for each cluster size, loss rate and (suspicion_mult,
suspicion_max_mult) pair, over several seeds, and prints one JSON line per
cell: the median time until every live node marks the crashed one dead, the
median first suspicion, and the false failures (live nodes marked dead) and
suspicions of live nodes summed over the seeds.

    cargo build --release -p rumor-sim
    python3 bench/wan-suspicion/sweep.py --sizes 16,64 --loss 0.01,0.2 --seeds 20
    python3 bench/wan-suspicion/sweep.py --sizes 16,64,256 --loss 0.05,0.2 --seeds 10 --duration 3600
"""
import argparse
import itertools
import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def median(xs):
    return round(statistics.median(xs), 1) if xs else None


def cell(sim, a, n, loss, mult, max_mult):
    cmd = [str(sim), "--scenario", a.scenario, "--profile", "wan", "--nodes", str(n),
           "--latency", str(a.latency), "--loss", str(loss), "--seeds", str(a.seeds),
           "--suspicion-mult", str(mult), "--suspicion-max-mult", str(max_mult), "-q", "--json"]
    if a.duration:
        cmd += ["--duration", str(a.duration)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    runs = json.loads(out.stdout)
    runs = runs if isinstance(runs, list) else [runs]
    det = [r["detection"] or {} for r in runs]
    return {
        "nodes": n, "loss": loss, "suspicion_mult": mult, "suspicion_max_mult": max_mult,
        "seeds": len(runs), "simulated_hours": round(sum(r["duration_s"] for r in runs) / 3600, 1),
        "all_dead_s": median([d["all_dead_s"] for d in det if d.get("all_dead_s") is not None]),
        "first_suspect_s": median([d["first_suspect_s"] for d in det if d.get("first_suspect_s") is not None]),
        "false_failures": sum(r["false_positives"] for r in runs),
        "live_suspicions": sum(r["live_suspicions"] for r in runs),
        "invariant_violations": sum(r["invariant_violations"] for r in runs),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="16,64")
    p.add_argument("--loss", default="0.01,0.2")
    p.add_argument("--variants", default="6/6,4/9,3/12,2/18",
                   help="suspicion_mult/suspicion_max_mult pairs (6/6 is memberlist's)")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--duration", type=float, help="simulated seconds per seed")
    p.add_argument("--latency", type=float, default=50.0)
    p.add_argument("--scenario", default="crash")
    p.add_argument("--sim", default=str(ROOT / "target/release/rumor-sim"))
    a = p.parse_args()
    if not pathlib.Path(a.sim).exists():
        sys.exit(f"{a.sim} is missing: run `cargo build --release -p rumor-sim` first")
    variants = [tuple(int(x) for x in v.split("/")) for v in a.variants.split(",")]
    for n, loss, (m, mm) in itertools.product(
            [int(x) for x in a.sizes.split(",")], [float(x) for x in a.loss.split(",")], variants):
        print(json.dumps(cell(a.sim, a, n, loss, m, mm)), flush=True)


if __name__ == "__main__":
    main()
