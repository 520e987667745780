"""Group commit, measured: 10 clients each send 500 messages as fast as they can;
the server's /healthz then says how many store commits carried the 5,000 messages.

    python bench/group_commit.py              # the default settings, once
    python bench/group_commit.py --durable    # with and without --durable, 3 runs each, medians

Each run then sends 200 messages one at a time from one client, each awaited before
the next (every one a commit of its own: what a commit costs a quiet room).
``--durable`` (SQLite synchronous=FULL: wait for the disk at every commit) runs both
modes three times, alternating, and prints the medians of both figures.

Runs `python -m chat_core` on a free loopback port with a fresh SQLite file,
abuse limits and the outbox bound off, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from harness import Server  # bench/, next to this file

CLIENTS, EACH = 10, 500
ONE_AT_A_TIME = 200


async def join(url: str, user: str) -> ClientConnection:
    ws = await connect(url, open_timeout=10)
    await ws.send(json.dumps({"type": "join", "payload": {"user": user}}))
    while (await recv(ws))["type"] != "welcome":
        pass
    return ws


async def recv(ws: ClientConnection, timeout: float = 30) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def main(srv: Server) -> tuple[float, float]:
    """The flood, then the one-at-a-time sends: (messages/s, ms per message one at a time)."""
    base = f"http://127.0.0.1:{srv.port}"
    conns = [await join(f"ws://127.0.0.1:{srv.port}/ws", f"u{i}") for i in range(CLIENTS)]
    total = CLIENTS * EACH
    counts = [0] * CLIENTS

    async def reader(ws: ClientConnection, i: int) -> None:
        while counts[i] < total:
            if (await recv(ws))["type"] == "msg":
                counts[i] += 1

    async def blast(ws: ClientConnection, i: int) -> None:
        for j in range(EACH):
            await ws.send(json.dumps({"type": "msg", "payload": {"text": f"{i}-{j}"}}))

    readers = [asyncio.ensure_future(reader(ws, i)) for i, ws in enumerate(conns)]
    t0 = time.perf_counter()
    await asyncio.gather(*(blast(ws, i) for i, ws in enumerate(conns)))
    await asyncio.gather(*readers)
    dt = time.perf_counter() - t0
    with urllib.request.urlopen(base + "/healthz") as r:
        h = json.loads(r.read())
    for ws in conns[1:]:
        await ws.close()
    print(
        f"{h['messages']} messages stored and broadcast in {dt:.2f}s = {h['messages'] / dt:.0f} msg/s "
        f"in {h['commits']} commits (avg batch {h['messages'] / h['commits']:.1f})"
    )
    ws = conns[0]
    t0 = time.perf_counter()
    for j in range(ONE_AT_A_TIME):
        await ws.send(json.dumps({"type": "msg", "payload": {"text": f"one {j}"}}))
        while (await recv(ws))["type"] != "msg":
            pass
    one = (time.perf_counter() - t0) / ONE_AT_A_TIME * 1000
    await ws.close()
    print(f"{ONE_AT_A_TIME} messages one at a time: {one:.2f} ms each")
    return h["messages"] / dt, one


def run(durable: bool) -> tuple[float, float]:
    """One server (a fresh SQLite file), the flood and the one-at-a-time sends."""
    os.environ["CHAT_DURABLE"] = "1" if durable else "0"
    server = Server("app", "-", Path(tempfile.mkdtemp(prefix="group-commit-")))
    try:
        return asyncio.run(main(server))
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--durable", action="store_true", help="compare with --durable (3 runs of each, medians)")
    a = ap.parse_args()
    os.environ["CHAT_OUTBOX"] = "0"  # the outbox bound off; harness.APP_ENV turns the abuse limits off
    if not a.durable:
        run(False)
    else:
        seen: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(3):
            for mode in (False, True):
                print("--durable:" if mode else "default:", end=" ", flush=True)
                seen[mode].append(run(mode))
        rate = {m: statistics.median(r for r, _ in seen[m]) for m in seen}
        one = {m: statistics.median(o for _, o in seen[m]) for m in seen}
        print(
            f"medians: flood {rate[False]:.0f} msg/s, --durable {rate[True]:.0f} msg/s "
            f"({rate[False] / rate[True]:.2f}x slower); one at a time {one[False]:.2f} ms, --durable "
            f"{one[True]:.2f} ms (+{one[True] - one[False]:.2f} ms per message)"
        )
