"""Processes, /proc readings and the latency arithmetic of the benchmark."""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import app_variant  # bench/, next to this file
from chat_core.settings import limits_off

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
now_ns = time.monotonic_ns

# Abuse limits off (issue 4: 0 turns each off); unknown variables are harmless.
APP_ENV = {**limits_off(), "GRADIO_ANALYTICS_ENABLED": "False"}


# -- CPUs ---------------------------------------------------------------------
@dataclass
class CpuPlan:
    server: str  # "1" or "-" (no pinning)
    load: str  # "0" or "0,2,3" or "-"
    note: str


ALL_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []  # before cpu_plan narrows it


def cpu_plan() -> CpuPlan:
    cpus = ALL_CPUS
    if len(cpus) >= 2:
        server, load = cpus[-1], cpus[:-1]
        os.sched_setaffinity(0, set(load))  # this process measures; keep it off the server's core
        return CpuPlan(
            str(server),
            ",".join(map(str, load)),
            f"server pinned to CPU {server}; load generator and this harness on CPU {','.join(map(str, load))}",
        )
    return CpuPlan("-", "-", "only one CPU: server and load generator share it (figures are not comparable)")


# -- /proc --------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads, live and gone), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return float("nan")


def core_times() -> dict[int, tuple[int, int, int]]:
    """Per CPU: (ticks busy in processes (user+nice+system), ticks in irq+softirq+steal, all ticks)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                p = line.split()
                v = [int(x) for x in p[1:9]]
                out[int(p[0][3:])] = (v[0] + v[1] + v[2], v[5] + v[6] + v[7], sum(v))
    return out


class Window:
    """CPU of the server, the load generator and everyone else over one measured window."""

    def __init__(self, server_pid: int, load_pids: list[int], server_cpu: str) -> None:
        self.pids = [server_pid, *load_pids, os.getpid()]
        self.server_cpu = None if server_cpu == "-" else int(server_cpu)
        self.t0, self.c0, self.p0 = time.monotonic(), core_times(), [cpu_seconds(p) for p in self.pids]

    def close(self) -> dict:
        t1, c1, p1 = time.monotonic(), core_times(), [cpu_seconds(p) for p in self.pids]
        secs = t1 - self.t0
        ours = sum(b - a for a, b in zip(self.p0, p1, strict=True))
        proc_all = sum(c1[c][0] - self.c0[c][0] for c in c1) / CLK_TCK
        out = {"other_cpu_pct": max(0.0, 100 * (proc_all - ours) / secs)}
        if self.server_cpu is not None:
            a, b = self.c0[self.server_cpu], c1[self.server_cpu]
            tot = (b[2] - a[2]) or 1
            out["server_core_busy_pct"] = 100 * ((b[0] - a[0]) + (b[1] - a[1])) / tot
            out["server_core_irq_pct"] = 100 * (b[1] - a[1]) / tot
        return out


def wait_quiet(max_wait: float, threshold_pct: float = 15.0) -> float:
    """Wait (at most max_wait s) until other programs use under threshold_pct of one CPU.

    The benchmark's own processes are idle at this point, so all busy time is foreign.
    Returns the last background reading (% of one CPU), recorded with the figures."""
    deadline = time.monotonic() + max_wait
    while True:
        a = core_times()
        time.sleep(0.5)
        b = core_times()
        busy = sum(b[c][0] - a[c][0] for c in b) / CLK_TCK / 0.5 * 100
        if busy < threshold_pct or time.monotonic() >= deadline:
            return busy


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_sockets(port: int) -> tuple[int, int, int]:
    """Server-side ESTABLISHED TCP sockets on `port`, from /proc/net/tcp: (count, bytes queued
    unsent in their kernel send buffers, the largest such queue). Kernel buffers are memory the
    server holds for slow readers that RSS does not show."""
    hexport = f"{port:04X}"
    n = total = biggest = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(":" + hexport) and parts[3] == "01":
                        n += 1
                        q = int(parts[4].split(":")[0], 16)
                        total += q
                        biggest = max(biggest, q)
        except OSError:
            pass
    return n, total, biggest


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (TcpExt
    ListenOverflows in /proc/net/netstat, machine-wide): a server too busy to accept."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


def established(port: int) -> int:
    return server_sockets(port)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout:.0f} s")


NICE = [0]  # set by run.py --nice


def pinned(cpus: str, cmd: list[str]) -> list[str]:
    return [sys.executable, str(BENCH / "pin.py"), cpus, str(os.getpid()), str(NICE[0]), "--", *cmd]


# -- servers ------------------------------------------------------------------
SERVER_NAMES = ("app", "gradio", "websockets", "seed")
VARIANTS = tuple(f"app-{v}" for v in app_variant.VARIANTS)  # the app minus one fast part
ENGINES = ("redis",)  # the app on another engine; by name only (--servers app,redis,websockets)
APPS = ("app", "gradio", *VARIANTS, *ENGINES)  # ours, imported from APP_PATH
REFERENCE = "websockets"
LABELS = {
    "app": "app (chat_core)",
    "gradio": "app (gradio_app.py)",
    "websockets": "websockets ref",
    "seed": "seed design",
    "app-asgi": "app, ASGI sends",
    "app-asyncio": "app, asyncio + h11",
    "app-json": "app, stdlib json",
    "redis": "app on Redis",
}


APP_PATH = [ROOT]  # where `python -m chat_core` is imported from (run.py --app-path)


def app_available() -> tuple[bool, str]:
    r = subprocess.run(
        [sys.executable, "-c", "import chat_core.web, chat_core.__main__"],
        cwd=APP_PATH[0],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]


def server_cmd(name: str, port: int, tmp: Path, max_seconds: float, redis_url: str = "") -> list[str]:
    db = str(tmp / f"{name}-{port}.db")  # one per server: --quick runs them side by side
    if name == "app":
        return [sys.executable, "-m", "chat_core", "--host", "127.0.0.1", "--port", str(port), "--db", db]
    if name == "redis":
        return [sys.executable, "-m", "chat_core", "--host", "127.0.0.1", "--port", str(port), "--redis-url", redis_url]
    if name == "gradio":
        return [sys.executable, "gradio_app.py", "--host", "127.0.0.1", "--port", str(port), "--db", db]
    if name in VARIANTS:
        return [
            sys.executable,
            str(BENCH / "app_variant.py"),
            "--variant",
            name[len("app-") :],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            db,
        ]
    script = {"websockets": "ref_websockets.py", "seed": "ref_seed.py"}[name]
    return [
        sys.executable,
        str(BENCH / script),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-seconds",
        str(int(max_seconds)),
    ]


def start_redis(cpus: str, tmp: Path, log) -> tuple[subprocess.Popen, str]:
    """A redis-server on a free port as docs/deploy.md configures one (append-only file,
    `appendfsync everysec`, no snapshots), pinned to `cpus`; returns it and its URL."""
    port = free_port()
    proc = subprocess.Popen(
        pinned(
            cpus,
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(tmp),
                "--appendfilename",
                f"chat-{port}.aof",
                "--appenddirname",
                f"aof-{port}",
            ],
        ),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_port(port, 30, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


class Server:
    """The server under test: one process, or with `processes` > 1 (Redis engines only) that many
    processes on one redis-server, each on its own port: one chat, as docs/deploy.md runs it."""

    def __init__(self, name: str, cpus: str, tmp: Path, max_seconds: float = 1800, processes: int = 1) -> None:
        if processes > 1 and name not in ENGINES:
            raise ValueError(f"{name}: several processes need the Redis engine (one SQLite file is one process)")
        self.name = name
        self.ports = [free_port() for _ in range(processes)]
        self.port = self.ports[0]
        self.tmp = tmp
        self.log_path = tmp / f"{name}-{self.port}.log"
        env = dict(os.environ, **APP_ENV, PYTHONUNBUFFERED="1")
        where = APP_PATH[0] if name in APPS else ROOT
        env["PYTHONPATH"] = str(where) + os.pathsep + env.get("PYTHONPATH", "")
        self.log = open(self.log_path, "wb")
        self.redis: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.redis_url = ""
        try:
            if name in ENGINES:  # its own redis-server, on the server's CPUs (its CPU is counted apart)
                self.redis, self.redis_url = start_redis(cpus, tmp, self.log)
            for port in self.ports:
                self.procs.append(
                    subprocess.Popen(
                        pinned(cpus, server_cmd(name, port, tmp, max_seconds, self.redis_url)),
                        cwd=where,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=self.log,
                        stderr=subprocess.STDOUT,
                    )
                )
            for port, proc in zip(self.ports, self.procs, strict=True):
                wait_port(port, 90, proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{name}: could not start; log tail:\n{self.log_tail()}") from None
        self.proc = self.procs[0]
        self.pid = self.proc.pid
        # imports settle, lazy allocations happen; gradio_app.py puts the chat's WebSocket
        # layer in place just after Gradio's launch returns, a moment after the port opens
        time.sleep(3.0 if name == "gradio" else 0.3)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def cpu(self) -> float:
        """CPU seconds of all the server's processes (not the redis-server: see redis_cpu)."""
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def redis_cpu(self) -> float:
        """The redis-server's CPU seconds (nan without one): from its own INFO, to the microsecond
        (/proc counts in 10 ms ticks, too coarse for a few messages)."""
        if self.redis is None:
            return float("nan")
        import redis  # the app's own client library

        with redis.Redis.from_url(self.redis_url) as r:
            info = r.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def rss(self) -> int:
        return sum(rss_kb(p.pid) for p in self.procs)

    def established(self) -> list[int]:
        """Established connections on each process's port."""
        return [established(port) for port in self.ports]

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(10)
        self.log.close()


