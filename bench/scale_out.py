#!/usr/bin/env python3
"""The crowd over several processes on Redis (issue 11): more clients in one room
than one process may hold here (`ulimit -n` is 20,000), one message to all of them.

    python bench/scale_out.py                         # 20,000 clients on 2 processes, 3 runs, medians
    python bench/scale_out.py --md docs/benchmarks.md # and write the table into the doc
    python bench/scale_out.py --quick                 # smoke run: 400 clients, 1 run, < 1 minute
    python bench/scale_out.py --nice -10 ...          # as root on a shared machine (see pin.py)

Each run measures three set-ups, each started fresh, in turn:
  one process, SQLite      python -m chat_core --db …, 1/N of the crowd (the reference)
  one process, Redis       python -m chat_core --redis-url …, 1/N of the crowd
  N processes, Redis       N × python -m chat_core --redis-url … on one redis-server, the whole crowd,
                           the load generator's workers spread evenly over the processes
Every process holds the same number of clients, and the clients join at the same total
rate (--join-rate) in every set-up: all servers share one core here, so that is the same
load on it, and the ratios to the reference say what Redis, and then several processes,
cost per delivery and in latency.
The crowd scenario is bench/scenarios.py's: all clients join one room, then one client
sends `--messages` messages one second apart, each to every member; p50/p99 are send →
receive over every delivery, and a delivery not received counts as lost.
All servers are pinned to the last CPU (with their redis-server), the load generator
to the others, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import harness  # bench/, next to this file
import report
from harness import ROOT, Server, cpu_plan, wait_quiet
from run import machine
from scenarios import QUICK, SCENARIOS, Config, Ctx

BLOCK = "scale-out"


@dataclasses.dataclass(frozen=True)
class Setup:
    key: str
    label: str
    server: str  # a bench/harness.py server name
    processes: int
    share: float  # of the crowd


def setups(processes: int) -> list[Setup]:
    half = 1 / processes
    return [
        Setup("sqlite-1", "one process, SQLite", "app", 1, half),
        Setup("redis-1", "one process, Redis", "redis", 1, half),
        Setup(f"redis-{processes}", f"{processes} processes, Redis", "redis", processes, 1.0),
    ]


def measure(s: Setup, cfg: Config, plan, tmp: Path, run: int, quiet_wait: float) -> dict:
    t0 = time.monotonic()
    server = None
    try:
        server = Server(s.server, plan.server, tmp, processes=s.processes)
        background = wait_quiet(quiet_wait)
        ctx = Ctx(server, cfg, plan.load, tmp, room=f"crowd-{run}", tag=f"{s.key}-{run}", server_cpu=plan.server)
        res = SCENARIOS["crowd"](ctx)
        res["background_cpu_pct"] = background
        if not server.alive():
            res.setdefault("error", f"server died; log tail:\n{server.log_tail()}")
        if res.get("failed"):  # why some never joined: what the servers said
            res["log_tail"] = server.log_tail(40)
    except Exception as e:  # one failed set-up must not lose the others' figures
        res = {"error": f"{e.__class__.__name__}: {e}"}
        traceback.print_exc()
    finally:
        if server is not None:
            server.stop()
    res["wall_s"] = time.monotonic() - t0
    brief = res.get("error") or (
        f"joined {res.get('joined')}/{res.get('clients')} in {report.f(res.get('join_s'))} s "
        f"(per process {res.get('server_conns_each')}), msg p50 {report.f(res.get('p50_ms'))} "
        f"p99 {report.f(res.get('p99_ms'))} ms, lost {res.get('lost')}"
    )
    print(f"run {run + 1} {s.label:<22} {res['wall_s']:5.1f}s  {brief}", file=sys.stderr, flush=True)
    return res


def table(results: dict) -> str:
    meta = results["meta"]
    ss = [Setup(**x) for x in meta["setups"]]
    ref = ss[0].key
    runs = results["runs"]

    def m(key: str, k: str) -> float:
        return report.metric(results, "crowd", key, k)

    def ratio(key: str, k: str) -> float:
        return report.ratio(results, "crowd", key, k, ref)

    f = report.f
    cfg = meta["config"]
    lines = [
        f"### Crowd over processes: {cfg['crowd']:,} clients in one room, then {cfg['crowd_messages']} message(s) "
        f"to all (median of {len(runs)} run{'s' * (len(runs) > 1)})",
        "",
        f"`{meta['command']}`, {meta['date']}; {meta['machine']}; {meta['cpu_note']}. "
        f"Clients join at {meta['join_rate']:.0f}/s in every set-up; ratios are to one process on SQLite, "
        "measured in the same run.",
        "",
        "| set-up | clients | joined (fewest) | per process | listen queue drops | join s | RSS KB/conn "
        "| server CPU µs/join | message p50 ms "
        "| p99 ms | p99 vs ref | max ms | lost (most) | server CPU µs/delivery | vs ref | redis-server µs/join "
        "| redis-server % CPU during the messages |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in ss:
        ok = report.per_run(results, "crowd", s.key)
        each = ok[-1].get("server_conns_each", []) if ok else []
        lost = max((r.get("lost", 0) for r in ok), default=float("nan"))
        joined = min((r.get("joined", 0) for r in ok), default=float("nan"))
        lines.append(
            f"| {s.label} | {f(ok[0]['clients'] if ok else None, 0)} | {f(joined, 0)} "
            f"| {' + '.join(f'{c:,}' for c in each) or '-'} | {f(m(s.key, 'listen_overflows'), 0)} "
            f"| {f(m(s.key, 'join_s'))} "
            f"| {f(m(s.key, 'rss_per_conn_kb'))} | {f(m(s.key, 'join_cpu_us_per_join'), 0)} "
            f"| {f(m(s.key, 'p50_ms'))} | {f(m(s.key, 'p99_ms'))} | {f(ratio(s.key, 'p99_ms'), 2)}× "
            f"| {f(m(s.key, 'max_ms'))} | {f(lost, 0)} | {f(m(s.key, 'cpu_us_per_delivery'), 2)} "
            f"| {f(ratio(s.key, 'cpu_us_per_delivery'), 2)}× | {f(m(s.key, 'redis_cpu_us_per_join'), 0)} "
            f"| {f(m(s.key, 'redis_cpu_pct_messages'), 1)} |"
        )
    errors = [
        f"run {i + 1}, {k}: {res['error'].splitlines()[0]}"
        for i, r in enumerate(runs)
        for k, res in r["crowd"].items()
        if "error" in res
    ]
    if errors:
        lines += ["", "Failed measurements: " + "; ".join(errors)]
    bg = [res.get("background_cpu_pct") for r in runs for res in r["crowd"].values()]
    lines += ["", f"Other programs on the machine before each measurement: median {f(report.med(bg), 0)}% of one CPU."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 400 clients, 1 run")
    ap.add_argument("--clients", type=int, default=None, help="the whole crowd (default 20,000)")
    ap.add_argument("--processes", type=int, default=2, help="server processes on Redis (default 2)")
    ap.add_argument("--join-rate", type=float, default=500.0, help="joins per second in all (default 500)")
    ap.add_argument("--messages", type=int, default=3, help="messages to all, one second apart (default 3)")
    ap.add_argument("--runs", type=int, default=None, help="runs; the median is reported (default 3)")
    ap.add_argument(
        "--setup",
        action="append",
        choices=["sqlite-1", "redis-1", "redis-N"],
        help="measure only this set-up (repeatable); default: all three",
    )
    ap.add_argument("--md", type=Path, default=None, help="write the table into this markdown file")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "scale_out.json")
    ap.add_argument("--from-json", type=Path, default=None, help="run nothing: render a saved results file")
    ap.add_argument("--quiet-wait", type=float, default=30.0, help="wait up to this long for other programs")
    ap.add_argument("--nice", type=int, default=0, help="niceness of servers and load generator (root: -10)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="abort after this")
    a = ap.parse_args()

    if a.from_json:
        results = json.loads(a.from_json.read_text())
    else:
        if a.processes < 2:
            ap.error("--processes must be at least 2")
        crowd = a.clients or (400 if a.quick else 20_000)
        runs = a.runs or (1 if a.quick else 3)
        base = QUICK if a.quick else Config()
        join_s = crowd / a.join_rate
        cfg = dataclasses.replace(
            base,
            crowd=crowd,
            crowd_join_rate=a.join_rate,
            crowd_messages=a.messages,
            crowd_deadline=max(base.crowd_deadline, 1.5 * join_s),
            crowd_timeout=max(base.crowd_timeout, 2 * join_s + 10),
        )
        if a.nice:
            harness.NICE[0] = a.nice
        plan = cpu_plan()
        signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("--max-minutes reached")))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop servers and remove the temp dir
        signal.alarm(int(a.max_minutes * 60))
        ss = [s for s in setups(a.processes) if not a.setup or s.key.replace(str(a.processes), "N") in a.setup]
        results = {
            "meta": {
                "command": ("python bench/scale_out.py " + " ".join(sys.argv[1:])).strip(),
                "machine": machine(),
                "cpu_note": plan.note + (f"; nice {a.nice}" if a.nice else ""),
                "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                "config": dataclasses.asdict(cfg),
                "join_rate": a.join_rate,
                "setups": [dataclasses.asdict(s) for s in ss],
            },
            "runs": [],
        }
        print(f"# {plan.note}", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix="chatbench-scale-"))
        try:
            for run in range(runs):
                out = {}
                for s in ss[run % len(ss) :] + ss[: run % len(ss)]:  # rotate who goes first
                    c = dataclasses.replace(cfg, crowd=round(crowd * s.share))
                    out[s.key] = measure(s, c, plan, tmp, run, 2.0 if a.quick else a.quiet_wait)
                results["runs"].append({"crowd": out})  # as bench/run.py keeps them: report.py reads both
        finally:
            signal.alarm(0)
            shutil.rmtree(tmp, ignore_errors=True)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(results, indent=1, default=str))
    body = table(results)
    print(body)
    if a.md:
        report.write_md(a.md, body, BLOCK)
        print(f"wrote {a.md}", file=sys.stderr)
    failed = any("error" in res for r in results["runs"] for res in r["crowd"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
