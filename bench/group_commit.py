"""Group commit, measured: 10 clients each send 500 messages as fast as they can;
the server's /healthz then says how many store commits carried the 5,000 messages.

    python bench/group_commit.py

Runs `python -m chat_core` on a free loopback port with a fresh SQLite file,
abuse limits and the outbox bound off, and stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from harness import Server  # bench/, next to this file

CLIENTS, EACH = 10, 500


async def join(url: str, user: str) -> ClientConnection:
    ws = await connect(url, open_timeout=10)
    await ws.send(json.dumps({"type": "join", "payload": {"user": user}}))
    while (await recv(ws))["type"] != "welcome":
        pass
    return ws


async def recv(ws: ClientConnection, timeout: float = 30) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def main(srv: Server) -> None:
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
    for ws in conns:
        await ws.close()
    print(
        f"{h['messages']} messages stored and broadcast in {dt:.2f}s = {h['messages'] / dt:.0f} msg/s "
        f"in {h['commits']} commits (avg batch {h['messages'] / h['commits']:.1f})"
    )


if __name__ == "__main__":
    os.environ["CHAT_OUTBOX"] = "0"  # the outbox bound off; harness.APP_ENV turns the abuse limits off
    server = Server("app", "-", Path(tempfile.mkdtemp(prefix="group-commit-")))
    try:
        asyncio.run(main(server))
    finally:
        server.stop()
