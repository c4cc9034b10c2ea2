#!/usr/bin/env python3
"""Durable state (issue 17) by numbers: HTTP writes against rumor agents with
and without a data dir and against etcd in the same run; start-up with
1,000,000 keys; catch-up of an agent restarted after 60 s down.

Python 3.11 standard library only; loopback only. See README.md next to this
file. Everything started here is killed on exit (also on Ctrl-C and on
errors) and every temp dir is removed.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RUMOR = os.path.join(REPO, "target", "release", "rumor")
KV_BENCH = os.path.join(REPO, "target", "release", "examples", "kv_write_bench")
VALUE = b"v" * 100
KEYS_PER_CLIENT = 4096


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Everything started here, killed and removed on exit.

_PROCS: list[subprocess.Popen] = []
_DIRS: list[str] = []


def cleanup() -> None:
    for p in _PROCS:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in _PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    _PROCS.clear()
    for d in _DIRS:
        shutil.rmtree(d, ignore_errors=True)
    _DIRS.clear()


def _on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    cleanup()
    sys.exit(130 if signum == signal.SIGINT else 143)


def temp_dir(tag: str) -> str:
    d = tempfile.mkdtemp(prefix=f"rumor-dbench-{tag}-", dir="/tmp")
    _DIRS.append(d)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def http_get(port: int, path: str, timeout: float = 5.0):
    """(status, body bytes) or None when nothing answers."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError:
        return None


# --------------------------------------------------------------------------
# rumor agents


class Agent:
    """One `rumor agent` on loopback; its stderr lines stamped on arrival."""

    def __init__(self, name: str, data_dir: str | None, sync: str | None, join: list[int] = (),
                 gossip_port: int | None = None):
        self.name, self.data_dir, self.sync = name, data_dir, sync
        self.gossip = gossip_port or free_port()
        self.http = free_port()
        argv = [RUMOR, "agent", "--name", name, "--profile", "local",
                "--bind", f"127.0.0.1:{self.gossip}", "--http", f"127.0.0.1:{self.http}"]
        if data_dir:
            argv += ["--data-dir", data_dir]
            if sync == "interval":
                argv += ["--sync", "interval", "--sync-interval", "100ms"]
            elif sync:
                argv += ["--sync", sync]
        if join:
            argv += ["--join", ",".join(f"127.0.0.1:{p}" for p in join)]
        self.lines: list[tuple[float, str]] = []
        env = dict(os.environ, RUMOR_LOG="info")
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        _PROCS.append(self.proc)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stderr:
            self.lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip()))

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from spawn until /v1/health answers 200."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n" + self.tail())
            r = http_get(self.http, "/v1/health", timeout=1.0)
            if r and r[0] == 200:
                return time.monotonic() - self.t_spawn
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} never answered /v1/health:\n" + self.tail())

    def line_after(self, needle: str) -> float | None:
        """Seconds from spawn until a stderr line containing `needle` arrived."""
        for t, line in self.lines:
            if needle in line:
                return t - self.t_spawn
        return None

    def tail(self) -> str:
        return "\n".join(line for _, line in self.lines[-20:])

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def metric(self, family: str) -> float:
        r = http_get(self.http, "/metrics")
        if not r:
            return float("nan")
        total = 0.0
        for line in r[1].decode().splitlines():
            if line.startswith(family) and line[len(family):len(family) + 1] in ("{", " "):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return total

    def keys(self) -> set[str]:
        r = http_get(self.http, "/v1/kv", timeout=30.0)
        if not r or r[0] != 200:
            return set()
        return {e["key"] for e in json.loads(r[1])}


# --------------------------------------------------------------------------
# The write loop: C client processes (no GIL between them), one keep-alive
# connection each, each awaiting every answer before the next request.