# -- load-generator workers ---------------------------------------------------
class Worker:
    """One bench/loadgen.py process; JSON commands in, JSON answers out."""

    def __init__(self, wid: int, cpus: str, max_seconds: float = 1800) -> None:
        self.wid = wid
        self.proc = subprocess.Popen(
            pinned(
                cpus,
                [sys.executable, str(BENCH / "loadgen.py"), "--id", str(wid), "--max-seconds", str(int(max_seconds))],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.answers: dict[int, dict] = {}
        self.cond = threading.Condition()
        self.next_id = 1
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.lines.get(timeout=30)
        if not first.get("ready"):
            raise RuntimeError(f"worker {wid} did not start: {first}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("id") is None:
                self.lines.put(msg)
                continue
            with self.cond:
                self.answers[msg["id"]] = msg
                self.cond.notify_all()
        with self.cond:
            self.answers[-1] = {"ok": False, "error": "worker exited"}
            self.cond.notify_all()

    def submit(self, cmd: str, **kw) -> int:
        cid = self.next_id
        self.next_id += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, "id": cid, **kw}) + "\n")
        self.proc.stdin.flush()
        return cid

    def wait(self, cid: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while cid not in self.answers:
                if -1 in self.answers:
                    raise RuntimeError(f"worker {self.wid} exited")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"worker {self.wid}: no answer to command {cid} in {timeout:.0f} s")
                self.cond.wait(left)
            ans = self.answers.pop(cid)
        if not ans.get("ok"):
            raise RuntimeError(f"worker {self.wid}: {ans.get('error')}")
        return ans

    def call(self, cmd: str, wait_s: float = 120, **kw) -> dict:
        return self.wait(self.submit(cmd, **kw), wait_s)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd": "exit"}\n')
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Load:
    """The workers of one scenario run."""

    def __init__(self, n: int, cpus: str) -> None:
        self.workers = [Worker(i, cpus) for i in range(n)]

    def cpu(self) -> float:
        return sum(w.cpu() for w in self.workers)

    def all(self, cmd: str, wait_s: float = 120, **kw) -> list[dict]:
        ids = [w.submit(cmd, **kw) for w in self.workers]
        return [w.wait(i, wait_s) for w, i in zip(self.workers, ids, strict=True)]

    def received(self) -> int:
        return sum(a["received"] for a in self.all("count", 30))

    def collect(self, tmp: Path, tag: str) -> Records:
        recs = Records()
        for w in self.workers:
            path = tmp / f"{tag}-w{w.wid}"
            w.call("collect", 60, path=str(path))
            recs.add(path)
        return recs

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


