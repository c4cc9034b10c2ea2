#!/usr/bin/env python3
"""Build the `rumor` binary we ship and benchmark: static, profile-guided,
with the code that runs laid out together.

    python3 scripts/build-release.py [--out target/release-pgo/rumor]

Three steps (standard library only; needs rustup, ~10 minutes on 2 cores):

1. an instrumented build (`-Cprofile-generate`) for x86_64-unknown-linux-musl;
2. a short, generic agent workload (`train`): five agents on loopback,
   each started from a config file (tags, `[limits]`, on two of them an
   API token), join, exchange user events and key writes, serve the HTTP
   API, one is paused and resumes, then all leave; each agent writes its
   own profile as it exits;
3. the final build with the merged profile (`-Cprofile-use`), statically
   linked (musl, non-PIE) by rust-lld, with every function the workload ran
   placed first (`--symbol-ordering-file`): first what most agents ran,
   then what fewer did (their roles); linked twice: the second time
   with the names the first link saw, and between the two groups the
   standard library's and libc's functions that one agent ran under
   callgrind in a second training run (valgrind is installed with apt-get
   when missing and we are root; without it that part is skipped).

Why: an agent's resident memory is mostly the pages of its binary that it
touches, and the kernel maps code 64 KiB around each page fault. With the
code that runs scattered across 9.5 MB of text, a glibc build keeps about
4.5 MB of it resident plus 1.7 MB of shared libraries; clustered, about
2.5 MB. docs/benchmarks.md has the measurements.
"""

import argparse
import bisect
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "x86_64-unknown-linux-musl"
WORK = os.path.join(REPO, "target", "pgo")
# Ports of the training agents: gossip BASE+i, HTTP BASE+100+i (below the
# benchmark's default 24000 and Linux's ephemeral range).
BASE = 23000


class BuildError(Exception):
    pass


def log(msg):
    print(f"build-release: {msg}", file=sys.stderr, flush=True)


def run(argv, env=None, **kw):
    r = subprocess.run(argv, cwd=REPO, env=env, **kw)
    if r.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed (exit {r.returncode})")
    return r


def host_tools():
    """The host's llvm-profdata and gcc-ld (for rust-lld) from the toolchain."""
    if shutil.which("rustup") is None:
        raise BuildError("rustup is needed to add the musl target and llvm-tools")
    run(["rustup", "target", "add", TARGET], capture_output=True)
    run(["rustup", "component", "add", "llvm-tools"], capture_output=True)
    sysroot = run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    info = run(["rustc", "-vV"], capture_output=True, text=True).stdout
    host = re.search(r"^host: (\S+)", info, re.M).group(1)
    bin_dir = os.path.join(sysroot, "lib", "rustlib", host, "bin")
    profdata, gcc_ld = os.path.join(bin_dir, "llvm-profdata"), os.path.join(bin_dir, "gcc-ld")
    for p in (profdata, os.path.join(gcc_ld, "ld.lld")):
        if not os.path.exists(p):
            raise BuildError(f"{p} is missing from the toolchain")
    return profdata, gcc_ld


def cargo_build(target_dir, rustflags):
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir, RUSTFLAGS=" ".join(rustflags))
    # The settings this build was tuned and measured with, not the plain
    # release profile's (fat LTO, one codegen unit, the agent's crate at
    # opt-level "s"): its layout comes from the profile and the symbol order.
    tuned = ["profile.release.lto=false", "profile.release.codegen-units=16",
             "profile.release.debug=1", "profile.release.package.rumor-cli.opt-level=3"]
    config = [arg for c in tuned for arg in ("--config", c)]
    run(["cargo", "build", "--release", "-p", "rumor-cli", "--target", TARGET, *config], env=env)
    return os.path.join(target_dir, TARGET, "release", "rumor")


def token(port):
    """The bearer token of the training agent serving `port`, if it has one."""
    i = port - BASE - 100
    return f"train-token-{i}" if i % 2 else None


