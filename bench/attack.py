"""The reconnect-loop attack of issue 9, measured: what one address gets through, and
what it does to an observer's latency.

    python bench/attack.py                  # the app in this checkout
    python bench/attack.py --repo OTHER     # another checkout (e.g. the commit before the fix)

16 loops from 127.0.0.2 (connect, join a new room under a new name, send 10
messages, close) for --seconds; an observer on 127.0.0.1 pings every 50 ms before
and during the attack. Loopback only, bounded in time; it stops the server it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def observe(url: str, seconds: float) -> list[float]:
    """Ping round trips (ms) of one joined client, every 50 ms."""
    rtts = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "payload": {"user": "observer"}}))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            await ws.send('{"type":"ping"}')
            while json.loads(await ws.recv())["type"] != "pong":
                pass
            rtts.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
    return rtts


async def attack_loop(url: str, n: int, deadline: float, counts: dict) -> None:
    i = 0
    while time.monotonic() < deadline:
        i += 1
        try:
            ws = await connect(url, open_timeout=5, local_addr=("127.0.0.2", 0))
        except Exception:
            counts["refused"] += 1
            await asyncio.sleep(0.01)
            continue
        counts["connected"] += 1
        try:
            await ws.send(json.dumps({"type": "join", "payload": {"user": f"bot{n}-{i}", "room": f"r{n}-{i}"}}))
            for k in range(10):
                await ws.send(json.dumps({"type": "msg", "payload": {"text": f"spam {k}"}}))
            await ws.close()
        except Exception:
            pass


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def measure(url: str, seconds: float) -> dict:
    baseline = await observe(url, 3.0)
    counts = {"refused": 0, "connected": 0}
    deadline = time.monotonic() + seconds
    during, _ = await asyncio.gather(
        observe(url, seconds), asyncio.gather(*(attack_loop(url, n, deadline, counts) for n in range(16)))
    )
    return {"baseline": baseline, "during": during, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose `python -m chat_core` to run")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CHAT_MAX_CONN_PER_IP": "64"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "chat_core", "--port", str(port), "--db", f"{tmp}/chat.db"],
            cwd=args.repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            r = asyncio.run(measure(f"ws://127.0.0.1:{port}/ws", args.seconds))
            with urllib.request.urlopen(base + "/api/rooms", timeout=10) as resp:
                rooms = json.loads(resp.read())["rooms"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    stored = sum(room["last_id"] for room in rooms)
    print(
        f"attack for {args.seconds:g}s from one address: {r['connected']} connections "
        f"({r['refused']} refused), {stored} messages stored ({stored / args.seconds:.0f}/s), "
        f"{len(rooms) - 1} rooms listed"
    )
    for name in ("baseline", "during"):
        v = r[name]
        print(f"observer ping {name:8}: p50 {statistics.median(v):.2f} ms, p99 {pct(v, 0.99):.2f} ms ({len(v)} pings)")


if __name__ == "__main__":
    main()
