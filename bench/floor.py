"""The kernel's floor: what one delivery costs with no WebSocket code at all.

    python bench/floor.py [--clients 500] [--messages 600]

A sender pinned to the server CPU writes one ready-made 120-byte WebSocket
frame to each of N loopback TCP connections with a plain non-blocking
socket.send (the least work any Python server can do per delivery: one
syscall); a reader on the load CPU drains them. It prints the sender's CPU per
delivery, split user/kernel, plus the softirq time the kernel spent on the
server CPU (loopback delivers the receive side there), i.e. the cost below
which no design of the chat server can go on this machine.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time

import harness  # bench/, next to this file (the script's directory is on sys.path)
from harness import CLK_TCK, core_times, cpu_plan, pinned


def reader(port: int, n: int, seconds: float) -> None:
    lst = socket.create_server(("127.0.0.1", port), backlog=n)
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(n):
        c, _ = lst.accept()
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        conns.append(c)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(0.2):
            try:
                if not key.fileobj.recv(65536):
                    sel.unregister(key.fileobj)
            except BlockingIOError:
                pass


def measure(clients: int = 500, messages: int = 600, rate: float = 150.0) -> dict:
    """Run the floor measurement in a child (the sender must sit on the server CPU)."""
    every = ",".join(map(str, harness.ALL_CPUS)) or "-"  # the child picks its own CPU, as run.py does
    out = subprocess.run(
        pinned(
            every,
            [
                sys.executable,
                __file__,
                "--clients",
                str(clients),
                "--messages",
                str(messages),
                "--rate",
                str(rate),
                "--nice",
                str(harness.NICE[0]),
                "--json",
            ],
        ),
        capture_output=True,
        text=True,
        timeout=messages / rate + 60,
    )
    import json

    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"error": out.stderr[-300:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--messages", type=int, default=600, help="each is sent to every client")
    ap.add_argument("--rate", type=float, default=150.0, help="messages per second")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the reader (the sender inherits its own)")
    ap.add_argument("--role", default="main", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "reader":
        reader(a.port, a.clients, a.messages / a.rate + 30)
        return 0
    harness.NICE[0] = a.nice
    plan = cpu_plan()
    if plan.server != "-":
        os.sched_setaffinity(0, {int(plan.server)})  # this process is the sender
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rd = subprocess.Popen(
        pinned(
            plan.load,
            [
                sys.executable,
                __file__,
                "--role",
                "reader",
                "--port",
                str(port),
                "--clients",
                str(a.clients),
                "--messages",
                str(a.messages),
                "--rate",
                str(a.rate),
            ],
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    socks = []
    for _ in range(a.clients):
        c = socket.create_connection(("127.0.0.1", port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.setblocking(False)
        socks.append(c)
    assert rd.stdout is not None and rd.stdout.readline().strip() == "ready"
    frame = (
        b"\x81\x7e\x00\x76"
        + b'{"type":"msg","payload":{"user":"s1","text":"~b~1|1|1234567890123","ts":1.0,"id":1,"room":"r"}}'.ljust(118)
    )
    t0, c0, cores0 = time.monotonic(), os.times(), core_times()
    step = 1 / a.rate
    for k in range(a.messages):
        due = t0 + k * step
        d = due - time.monotonic()
        if d > 0:
            time.sleep(d)
        for c in socks:
            try:
                c.send(frame)
            except BlockingIOError:
                pass
    c1, cores1 = os.times(), core_times()
    n = a.messages * a.clients
    user, kern = (c1.user - c0.user) / n * 1e6, (c1.system - c0.system) / n * 1e6
    res = {"deliveries": n, "per_s": a.rate * a.clients, "user_us": user, "kernel_us": kern}
    line = (
        f"raw fan-out floor: {n:,} deliveries at {a.rate * a.clients:,.0f}/s: sender {user:.1f} µs user + "
        f"{kern:.1f} µs kernel per delivery"
    )
    if plan.server != "-":
        cpu = int(plan.server)
        irq = (cores1[cpu][1] - cores0[cpu][1]) / CLK_TCK / n * 1e6
        total = user + kern + irq
        res.update(softirq_us=irq, total_us=total, max_per_s=1e6 / total)
        line += (
            f", + {irq:.1f} µs softirq on the server CPU = {total:.1f} µs -> one CPU tops out near "
            f"{1e6 / total:,.0f} deliveries/s with zero WebSocket or chat code; {a.rate * a.clients:,.0f}/s "
            f"takes {total * a.rate * a.clients / 1e4:.0f}% of it"
        )
    print(line)
    if a.json:
        import json

        print(json.dumps(res))
    for c in socks:
        c.close()
    rd.kill()
    rd.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