def http(port, path, method="GET", body=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token(port):
        req.add_header("Authorization", f"Bearer {token(port)}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def train(binary, n=5, observe=None):
    """The generic workload the profile is taken from. `observe`, if given,
    is a command prefix (valgrind) that agent 1 runs under."""
    logs = os.path.join(WORK, "train-logs")
    os.makedirs(logs, exist_ok=True)
    procs = []
    try:
        for i in range(n):
            argv = [binary, "agent", "--name", f"train{i}", "--bind", f"127.0.0.1:{BASE + i}",
                    "--http", f"127.0.0.1:{BASE + 100 + i}", "--profile", "lan", "--log-json",
                    "--config", config_file(logs, i)]
            if i > 0:
                argv += ["--join", f"127.0.0.1:{BASE}"]
            if observe and i == 1:
                argv = observe + argv
            # One raw profile per agent: `ordering` puts first what all of them ran.
            env = dict(os.environ, RUMOR_LOG="info",
                       LLVM_PROFILE_FILE=os.path.join(WORK, "profiles", f"train{i}.profraw"))
            with open(os.path.join(logs, f"train{i}.log"), "w") as out:
                procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env))
            wait_healthy(procs[-1], BASE + 100 + i, logs, i)
        deadline = time.monotonic() + 30
        while len(json.loads(http(BASE + 100 + n - 1, "/v1/members?status=alive"))) < n:
            if time.monotonic() > deadline:
                raise BuildError("training cluster did not converge in 30 s")
            time.sleep(0.2)
        stream = urllib.request.urlopen(f"http://127.0.0.1:{BASE + 102}/v1/events", timeout=30)
        http(BASE + 101, "/v1/members")  # a read, with the token of a write
        for k in range(10):
            event = json.dumps({"name": f"train-{k}", "payload": "x"}).encode()
            http(BASE + 101, "/v1/event", "POST", event)
            http(BASE + 103, f"/v1/kv/train/{k}", "PUT", str(k).encode())
            http(BASE + 104, "/v1/members")
            for i in range(n):  # every agent is scraped
                http(BASE + 100 + i, "/metrics")
            time.sleep(0.5)
        stream.close()
        procs[-1].send_signal(signal.SIGSTOP)
        time.sleep(3)
        procs[-1].send_signal(signal.SIGCONT)
        time.sleep(10)
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def config_file(logs, i):
    """A config file as deployments write one: tags, a leave bound, a few
    `[limits]`, and on odd agents an API token (the training's requests send it)."""
    path = os.path.join(logs, f"train{i}.toml")
    with open(path, "w") as f:
        f.write('leave_timeout = "5s"\n')
        if token(BASE + 100 + i):
            f.write(f'http_token = "{token(BASE + 100 + i)}"\n')
        f.write(f'[tags]\nrole = "train"\nzone = "z{i % 2}"\n')
        f.write("[limits]\nmax_members = 10000\nmax_streams_per_source = 64\n")
    return path


