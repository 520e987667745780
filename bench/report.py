"""Medians over runs, ratios to the reference, the markdown tables and the plot."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import app_variant
from harness import ENGINES, LABELS, REFERENCE

BLOCKS = {  # the generated parts of docs/benchmarks.md
    "bench": ("<!-- bench:begin (written by `python bench/run.py --md`) -->", "<!-- bench:end -->"),
    "ablation": ("<!-- ablation:begin (written by `python bench/run.py --ablation --md`) -->", "<!-- ablation:end -->"),
    "scale-out": ("<!-- scale-out:begin (written by `python bench/scale_out.py --md`) -->", "<!-- scale-out:end -->"),
}


def med(values):
    vals = [v for v in values if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(vals) if vals else float("nan")


def per_run(results: dict, scenario: str, server: str) -> list[dict]:
    return [
        r[scenario][server]
        for r in results["runs"]
        if scenario in r and server in r[scenario] and "error" not in r[scenario][server]
    ]


def metric(results: dict, scenario: str, server: str, key: str) -> float:
    return med(r.get(key, float("nan")) for r in per_run(results, scenario, server))


def ratio(results: dict, scenario: str, server: str, key: str, ref: str = REFERENCE) -> float:
    """Median over runs of server/ref, both measured in the same run."""
    out = []
    for r in results["runs"]:
        a, b = r.get(scenario, {}).get(server, {}), r.get(scenario, {}).get(ref, {})
        x, y = a.get(key), b.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y not in (0, float("inf")):
            out.append(x / y)
    return med(out)


def _knee(res: dict) -> float:
    if "knee_per_s" in res:
        return res["knee_per_s"]
    from scenarios import knee  # results saved before the field existed

    return knee(res.get("steps", []), 100.0)


def knee_of(results: dict, server: str) -> float:
    return med(_knee(r) for r in per_run(results, "saturation", server))


def knee_ratio(results: dict, server: str, ref: str = REFERENCE) -> float:
    out = []
    for r in results["runs"]:
        a, b = r.get("saturation", {}).get(server, {}), r.get("saturation", {}).get(ref, {})
        if "steps" in a and "steps" in b and _knee(b) > 0:
            out.append(_knee(a) / _knee(b))
    return med(out)


def stall_vs_busy(results: dict, server: str) -> float:
    out = []
    for r in results["runs"]:
        s, b = r.get("stalled", {}).get(server, {}), r.get("busy", {}).get(server, {})
        if s.get("p99_ms") is not None and b.get("p99_ms"):
            out.append(s["p99_ms"] / b["p99_ms"])
    return med(out)


def f(v, digits=1, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞"
        if abs(v) >= 10000:
            return f"{v:,.0f}{unit}"
        return f"{v:.{digits}f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return str(v)


def fx(v):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}×"


def fx3(v):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}×"


def errors_of(results, scenario, server) -> str:
    msgs = [
        r[scenario][server]["error"]
        for r in results["runs"]
        if scenario in r and server in r[scenario] and "error" in r[scenario][server]
    ]
    return msgs[0] if msgs else ""


def noise(results: dict, scenario: str) -> str:
    """How busy the rest of the machine was while this scenario was measured."""
    vals = []
    for r in results["runs"]:
        for res in r.get(scenario, {}).values():
            if "other_cpu_pct" in res:
                vals.append(res["other_cpu_pct"])
            for st in res.get("steps", []):
                if st.get("other_cpu_pct") is not None:
                    vals.append(st["other_cpu_pct"])
            if "other_cpu_pct" not in res and not res.get("steps") and "background_cpu_pct" in res:
                vals.append(res["background_cpu_pct"])
    vals = [v for v in vals if v == v]  # no reading (nan) in --quick
    if not vals:
        return ""
    return (
        f"Other programs on the machine during these measurements: median {med(vals):.0f}% of one CPU "
        f"(max {max(vals):.0f}%).\n"
    )


def tables(results: dict) -> str:
    meta = results["meta"]
    cfg = meta["config"]
    servers = [s for s in meta["servers"]]
    scen = meta["scenarios"]
    out = []
    m = lambda sc, sv, k: metric(results, sc, sv, k)  # noqa: E731
    n_runs = len(results["runs"])
    note = f"median of {n_runs} run{'s' if n_runs != 1 else ''}"

    if "busy" in scen:
        d = cfg["rate"] * cfg["clients"]
        out += [
            f"### Busy room — {cfg['clients']} clients, {cfg['senders']} senders, {f(cfg['rate'], 0)} msg/s "
            f"({f(d, 0)} deliveries/s offered), {f(cfg['duration'], 0)} s ({note})",
            "",
            "| server | deliveries/s | p50 ms | p99 ms | max ms | server CPU µs/delivery | vs ref | server CPU % "
            "| RSS KB/conn | lost | load-gen CPU % |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in servers:
            if errors_of(results, "busy", s) and not per_run(results, "busy", s):
                out.append(f"| {LABELS[s]} | error: {errors_of(results, 'busy', s)} |||||||||| ")
                continue
            out.append(
                f"| {LABELS[s]} | {f(m('busy', s, 'deliveries_per_s'), 0)} | {f(m('busy', s, 'p50_ms'))} "
                f"| {f(m('busy', s, 'p99_ms'))} | {f(m('busy', s, 'max_ms'))} "
                f"| {f(m('busy', s, 'cpu_us_per_delivery'), 2)} "
                f"| {fx(ratio(results, 'busy', s, 'cpu_us_per_delivery'))} "
                f"| {f(m('busy', s, 'server_cpu_pct'), 0)} | {f(m('busy', s, 'rss_per_conn_kb'))} "
                f"| {f(m('busy', s, 'lost'), 0)} | {f(m('busy', s, 'gen_cpu_pct'), 0)} |"
            )
        out.append(noise(results, "busy"))
        for s in servers:
            if s in ENGINES and per_run(results, "busy", s):
                out.append(
                    f"{LABELS[s]}: the redis-server used {f(m('busy', s, 'redis_cpu_pct'), 0)}% of a CPU, "
                    f"{f(m('busy', s, 'redis_cpu_us_per_msg'), 0)} µs per message (one script per batch, "
                    "one publish, each process reading it back)."
                )
        out.append("")

    if "saturation" in scen:
        out += [
            f"### Saturation — {cfg['clients']} clients, {cfg['senders']} senders, rate rising in steps of "
            f"{f(cfg['sat_duration'], 1)} s ({note})",
            "",
            "| server | highest step with p99 < 100 ms (deliveries/s) | where p99 crosses 100 ms (interpolated) "
            "| vs ref | server CPU % at that step | load-gen CPU % there | CPU µs/delivery there |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in servers:
            best = []
            for r in per_run(results, "saturation", s):
                st = [x for x in r["steps"] if x["offered_per_s"] == r["max_rate_per_s"]]
                best.append(st[0]["cpu_us_per_delivery"] if st else float("nan"))
            out.append(
                f"| {LABELS[s]} | {f(m('saturation', s, 'max_rate_per_s'), 0)} "
                f"| {f(knee_of(results, s), 0)} | {fx(knee_ratio(results, s))} "
                f"| {f(m('saturation', s, 'server_cpu_pct_at_max'), 0)} "
                f"| {f(m('saturation', s, 'gen_cpu_pct_at_max'), 0)} | {f(med(best), 2)} |"
            )
        out += ["", "Steps (last run): offered deliveries/s → p99 ms (server CPU %, load-gen CPU %)", ""]
        last = results["runs"][-1].get("saturation", {})
        for s in servers:
            r = last.get(s, {})
            steps = ", ".join(
                f"{f(x['offered_per_s'], 0)} → {f(x['p99_ms'])} ({f(x['server_cpu_pct'], 0)}%, "
                f"{f(x['gen_cpu_pct'], 0)}%)"
                for x in r.get("steps", [])
            )
            out.append(f"- {LABELS[s]}: {steps or r.get('error', '–')}")
        out.append(noise(results, "saturation"))
        out.append("")

    if "crowd" in scen:
        out += [
            f"### Crowd — {f(cfg['crowd'])} clients join one room at {f(cfg['crowd_join_rate'], 0)}/s, then "
            f"{cfg['crowd_messages']} message(s) to all ({note})",
            "",
            "| server | joined | join time s | RSS KB/conn | vs ref | server CPU µs/join | message p50 ms | p99 ms "
            "| max ms | lost |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in servers:
            out.append(
                f"| {LABELS[s]} | {f(m('crowd', s, 'joined'), 0)} | {f(m('crowd', s, 'join_s'))} "
                f"| {f(m('crowd', s, 'rss_per_conn_kb'))} | {fx(ratio(results, 'crowd', s, 'rss_per_conn_kb'))} "
                f"| {f(m('crowd', s, 'join_cpu_us_per_join'), 0)} | {f(m('crowd', s, 'p50_ms'))} "
                f"| {f(m('crowd', s, 'p99_ms'))} | {f(m('crowd', s, 'max_ms'))} | {f(m('crowd', s, 'lost'), 0)} |"
            )
        out.append(noise(results, "crowd"))
        out.append("")

    if "stalled" in scen:
        out += [
            f"### Stalled readers — busy room, {cfg['stalled']} of {cfg['clients']} clients stop reading "
            f"({cfg['stall_rcvbuf']} B receive buffer), {f(cfg['stall_duration'], 0)} s ({note})",
            "",
            "| server | others' p50 ms | p99 ms | max ms | p99 vs own busy room | server RSS growth KB "
            "| kernel send queue KB (largest socket) | stalled closed by server | close codes "
            "| server conns after | lost |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in servers:
            runs = per_run(results, "stalled", s)
            codes = runs[-1].get("stalled_close_codes", []) if runs else []
            out.append(
                f"| {LABELS[s]} | {f(m('stalled', s, 'p50_ms'))} | {f(m('stalled', s, 'p99_ms'))} "
                f"| {f(m('stalled', s, 'max_ms'))} | {fx(stall_vs_busy(results, s))} "
                f"| {f(m('stalled', s, 'rss_growth_kb'), 0)} | {f(m('stalled', s, 'kernel_sendq_kb'), 0)} "
                f"({f(m('stalled', s, 'kernel_sendq_max_kb'), 0)}) | {f(m('stalled', s, 'stalled_closed'), 0)} "
                f"| {' '.join(codes) or '–'} | {f(m('stalled', s, 'server_conns_after'), 0)} "
                f"| {f(m('stalled', s, 'lost'), 0)} |"
            )
        out.append(noise(results, "stalled"))
        out.append("")

    if "join_history" in scen:
        out += [
            f"### Join with history — {f(cfg['hist_join_rate'], 0)} joins/s for {f(cfg['hist_duration'], 0)} s "
            f"into a room holding {cfg['history']} messages, each joiner staying {cfg['hist_hold']} s ({note})",
            "",
            "| server | joins | failed | connect→welcome p50 ms | p99 ms | max ms | vs ref (p99) "
            "| history msgs per join "
            "| server CPU µs/join |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in servers:
            runs = per_run(results, "join_history", s)
            hist = f"{runs[-1]['history_min']}–{runs[-1]['history_max']}" if runs else "–"
            out.append(
                f"| {LABELS[s]} | {f(m('join_history', s, 'joins'), 0)} | {f(m('join_history', s, 'failed'), 0)} "
                f"| {f(m('join_history', s, 'p50_ms'), 2)} | {f(m('join_history', s, 'p99_ms'), 2)} "
                f"| {f(m('join_history', s, 'max_ms'), 2)} | {fx(ratio(results, 'join_history', s, 'p99_ms'))} "
                f"| {hist} | {f(m('join_history', s, 'cpu_us_per_join'), 0)} |"
            )
        out.append(noise(results, "join_history"))
        out.append("")

    errs = [(sc, s, errors_of(results, sc, s)) for sc in scen for s in servers if errors_of(results, sc, s)]
    if errs:
        out += ["Errors:", ""] + [f"- {sc} / {LABELS[s]}: {e}" for sc, s, e in errs] + [""]
    return "\n".join(out)


def targets(results: dict, who: str = "app") -> str:
    """The issue's targets, checked for `who` against the reference of the same runs."""
    meta = results["meta"]
    if who not in meta["servers"]:
        return ""
    scen = meta["scenarios"]
    m = lambda sc, k: metric(results, sc, who, k)  # noqa: E731
    rows = []

    def row(name, target, value, ok):
        rows.append(f"| {name} | {target} | {value} | {'met' if ok else '**missed**'} |")

    if "busy" in scen:
        r = ratio(results, "busy", who, "cpu_us_per_delivery")
        row(
            "busy room",
            "server CPU per delivery ≤ 1.25× websockets ref",
            f"{fx3(r)} ({f(m('busy', 'cpu_us_per_delivery'), 2)} "
            f"vs {f(metric(results, 'busy', REFERENCE, 'cpu_us_per_delivery'), 2)} µs)",
            r <= 1.25,
        )
        row("busy room", "p99 ≤ 25 ms", f(m("busy", "p99_ms"), 1, " ms"), m("busy", "p99_ms") <= 25)
        row("busy room", "nothing lost", f(m("busy", "lost"), 0), m("busy", "lost") == 0)
    if "saturation" in scen:
        r = knee_ratio(results, who)
        per = [
            f"{_knee(a['saturation'][who]) / _knee(a['saturation'][REFERENCE]):.2f}"
            for a in results["runs"]
            if "steps" in a.get("saturation", {}).get(who, {})
            and "steps" in a.get("saturation", {}).get(REFERENCE, {})
            and _knee(a["saturation"][REFERENCE]) > 0
        ]
        row(
            "saturation",
            "highest rate with p99 < 100 ms ≥ 0.8× ref",
            f"{fx3(r)} (interpolated knee; per run {', '.join(per)})",
            r >= 0.8,
        )
    if "crowd" in scen:
        n = meta["config"]["crowd"]
        ok = med(float(x.get("joined_in_time", False)) for x in per_run(results, "crowd", who)) >= 1
        row(
            "crowd",
            f"all {n:,} joined within {meta['config']['crowd_deadline']:.0f} s",
            f"{f(m('crowd', 'joined'), 0)} in {f(m('crowd', 'join_s'))} s",
            ok,
        )
        row(
            "crowd",
            "RSS ≤ 16 KB per connection",
            f(m("crowd", "rss_per_conn_kb"), 1, " KB"),
            m("crowd", "rss_per_conn_kb") <= 16,
        )
        row(
            "crowd",
            "one message reaches all, p99 ≤ 300 ms",
            f"{f(m('crowd', 'p99_ms'), 1, ' ms')}, lost {f(m('crowd', 'lost'), 0)}",
            m("crowd", "p99_ms") <= 300 and m("crowd", "lost") == 0,
        )
    if "stalled" in scen:
        r = stall_vs_busy(results, who)
        row(
            "stalled readers",
            "others' p99 ≤ 1.2× busy room",
            f"{fx3(r)} ({f(m('stalled', 'p99_ms'))} vs {f(m('busy', 'p99_ms'))} ms)",
            r <= 1.2,
        )
        closed = m("stalled", "stalled_closed")
        row(
            "stalled readers",
            "memory bounded (stalled clients closed)",
            f"{f(closed, 0)} of {meta['config']['stalled']} closed; RSS +{f(m('stalled', 'rss_growth_kb'), 0)} KB, "
            f"kernel send queues {f(m('stalled', 'kernel_sendq_kb'), 0)} KB",
            closed >= meta["config"]["stalled"],
        )
    if "join_history" in scen:
        row(
            "join with history",
            "connect→welcome p50 ≤ 5 ms",
            f(m("join_history", "p50_ms"), 2, " ms"),
            m("join_history", "p50_ms") <= 5,
        )
        row(
            "join with history",
            "connect→welcome p99 ≤ 20 ms",
            f(m("join_history", "p99_ms"), 2, " ms"),
            m("join_history", "p99_ms") <= 20,
        )
    head = [f"### Targets — {LABELS[who]}", "", "| scenario | target | measured | |", "|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


def header(results: dict) -> str:
    meta = results["meta"]
    retried = sum(1 for r in results["runs"] for sc in r.values() for res in sc.values() if res.get("attempt", 1) > 1)
    lines = [
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Run: {meta['date']}, {meta['wall_s']:.0f} s; {meta['cpu_note']}  ",
        f"Versions: {meta['versions']}  ",
    ]
    from harness import ROOT

    if meta.get("app_path") and Path(meta["app_path"]) != ROOT:
        lines.append(f"App: chat_core imported from `{meta['app_path']}`  ")
    if retried:
        lines.append(f"{retried} measurement(s) were repeated because other programs were busy during them.  ")
    return "\n".join(lines) + "\n"


def floor_line(results: dict) -> str:
    fl = results.get("floor") or {}
    if "total_us" not in fl:
        return ""
    return (
        f"Kernel floor (bench/floor.py, same machine, same run): one plain `send()` of a ready-made frame per "
        f"delivery to {results['meta']['config']['clients']} loopback sockets costs {fl['user_us']:.1f} µs user + "
        f"{fl['kernel_us']:.1f} µs kernel in the sender + {fl['softirq_us']:.1f} µs softirq on the server CPU = "
        f"**{fl['total_us']:.1f} µs per delivery with no WebSocket or chat code**: one CPU tops out near "
        f"{fl['max_per_s']:,.0f} deliveries/s, and the busy room's {fl['per_s']:,.0f}/s takes "
        f"{fl['total_us'] * fl['per_s'] / 1e4:.0f}% of it.\n"
    )


def markdown(results: dict, plot_rel: str | None) -> str:
    parts = [header(results), floor_line(results), targets(results, "app"), targets(results, "gradio"), tables(results)]
    if plot_rel:
        parts.append(f"![latency against offered rate]({plot_rel})\n")
    return "\n".join(p for p in parts if p)


def ablation(results: dict) -> str:
    """The busy room and the crowd for the app and its variants, each one fast part short."""
    servers, scen = results["meta"]["servers"], results["meta"]["scenarios"]
    what = {"app": "nothing", REFERENCE: "(the reference)", **{f"app-{v}": w for v, w in app_variant.VARIANTS.items()}}
    head = ["| server | what differs from the app |"]
    if "busy" in scen:
        head.append(" busy: CPU µs/delivery | vs app | vs ref | busy p99 ms |")
    if "crowd" in scen:
        head.append(" crowd: CPU µs/join | vs app | joined in s | RSS KB/conn | message p99 ms |")
    rows = ["".join(head), "|" + "---|" * "".join(head).count(" |")]
    for s in servers:
        m = lambda sc, k, s=s: metric(results, sc, s, k)  # noqa: E731
        row = f"| {LABELS[s]} | {what.get(s, '')} |"
        if "busy" in scen:
            row += (
                f" {f(m('busy', 'cpu_us_per_delivery'), 2)} | "
                f"{fx(ratio(results, 'busy', s, 'cpu_us_per_delivery', ref='app'))} | "
                f"{fx(ratio(results, 'busy', s, 'cpu_us_per_delivery'))} | {f(m('busy', 'p99_ms'))} |"
            )
        if "crowd" in scen:
            row += (
                f" {f(m('crowd', 'join_cpu_us_per_join'), 0)} | "
                f"{fx(ratio(results, 'crowd', s, 'join_cpu_us_per_join', ref='app'))} | "
                f"{f(m('crowd', 'join_s'))} | {f(m('crowd', 'rss_per_conn_kb'))} | {f(m('crowd', 'p99_ms'))} |"
            )
        rows.append(row)
    return "\n".join([header(results), "\n".join(rows), ""])


def write_md(path: Path, body: str, block_name: str = "bench") -> None:
    BEGIN, END = BLOCKS[block_name]
    block = f"{BEGIN}\n{body}\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n## Latest run\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n## Latest run\n\n" + block + "\n"
    path.write_text(text)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"app": "tab:blue", "gradio": "tab:purple", "websockets": "tab:green", "seed": "tab:red"}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for s in results["meta"]["servers"]:
        by_rate: dict[float, list] = {}
        for r in per_run(results, "saturation", s):
            for st in r["steps"]:
                by_rate.setdefault(st["offered_per_s"], []).append(st)
        if not by_rate:
            continue
        xs = sorted(by_rate)
        p99 = [min(med(x["p99_ms"] for x in by_rate[k]), 1e4) for k in xs]
        p50 = [min(med(x["p50_ms"] for x in by_rate[k]), 1e4) for k in xs]
        ax.plot(xs, p99, "o-", color=colors.get(s), label=f"{LABELS[s]} p99")
        ax.plot(xs, p50, "x--", color=colors.get(s), alpha=0.6, label=f"{LABELS[s]} p50")
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    ax.text(ax.get_xlim()[0], 110, " p99 limit 100 ms", color="grey", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries per second (messages/s × clients)")
    ax.set_ylabel("send → receive latency, ms (log)")
    cfg = results["meta"]["config"]
    ax.set_title(
        f"Fan-out latency vs offered rate — {cfg['clients']} clients in one room "
        f"(median of {len(results['runs'])} runs)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
