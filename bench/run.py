#!/usr/bin/env python3
"""Chat fan-out benchmark (issue 5): the app against two reference servers.

    python bench/run.py                      # every scenario, 3 runs, medians
    python bench/run.py --quick              # smoke run, under a minute
    python bench/run.py --scenario busy --runs 5
    python bench/run.py --md docs/benchmarks.md --plot docs/benchmarks.png
    python bench/run.py --nice -10 ...       # root on a shared machine: priority (see pin.py)
    python bench/run.py --app-path DIR ...   # benchmark another chat_core checkout
    python bench/run.py --from-json FILE --md docs/benchmarks.md   # re-render saved results
    python bench/run.py --ablation --md docs/benchmarks.md         # what the frame writer, uvloop
                                                                   # and orjson each buy (busy room)

Servers (each started fresh per scenario and run, pinned to the last CPU):
  app         python -m chat_core (uvicorn, the chat's WebSocket layer, SQLite in a temp dir,
              abuse limits off through CHAT_RATE=0 CHAT_JOIN_RATE=0 CHAT_MAX_CONN_PER_IP=0 and the
              other limits of bench/harness.py's APP_ENV)
  gradio      python gradio_app.py: the same chat inside the Gradio app, as users run it
  websockets  bench/ref_websockets.py: websockets + broadcast, no persistence (the reference)
  seed        bench/ref_seed.py: the seed README's design (the before)
With --ablation: the app and three variants of it, each without one fast part
(bench/app_variant.py), against the websockets reference, in the busy room and the crowd.
The load generator (bench/loadgen.py worker processes) and this harness run on
the other CPU(s). Figures are medians over --runs runs; ratios are taken to the
websockets reference measured in the same run, then the median of those.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import harness  # bench/, next to this file (the script's directory is on sys.path)
import report
from harness import (
    APPS,
    ENGINES,
    LABELS,
    REFERENCE,
    ROOT,
    SERVER_NAMES,
    VARIANTS,
    Server,
    app_available,
    cpu_plan,
    wait_quiet,
)
from scenarios import QUICK, SCENARIOS, Config, Ctx


def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(open("/proc/meminfo").readline().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        mem = float("nan")
    return (
        f"{os.cpu_count()} × {model}, {mem:.0f} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}"
    )


def versions() -> str:
    out = []
    for mod in ("websockets", "uvicorn", "fastapi", "starlette", "uvloop", "httptools", "orjson"):
        try:
            m = __import__(mod)
            out.append(f"{mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            out.append(f"{mod} missing")
    return ", ".join(out)


def noise_of(res: dict) -> float:
    """The most CPU other programs took during any measured window of this result (% of one CPU)."""
    if "steps" in res:  # saturation repeats its noisy steps itself
        return 0.0
    return res.get("other_cpu_pct", 0.0)


def brief(sc: str, res: dict) -> str:
    if "error" in res:
        return "ERROR " + res["error"]
    g = lambda k, d=1: report.f(res.get(k), d)  # noqa: E731
    if sc in ("busy", "stalled"):
        extra = f" closed {res.get('stalled_closed')}" if sc == "stalled" else ""
        return (
            f"{g('deliveries_per_s', 0)}/s p50 {g('p50_ms')} p99 {g('p99_ms')} max {g('max_ms')} ms, "
            f"{g('cpu_us_per_delivery', 2)} µs/deliv, srv {g('server_cpu_pct', 0)}% gen {g('gen_cpu_pct', 0)}%, "
            f"lost {res.get('lost')}{extra}; core {g('server_core_busy_pct', 0)}% other {g('other_cpu_pct', 0)}%"
        )
    if sc == "saturation":
        return f"max {g('max_rate_per_s', 0)}/s with p99<100ms; steps " + " ".join(
            f"{s['offered_per_s']:.0f}:{report.f(s['p99_ms'])}" for s in res["steps"]
        )
    if sc == "crowd":
        return (
            f"joined {res.get('joined')} in {g('join_s')} s, {g('rss_per_conn_kb')} KB/conn, "
            f"msg p50 {g('p50_ms')} p99 {g('p99_ms')} ms lost {res.get('lost')}"
        )
    if sc == "join_history":
        return (
            f"{res.get('joined')}/{res.get('joins')} p50 {g('p50_ms', 2)} p99 {g('p99_ms', 2)} "
            f"max {g('max_ms', 2)} ms, history {res.get('history_min')}-{res.get('history_max')}"
        )
    return ""


def measure(
    a: argparse.Namespace, sc: str, s: str, run: int, runs: int, cfg: Config, plan, tmp: Path, server: Server | None
) -> dict:
    """One scenario on one server: a fresh server unless one is shared (--quick)."""
    shared = server is not None
    t0 = time.monotonic()
    try:
        if server is None:
            server = Server(s, plan.server, tmp)
        background = float("nan") if a.quick else wait_quiet(a.quiet_wait)
        ctx = Ctx(
            server,
            cfg,
            plan.load,
            tmp,
            room=f"{sc.replace('_', '-')}-{run}",
            tag=f"{sc}-{s}-{run}",
            server_cpu=plan.server,
            noise_limit=a.noise_limit,
            noise_retries=0 if a.quick else a.noise_retries,
        )
        res = SCENARIOS[sc](ctx)
        res["background_cpu_pct"] = background
        if not server.alive():
            res.setdefault("error", f"server died; log tail:\n{server.log_tail()}")
    except Exception as e:  # one failed scenario must not lose the others' figures
        res = {"error": f"{e.__class__.__name__}: {e}"}
        traceback.print_exc()
    finally:
        if server is not None and not shared:
            server.stop()
    res["wall_s"] = time.monotonic() - t0
    print(
        f"run {run + 1}/{runs} {sc:<12} {LABELS[s]:<16} {res['wall_s']:5.1f}s  {brief(sc, res)}",
        file=sys.stderr,
        flush=True,
    )
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (< 1 minute), 1 run, small loads")
    ap.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="run only this scenario (repeatable); default: all"
    )
    ap.add_argument(
        "--servers",
        default=None,
        help=f"comma list of {','.join(SERVER_NAMES)} (default: all; app skipped if not importable)",
    )
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario; the median is reported (default 3)")
    ap.add_argument("--plot", type=Path, default=None, help="write the latency-vs-rate PNG here")
    ap.add_argument("--md", type=Path, default=None, help="write the tables into this markdown file")
    ap.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "latest.json",
        help="raw results (default bench/results/latest.json)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each measurement, wait up to this many seconds for other programs to go quiet",
    )
    ap.add_argument(
        "--app-path",
        type=Path,
        default=None,
        help="directory to import chat_core from (default: this checkout), e.g. to compare a branch",
    )
    ap.add_argument(
        "--noise-limit",
        type=float,
        default=25.0,
        help="a measurement during which other programs used more than this %% of a CPU is repeated",
    )
    ap.add_argument("--noise-retries", type=int, default=2, help="at most this many repeats per measurement")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the server and load generator (e.g. -10 as root on a shared machine)",
    )
    ap.add_argument("--max-minutes", type=float, default=90.0, help="abort the whole benchmark after this")
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="run nothing: render the tables (and --md, --plot) from a saved results file",
    )
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="busy room and crowd only, for the app, each variant of bench/app_variant.py (one fast "
        "part taken out) and the websockets reference: what each part buys",
    )
    ap.add_argument(
        "--client-check",
        action="store_true",
        help="only compare the load generator's client with websockets.asyncio.client",
    )
    a = ap.parse_args()

    if a.from_json:  # only re-render saved results
        results = json.loads(a.from_json.read_text())
        return render(results, a, results["meta"]["scenarios"])

    if a.client_check:
        import clientcheck

        return clientcheck.main()

    started = time.monotonic()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("--max-minutes reached")))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop servers and remove the temp dir on kill
    signal.alarm(int(a.max_minutes * 60))

    cfg: Config = QUICK if a.quick else Config()
    runs = a.runs or (1 if a.quick else 3)
    scenarios = a.scenario or list(SCENARIOS)
    servers = a.servers.split(",") if a.servers else list(SERVER_NAMES)
    if a.ablation:
        scenarios, servers = ["busy", "crowd"], ["app", *VARIANTS, REFERENCE]
    for s in servers:
        if s not in SERVER_NAMES + VARIANTS + ENGINES:
            ap.error(f"unknown server {s!r}")
    if a.app_path:
        harness.APP_PATH[0] = a.app_path.resolve()
    ok, why = app_available()
    if not ok and any(s in servers for s in APPS):
        if a.servers:
            ap.error(f"python -m chat_core is not importable: {why}")
        print(f"note: skipping the app, chat_core is not importable ({why})", file=sys.stderr)
        servers = [s for s in servers if s not in APPS]
    if REFERENCE not in servers:
        print("note: the websockets reference is not in --servers: no ratios", file=sys.stderr)

    plan = cpu_plan()
    if a.nice:
        harness.NICE[0] = a.nice
        # This harness only samples /proc; the server and the load generator get the priority,
        # each in a session (autogroup) of its own (see pin.py). The harness's own session is
        # the caller's, so it is left alone.
        plan.note += f"; server and load generator at nice {a.nice}"
    print(f"# {plan.note}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="chatbench-"))
    cmd = "python bench/run.py " + " ".join(sys.argv[1:])
    results: dict = {
        "meta": {
            "command": cmd.strip(),
            "machine": machine(),
            "versions": versions(),
            "cpu_note": plan.note,
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "servers": servers,
            "scenarios": scenarios,
            "config": dataclasses.asdict(cfg),
            "quick": a.quick,
            "runs": runs,
            "app_path": str(harness.APP_PATH[0]),
        },
        "runs": [],
    }

    shared: dict[str, Server] = {}
    try:
        for run in range(runs):
            order = servers[run % len(servers) :] + servers[: run % len(servers)]  # rotate who goes first
            if a.quick:  # one server per kind for the whole smoke run, a room per scenario
                shared = {s: Server(s, plan.server, tmp) for s in order}
            out: dict = {}
            for sc in scenarios:
                out[sc] = {}
                for s in order:
                    for attempt in range(1, 2 + (0 if a.quick else a.noise_retries)):
                        res = measure(a, sc, s, run, runs, cfg, plan, tmp, shared.get(s))
                        res["attempt"] = attempt
                        out[sc][s] = res
                        if noise_of(res) <= a.noise_limit:
                            break
                        print(
                            f"    other programs used {noise_of(res):.0f}% of a CPU during that measurement: "
                            f"measuring it again",
                            file=sys.stderr,
                            flush=True,
                        )
            for server in shared.values():
                server.stop()
            shared = {}
            results["runs"].append(out)
    finally:
        signal.alarm(0)
        for server in shared.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    if not a.quick and set(scenarios) & {"busy", "saturation"}:
        import floor

        results["floor"] = floor.measure(cfg.clients, int(cfg.rate * 4), cfg.rate)
        print(f"kernel floor: {results['floor']}", file=sys.stderr)
    results["meta"]["wall_s"] = time.monotonic() - started
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=1, default=str))
    return render(results, a, scenarios)


def render(results: dict, a: argparse.Namespace, scenarios: list[str]) -> int:
    plot_rel = None
    if a.plot and "saturation" in scenarios:
        a.plot.parent.mkdir(parents=True, exist_ok=True)
        report.plot(results, a.plot)
        if a.md:
            plot_rel = os.path.relpath(a.plot, a.md.parent)
    ablation = getattr(a, "ablation", False) or any(s in VARIANTS for s in results["meta"]["servers"])
    body = report.ablation(results) if ablation else report.markdown(results, plot_rel)
    print(body)
    if a.md:
        report.write_md(a.md, body, "ablation" if ablation else "bench")
        print(f"wrote {a.md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
