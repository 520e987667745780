"""The five scenarios of issue 5. Each takes a running server and returns its figures.

Every phase has a deadline; every loop is bounded in count and time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (
    Load,
    Server,
    Window,
    analyse,
    established,
    listen_overflows,
    ms_stats,
    now_ns,
    server_sockets,
    sleep_until,
)

PER_WORKER = 5000  # clients per load-generator process (ulimit -n is 20,000; stay well below)
SEC = 1_000_000_000


@dataclass(frozen=True)
class Config:
    # busy room (also the base of saturation and stalled readers)
    clients: int = 500
    senders: int = 10
    rate: float = 150.0  # messages/s in all; deliveries/s = rate * clients
    warm: float = 1.0
    duration: float = 6.0
    join_rate: float = 500.0
    drain: float = 5.0
    # saturation
    sat_rates: tuple = (50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000, 1200, 1500)
    sat_warm: float = 0.5
    sat_duration: float = 3.0
    sat_limit_ms: float = 100.0
    # crowd
    crowd: int = 10_000
    crowd_join_rate: float = 500.0
    crowd_deadline: float = 30.0  # the target: all joined within this
    crowd_timeout: float = 45.0  # give up waiting after this
    crowd_messages: int = 3
    crowd_settle: float = 2.0  # after the joins: presence frames flush, buffers settle
    settle: float = 0.5  # after a room's joins (notices) and after the history fill (store writes)
    # stalled readers
    stalled: int = 5
    stall_duration: float = 15.0
    stall_rcvbuf: int = 4096
    stall_resume_wait: float = 3.0  # after reading again, how long to wait for a close from the server
    # join with history
    history: int = 100
    hist_join_rate: float = 50.0
    hist_duration: float = 10.0
    hist_hold: float = 1.0


QUICK = Config(
    clients=100,
    rate=150.0,
    warm=0.3,
    duration=1.0,
    join_rate=1000.0,
    drain=2.0,
    sat_rates=(150, 400),
    sat_warm=0.2,
    sat_duration=0.8,
    crowd=400,
    crowd_join_rate=800.0,
    crowd_deadline=5.0,
    crowd_timeout=8.0,
    crowd_messages=1,
    stalled=2,
    stall_duration=1.0,
    stall_resume_wait=0.3,
    crowd_settle=0.5,
    settle=0.2,
    history=100,
    hist_join_rate=20.0,
    hist_duration=1.0,
    hist_hold=0.2,
)


@dataclass
class Ctx:
    server: Server
    cfg: Config
    cpus: str  # load-generator CPUs
    tmp: Path
    room: str
    tag: str
    server_cpu: str = "-"
    noise_limit: float = float("inf")  # repeat a saturation step when other programs took more CPU (%)
    noise_retries: int = 0


def _connect(load: Load, ctx: Ctx, group: str, prefix: str, count: int, rate: float, timeout: float, **kw) -> dict:
    """Split `count` clients over the workers, worker i on the server's process i mod the
    processes (clients spread evenly over several processes); merge their answers."""
    n = len(load.workers)
    ports = ctx.server.ports
    shares = [count // n + (1 if i < count % n else 0) for i in range(n)]
    ids, start = [], 0
    for i, (w, share) in enumerate(zip(load.workers, shares, strict=True)):
        ids.append(
            w.submit(
                "connect",
                group=group,
                host="127.0.0.1",
                port=ports[i % len(ports)],
                room=ctx.room,
                prefix=prefix,
                start=start,
                count=share,
                rate=rate / n,
                timeout=timeout,
                **kw,
            )
        )
        start += share
    answers = [w.wait(i, timeout + 30) for w, i in zip(load.workers, ids, strict=True)]
    out = {
        "joined": sum(a["joined"] for a in answers),
        "failed": sum(a["failed"] for a in answers),
        "pending": sum(a["pending"] for a in answers),
        "first_connect": min(a["first_connect"] for a in answers),
        "last_welcome": max(a["last_welcome"] for a in answers),
        "history_min": min(a["history_min"] for a in answers),
        "history_max": max(a["history_max"] for a in answers),
        "fail_reasons": {},
    }
    for a in answers:
        for k, v in a["fail_reasons"].items():
            out["fail_reasons"][k] = out["fail_reasons"].get(k, 0) + v
    if kw.get("want_join_ns"):
        out["join_ns"] = [x for a in answers for x in a["join_ns"]]
    return out


def _drain(load: Load, expected: int, limit: float, idle: float = 3.0) -> int:
    """Wait until `expected` receipts are in, or nothing new came for `idle` s (longer than a
    full GC pause of a big server), or `limit` s passed."""
    deadline = time.monotonic() + limit
    last, still = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = load.received()
        if got >= expected:
            return got
        if got != last:
            last, still = got, time.monotonic()
        elif time.monotonic() - still > idle:
            return got
        time.sleep(0.1)
    return last


def _errors(load: Load) -> dict:
    errs: dict = {}
    for st in load.all("stats", 30):
        for k, v in st["errors"].items():
            errs[k] = errs.get(k, 0) + v
    return errs


def _send_phase(
    load: Load,
    ctx: Ctx,
    rate: float,
    warm: float,
    duration: float,
    receivers: int,
    drain: float,
    stall: int = 0,
    sample_rss: bool = False,
) -> dict:
    """Senders on worker 0 at `rate` msg/s for warm+duration s; measure the window after warm-up."""
    srv, w0 = ctx.server, load.workers[0]
    start = now_ns() + SEC // 5
    count = int(round(rate * (warm + duration)))
    sid = w0.submit("send", group="room", senders=ctx.cfg.senders, rate=rate, start_ns=start, count=count)
    if stall:
        sleep_until(start)
        load.workers[-1].call("stall", 10, group="stall", count=stall)
    win0, win1 = start + int(warm * SEC), start + int((warm + duration) * SEC)
    rss_start = srv.rss()
    sleep_until(win0)
    c0, g0, t0, r0 = srv.cpu(), load.cpu(), now_ns(), srv.redis_cpu()
    win = Window(srv.pid, [w.pid for w in load.workers], ctx.server_cpu)
    rss_max = srv.rss()
    if sample_rss:
        while now_ns() < win1 - SEC // 4:
            time.sleep(0.25)
            rss_max = max(rss_max, srv.rss())
    sleep_until(win1)
    c1, g1, t1, r1 = srv.cpu(), load.cpu(), now_ns(), srv.redis_cpu()
    cores = win.close()
    rss_end = srv.rss()
    rss_max = max(rss_max, rss_end)
    sent = w0.wait(sid, warm + duration + 30)
    _drain(load, sent["sent"] * receivers, drain)
    recs = load.collect(ctx.tmp, ctx.tag)
    res = analyse(recs, win0, win1, receivers)
    secs = (t1 - t0) / 1e9
    res.update(
        {
            "rate_msgs": rate,
            "offered_per_s": rate * receivers,
            "server_cpu_pct": 100 * (c1 - c0) / secs,
            "gen_cpu_pct": 100 * (g1 - g0) / secs,
            "cpu_us_per_delivery": 1e6 * (c1 - c0) / res["deliveries_in_window"]
            if res["deliveries_in_window"]
            else float("inf"),
            "send_lag_max_ms": sent["lag_max_ns"] / 1e6,
            "redis_cpu_pct": 100 * (r1 - r0) / secs,  # nan without Redis
            "redis_cpu_us_per_msg": 1e6 * (r1 - r0) / max(1.0, rate * duration),
            "rss_start_kb": rss_start,
            "rss_max_kb": rss_max,
            "rss_end_kb": rss_end,
            **cores,
        }
    )
    return res


def _room(load: Load, ctx: Ctx, clients: int, stalled: int = 0) -> dict:
    """Join `clients` into the room: `stalled` small-buffer ones on the last worker, the rest spread."""
    cfg = ctx.cfg
    timeout = clients / cfg.join_rate + 30
    rss0 = ctx.server.rss()
    j = _connect(load, ctx, "room", "u", clients - stalled, cfg.join_rate, timeout)
    if stalled:
        # The stallers get a 4 KiB receive buffer, so the server feels a stall within seconds,
        # as it would from a phone on a dead link, rather than after the kernel soaks up minutes.
        s = load.workers[-1].call(
            "connect",
            timeout + 30,
            group="stall",
            host="127.0.0.1",
            port=ctx.server.port,
            room=ctx.room,
            prefix="z",
            start=0,
            count=stalled,
            rate=cfg.join_rate,
            timeout=timeout,
            rcvbuf=cfg.stall_rcvbuf,
        )
        j["joined"] += s["joined"]
        j["failed"] += s["failed"]
    time.sleep(cfg.settle)  # join notices settle
    j["rss_per_conn_kb"] = (ctx.server.rss() - rss0) / max(1, j["joined"])
    return j


def knee(steps: list[dict], limit_ms: float) -> float:
    """The offered rate where p99 crosses `limit_ms`, interpolated on log(p99) between the last
    step under it and the first over it (a step with losses, or ∞, counts as 10× the limit)."""
    prev = None
    for st in sorted(steps, key=lambda s: s["offered_per_s"]):
        p = st["p99_ms"] if st["lost"] == 0 and math.isfinite(st["p99_ms"]) else 10 * limit_ms
        p = min(p, 10 * limit_ms)
        if p >= limit_ms:
            if prev is None:
                return 0.0
            x0, p0 = prev
            x1 = st["offered_per_s"]
            return x0 + (x1 - x0) * (math.log(limit_ms) - math.log(p0)) / (math.log(p) - math.log(p0))
        prev = (st["offered_per_s"], max(p, 1e-3))
    return prev[0] if prev else 0.0  # never crossed within the ramp: at least its top


# -- scenarios ----------------------------------------------------------------
def busy(ctx: Ctx) -> dict:
    cfg = ctx.cfg
    load = Load(max(1, math.ceil(cfg.clients / PER_WORKER)), ctx.cpus)
    try:
        j = _room(load, ctx, cfg.clients)
        if j["joined"] < cfg.clients:
            return {"error": f"only {j['joined']} of {cfg.clients} joined: {j['fail_reasons']}"}
        res = _send_phase(load, ctx, cfg.rate, cfg.warm, cfg.duration, j["joined"], cfg.drain)
        res["rss_per_conn_kb"] = j["rss_per_conn_kb"]
        res["errors"] = _errors(load)
        return res
    finally:
        load.stop()


def saturation(ctx: Ctx) -> dict:
    cfg = ctx.cfg
    load = Load(max(1, math.ceil(cfg.clients / PER_WORKER)), ctx.cpus)
    steps = []
    try:
        j = _room(load, ctx, cfg.clients)
        if j["joined"] < cfg.clients:
            return {"error": f"only {j['joined']} of {cfg.clients} joined: {j['fail_reasons']}"}
        over = 0
        for rate in cfg.sat_rates:
            for _attempt in range(1 + ctx.noise_retries):
                r = _send_phase(load, ctx, rate, cfg.sat_warm, cfg.sat_duration, j["joined"], cfg.drain)
                if r.get("other_cpu_pct", 0.0) <= ctx.noise_limit:
                    break
            steps.append(
                {
                    k: r.get(k)
                    for k in (
                        "rate_msgs",
                        "offered_per_s",
                        "deliveries_per_s",
                        "p50_ms",
                        "p99_ms",
                        "max_ms",
                        "lost",
                        "server_cpu_pct",
                        "gen_cpu_pct",
                        "cpu_us_per_delivery",
                        "server_core_busy_pct",
                        "other_cpu_pct",
                    )
                }
            )
            if not r["p99_ms"] < cfg.sat_limit_ms:
                over += 1
            # past the knee: two steps over the limit, or one far over it, end the ramp
            if over >= 2 or r["p99_ms"] > 10 * cfg.sat_limit_ms or r["lost"] > 0.01 * r["expected"]:
                break
        ok = [s for s in steps if s["p99_ms"] < cfg.sat_limit_ms and s["lost"] == 0]
        best = max(ok, key=lambda s: s["offered_per_s"]) if ok else None
        return {
            "steps": steps,
            "knee_per_s": knee(steps, cfg.sat_limit_ms),
            "max_rate_per_s": best["offered_per_s"] if best else 0.0,
            "max_rate_msgs": best["rate_msgs"] if best else 0.0,
            "gen_cpu_pct_at_max": best["gen_cpu_pct"] if best else float("nan"),
            "server_cpu_pct_at_max": best["server_cpu_pct"] if best else float("nan"),
            "ramp_ended": "limit" if len(steps) < len(cfg.sat_rates) else "top",
        }
    finally:
        load.stop()


def crowd(ctx: Ctx) -> dict:
    cfg = ctx.cfg
    n = cfg.crowd
    procs = len(ctx.server.ports)  # at least one worker per server process, each on one of them
    load = Load(procs * max(math.ceil(n / PER_WORKER / procs), math.ceil(2 / procs)), ctx.cpus)
    try:
        rss0, c0, g0, r0 = ctx.server.rss(), ctx.server.cpu(), load.cpu(), ctx.server.redis_cpu()
        o0, t0 = listen_overflows(), now_ns()
        j = _connect(load, ctx, "room", "c", n, cfg.crowd_join_rate, cfg.crowd_timeout)
        c1, g1, t1, r1 = ctx.server.cpu(), load.cpu(), now_ns(), ctx.server.redis_cpu()
        join_s = (j["last_welcome"] - j["first_connect"]) / 1e9 if j["joined"] else float("nan")
        time.sleep(cfg.crowd_settle)
        rss1, each = ctx.server.rss(), ctx.server.established()
        res = {
            "clients": n,
            "joined": j["joined"],
            "failed": j["failed"],
            "pending": j["pending"],
            "fail_reasons": j["fail_reasons"],
            "join_s": join_s,
            "joined_in_time": j["joined"] == n and join_s <= cfg.crowd_deadline,
            "rss_per_conn_kb": (rss1 - rss0) / max(1, j["joined"]),
            "rss_mb": rss1 / 1024,
            "server_conns": sum(each),
            "server_conns_each": each,
            "join_cpu_us_per_join": 1e6 * (c1 - c0) / max(1, j["joined"]),
            "redis_cpu_us_per_join": 1e6 * (r1 - r0) / max(1, j["joined"]),  # nan without Redis
            "listen_overflows": listen_overflows() - o0,  # connections the kernel dropped: server too slow to accept
            "gen_cpu_pct_joining": 100 * (g1 - g0) / ((t1 - t0) / 1e9),
        }
        if not j["joined"]:
            return res
        # One sender, `crowd_messages` messages one second apart, each to every member.
        w0 = load.workers[0]
        start = now_ns() + SEC // 5
        m = cfg.crowd_messages
        c0, g0, r0, t0 = ctx.server.cpu(), load.cpu(), ctx.server.redis_cpu(), now_ns()
        sent = w0.call("send", m + 30, group="room", senders=1, rate=1.0, start_ns=start, count=m)
        _drain(load, sent["sent"] * j["joined"], cfg.drain + 5)
        c1, g1, r1, t1 = ctx.server.cpu(), load.cpu(), ctx.server.redis_cpu(), now_ns()
        recs = load.collect(ctx.tmp, ctx.tag)
        r = analyse(recs, start, start + m * SEC, j["joined"])
        res.update({k: r[k] for k in ("sent", "expected", "received", "lost", "p50_ms", "p99_ms", "max_ms")})
        res["cpu_us_per_delivery"] = 1e6 * (c1 - c0) / max(1, r["received"])
        # a few messages cost Redis less than its own idle housekeeping: a share of a CPU, not per message
        res["redis_cpu_pct_messages"] = 100 * (r1 - r0) / ((t1 - t0) / 1e9)  # nan without Redis
        res["errors"] = _errors(load)
        return res
    finally:
        load.stop()


def stalled(ctx: Ctx) -> dict:
    cfg = ctx.cfg
    load = Load(max(1, math.ceil(cfg.clients / PER_WORKER)), ctx.cpus)
    try:
        j = _room(load, ctx, cfg.clients, stalled=cfg.stalled)
        if j["joined"] < cfg.clients:
            return {"error": f"only {j['joined']} of {cfg.clients} joined: {j['fail_reasons']}"}
        conns0 = established(ctx.server.port)
        res = _send_phase(
            load,
            ctx,
            cfg.rate,
            cfg.warm,
            cfg.stall_duration,
            cfg.clients - cfg.stalled,
            cfg.drain,
            stall=cfg.stalled,
            sample_rss=True,
        )
        res["server_conns_before"] = conns0
        n, q, big = server_sockets(ctx.server.port)
        res["server_conns_after"] = n
        res["kernel_sendq_kb"] = q / 1024
        res["kernel_sendq_max_kb"] = big / 1024
        res["rss_growth_kb"] = res["rss_max_kb"] - res["rss_start_kb"]
        r = load.workers[-1].call("resume", 30, wait=cfg.stall_resume_wait)
        res["stalled_closed"] = r["closed_by_server"]
        res["stalled_close_codes"] = r["codes"]
        res["stalled_still_open"] = r["still_open"]
        res["errors"] = _errors(load)
        return res
    finally:
        load.stop()


def join_history(ctx: Ctx) -> dict:
    cfg = ctx.cfg
    load = Load(1, ctx.cpus)
    w = load.workers[0]
    try:
        # Fill the room's history with `history` messages from one member who then stays.
        f = w.call(
            "connect",
            60,
            group="fill",
            host="127.0.0.1",
            port=ctx.server.port,
            room=ctx.room,
            prefix="filler",
            start=0,
            count=1,
            rate=1,
            timeout=20,
        )
        if not f["joined"]:
            return {"error": f"filler could not join: {f['fail_reasons']}"}
        w.call("send", 60, group="fill", senders=1, rate=500.0, start_ns=now_ns(), count=cfg.history)
        _drain(load, cfg.history, 10)
        load.collect(ctx.tmp, ctx.tag)
        time.sleep(cfg.settle)  # the store has written them
        n = int(round(cfg.hist_join_rate * cfg.hist_duration))
        c0, t0 = ctx.server.cpu(), now_ns()
        j = _connect(
            load, ctx, "join", "j", n, cfg.hist_join_rate, cfg.hist_duration + 20, hold=cfg.hist_hold, want_join_ns=True
        )
        c1, t1 = ctx.server.cpu(), now_ns()
        st = ms_stats(j["join_ns"])
        return {
            "joins": n,
            "joined": j["joined"],
            "failed": j["failed"] + j["pending"],
            "fail_reasons": j["fail_reasons"],
            "p50_ms": st["p50_ms"],
            "p99_ms": st["p99_ms"],
            "max_ms": st["max_ms"],
            "history_min": j["history_min"],
            "history_max": j["history_max"],
            "cpu_us_per_join": 1e6 * (c1 - c0) / max(1, j["joined"]),
            "server_cpu_pct": 100 * (c1 - c0) / ((t1 - t0) / 1e9),
            "errors": _errors(load),
        }
    finally:
        load.stop()


SCENARIOS = {
    "busy": busy,
    "saturation": saturation,
    "crowd": crowd,
    "stalled": stalled,
    "join_history": join_history,
}