def _client(target, idx, port, secs, start_at, out):
    kind = target
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, errors, i = [], 0, 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + secs
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        key = f"bench/c{idx:03}/k{i % KEYS_PER_CLIENT:08}"  # 20 bytes
        try:
            if kind == "etcd":
                body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                                   "value": base64.b64encode(VALUE).decode()})
                conn.request("POST", "/v3/kv/put", body=body,
                             headers={"Content-Type": "application/json"})
            else:
                conn.request("PUT", f"/v1/kv/{key}", body=VALUE)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i += 1
    conn.close()
    out.put((lat, errors))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def write_loop(target: str, port: int, clients: int, secs: float, pid: int, client: str) -> dict:
    """The write loop against `port` with the `client` ("rust": the
    kv_write_bench example's http mode; "python": processes here); `pid` is
    the server, whose CPU time per acknowledged write is reported too."""
    if client == "rust":
        cpu0 = cpu_seconds(pid)
        out = subprocess.run([KV_BENCH, "http", f"127.0.0.1:{port}", target, str(clients),
                              str(secs)], check=True, capture_output=True, text=True,
                             timeout=secs + 120).stdout
        cpu = cpu_seconds(pid) - cpu0
        r = json.loads(out.strip().splitlines()[-1])
        n = r["writes_s"] * secs
        r["server_cpu_us_per_write"] = cpu / n * 1e6 if n else float("nan")
        return r
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=_client, args=(target, i, port, secs, start_at, q))
             for i in range(clients)]
    for p in procs:
        p.start()
    cpu0 = cpu_seconds(pid)
    lat, errors = [], 0
    for _ in procs:
        l, e = q.get(timeout=secs + 120)
        lat.extend(l)
        errors += e
    cpu = cpu_seconds(pid) - cpu0
    for p in procs:
        p.join(timeout=30)
    lat.sort()
    q_ = lambda f: lat[min(len(lat) - 1, int(round((len(lat) - 1) * f)))] * 1000 if lat else float("nan")
    return {"writes_s": len(lat) / secs, "p50_ms": q_(0.5), "p99_ms": q_(0.99), "errors": errors,
            "server_cpu_us_per_write": cpu / len(lat) * 1e6 if lat else float("nan")}


def start_etcd() -> tuple[subprocess.Popen, int]:
    client, peer = 2379, 2380
    if not (port_free(client) and port_free(peer)):
        client, peer = free_port(), free_port()
    d = temp_dir("etcd")
    argv = ["etcd", "--name", "bench", "--data-dir", os.path.join(d, "data"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
            "--listen-metrics-urls", ""]
    logf = open(os.path.join(d, "etcd.log"), "w")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                         start_new_session=True)
    _PROCS.append(p)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"etcd exited {p.returncode}; log in {d}/etcd.log")
        r = http_get(client, "/health", timeout=1.0)
        if r and r[0] == 200 and b"true" in r[1]:
            return p, client
        time.sleep(0.05)
    raise RuntimeError("etcd never became healthy")


def phase_writes(args) -> list[dict]:
    rows = []
    for sync in ["memory", "always", "interval"]:
        d = None if sync == "memory" else temp_dir(f"w-{sync}")
        a = Agent("w", d, None if sync == "memory" else sync)
        a.wait_healthy()
        for c in args.clients:
            r = write_loop("rumor", a.http, c, args.secs, a.proc.pid, args.client)
            r.update(system="rumor", mode=sync, clients=c, client=args.client)
            log(f"rumor {sync:8} C={c:3}: {r['writes_s']:8.0f} writes/s, "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, {r['errors']} errors, "
                f"server CPU {r['server_cpu_us_per_write']:.0f} us/write")
            rows.append(r)
        a.stop()
    if args.no_etcd:
        return rows
    p, port = start_etcd()
    for c in args.clients:
        r = write_loop("etcd", port, c, args.secs, p.pid, args.client)
        r.update(system="etcd", mode="default", clients=c, client=args.client)
        log(f"etcd  default  C={c:3}: {r['writes_s']:8.0f} writes/s, "
            f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, {r['errors']} errors, "
                f"server CPU {r['server_cpu_us_per_write']:.0f} us/write")
        rows.append(r)
    p.terminate()
    p.wait(timeout=20)
    return rows


# --------------------------------------------------------------------------
# Start-up with 1,000,000 keys


