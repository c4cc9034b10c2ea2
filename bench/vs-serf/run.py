#!/usr/bin/env python3
"""rumor vs. HashiCorp Serf: the same phases on N local agents of each system.

Python 3.11 standard library only. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import datetime as dt
import fcntl
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PIPE_BYTES = 1 << 20  # each agent's stdout pipe (Linux's default maximum)
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A phase could not run; the message says why."""


# --------------------------------------------------------------------------
# Every process the harness starts is registered here and killed on exit.

_PROCS: list[subprocess.Popen] = []
_PROCS_LOCK = threading.Lock()
_CLEANUPS: list = []


def register(p: subprocess.Popen) -> None:
    with _PROCS_LOCK:
        _PROCS.append(p)


def kill_all() -> None:
    with _PROCS_LOCK:
        procs = list(_PROCS)
        _PROCS.clear()
    for p in procs:
        if p.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    break
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    while _CLEANUPS:
        fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup failed: {e}")


def _on_signal(signum, _frame):
    log(f"signal {signum}: killing all agents")
    kill_all()
    sys.exit(130 if signum == signal.SIGINT else 143)


# --------------------------------------------------------------------------
# Agents: one process, one reader thread stamping each output line on arrival.


class Event:
    __slots__ = ("t", "agent", "kind", "member", "extra")

    def __init__(self, t, agent, kind, member, extra=None):
        self.t, self.agent, self.kind, self.member, self.extra = t, agent, kind, member, extra


