"""Is the load generator lean enough? `python bench/run.py --client-check`.

Drives the websockets reference (pinned to the server CPU) with 500 receiving
clients in one process on the load CPU, twice at the same offered load:

  lean        bench/loadgen.py (the benchmark's own client)
  websockets  the library's asyncio client, one recv loop per connection,
              orjson for each frame (what a "lean Python client" would be
              without writing the frame parser)

and prints the receiving process's CPU per received frame, hence the most
deliveries per second it could take on one CPU. Ten extra clients in a separate
lean worker do the sending in both cases.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import BENCH, CLK_TCK, Load, Server, cpu_plan, now_ns, pinned

CLIENTS, SENDERS, RATE, SECONDS = 500, 10, 100.0, 5.0


async def ws_clients(port: int, n: int, seconds: float) -> None:  # runs in the child process
    import orjson
    from websockets.asyncio.client import connect

    got = 0
    lat = []

    async def one(i: int) -> None:
        nonlocal got
        async with connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=2**20) as ws:
            await ws.send(orjson.dumps({"type": "join", "payload": {"user": f"w{i}", "room": "check"}}).decode())
            while orjson.loads(await ws.recv())["type"] != "welcome":
                pass
            ready.append(i)
            async for raw in ws:
                d = orjson.loads(raw)
                if d["type"] == "msg":
                    text = d["payload"]["text"]
                    if text.startswith("~b~"):
                        got += 1
                        lat.append(time.monotonic_ns() - int(text.rsplit("|", 1)[1]))

    ready: list[int] = []
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    while len(ready) < n:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    print(got, flush=True)
    for t in tasks:
        t.cancel()


def cpu_split(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        p = f.read().rsplit(")", 1)[1].split()
    return int(p[11]) / CLK_TCK, int(p[12]) / CLK_TCK


def measure(kind: str, server: Server, load_cpu: str, tmp: Path) -> dict:
    senders = Load(1, load_cpu)
    s = senders.workers[0]
    s.call(
        "connect",
        group="room",
        host="127.0.0.1",
        port=server.port,
        room="check",
        prefix="s",
        start=0,
        count=SENDERS,
        rate=100,
        timeout=20,
    )
    if kind == "lean":
        recv = Load(1, load_cpu)
        recv.workers[0].call(
            "connect",
            group="r",
            host="127.0.0.1",
            port=server.port,
            room="check",
            prefix="r",
            start=0,
            count=CLIENTS,
            rate=500,
            timeout=30,
        )
        pid = recv.workers[0].pid
    else:
        proc = subprocess.Popen(
            pinned(
                load_cpu, [sys.executable, str(BENCH / "clientcheck.py"), "--child", str(server.port), str(CLIENTS)]
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("websockets clients did not start")
        pid = proc.pid
    time.sleep(0.5)
    start = now_ns() + 200_000_000
    sid = s.submit("send", group="room", senders=SENDERS, rate=RATE, start_ns=start, count=int(RATE * SECONDS))
    time.sleep(0.2)
    (u0, k0), t0 = cpu_split(pid), time.monotonic()
    s.wait(sid, SECONDS + 30)
    time.sleep(0.5)
    (u1, k1), t1 = cpu_split(pid), time.monotonic()
    c0, c1 = u0 + k0, u1 + k1
    if kind == "lean":
        got = recv.received()
        recv.collect(tmp, "check")
        recv.stop()
    else:
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        got = int(proc.stdout.readline())
        proc.wait(10)
    senders.stop()
    return {
        "frames": got,
        "cpu_s": c1 - c0,
        "us_per_frame": 1e6 * (c1 - c0) / max(1, got),
        "user_us": 1e6 * (u1 - u0) / max(1, got),
        "sys_us": 1e6 * (k1 - k0) / max(1, got),
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
    }


def main() -> int:
    plan = cpu_plan()
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="chatbench-check-"))
    print(f"# {plan.note}")
    print(
        f"# {CLIENTS} receiving clients in one process, {SENDERS} senders, {RATE:.0f} msg/s "
        f"= {RATE * (CLIENTS + SENDERS):,.0f} deliveries/s offered, {SECONDS:.0f} s, websockets reference server"
    )
    for kind in ("lean", "websockets"):
        server = Server("websockets", plan.server, tmp)
        try:
            r = measure(kind, server, plan.load, tmp)
        finally:
            server.stop()
            if kind == "websockets":
                shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"{kind:<11} client: {r['frames']:>8,} frames, {r['us_per_frame']:5.1f} µs CPU per frame "
            f"(user {r['user_us']:.1f} + kernel {r['sys_us']:.1f}; {r['cpu_pct']:3.0f}% of a CPU) "
            f"-> at most ~{1e6 / r['us_per_frame']:,.0f} deliveries/s per CPU"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        import uvloop

        uvloop.run(ws_clients(int(sys.argv[2]), int(sys.argv[3]), 0))
    else:
        sys.exit(main())