# -- analysis -----------------------------------------------------------------
@dataclass
class Records:
    s_key: list = field(default_factory=list)
    s_sent: list = field(default_factory=list)
    r_key: list = field(default_factory=list)
    r_sent: list = field(default_factory=list)
    r_recv: list = field(default_factory=list)

    def add(self, path: Path) -> None:
        r = np.fromfile(str(path) + ".recv", dtype=np.int64).reshape(3, -1)
        s = np.fromfile(str(path) + ".sent", dtype=np.int64).reshape(2, -1)
        self.r_key.append(r[0])
        self.r_sent.append(r[1])
        self.r_recv.append(r[2])
        self.s_key.append(s[0])
        self.s_sent.append(s[1])
        for suffix in (".recv", ".sent"):
            os.unlink(str(path) + suffix)

    def arrays(self):
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
        return cat(self.s_key), cat(self.s_sent), cat(self.r_key), cat(self.r_sent), cat(self.r_recv)


def rank(sorted_ms: np.ndarray, expected: int, q: float) -> float:
    """Nearest-rank percentile over `expected` deliveries, missing ones counted as infinitely late."""
    if expected <= 0:
        return float("nan")
    k = max(1, math.ceil(q / 100 * expected)) - 1
    return float(sorted_ms[k]) if k < len(sorted_ms) else float("inf")