def drop_caches() -> bool:
    """Write back and drop the page cache; false when not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def phase_startup(args) -> dict:
    if not os.path.exists(KV_BENCH):
        raise RuntimeError(f"{KV_BENCH} missing: cargo build --release -p rumor --example kv_write_bench")
    res = {}
    # Disk use depends on the commit sizes: kv_put's group commits too. The
    # imported dir (the last filled) is the one the starts below use.
    d = None
    for how, what in (("put", "kv_put (256 tasks)"), ("import", "kv_import (pages of 10,000)")):
        if d:
            shutil.rmtree(d, ignore_errors=True)
        d = temp_dir(f"big-{how}")
        log(f"filling a data dir with {args.keys} keys through {what}")
        out = subprocess.run([KV_BENCH, "fill", d, "big", str(args.keys), how], check=True,
                             capture_output=True, text=True, timeout=3600).stdout
        print(out, end="")
        res[f"fill_{how}"] = out.strip()
    starts = []
    for i in range(args.repeats):
        # The first start from a cold page cache when we may drop it (root),
        # as after a reboot; the others warm.
        cold = i == 0 and drop_caches()
        a = Agent("big", d, None)
        t_health = a.wait_healthy(timeout=600)
        time.sleep(0.2)
        t_opened = a.line_after("data dir opened")
        rss = 0
        try:
            with open(f"/proc/{a.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS"):
                        rss = int(line.split()[1]) // 1024
        except OSError:
            pass
        a.stop()
        log(f"start {i + 1} ({'cold' if cold else 'warm'} cache): /v1/health after {t_health * 1000:.0f} ms, "
            f"'data dir opened' after {t_opened * 1000 if t_opened else float('nan'):.0f} ms, "
            f"RSS {rss} MiB")
        starts.append({"cold": cold, "health_ms": t_health * 1000,
                       "opened_ms": t_opened * 1000 if t_opened else None, "rss_mib": rss})
    res["starts"] = starts
    out = subprocess.run([KV_BENCH, "restore", d, "big"], check=True, capture_output=True,
                         text=True, timeout=600).stdout
    print(out, end="")
    res["restore"] = out.strip()
    shutil.rmtree(d, ignore_errors=True)
    return res


# --------------------------------------------------------------------------
# Catch-up after 60 s down under 100 writes/s


def random_value() -> bytes:
    """100 random hex digits: values the transport's lz4 cannot shrink much,
    so that catch-up bytes are not flattered by compression."""
    return os.urandom(50).hex().encode()


def preload(a: Agent, n: int, threads: int = 8) -> list[str]:
    """PUT `n` keys `base/N` to `a` from `threads` keep-alive clients."""
    keys = [f"base/{i:08}" for i in range(n)]

    def put(part):
        c = http.client.HTTPConnection("127.0.0.1", a.http, timeout=30)
        for k in part:
            c.request("PUT", f"/v1/kv/{k}", body=random_value())
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"preload PUT {k}: {r.status}")
        c.close()

    ts = [threading.Thread(target=put, args=(keys[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return keys


class Writer(threading.Thread):
    """PUTs new keys `cu/N` at `rate` per second, round-robin over the live
    agents; remembers what was acknowledged."""

    def __init__(self, agents: list[Agent], rate: float, first: int = 0):
        super().__init__(daemon=True)
        self.agents, self.rate = agents, rate
        self.i = first  # the next key's number
        self.live = {a.name for a in agents}
        self.acked: list[str] = []
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        nxt = time.monotonic()
        conns: dict[str, http.client.HTTPConnection] = {}
        while not self.stop_ev.is_set():
            with self.lock:
                live = [a for a in self.agents if a.name in self.live]
            i = self.i
            a = live[i % len(live)]
            key = f"cu/{i:08}"
            try:
                c = conns.get(a.name)
                if c is None:
                    c = conns[a.name] = http.client.HTTPConnection("127.0.0.1", a.http, timeout=5)
                c.request("PUT", f"/v1/kv/{key}", body=random_value())
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    self.acked.append(key)
            except (OSError, http.client.HTTPException):
                conns.pop(a.name, None)
            self.i += 1
            nxt += 1.0 / self.rate
            time.sleep(max(0.0, nxt - time.monotonic()))

    def set_live(self, names):
        with self.lock:
            self.live = set(names)


def full_pull_bytes(a: Agent) -> tuple[int, int]:
    """(records, bytes of key + wire-encoded entry over every record)."""
    r = http_get(a.http, "/v1/kv-export", timeout=60)
    n = b = 0
    for line in r[1].decode().splitlines():
        e = json.loads(line)
        n += 1
        b += len(e["key"].encode()) + len(base64.b64decode(e["entry"]))
    return n, b


def catch_up(c: Agent, want: set[str], timeout: float) -> dict:
    t0 = c.t_spawn
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        have = c.keys()
        if want <= have:
            t = time.monotonic() - t0
            return {"converged_s": t,
                    "bytes_in": c.metric("rumor_udp_received_bytes_total")
                    + c.metric("rumor_stream_received_bytes_total"),
                    "kv_applied": c.metric("rumor_kv_applied_total")}
        time.sleep(0.1)
    raise RuntimeError(f"{c.name} did not converge in {timeout} s: "
                       f"missing {len(want - c.keys())} keys")


def phase_catchup(args) -> dict:
    root = temp_dir("cu")
    dirs = {n: os.path.join(root, n) for n in "abc"}
    a = Agent("a", dirs["a"], "always")
    a.wait_healthy()
    b = Agent("b", dirs["b"], "always", join=[a.gossip])
    c = Agent("c", dirs["c"], "always", join=[a.gossip])
    for x in (b, c):
        x.wait_healthy()
    agents = [a, b, c]
    t = time.monotonic()
    base = preload(a, args.preload)
    log(f"preloaded {len(base)} keys through a in {time.monotonic() - t:.1f} s")
    end = time.monotonic() + 120
    while len(c.keys()) < len(base):
        if time.monotonic() > end:
            raise RuntimeError("the preload never reached c")
        time.sleep(0.5)
    w = Writer(agents, args.rate)
    w.acked = list(base)
    w.start()
    log(f"writer at {args.rate}/s over a, b, c; {args.warm} s before the kill")
    time.sleep(args.warm)
    res = {}
    for variant in (["data dir"] if args.no_memory_restart else ["data dir", "no data dir"]):
        w.set_live(["a", "b"])
        time.sleep(0.05)
        c.kill9()
        log(f"kill -9 c; {args.down} s down")
        time.sleep(args.down)
        w.stop_ev.set()
        w.join()
        want = set(w.acked)
        n, full = full_pull_bytes(a)
        if variant == "data dir":
            c = Agent("c", dirs["c"], "always", join=[a.gossip], gossip_port=c.gossip)
        else:
            c = Agent("c", None, None, join=[a.gossip], gossip_port=c.gossip)
        r = catch_up(c, want, timeout=300)
        r.update(records=n, full_pull_bytes=full, acked=len(want))
        log(f"c restarted ({variant}): holds all {len(want)} acked keys after "
            f"{r['converged_s']:.2f} s; {r['bytes_in']:.0f} bytes in, "
            f"{r['kv_applied']:.0f} records applied; a full pull is {n} records, {full} bytes")
        res[variant] = r
        if variant == "data dir" and not args.no_memory_restart:
            # Writes resume for the second round: the same down time.
            agents[2] = c
            w = Writer(agents, args.rate, first=w.i)
            w.acked = list(want)
            w.start()
            time.sleep(args.warm)
    for x in [a, b, c]:
        x.stop()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("phases", nargs="*", default=["writes", "startup", "catchup"],
                    help="writes, startup, catchup (default: all)")
    ap.add_argument("--secs", type=float, default=10.0, help="seconds per write-loop cell")
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--client", choices=["rust", "python"], default="rust",
                    help="HTTP write client: kv_write_bench http (default) or Python processes")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3, help="agent starts on the big data dir")
    ap.add_argument("--preload", type=int, default=20_000,
                    help="keys in the cluster before the catch-up writer starts")
    ap.add_argument("--rate", type=float, default=100.0, help="catch-up writer, PUT/s")
    ap.add_argument("--warm", type=float, default=30.0, help="seconds of writes before the kill")
    ap.add_argument("--down", type=float, default=60.0, help="seconds the agent stays down")
    ap.add_argument("--no-memory-restart", action="store_true",
                    help="skip the second restart without a data dir")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if not os.path.exists(RUMOR):
        log(f"{RUMOR} missing: cargo build --release -p rumor-cli")
        return 1
    needs_example = "startup" in args.phases or ("writes" in args.phases and args.client == "rust")
    if needs_example and not os.path.exists(KV_BENCH):
        log(f"{KV_BENCH} missing: cargo build --release -p rumor --example kv_write_bench")
        return 1
    atexit.register(cleanup)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    results = {}
    try:
        for ph in args.phases:
            log(f"phase {ph}")
            results[ph] = {"writes": phase_writes, "startup": phase_startup,
                           "catchup": phase_catchup}[ph](args)
    finally:
        cleanup()
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