class Hub:
    """All parsed events of one system's cluster, with a condition to wait on."""

    STATUS = {"join": "alive", "alive": "alive", "update": "alive", "suspect": "suspect",
              "failed": "failed", "left": "left", "reap": "left"}

    def __init__(self, n):
        self.n = n
        self.cv = threading.Condition()
        self.events: list[Event] = []
        # agent -> member -> last status that agent reported (kept up to date
        # here so that waiting on it costs O(N), not a rescan of all events)
        self.view: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.exited: set[str] = set()
        self.alive_count: collections.Counter = collections.Counter()  # others seen alive
        self.full: set[str] = set()  # agents that see all n - 1 others alive

    def add(self, *evs: Event) -> None:
        """Record events (one lock and one wake-up for the lot)."""
        with self.cv:
            for ev in evs:
                self._apply(ev)
            self.cv.notify_all()

    def _apply(self, ev: Event) -> None:
        self.events.append(ev)
        st = self.STATUS.get(ev.kind)
        if st:
            old = self.view[ev.agent].get(ev.member)
            self.view[ev.agent][ev.member] = st
            if ev.member != ev.agent:
                self.alive_count[ev.agent] += (st == "alive") - (old == "alive")
                if self.alive_count[ev.agent] >= self.n - 1:
                    self.full.add(ev.agent)
                else:
                    self.full.discard(ev.agent)
        elif ev.kind == "exited":
            self.exited.add(ev.agent)

    def since(self, t0: float) -> list[Event]:
        with self.cv:
            return [e for e in self.events if e.t >= t0]

    def wait_for(self, pred, timeout: float) -> bool:
        """Wait until pred() (called under the lock) is true; bounded."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                if pred():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 0.5))


class Agent:
    def __init__(self, system, idx, name, argv, logdir, hub, env=None):
        self.system, self.idx, self.name, self.argv = system, idx, name, argv
        self.hub = hub
        self.logpath = os.path.join(logdir, f"{name}.log")
        self.tail = collections.deque(maxlen=40)
        self.proc: subprocess.Popen | None = None
        self.ready = threading.Event()
        self.env = env
        self.gossip_port = 0
        self.api_port = 0

    def start(self, read=True):
        """Spawn the agent; with `read`, also start reading its output (else
        call `read()` soon: the pipe holds up to PIPE_BYTES meanwhile)."""
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal Ctrl-C reaches the harness only
            env=self.env,
        )
        register(self.proc)
        try:
            fcntl.fcntl(self.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the default 64 KiB: enough for a few hundred log lines
        self.reader = threading.Thread(target=self._read, daemon=True, name=f"read-{self.name}")
        if read:
            self.read()

    def read(self):
        """Start the reader thread (once)."""
        if self.reader.ident is None:
            self.reader.start()

    def _read(self):
        # Whatever one read returns arrived by then: its lines share one
        # stamp, one log write and one hub update (line by line, 128 agents'
        # joins took the harness ~0.8 s to digest).
        parse = self.system.parse_line
        fd = self.proc.stdout.fileno()
        partial = b""
        with open(self.logpath, "w") as out:
            while True:
                chunk = os.read(fd, 1 << 16)
                t = time.monotonic()
                if not chunk:
                    break
                *lines, partial = (partial + chunk).split(b"\n")
                events = []
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    out.write(f"{t:.3f} {line}\n")
                    self.tail.append(line)
                    try:
                        for kind, member, extra in parse(self, line):
                            if kind == "ready":
                                self.ready.set()
                            else:
                                events.append(Event(t, self.name, kind, member, extra))
                    except Exception as e:  # noqa: BLE001 - a bad line must not kill the reader
                        out.write(f"# parse error: {e}\n")
                out.flush()
                if events:
                    self.hub.add(*events)
            if partial:
                out.write(f"{time.monotonic():.3f} {partial.decode('utf-8', 'replace')}\n")
        self.hub.add(Event(time.monotonic(), self.name, "exited", self.name))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def log_tail(self, n=15):
        if self.proc is not None and self.proc.poll() is not None:
            self.read()
            self.reader.join(timeout=2)  # let the reader take the last lines
        return "\n".join(f"    {l}" for l in list(self.tail)[-n:])


def proc_stats(pid: int):
    """(cpu seconds, rss bytes, private anonymous bytes) of a process, or
    None if gone. RSS counts the shared code pages of the binary and libc;
    RssAnon is the memory the agent itself allocated (heap, stacks)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        fields = st[st.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss = anon = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
        return cpu, rss, anon
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------
# Network accounting: iptables counters on loopback, per gossip port.


class NetCounter:
    """Counts what the agents send over loopback with iptables (IPv4 OUTPUT).

    One rule per agent for UDP with source port = its gossip port (memberlist
    and rumor send every datagram from the bound socket), and two for TCP
    (source port = gossip port: answers of its listener; destination port =
    gossip port: what others send to it). Each loopback packet crosses OUTPUT
    once and matches one rule, so the cluster's total is exact; per agent we
    report the mean. Bytes include IP and UDP/TCP headers.
    """

    def __init__(self, tag):
        self.chain = f"RBENCH{os.getpid()}{tag}"[:28]
        self.ok = False
        self.why = ""
        ipt = shutil.which("iptables")
        if not ipt:
            self.why = "iptables not installed"
            return
        if os.geteuid() != 0:
            self.why = "not root"
            return
        self.ipt = ipt
        r = self._run("-N", self.chain)
        if r.returncode != 0:
            self.why = f"iptables -N failed: {r.stderr.strip()}"
            return
        r = self._run("-I", "OUTPUT", "-o", "lo", "-j", self.chain)
        if r.returncode != 0:
            self._run("-X", self.chain)
            self.why = f"iptables -I failed: {r.stderr.strip()}"
            return
        self.ok = True
        _CLEANUPS.append(self.remove)

    def _run(self, *args):
        return subprocess.run([self.ipt, "-w", "5", *args], capture_output=True, text=True, timeout=30)

    def add_ports(self, ports):
        if not self.ok:
            return
        lines = [f"*filter", f":{self.chain} - [0:0]"]
        # Each packet is counted once, at the first rule it matches (RETURN):
        # UDP by destination port (every gossip datagram goes to some agent's
        # gossip port, whatever socket sent it), TCP by either end.
        for p in ports:
            lines.append(f"-A {self.chain} -p udp --dport {p} -j RETURN")
        for p in ports:
            lines.append(f"-A {self.chain} -p tcp --dport {p} -j RETURN")
            lines.append(f"-A {self.chain} -p tcp --sport {p} -j RETURN")
        # anything else on loopback from or to these agents' UDP ports (should be 0)
        for p in ports:
            lines.append(f"-A {self.chain} -p udp --sport {p} -j RETURN")
        lines.append("COMMIT")
        # --noflush keeps the rest of the table; the chain line resets only ours.
        r = subprocess.run(
            ["iptables-restore", "--noflush", "-w", "5"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            self.ok = False
            self.why = f"iptables-restore failed: {r.stderr.strip()}"

    def read(self):
        """{'udp': (pkts, bytes), 'tcp': (pkts, bytes)} totals, or None."""
        if not self.ok:
            return None
        r = self._run("-L", self.chain, "-n", "-v", "-x")
        tot = {"udp": [0, 0], "tcp": [0, 0]}
        for line in r.stdout.splitlines():
            f = line.split()
            # the target is RETURN, the protocol the fourth column
            proto = next((x for x in f[2:4] if x in ("udp", "tcp", "17", "6")), None) if len(f) >= 4 else None
            if f and f[0].isdigit() and proto:
                proto = "udp" if proto in ("udp", "17") else "tcp"
                tot[proto][0] += int(f[0])
                tot[proto][1] += int(f[1])
        return {k: tuple(v) for k, v in tot.items()}

    def remove(self):
        if not self.ok and not getattr(self, "ipt", None):
            return
        self._run("-D", "OUTPUT", "-o", "lo", "-j", self.chain)
        self._run("-F", self.chain)
        self._run("-X", self.chain)
        self.ok = False


class LossRules:
    """Random loss on the gossip ports of one system's agents, for the loss
    phase: every loopback packet from 127.0.0.1 to 127.0.0.1 whose UDP
    destination port, or TCP source or destination port, is a gossip port
    is dropped with probability `p` as it arrives (INPUT on lo; each packet
    crosses INPUT once, so each is dropped at most once). Agent-to-agent
    TCP always has a gossip port at one end (the listener), so both
    directions of every stream are hit. Nothing else is touched: not the
    HTTP/RPC ports, not other addresses. The rules go on `remove()` and on
    exit, Ctrl-C included (registered with the harness's cleanups).
    """

    def __init__(self, tag, ports, p):
        self.chain = f"RLOSS{os.getpid()}{tag}"[:28]
        self.drop = (self.chain[:24] + "DROP")[:28]
        self.ok = False
        self.why = ""
        self.ipt = shutil.which("iptables")
        if not self.ipt:
            self.why = "iptables not installed"
            return
        if os.geteuid() != 0:
            self.why = "not root"
            return
        lines = ["*filter", f":{self.chain} - [0:0]", f":{self.drop} - [0:0]",
                 f"-A {self.drop} -m statistic --mode random --probability {p:.6f} -j DROP"]
        # -g: a packet goes to the drop chain at its first matching rule and
        # never comes back to this one, so no packet gets two draws.
        for port in ports:
            lines.append(f"-A {self.chain} -p udp --dport {port} -g {self.drop}")
            lines.append(f"-A {self.chain} -p tcp --dport {port} -g {self.drop}")
            lines.append(f"-A {self.chain} -p tcp --sport {port} -g {self.drop}")
        lines.append("COMMIT")
        _CLEANUPS.append(self.remove)
        r = subprocess.run(["iptables-restore", "--noflush", "-w", "5"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.why = f"iptables-restore failed: {r.stderr.strip()}"
            self.remove()
            return
        r = self._run("-I", "INPUT", "-i", "lo", "-s", "127.0.0.1/32", "-d", "127.0.0.1/32", "-j", self.chain)
        if r.returncode != 0:
            self.why = f"iptables -I INPUT failed: {r.stderr.strip()}"
            self.remove()
            return
        self.ok = True

    def _run(self, *args):
        return subprocess.run([self.ipt, "-w", "5", *args], capture_output=True, text=True, timeout=30)

    def dropped(self):
        """Packets the drop rule dropped so far."""
        r = self._run("-L", self.drop, "-n", "-v", "-x")
        return sum(int(f[0]) for f in (line.split() for line in r.stdout.splitlines())
                   if len(f) > 2 and f[0].isdigit() and f[2] == "DROP")

    def remove(self):
        if not self.ipt:
            return
        self._run("-D", "INPUT", "-i", "lo", "-s", "127.0.0.1/32", "-d", "127.0.0.1/32", "-j", self.chain)
        for c in (self.chain, self.drop):
            self._run("-F", c)
        for c in (self.chain, self.drop):
            self._run("-X", c)
        self.ok = False
        self.ipt = None


# --------------------------------------------------------------------------
# The two systems: how to start an agent, read its log, send a user event.

SERF_LINE = re.compile(r"\[(\w+)\] ([\w.]+): (.*)$")
# Serf's log writer is not line-atomic: under load two records can arrive
# on one line ("... EventMemberJoin: a 127.0.0.1    2026/11/22 05:54:26
# [INFO] serf: EventMemberJoin: b ..."). Split before each timestamp.
SERF_RECORD = re.compile(r"(?=\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[)")
# `serf query` (text format): "Ack from 'serf001'", "Response from 'serf001': ok"
SERF_QUERY_LINE = re.compile(r"^(Ack|Response) from '([^']*)'")


class Serf:
    label = "Serf"
    key = "serf"

    # Serf's internal ping query: every agent acks it, none responds
    ping_query = "_serf_ping"
    ping_responds = False

    def __init__(self, binary, base_port):
        self.binary = binary
        self.base = base_port
        self.event_handlers: list[str] = []  # e.g. "query:bench=echo ok", set by main()

    def make_agent(self, i, n, logdir, hub):
        name = f"serf{i:03d}"
        gport, rport = self.base + i, self.base + 1000 + i
        argv = [
            self.binary, "agent", f"-node={name}", f"-bind=127.0.0.1:{gport}",
            f"-rpc-addr=127.0.0.1:{rport}", "-profile=lan", "-log-level=info",
        ]
        argv += [f"-event-handler={h}" for h in self.event_handlers]
        if i > 0:
            argv.append(f"-join=127.0.0.1:{self.base}")
        a = Agent(self, i, name, argv, logdir, hub)
        a.gossip_port, a.api_port = gport, rport
        return a

    def ports(self, n):
        return [self.base + i for i in range(n)] + [self.base + 1000 + i for i in range(n)]

    def parse_line(self, agent, line):
        out = []
        for record in SERF_RECORD.split(line):
            m = SERF_LINE.search(record.rstrip())
            if m:
                out += self._parse_record(agent, *m.groups())
        return out

    def _parse_record(self, agent, _lvl, comp, msg):
        if comp == "agent" and msg.startswith("Serf agent starting"):
            return [("ready", None, None)]
        if comp == "serf":
            for prefix, kind in (
                ("EventMemberJoin: ", "join"),
                ("EventMemberFailed: ", "failed"),
                ("EventMemberLeave: ", "left"),
                ("EventMemberReap: ", "reap"),
            ):
                if msg.startswith(prefix):
                    return [(kind, msg[len(prefix) :].split()[0], None)]
        if comp == "memberlist":
            # the prober that starts a suspicion logs this one line
            m2 = re.match(r"Suspect (\S+) has failed", msg)
            if m2:
                return [("suspect-origin", m2.group(1), None)]
            m2 = re.match(r"Marking (\S+) as failed", msg)
            if m2:
                return [("failed-origin", m2.group(1), None)]
            if msg.startswith("Refuting a suspect message"):
                return [("refute", agent.name, None)]
            if msg.startswith("Refuting a dead message"):
                return [("refute", agent.name, None)]
        if comp == "agent" and msg.startswith("Received event: user-event: "):
            return [("user", msg[len("Received event: user-event: ") :].split()[0], None)]
        return []

    def send_event(self, agent, name):
        r = subprocess.run(
            [self.binary, "event", f"-rpc-addr=127.0.0.1:{agent.api_port}", "-coalesce=false", name, "x"],
            capture_output=True, text=True, timeout=10,
        )
        if r.returncode != 0:
            raise BenchError(f"serf event failed: {(r.stdout + r.stderr).strip()}")

    # -- queries: `serf query` through the agent's RPC. Its text output
    # streams ("Ack from 'X'", "Response from 'X': ..." as they arrive);
    # -format json prints everything only at the deadline, so it is not used.
    def query_argv(self, agent, name, payload, timeout):
        return [self.binary, "query", f"-rpc-addr=127.0.0.1:{agent.api_port}",
                f"-timeout={timeout:g}s", name, payload]

    def parse_query_line(self, line):
        """("ack" | "response", member) or None."""
        m = SERF_QUERY_LINE.match(line)
        if m:
            return m.group(1).lower(), m.group(2)
        return None

    def suspicion_counts(self, agents):  # origins are in the log for Serf
        return None

    def refutations(self, agents):
        return None

    def extra_stats(self, agents):
        return {}


class Rumor:
    label = "rumor"
    key = "rumor"

    # built in: every agent acks and answers it (empty answer), no handler
    ping_query = "_rumor_ping"
    ping_responds = True

    def __init__(self, binary, base_port):
        self.binary = binary
        self.base = base_port
        self.sse_threads: list = []
        self.event_handlers: list[str] = []  # e.g. "query:bench=echo ok", set by main()
        self.protocol: list[str] = []  # "key = value" lines for [protocol] (--rumor-protocol)

    def make_agent(self, i, n, logdir, hub):
        name = f"rumor{i:03d}"
        gport, hport = self.base + i, self.base + 1000 + i
        argv = [
            self.binary, "agent", "--name", name, "--bind", f"127.0.0.1:{gport}",
            "--http", f"127.0.0.1:{hport}", "--profile", "lan", "--log-json",
        ]
        for h in self.event_handlers:
            argv += ["--event-handler", h]
        if i > 0:
            argv += ["--join", f"127.0.0.1:{self.base}"]
        # Every agent here shares 127.0.0.1, where on a network each host has
        # its own address: lift the per-address stream cap (16 by default)
        # that would otherwise refuse the joins of 128 agents started at once.
        conf = os.path.join(logdir, "rumor-limits.toml")
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                f.write("[limits]\nmax_streams_per_source = 4096\n")
                if self.protocol:
                    f.write("[protocol]\n" + "".join(f"{kv}\n" for kv in self.protocol))
        argv += ["--config", conf]
        env = dict(os.environ)
        env["RUMOR_LOG"] = "info"
        env.pop("RUMOR_CONFIG", None)
        a = Agent(self, i, name, argv, logdir, hub, env=env)
        a.gossip_port, a.api_port = gport, hport
        return a

    def ports(self, n):
        return [self.base + i for i in range(n)] + [self.base + 1000 + i for i in range(n)]

    KINDS = {
        "Joined": "join", "Failed": "failed", "Left": "left", "Reaped": "reap",
        "Suspect": "suspect", "Alive": "alive", "Updated": "update",
    }

    def parse_line(self, agent, line):
        try:
            j = json.loads(line)
        except ValueError:
            return []
        f = j.get("fields", j) if isinstance(j, dict) else {}
        msg = f.get("message", "")
        if msg == "agent started":
            return [("ready", None, None)]
        if msg == "member event":
            kind = self.KINDS.get(str(f.get("event")), str(f.get("event")).lower())
            return [(kind, f.get("member"), f.get("incarnation"))]
        # "suspicion of X raised by Y: cause": Y == this agent when its own
        # probe started it (Serf's "Suspect X has failed" line)
        if msg.startswith("suspicion of ") and f.get("accuser") == agent.name:
            return [("suspect-origin", f.get("member"), None)]
        # a user event, should the library ever log it: any line naming a bench event
        for v in f.values():
            if isinstance(v, str) and "bench-ev-" in v:
                m = re.search(r"bench-ev-[\w-]+", v)
                return [("user", m.group(0), None)]
        return []

    # -- queries: `rumor query --json`, one NDJSON line per ack and answer as
    # it arrives (dispatched / ack / response / done; docs/http-api.md)
    def query_argv(self, agent, name, payload, timeout):
        argv = [self.binary, "query", "--http", f"127.0.0.1:{agent.api_port}", "--json",
                "--timeout", f"{timeout:g}s", name]
        return argv + [payload] if payload else argv

    def parse_query_line(self, line):
        """("ack" | "response", member) or None."""
        try:
            j = json.loads(line)
        except ValueError:
            return None
        if isinstance(j, dict) and j.get("type") in ("ack", "response") and isinstance(j.get("from"), str):
            return j["type"], j["from"]
        return None

    # -- user events: POST /v1/event, received through each agent's SSE stream
    def send_event(self, agent, name):
        body = json.dumps({"name": name, "payload": "x"}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{agent.api_port}/v1/event", data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise BenchError(f"POST /v1/event answered {e.code}: {e.read().decode(errors='replace').strip()}")
        except OSError as e:
            raise BenchError(f"POST /v1/event failed: {e}")

    def open_streams(self, agents, hub, stop: threading.Event):
        """One SSE reader per agent; any event whose data names a bench event counts."""
        opened = threading.Barrier(len(agents) + 1, timeout=30)

        def reader(a):
            try:
                resp = urllib.request.urlopen(f"http://127.0.0.1:{a.api_port}/v1/events", timeout=5)
            except OSError as e:
                log(f"{a.name}: cannot open /v1/events: {e}")
                try:
                    opened.wait()
                except threading.BrokenBarrierError:
                    pass
                return
            try:
                opened.wait()
            except threading.BrokenBarrierError:
                pass
            try:
                while not stop.is_set():
                    try:
                        line = resp.readline()
                    except (TimeoutError, socket.timeout):
                        continue
                    if not line:
                        break
                    t = time.monotonic()
                    s = line.decode("utf-8", "replace")
                    if s.startswith("data:") and "bench-ev-" in s:
                        m = re.search(r"bench-ev-[\w-]+", s)
                        hub.add(Event(t, a.name, "user", m.group(0), None))
            except OSError:
                pass
            finally:
                resp.close()

        threads = [threading.Thread(target=reader, args=(a,), daemon=True) for a in agents]
        for th in threads:
            th.start()
        try:
            opened.wait()
        except threading.BrokenBarrierError:
            log("some event streams did not open within 30 s")
        return threads

    def _metrics(self, a):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{a.api_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
            if m:
                key = m.group(1)
                try:
                    out[key] = out.get(key, 0.0) + float(m.group(3))
                except ValueError:
                    pass
        return out

    def metric(self, agents, name):
        """{agent name: value of metric `name`} (summed over labels)."""
        res = {}
        for a in agents:
            if a.alive():
                m = self._metrics(a)
                if m is not None:
                    res[a.name] = m.get(name, 0.0)
        return res

    def extra_stats(self, agents):
        """rumor's own counters of what it sent (payload bytes, no IP headers)."""
        res = {"rumor_wire_bytes_out": {}, "rumor_udp_sent_packets_total": {}}
        for a in agents:
            m = self._metrics(a) if a.alive() else None
            if m is None:
                continue
            res["rumor_wire_bytes_out"][a.name] = (
                m.get("rumor_udp_sent_bytes_total", 0.0) + m.get("rumor_stream_sent_bytes_total", 0.0))
            res["rumor_udp_sent_packets_total"][a.name] = m.get("rumor_udp_sent_packets_total", 0.0)
        return res


# --------------------------------------------------------------------------
# One system, all phases.


def wait_ports_free(ports, timeout=30):
    deadline = time.monotonic() + timeout
    busy = []
    while time.monotonic() < deadline:
        busy = []
        for p in ports:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    busy.append(p)
                finally:
                    s.close()
        if not busy:
            return
        time.sleep(0.5)
    raise BenchError(f"ports in use: {sorted(set(busy))[:10]} (choose another --base-port)")


def median(xs):
    return statistics.median(xs) if xs else None


class Run:
    def __init__(self, system, n, args, outdir):
        self.sys, self.n, self.args = system, n, args
        self.logdir = os.path.join(outdir, f"{system.key}-{n}")
        os.makedirs(self.logdir, exist_ok=True)
        self.hub = Hub(n)
        self.agents: list[Agent] = []
        self.res: dict = {"system": system.label, "n": n, "phases": {}, "errors": [], "notes": []}
        self.dead: set[str] = set()  # agents the harness killed

    # -- helpers
    def names(self):
        return [a.name for a in self.agents]

    def by_name(self, name):
        return next(a for a in self.agents if a.name == name)

    def check_alive(self):
        for a in self.agents:
            if a.name not in self.dead and not a.alive():
                raise BenchError(
                    f"{self.sys.label} agent {a.name} exited with status {a.proc.returncode}; "
                    f"log tail ({a.logpath}):\n{a.log_tail()}"
                )

    def views(self):
        """Per agent: {member: last status it reported} (alive/suspect/failed/left)."""
        with self.hub.cv:
            v = {a.name: dict(self.hub.view.get(a.name, {})) for a in self.agents}
        for a in self.agents:
            v[a.name][a.name] = "alive"
        return v

    def record(self, phase, data):
        self.res["phases"][phase] = data
        log(f"{self.sys.label} N={self.n} {phase}: {json.dumps(data)}")

    # -- phases
    def start_cluster(self):
        n = self.n
        wait_ports_free(self.sys.ports(n))
        self.agents = [self.sys.make_agent(i, n, self.logdir, self.hub) for i in range(n)]
        seed = self.agents[0]
        seed.start()
        if not self._wait_ready([seed], 20):
            raise BenchError(f"seed {seed.name} not ready in 20 s; log tail:\n{seed.log_tail()}")
        # Readers start once all are spawned: N busy reader threads contending
        # for the GIL slowed spawning (2.4 s for 128 agents), and both systems'
        # join times included that. Lines written meanwhile wait in the pipe
        # and are stamped when read, no earlier than the last spawn; no agent
        # can list the last-spawned one before that, so the join figures are
        # unchanged by it.
        t0 = time.monotonic()
        for a in self.agents[1:]:
            a.start(read=False)
        started = time.monotonic() - t0
        for a in self.agents[1:]:
            a.read()
        ok = self._wait_ready(self.agents, 30 + n * 0.2)
        if not ok:
            self.check_alive()
            slow = [a for a in self.agents if not a.ready.is_set()]
            raise BenchError(
                f"{len(slow)} {self.sys.label} agents not ready, e.g. {slow[0].name}; log tail:\n{slow[0].log_tail()}"
            )
        # join: every agent lists all N alive
        conv = self.hub.wait_for(lambda: self._all_alive_locked(), self.args.join_timeout)
        t_all = time.monotonic() - t0
        self.check_alive()
        if not conv:
            raise BenchError(f"join did not converge within {self.args.join_timeout} s")
        # per agent: when it first saw all N alive, from the events' arrival stamps
        per = self._per_agent_full_times(t0)
        self.record("join", {
            "all_s": round(per[-1], 3) if len(per) == self.n else round(t_all, 3),
            "p90_s": round(sorted(per)[max(0, math.ceil(0.9 * len(per)) - 1)], 3) if per else None,
            "spawn_s": round(started, 3),
        })

    def _wait_ready(self, agents, timeout):
        deadline = time.monotonic() + timeout
        for a in agents:
            while not a.ready.wait(0.2):
                if not a.alive():
                    raise BenchError(
                        f"{self.sys.label} agent {a.name} exited at start (status {a.proc.returncode}); "
                        f"log tail ({a.logpath}):\n{a.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    return False
        return True

    def _all_alive_locked(self):
        # called with hub.cv held, on every event: O(1)
        if self.hub.exited:
            return True  # stop waiting; check_alive() reports it
        return len(self.hub.full) >= self.n

    def _per_agent_full_times(self, t0):
        seen = {a.name: {a.name} for a in self.agents}
        done = {}
        for e in self.hub.since(0):
            if e.kind in ("join", "alive"):
                seen[e.agent].add(e.member)
                if len(seen[e.agent]) >= self.n and e.agent not in done:
                    done[e.agent] = e.t - t0
        return sorted(done.values())

    def steady(self):
        secs = self.args.steady
        live = [a for a in self.agents if a.name not in self.dead]
        net = NetCounter(self.sys.key)
        net.add_ports([a.gossip_port for a in live])
        extra0 = self.sys.extra_stats(live)
        s0 = {a.name: proc_stats(a.pid) for a in live}
        n0 = net.read()
        t0 = time.monotonic()
        time.sleep(secs)
        self.check_alive()
        s1 = {a.name: proc_stats(a.pid) for a in live}
        n1 = net.read()
        el = time.monotonic() - t0
        extra1 = self.sys.extra_stats(live)
        net.remove()
        cpu = [s1[k][0] - s0[k][0] for k in s0 if s0[k] and s1[k]]
        rss = [s1[k][1] for k in s1 if s1[k]]
        anon = [s1[k][2] for k in s1 if s1[k]]
        n = len(live)
        d = {
            "seconds": round(el, 1),
            "cpu_s_per_agent_per_min": round(statistics.mean(cpu) * 60 / el, 4),
            "cluster_cpu_pct_of_core": round(sum(cpu) / el * 100, 2),
            "rss_mb_per_agent": round(statistics.mean(rss) / 1e6, 2),
            "rss_mb_max": round(max(rss) / 1e6, 2),
            "anon_mb_per_agent": round(statistics.mean(anon) / 1e6, 2),
        }
        if n0 and n1:
            pk = sum(n1[p][0] - n0[p][0] for p in n1)
            by = sum(n1[p][1] - n0[p][1] for p in n1)
            d["net_method"] = "iptables loopback counters (measured, incl. IP/UDP/TCP headers)"
            d["bytes_per_s_per_agent"] = round(by / el / n, 1)
            d["packets_per_s_per_agent"] = round(pk / el / n, 3)
            d["tcp_bytes_share"] = round((n1["tcp"][1] - n0["tcp"][1]) / by, 3) if by else 0
        else:
            d["net_method"] = f"unavailable: {net.why}"
        for key, label in (("rumor_wire_bytes_out", "self_reported_payload_bytes_per_s_per_agent"),
                           ("rumor_udp_sent_packets_total", "self_reported_packets_per_s_per_agent")):
            if key in extra0:
                common = [k for k in extra0[key] if k in extra1.get(key, {})]
                if common:
                    tot = sum(extra1[key][k] - extra0[key][k] for k in common)
                    d[label] = round(tot / el / len(common), 3)
        if "bytes_per_s_per_agent" not in d and "self_reported_payload_bytes_per_s_per_agent" in d:
            # estimate: payload + 28 bytes of IPv4/UDP header per datagram
            d["bytes_per_s_per_agent"] = round(
                d["self_reported_payload_bytes_per_s_per_agent"] + 28 * d["self_reported_packets_per_s_per_agent"], 1)
            d["packets_per_s_per_agent"] = d["self_reported_packets_per_s_per_agent"]
            d["net_method"] = "ESTIMATE: rumor's own counters + 28 B header per packet"
        self.record("steady", d)

    def user_events(self):
        reps = self.args.event_reps
        origin = self.agents[1]
        live = [a for a in self.agents if a.name not in self.dead]
        stop = threading.Event()
        if hasattr(self.sys, "open_streams"):
            self.sys.open_streams(live, self.hub, stop)
            time.sleep(0.5)
        half = math.ceil(len(live) / 2)
        t50, t100, got = [], [], []
        error = None
        try:
            for r in range(reps):
                name = f"bench-ev-{self.sys.key}-{self.n}-{r}-{os.getpid()}"
                t0 = time.monotonic()
                try:
                    self.sys.send_event(origin, name)
                except BenchError as e:
                    error = str(e)
                    log(f"{self.sys.label}: user event failed: {e}")
                    break
                sent = time.monotonic() - t0

                def firsts():
                    f = {}
                    for e in self.hub.events:
                        if e.kind == "user" and e.member == name and e.t >= t0 and e.agent not in f:
                            f[e.agent] = e.t - t0
                    return f

                self.hub.wait_for(lambda: len(firsts()) >= len(live), self.args.event_timeout)
                with self.hub.cv:
                    f = firsts()
                ts = sorted(f.values())
                got.append(len(ts))
                if len(ts) >= half:
                    t50.append(ts[half - 1])
                if len(ts) >= len(live):
                    t100.append(ts[-1])
                log(f"  event {r}: {len(ts)}/{len(live)} agents, "
                    f"half {ts[half - 1] if len(ts) >= half else None}, all {ts[-1] if len(ts) >= len(live) else None}"
                    f" (send took {sent:.3f} s)")
                time.sleep(1.0)
        finally:
            stop.set()
        d = {
            "reps": len(got),
            "received_min": min(got) if got else 0,
            "half_median_s": round(median(t50), 3) if t50 else None,
            "half_max_s": round(max(t50), 3) if t50 else None,
            "all_median_s": round(median(t100), 3) if len(t100) == reps else None,
            "all_max_s": round(max(t100), 3) if len(t100) == reps else None,
        }
        if error:
            d["error"] = error
        self.record("event", d)
        if error:
            self.res["errors"].append(f"user events: {error}")

    def _one_query(self, origin, name, payload, members, want_responses):
        """Ask one query through the system's CLI; stamp each output line on
        arrival. Stops (kills the CLI) once every one of `members` has acked
        and, with `want_responses`, answered; else at the CLI's own deadline
        (bounded here too). Returns the arrival times."""
        timeout = self.args.query_timeout
        argv = self.sys.query_argv(origin, name, payload, timeout)
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        register(p)
        watchdog = threading.Timer(timeout + 10, p.kill)
        watchdog.start()
        acks, resps, out = {}, {}, []
        first = None
        fd = p.stdout.fileno()
        partial = b""
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                t = time.monotonic() - t0
                if not chunk:
                    break
                if first is None:
                    first = t
                *lines, partial = (partial + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    out.append(f"{t:.4f} {line}")
                    got = self.sys.parse_query_line(line)
                    if got and got[1] in members:
                        (acks if got[0] == "ack" else resps).setdefault(got[1], t)
                if len(acks) >= len(members) and (not want_responses or len(resps) >= len(members)):
                    break
        finally:
            watchdog.cancel()
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
        with open(os.path.join(self.logdir, "queries.log"), "a") as f:
            # t0 on the agents' logs' clock (time.monotonic), lines relative to it
            f.write(f"# t0={t0:.4f} {' '.join(argv)}\n" + "".join(l + "\n" for l in out))
        return {
            "first_line_s": first,
            "acks": len(acks),
            "responses": len(resps),
            "all_acks_s": max(acks.values()) if len(acks) >= len(members) else None,
            "all_responses_s": max(resps.values()) if len(resps) >= len(members) else None,
        }

    def queries(self):
        """A query answered by every agent's `query:bench=echo ok` handler
        (both systems fork a shell per answer), then the built-in ping."""
        if QUERY_HANDLER not in self.sys.event_handlers:
            raise BenchError("agents were started without the query:bench handler")
        if "steady" not in self.args.phases:
            time.sleep(5)  # right after the join, let its gossip settle first
        origin = self.agents[1]
        members = {a.name for a in self.agents if a.name not in self.dead}
        n = len(members)
        d = {"asker": origin.name, "timeout_s": self.args.query_timeout}
        for key, qname, payload, want_resp in (("query", "bench", "x", True),
                                               ("ping", self.sys.ping_query, "", False)):
            reps = []
            for r in range(self.args.query_reps):
                # the ping's figure is its acks; rumor's answers are waited for too
                wait_resp = want_resp or (key == "ping" and self.sys.ping_responds)
                q = self._one_query(origin, qname, payload, members, wait_resp)
                reps.append(q)
                log(f"  {qname} {r}: {q['acks']}/{n} acks (all at {fmt(q['all_acks_s'])} s), "
                    f"{q['responses']}/{n} responses (all at {fmt(q['all_responses_s'])} s), "
                    f"first line after {fmt(q['first_line_s'])} s")
                time.sleep(1.0)
            self.check_alive()
            done = [q["all_responses_s" if want_resp else "all_acks_s"] for q in reps]
            ok = [t for t in done if t is not None]
            acks = [q["all_acks_s"] for q in reps if q["all_acks_s"] is not None]
            firsts = [q["first_line_s"] for q in reps if q["first_line_s"] is not None]
            d.update({
                f"{key}_reps": len(reps),
                f"{key}_failed_reps": len(done) - len(ok),
                f"{key}_all_median_s": round(median(ok), 4) if ok else None,
                f"{key}_all_max_s": round(max(ok), 4) if ok else None,
                f"{key}_acks_median_s": round(median(acks), 4) if acks else None,
                f"{key}_first_line_median_s": round(median(firsts), 4) if firsts else None,
                f"{key}_acks_min": min(q["acks"] for q in reps),
                f"{key}_responses_min": min(q["responses"] for q in reps),
                f"{key}_per_rep": reps,
            })
            if key == "ping" and self.sys.ping_responds:
                pr = [q["all_responses_s"] for q in reps if q["all_responses_s"] is not None]
                d["ping_responses_median_s"] = round(median(pr), 4) if pr else None
            if len(ok) < len(done):
                # a measured property of the system (Serf was seen to miss an
                # agent in 1 of 3 repetitions at N = 8), not a harness failure
                what = "responses" if want_resp else "acks"
                self.res["notes"].append(
                    f"query {qname}: {len(done) - len(ok)}/{len(done)} repetitions got fewer than {n} {what} "
                    f"within {self.args.query_timeout:g} s")
        self.record("query", d)

    def _suspicion_origins(self, target, t0, t1, before=None, after=None):
        """Agents that themselves started suspecting `target` in [t0, t1]."""
        if before is not None and after is not None:  # rumor: its counter of own suspicions
            return sorted(k for k in after if k != target and after[k] > before.get(k, 0))
        return sorted({e.agent for e in self.hub.since(t0)
                       if e.kind == "suspect-origin" and e.member == target and e.t <= t1})

    def pause(self):
        target = self.agents[self.n // 2]
        live = [a for a in self.agents if a.name not in self.dead]
        before = self.sys.metric(live, "rumor_suspicions_total") if isinstance(self.sys, Rumor) else None
        ref_before = self.sys.metric([target], "rumor_refutations_total") if isinstance(self.sys, Rumor) else None
        t0 = time.monotonic()
        target.signal(signal.SIGSTOP)
        time.sleep(self.args.pause)
        target.signal(signal.SIGCONT)
        time.sleep(self.args.pause_settle)
        t1 = time.monotonic()
        self.check_alive()
        after = self.sys.metric(live, "rumor_suspicions_total") if before is not None else None
        evs = [e for e in self.hub.since(t0) if e.member == target.name and e.agent != target.name]
        saw_suspect = sorted({e.agent for e in evs if e.kind == "suspect"})
        failed = sorted({e.agent for e in evs if e.kind == "failed"})
        origins = self._suspicion_origins(target.name, t0, t1, before, after)
        if ref_before is not None:
            ra = self.sys.metric([target], "rumor_refutations_total")
            refuted = ra.get(target.name, 0) > ref_before.get(target.name, 0)
        else:
            refuted = any(e.kind == "refute" and e.agent == target.name for e in self.hub.since(t0))
        # at the end, does everybody see it alive again?
        v = self.views()
        still_not_alive = sorted(a for a in v if a != target.name and a not in self.dead
                                 and v[a].get(target.name) not in ("alive",))
        self.record("pause", {
            "target": target.name,
            "stopped_s": self.args.pause,
            "suspected_by": len(origins),
            "saw_suspect": len(saw_suspect) if isinstance(self.sys, Rumor) else None,
            "declared_failed_by": len(failed),
            "refuted": refuted,
            "not_alive_at_end": len(still_not_alive),
        })

    def starve(self):
        target = self.agents[self.n // 2 - 1]
        live = [a for a in self.agents if a.name not in self.dead]
        t0 = time.monotonic()
        end = t0 + self.args.starve
        try:
            while time.monotonic() < end:
                target.signal(signal.SIGCONT)
                time.sleep(0.2)
                target.signal(signal.SIGSTOP)
                time.sleep(0.8)
        finally:
            target.signal(signal.SIGCONT)
        time.sleep(self.args.pause_settle)
        self.check_alive()
        evs = [e for e in self.hub.since(t0)]
        others_failed = sorted({e.member for e in evs if e.kind in ("failed", "failed-origin")
                                and e.member != target.name})
        others_susp = sorted({e.member for e in evs if e.kind in ("suspect", "suspect-origin")
                              and e.member != target.name})
        tgt_failed_by = sorted({e.agent for e in evs if e.kind == "failed" and e.member == target.name})
        self.record("starve", {
            "target": target.name,
            "seconds": self.args.starve,
            "healthy_declared_failed": len(others_failed),
            "healthy_suspected": len(others_susp),
            "target_declared_failed_by": len(tgt_failed_by),
            "healthy_failed_names": others_failed[:10],
        })
        # let the cluster heal before the kill phase
        if not self.hub.wait_for(lambda: self._healed_locked(), self.args.heal_timeout):
            log(f"{self.sys.label}: cluster not fully alive {self.args.heal_timeout} s after starvation")
            self.res["errors"].append("not healed after starvation (kill phase still runs)")

    def _healed_locked(self):
        live = [a.name for a in self.agents if a.name not in self.dead]
        for a in live:
            view = self.hub.view.get(a, {})
            if any(view.get(b) != "alive" for b in live if b != a):
                return False
        return True

    def kill(self):
        target = self.agents[self.n - 1]
        survivors = [a.name for a in self.agents if a.name not in self.dead and a.name != target.name]
        t0 = time.monotonic()
        self.dead.add(target.name)
        target.signal(signal.SIGKILL)

        def failed_by():
            return {e.agent for e in self.hub.events
                    if e.t >= t0 and e.kind == "failed" and e.member == target.name}

        ok = self.hub.wait_for(lambda: set(survivors) <= failed_by(), self.args.kill_timeout)
        self.check_alive()
        evs = [e for e in self.hub.since(t0) if e.member == target.name]

        def first(kinds):
            ts = [e.t - t0 for e in evs if e.kind in kinds]
            return round(min(ts), 3) if ts else None

        per_agent = {}
        for e in evs:
            if e.kind == "failed" and e.agent not in per_agent:
                per_agent[e.agent] = e.t - t0
        self.record("kill", {
            "target": target.name,
            "first_suspect_s": first(("suspect", "suspect-origin")),
            "first_failed_s": first(("failed", "failed-origin")),
            "all_failed_s": round(max(per_agent.values()), 3) if ok and per_agent else None,
            "survivors_failed": len(per_agent),
            "survivors": len(survivors),
        })
        if not ok:
            self.res["errors"].append(f"kill: only {len(per_agent)}/{len(survivors)} survivors marked it failed")

    def loss(self):
        """Random loss on every agent's gossip traffic (UDP and TCP) for
        --loss-secs, then --loss-settle s without: suspicions of these live
        agents (started by a prober, total and distinct), declarations of
        failure, and the gossip packets sent in the lossy window."""
        live = [a for a in self.agents if a.name not in self.dead]
        net = NetCounter(self.sys.key + "L")
        net.add_ports([a.gossip_port for a in live])
        rumor = isinstance(self.sys, Rumor)
        m0 = {k: self.sys.metric(live, k) for k in LOSS_METRICS} if rumor else {}
        n0 = net.read()
        rules = LossRules(self.sys.key, [a.gossip_port for a in live], self.args.loss)
        if not rules.ok:
            net.remove()
            raise BenchError(f"cannot apply loss: {rules.why}")
        t0 = time.monotonic()
        try:
            time.sleep(self.args.loss_secs)
            n1 = net.read()
            dropped = rules.dropped()
        finally:
            rules.remove()
        t1 = time.monotonic()
        m1 = {k: self.sys.metric(live, k) for k in LOSS_METRICS} if rumor else {}
        net.remove()
        time.sleep(self.args.loss_settle)
        self.check_alive()
        evs = self.hub.since(t0)
        origins = [e for e in evs if e.kind == "suspect-origin" and e.t <= t1]
        failed = [e for e in evs if e.kind in ("failed", "failed-origin")]
        v = self.views()
        not_alive = sorted({m for a in v if a not in self.dead for m, st in v[a].items()
                            if m not in self.dead and st != "alive"})
        el = t1 - t0
        d = {
            "loss": self.args.loss,
            "seconds": round(el, 1),
            "suspicions": len(origins),
            "suspected_members": len({e.member for e in origins}),
            "false_failures": len({(e.agent, e.member) for e in failed}),
            "falsely_failed_members": len({e.member for e in failed}),
            "not_alive_at_end": len(not_alive),
            "dropped_packets": dropped,
        }
        if n0 and n1:
            d["udp_packets_sent"] = n1["udp"][0] - n0["udp"][0]
            d["tcp_packets_sent"] = n1["tcp"][0] - n0["tcp"][0]
        for k in LOSS_METRICS:
            if m0.get(k) is not None:
                d[k] = round(sum(m1[k].get(a, 0) - m0[k].get(a, 0) for a in m0[k]))
        self.record("loss", d)

    def run(self):
        fns = {"join": self.start_cluster, "steady": self.steady, "event": self.user_events,
               "query": self.queries, "pause": self.pause, "starve": self.starve, "kill": self.kill,
               "loss": self.loss}
        phases = [(name, fns[name]) for name in PHASES if name in self.args.phases]
        try:
            for name, fn in phases:
                log(f"{self.sys.label} N={self.n}: phase {name}")
                try:
                    fn()
                except BenchError as e:
                    self.res["errors"].append(f"{name}: {e}")
                    log(f"{self.sys.label} N={self.n} {name} FAILED: {e}")
                    if name == "join" or any(a.name not in self.dead and not a.alive() for a in self.agents):
                        break
        finally:
            kill_all()
        return self.res


# --------------------------------------------------------------------------
# Report

ROWS = [
    ("join: all N see all N alive (s)", "join", "all_s"),
    ("join: 90 % of agents see all (s)", "join", "p90_s"),
    ("steady: CPU s per agent per min", "steady", "cpu_s_per_agent_per_min"),
    ("steady: whole cluster, % of one core", "steady", "cluster_cpu_pct_of_core"),
    ("steady: resident memory per agent (MB)", "steady", "rss_mb_per_agent"),
    ("steady: of which private (RssAnon, MB)", "steady", "anon_mb_per_agent"),
    ("steady: bytes/s sent per agent", "steady", "bytes_per_s_per_agent"),
    ("steady: packets/s sent per agent", "steady", "packets_per_s_per_agent"),
    ("user event to half: median (s)", "event", "half_median_s"),
    ("user event to half: max (s)", "event", "half_max_s"),
    ("user event to all: median (s)", "event", "all_median_s"),
    ("user event to all: max (s)", "event", "all_max_s"),
    ("SIGSTOP 3 s: agents that suspected it", "pause", "suspected_by"),
    ("SIGSTOP 3 s: agents that declared it failed", "pause", "declared_failed_by"),
    ("SIGSTOP 3 s: refuted", "pause", "refuted"),
    ("starvation: healthy agents declared failed", "starve", "healthy_declared_failed"),
    ("starvation: healthy agents suspected", "starve", "healthy_suspected"),
    ("starvation: agents that declared the starved one failed", "starve", "target_declared_failed_by"),
    ("query: all N responses, median (s)", "query", "query_all_median_s"),
    ("query: all N responses, max (s)", "query", "query_all_max_s"),
    ("query: all N acks, median (s)", "query", "query_acks_median_s"),
    ("query: repetitions short of N responses", "query", "query_failed_reps"),
    ("ping query: all N acks, median (s)", "query", "ping_all_median_s"),
    ("ping query: all N acks, max (s)", "query", "ping_all_max_s"),
    ("loss: suspicions of live agents started", "loss", "suspicions"),
    ("loss: distinct live agents suspected", "loss", "suspected_members"),
    ("loss: false failure declarations", "loss", "false_failures"),
    ("loss: UDP packets sent in the window", "loss", "udp_packets_sent"),
    ("loss: TCP packets sent in the window", "loss", "tcp_packets_sent"),
    ("kill -9: first suspicion (s)", "kill", "first_suspect_s"),
    ("kill -9: first failure declaration (s)", "kill", "first_failed_s"),
    ("kill -9: all survivors marked it failed (s)", "kill", "all_failed_s"),
]


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def ratio(r, s):
    if isinstance(r, bool) or isinstance(s, bool) or r is None or s is None:
        return "—"
    if s == 0:
        return "—" if r == 0 else "∞"
    return f"{r / s:.2f}"


def markdown(results, meta):
    h = meta["host"]
    out = [f"Run {meta['date']}, `{meta['command']}`; {h['cpus']} CPUs, load average "
           f"{h['loadavg_start'][0]:.1f} at the start, {h['loadavg_end'][0]:.1f} at the end."
           + (f" rumor binary: {meta['rumor_binary']}." if meta.get("rumor_binary") else "")
           + (f" rumor [protocol]: {', '.join(meta['args']['rumor_protocol'])}."
              if meta["args"].get("rumor_protocol") else ""), ""]
    by = {(r["system"], r["n"]): r for r in results}
    for n in meta["sizes"]:
        s, r = by.get(("Serf", n)), by.get(("rumor", n))
        out.append(f"### N = {n}")
        out.append("")
        out.append("| figure | Serf | rumor | rumor / Serf |")
        out.append("|---|---:|---:|---:|")
        for label, ph, key in ROWS:
            if not any(res and ph in res["phases"] for res in (s, r)):
                continue  # a phase not run (--phases)
            sv = s["phases"].get(ph, {}).get(key) if s else None
            rv = r["phases"].get(ph, {}).get(key) if r else None
            out.append(f"| {label} | {fmt(sv)} | {fmt(rv)} | {ratio(rv, sv)} |")
        out.append("")
        for res in (s, r):
            if not res:
                continue
            st = res["phases"].get("steady", {})
            if st:
                out.append(f"- {res['system']} network figures: {st.get('net_method')}")
            if "self_reported_payload_bytes_per_s_per_agent" in st:
                out.append(
                    f"- rumor's own transport counters (UDP + TCP stream payload, no IP headers; read from /metrics "
                    f"at both ends of the window): {st['self_reported_payload_bytes_per_s_per_agent']} B/s, "
                    f"{st['self_reported_packets_per_s_per_agent']} datagrams/s per agent")
            for e in res["errors"]:
                out.append(f"- {res['system']} problem: {e}")
            for e in res.get("notes", []):
                out.append(f"- {res['system']}: {e}")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------


def ensure_serf(want_install: bool):
    b = shutil.which("serf")
    if b or not want_install:
        return b
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("serf not found: apt-get install -y serf")
        try:
            subprocess.run(["apt-get", "install", "-y", "serf"], capture_output=True, timeout=300)
        except (subprocess.TimeoutExpired, OSError) as e:
            log(f"apt-get failed: {e}")
    return shutil.which("serf")


def describe_binary(path: str) -> str:
    """Which rumor binary ran and how it is linked (memory figures depend
    on how it was built; see docs/benchmarks.md)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return path
    static = b"ld-linux" not in head  # a dynamic binary names its loader up front
    rel = os.path.relpath(path, REPO) if path.startswith(REPO) else path
    return f"`{rel}` ({'static' if static else 'dynamically linked'})"


def build_rumor(skip: bool):
    """The release binary as shipped: scripts/build-release.py (static,
    profile-guided, code that runs laid out together)."""
    binary = os.path.join(REPO, "target", "release-pgo", "rumor")
    if skip and os.path.exists(binary):
        return binary
    log("python3 scripts/build-release.py")
    r = subprocess.run([sys.executable, "scripts/build-release.py", "--out", binary], cwd=REPO, timeout=3600)
    if r.returncode != 0 or not os.path.exists(binary):
        raise BenchError("scripts/build-release.py failed (see its output above)")
    return binary


PHASES = ("join", "steady", "event", "query", "pause", "starve", "kill", "loss")
# run only when asked for (--phases ...,loss): it needs root and iptables
DEFAULT_PHASES = tuple(p for p in PHASES if p != "loss")
# rumor counters read at both ends of the loss window
LOSS_METRICS = ("rumor_probe_stream_pings_total", "rumor_probe_stream_fallback_acks_total")
QUERY_HANDLER = "query:bench=echo ok"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="rumor vs. Serf benchmark (see README.md)")
    p.add_argument("--sizes", default="16,32,64,128", help="cluster sizes, comma separated (each >= 3)")
    p.add_argument("--quick", action="store_true", help="N = 8, short phases (a few minutes)")
    p.add_argument("--steady", type=float, default=60, help="steady-state window, s")
    p.add_argument("--starve", type=float, default=30, help="starvation cycling, s")
    p.add_argument("--pause", type=float, default=3, help="SIGSTOP length, s")
    p.add_argument("--pause-settle", type=float, default=10, help="watch after SIGCONT, s")
    p.add_argument("--event-reps", type=int, default=5)
    p.add_argument("--event-timeout", type=float, default=10)
    p.add_argument("--query-reps", type=int, default=5, help="repetitions of each query")
    p.add_argument("--query-timeout", type=float, default=30,
                   help="each query's timeout, s (generous: a repetition ends when all N answered)")
    p.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                   help="which phases, comma separated (join always runs: it starts the cluster; "
                        "loss runs only when named)")
    p.add_argument("--loss", type=float, default=0.1,
                   help="loss phase: drop probability of each gossip packet, UDP and TCP (0..1)")
    p.add_argument("--loss-secs", type=float, default=120, help="loss phase: lossy window, s")
    p.add_argument("--loss-settle", type=float, default=15,
                   help="loss phase: watch after the loss is lifted, s")
    p.add_argument("--join-timeout", type=float, default=90)
    p.add_argument("--kill-timeout", type=float, default=60)
    p.add_argument("--heal-timeout", type=float, default=60)
    p.add_argument("--systems", default="serf,rumor", help="which systems, in order")
    p.add_argument("--base-port", type=int, default=24000, help="ports base..base+~4300 are used")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for logs and results")
    p.add_argument("--no-build", action="store_true", help="use target/release-pgo/rumor as it is")
    p.add_argument("--rumor-bin", help="this rumor binary instead of building target/release-pgo/rumor")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install serf")
    p.add_argument("--rumor-protocol", action="append", default=[], metavar="KEY=VALUE",
                   help="a [protocol] setting for every rumor agent (TOML value), e.g. "
                        "probe_stream_fallback=false; repeatable")
    p.add_argument("--md", help="also write the markdown table to this file")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes = "8"
        a.steady = min(a.steady, 10)
        a.starve = min(a.starve, 8)
        a.pause_settle = min(a.pause_settle, 6)
        a.event_reps = min(a.event_reps, 3)
        a.query_reps = min(a.query_reps, 3)
        a.join_timeout = min(a.join_timeout, 45)
        a.kill_timeout = min(a.kill_timeout, 40)
        a.heal_timeout = min(a.heal_timeout, 40)
    try:
        a.sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    except ValueError:
        p.error(f"--sizes: not a list of integers: {a.sizes!r}")
    if not a.sizes or any(n < 3 for n in a.sizes):
        p.error("--sizes: every N must be at least 3 (a kill and a pause need survivors)")
    if any(n > 900 for n in a.sizes):
        p.error("--sizes: at most 900 agents (ports)")
    a.phases = {x.strip() for x in a.phases.split(",") if x.strip()} | {"join"}
    if a.phases - set(PHASES):
        p.error(f"--phases: unknown {', '.join(sorted(a.phases - set(PHASES)))} (known: {', '.join(PHASES)})")
    if not 0 < a.loss < 1:
        p.error("--loss must be in (0, 1)")
    if a.query_reps < 1 or a.query_timeout <= 0:
        p.error("--query-reps must be at least 1 and --query-timeout above 0")
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    if not a.systems or any(s not in ("serf", "rumor") for s in a.systems):
        p.error("--systems: serf and/or rumor")
    return a


LOAD_START = os.getloadavg()


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(kill_all)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = os.path.join(args.out, stamp)
    os.makedirs(outdir, exist_ok=True)
    command = "python3 bench/vs-serf/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    systems, rumor_binary = [], None
    for key in args.systems:
        if key == "serf":
            b = ensure_serf(not args.no_install)
            if not b:
                print("SKIP: serf is not installed (and could not be installed): "
                      "apt-get install -y serf", flush=True)
                return 77
            systems.append(Serf(b, args.base_port))
        else:
            binary = args.rumor_bin or build_rumor(args.no_build)
            if not os.access(binary, os.X_OK):
                raise BenchError(f"rumor binary not executable: {binary}")
            r = Rumor(binary, args.base_port + 2200)
            r.protocol = [kv.replace("=", " = ", 1) for kv in args.rumor_protocol]
            systems.append(r)
            rumor_binary = describe_binary(binary)
    if "query" in args.phases:
        for s in systems:  # a responder on every agent, on both systems
            s.event_handlers = [QUERY_HANDLER]
    results = []
    for n in args.sizes:
        for s in systems:
            log(f"=== {s.label}, N = {n} (logs in {outdir})")
            res = Run(s, n, args, outdir).run()
            results.append(res)
            time.sleep(2)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command.strip(),
        "sizes": args.sizes,
        "host": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                 "loadavg_start": LOAD_START, "loadavg_end": os.getloadavg()},
        "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()},
        "rumor_binary": rumor_binary,
    }
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    md = markdown(results, meta)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(md + "\n")
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    print(md)
    print(f"\nresults: {outdir}/results.json and results.md", flush=True)
    all_phases = set(args.phases)
    incomplete = [f"{r['system']} N={r['n']}" for r in results
                  if set(r["phases"]) != all_phases or r["errors"]]
    if not incomplete:
        print("COMPLETE: every phase ran on every system", flush=True)
        return 0
    print(f"INCOMPLETE: {', '.join(incomplete)}", flush=True)
    errors = [e for r in results for e in r["errors"]]
    if all(set(r["phases"]) == all_phases for r in results) and errors and all(
        e.startswith("user events:") and " 501" in e for e in errors
    ):
        print("ONLY USER EVENTS MISSING: the rumor agent answers 501 to POST /v1/event", flush=True)
        return 3
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        kill_all()
        sys.exit(2)
