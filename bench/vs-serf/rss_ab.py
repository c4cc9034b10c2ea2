#!/usr/bin/env python3
"""A/B of an agent's resident memory between rumor binaries, no Serf needed.

    python3 bench/vs-serf/rss_ab.py BIN_A BIN_B [--rounds 2] [--n 6] [--wait 25]

For each binary in turn (A, B, A, B, ...): evict it from the page cache
(so every binary starts from the same state: how much of a file page
cache folio the kernel maps on a fault depends on how the file got into
the cache), start N LAN agents on 127.0.0.1 as the harness does (`--config`
with its `[limits]`, JSON logs, all joining agent 0), wait, read /metrics
of each (the harness does, before its window), then print the resident set
of two non-seed agents from /proc/PID/smaps: total, anonymous, and the
binary's mappings (r--p: .rodata and unwind tables; r-xp: .text; rw-p:
data) in KiB. Loopback only; ports BASE..BASE+N and BASE+1000..+N.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def smaps(pid):
    """[(mapping line fields, rss KiB, anonymous KiB)] of a process."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and ":" not in parts[0]:
                cur = [parts, 0, 0]
                maps.append(cur)
            elif parts[0] == "Rss:":
                cur[1] = int(parts[1])
            elif parts[0] == "Anonymous:":
                cur[2] = int(parts[1])
    return maps


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure(binary, n, wait, base, conf):
    evict(binary)
    procs = []
    try:
        for i in range(n):
            argv = [binary, "agent", "--name", f"ab{i}", "--bind", f"127.0.0.1:{base + i}",
                    "--http", f"127.0.0.1:{base + 1000 + i}", "--profile", "lan", "--log-json",
                    "--config", conf]
            if i:
                argv += ["--join", f"127.0.0.1:{base}"]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          env=dict(os.environ, RUMOR_LOG="info")))
            time.sleep(0.05)
        time.sleep(wait)
        for i in range(n):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{base + 1000 + i}/metrics", timeout=5) as r:
                    r.read()
            except OSError as e:
                print(f"agent {i}: /metrics failed: {e}", file=sys.stderr)
        time.sleep(2)
        real = os.path.realpath(binary)
        for k in (2, 3):
            m = smaps(procs[k].pid)
            exe = " ".join(f"{p[1]}:{rss}" for p, rss, _ in m if len(p) > 5 and p[5] == real)
            print(f"{binary}  agent {k}: rss {sum(x[1] for x in m)} KiB, anon {sum(x[2] for x in m)} KiB, "
                  f"binary [{exe}]", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bins", nargs="+")
    p.add_argument("--n", type=int, default=6, help="agents (at least 4)")
    p.add_argument("--wait", type=float, default=25, help="seconds before reading")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--base", type=int, default=17001)
    a = p.parse_args()
    if a.n < 4:
        p.error("--n must be at least 4")
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "limits.toml")
        with open(conf, "w") as f:
            f.write("[limits]\nmax_streams_per_source = 4096\n")
        for _ in range(a.rounds):
            for b in a.bins:
                measure(b, a.n, a.wait, a.base, conf)
                time.sleep(1)


if __name__ == "__main__":
    main()