def wait_healthy(proc, port, logs, i):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BuildError(f"training agent {i} exited ({proc.returncode}); see {logs}/train{i}.log")
        try:
            http(port, "/v1/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise BuildError(f"training agent {i} did not answer on :{port}; see {logs}/train{i}.log")


def counts(profdata_tool, profile):
    """{function: its largest block count} of a profile."""
    shown = run([profdata_tool, "show", "--all-functions", "--counts", profile],
                capture_output=True, text=True).stdout
    counts, name = {}, None
    for line in shown.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.endswith(":"):
            name = line.strip()[:-1].split(";")[-1]  # "file;symbol" for local symbols
        elif name and line.strip().startswith("Block counts: ["):
            nums = [int(x) for x in line.split("[", 1)[1].rstrip("]").split(",") if x.strip()]
            counts[name] = max(counts.get(name, 0), max(nums, default=0))
    return counts


def ordering(profdata_tool, merged, per_agent):
    """Every function the workload ran, in two groups, most-run first in
    each: what most agents ran (start, join, gossip, probes, metrics, leave:
    what any agent runs), then what fewer did (the training's roles: the
    seed, sending events, writing keys, an event stream, being paused). An
    idle agent then keeps the first group resident and little of the second."""
    total = counts(profdata_tool, merged)
    ran = [n for n, c in total.items() if c > 0]
    agents = {n: 0 for n in ran}
    for profile in per_agent:
        for n, c in counts(profdata_tool, profile).items():
            if c > 0 and n in agents:
                agents[n] += 1
    ran.sort(key=lambda n: -total[n])
    common = [n for n in ran if 2 * agents[n] > len(per_agent)]
    return common, [n for n in ran if 2 * agents[n] <= len(per_agent)]


def valgrind():
    """valgrind, installed with apt-get when missing and we may; else None."""
    if shutil.which("valgrind") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("apt-get install -y valgrind")
        subprocess.run(["apt-get", "install", "-y", "valgrind"], capture_output=True, timeout=600)
    return shutil.which("valgrind")


def executed(binary):
    """Every function one agent of the training workload ran, as callgrind
    saw it: the standard library's and libc's included, which the profile
    does not cover (they are not instrumented)."""
    vg = valgrind()
    if vg is None:
        log("no valgrind: the standard library's functions stay where the linker puts them")
        return []
    out = os.path.join(WORK, "callgrind.out")
    train(binary, observe=[vg, "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}"])
    # Functions without a size (musl's assembly: memcpy, memset, _start, ...)
    # are named by address; recursive calls get a "'2" suffix.
    nm = run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout
    starts = sorted((int(p[0], 16), p[2]) for p in (line.split() for line in nm.splitlines())
                    if len(p) == 3 and p[1] in "tTwW")
    names = []
    with open(out) as f:
        for line in f:
            m = re.match(r"c?fn=\(\d+\) (.+)", line)
            if m:
                name = re.sub(r"'\d+$", "", m.group(1).strip())
                if re.fullmatch(r"0x[0-9a-f]+", name):
                    i = bisect.bisect_right(starts, (int(name, 16), "\U0010ffff")) - 1
                    name = starts[i][1] if i >= 0 else name
                names.append(name)
    return names


def link_names(groups, binary):
    """The ordering with the names the linker sees, group after group: a
    group is (names, exact). ThinLTO renames the local functions it promotes
    (`name.llvm.12345`), so a profile name matches the binary's symbols once
    that suffix is taken off; exact names (callgrind's) are kept if defined."""
    nm = run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout
    by_base, present = {}, set()
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":  # musl's malloc, mmap, ... are weak
            by_base.setdefault(parts[2].split(".llvm.")[0], []).append(parts[2])
            present.add(parts[2])
    found = {}
    for names, exact in groups:
        for n in names:
            for a in ([n] if n in present else []) if exact else by_base.get(n, []):
                found.setdefault(a, None)
    return list(found)


def write_lines(path, lines):
    with open(path, "w") as f:
        f.writelines(n + "\n" for n in lines)
    return len(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(REPO, "target", "release-pgo", "rumor"))
    args = p.parse_args()
    try:
        profdata_tool, gcc_ld = host_tools()
        profiles = os.path.join(WORK, "profiles")
        shutil.rmtree(profiles, ignore_errors=True)
        log("1/3 instrumented build")
        instrumented = cargo_build(os.path.join(WORK, "gen"), [f"-Cprofile-generate={profiles}"])
        log("2/3 training workload")
        train(instrumented)
        raws = sorted(glob.glob(os.path.join(profiles, "*.profraw")))
        if not raws:
            raise BuildError(f"the training run wrote no profile under {profiles}")
        merged = os.path.join(WORK, "merged.profdata")
        run([profdata_tool, "merge", "-o", merged, *raws])
        per_agent = []
        for raw in raws:
            per_agent.append(raw[: -len(".profraw")] + ".profdata")
            run([profdata_tool, "merge", "-o", per_agent[-1], raw])
        common, rest = ordering(profdata_tool, merged, per_agent)
        order = os.path.join(WORK, "order.txt")
        write_lines(order, common + rest)
        log(f"{len(common) + len(rest)} functions ran in training, {len(common)} in most agents")
        log("3/3 optimised build")
        flags = [
            f"-Cprofile-use={merged}",
            "-Crelocation-model=static",
            "-Clink-arg=-fuse-ld=lld",
            f"-Clink-arg=-B{gcc_ld}",
            f"-Clink-arg=-Wl,--symbol-ordering-file={order}",
            "-Clink-arg=-Wl,--no-warn-symbol-ordering",
        ]
        # cargo does not see a new profile under the same path: start clean.
        shutil.rmtree(os.path.join(WORK, "use"), ignore_errors=True)
        final = cargo_build(os.path.join(WORK, "use"), flags)
        # Link once more with the names as they came out of this build.
        log("training again, one agent under callgrind")
        extra = executed(final)
        # callgrind's names the profile lacks: the standard library's and
        # musl's, which are not instrumented (one agent's: placed with the
        # first group, which holds most of their callers).
        profiled = set(common) | set(rest)
        extra = [n for n in extra if n.split(".llvm.")[0] not in profiled]
        linked = link_names([(common, False), (extra, True), (rest, False)], final)
        log(f"relinking with {write_lines(order, linked)} symbols in order")
        deps = os.path.join(os.path.dirname(final), "deps")
        for f in [final, *glob.glob(os.path.join(deps, "rumor-*"))]:
            if "." not in os.path.basename(f):  # the binaries, not .d files
                os.remove(f)
        final = cargo_build(os.path.join(WORK, "use"), flags)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        shutil.copy2(final, args.out)
        log(f"built {args.out}")
        print(args.out)
    except (BuildError, OSError) as e:
        print(f"build-release: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