def analyse(recs: Records, w0: int, w1: int, receivers: int) -> dict:
    """Figures for messages sent in [w0, w1) (latency, loss) and receipts in it (throughput)."""
    s_key, s_sent, r_key, r_sent, r_recv = recs.arrays()
    in_win = (s_sent >= w0) & (s_sent < w1)
    sent = int(in_win.sum())
    keys = s_key[in_win]
    got = np.isin(r_key, keys)
    lat_ms = np.sort((r_recv[got] - r_sent[got]) / 1e6)
    expected = sent * receivers
    received = int(got.sum())
    dur = (w1 - w0) / 1e9
    delivered_in_window = int(((r_recv >= w0) & (r_recv < w1)).sum())
    return {
        "sent": sent,
        "expected": expected,
        "received": received,
        "lost": max(0, expected - received),
        "dup": max(0, received - expected),
        "deliveries_per_s": delivered_in_window / dur if dur > 0 else float("nan"),
        "deliveries_in_window": delivered_in_window,
        "p50_ms": rank(lat_ms, expected, 50),
        "p99_ms": rank(lat_ms, expected, 99),
        "max_ms": rank(lat_ms, expected, 100) if received >= expected else float("inf"),
        "mean_ms": float(lat_ms.mean()) if len(lat_ms) else float("nan"),
    }


def ms_stats(values_ns) -> dict:
    a = np.sort(np.asarray(values_ns, dtype=np.float64) / 1e6)
    n = len(a)
    return {"n": n, "p50_ms": rank(a, n, 50), "p99_ms": rank(a, n, 99), "max_ms": float(a[-1]) if n else float("nan")}


def sleep_until(t_ns: int) -> None:
    d = (t_ns - now_ns()) / 1e9
    if d > 0:
        time.sleep(d)
