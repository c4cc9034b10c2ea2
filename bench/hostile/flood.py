#!/usr/bin/env python3
"""Hostile-peer benchmark: a flood of invented members against real agents.

Starts N `rumor agent`s on 127.0.0.1 (LAN profile), waits until all list all,
then runs the forger (`cargo run --release -p rumor --example forge_flood`)
against agent 0: CLAIMS alive claims for invented members over SECONDS. While
it runs, samples agent 0's resident memory (/proc/PID/status VmRSS), local
health score and member count (GET /v1/self) every 0.5 s, and at KILL_AT
seconds kills the last agent with SIGKILL and times how long agent 0 takes
to list it failed. Prints one JSON object.

    python3 bench/hostile/flood.py --rumor target/release/rumor \
        --forger target/release/examples/forge_flood

Every address used is on 127.0.0.0/8; invented members claim 127.64/10:9.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return json.load(r)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rumor", default="target/release/rumor")
    ap.add_argument("--forger", default="target/release/examples/forge_flood")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--claims", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill-at", type=float, default=20.0)
    ap.add_argument("--base-port", type=int, default=27946)
    args = ap.parse_args()

    procs = []
    env = dict(os.environ, RUMOR_LOG="warn")
    env.pop("RUMOR_CONFIG", None)

    def gport(i):
        return args.base_port + 2 * i

    def hport(i):
        return args.base_port + 2 * i + 1

    try:
        for i in range(args.nodes):
            argv = [args.rumor, "agent", "--name", f"a{i}", "--bind", f"127.0.0.1:{gport(i)}",
                    "--http", f"127.0.0.1:{hport(i)}", "--profile", "lan"]
            if i > 0:
                argv += ["--join", f"127.0.0.1:{gport(0)}"]
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            time.sleep(0.2)
        deadline = time.time() + 60
        while True:
            try:
                if all(len([m for m in get(hport(i), "/v1/members") if m["status"] == "alive"])
                       == args.nodes for i in range(args.nodes)):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the agents did not form a cluster within 60 s")
            time.sleep(0.2)

        base_rss = rss_mib(procs[0].pid)
        forger = subprocess.Popen([args.forger, f"127.0.0.1:{gport(0)}", str(args.claims),
                                   str(args.seconds)], stdout=subprocess.PIPE, text=True)
        t0 = time.time()
        victim = f"a{args.nodes - 1}"
        samples, killed_at, detected = [], None, None
        while forger.poll() is None or (killed_at is not None and detected is None
                                         and time.time() - killed_at < 120):
            now = time.time() - t0
            if killed_at is None and now >= args.kill_at:
                procs[-1].send_signal(signal.SIGKILL)
                killed_at = time.time()
            sample = {"t": round(now, 1), "rss_mib": round(rss_mib(procs[0].pid), 1)}
            try:
                me = get(hport(0), "/v1/self")
                sample["awareness"] = me.get("awareness")
                sample["members"] = sum(me.get("members", {}).values())
            except (OSError, ValueError):
                sample["api"] = "no answer within 2 s"
            if killed_at is not None and detected is None:
                try:
                    st = get(hport(0), f"/v1/members/{victim}").get("status")
                    if st in ("dead", "failed"):
                        detected = time.time() - killed_at
                except (OSError, ValueError):
                    pass
            samples.append(sample)
            time.sleep(0.5)
        out = forger.communicate()[0].strip()
        print(json.dumps({
            "rumor": args.rumor,
            "forger": json.loads(out) if out else None,
            "base_rss_mib": round(base_rss, 1),
            "max_rss_mib": max(s["rss_mib"] for s in samples),
            "max_awareness": max(s.get("awareness") or 0 for s in samples),
            "max_members": max(s.get("members") or 0 for s in samples),
            "api_unanswered_samples": sum(1 for s in samples if "api" in s),
            "kill9_detected_s": None if detected is None else round(detected, 2),
            "samples": samples[:: max(1, len(samples) // 20)],
        }, indent=1))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


if __name__ == "__main__":
    main()
