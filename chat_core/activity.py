"""The dashboard's Activity numbers: messages per minute, people online over time, busiest rooms, totals.

Messages per minute are counted from the store each time (:meth:`chat_core.store.Store.minute_counts`),
so they cannot drift from the history; people online come from the hub's presence (across all
processes on Redis), sampled every :data:`SAMPLE_EVERY` seconds into a ring buffer of an hour.
Gradio-free: plain lists of dicts, which the UI turns into DataFrames. A snapshot is cached for
:data:`FRESH_FOR` seconds, so every open dashboard page refreshing on its timer costs one query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("chat_core.activity")

WINDOW = 3600.0  # seconds of activity shown: the last hour
SAMPLE_EVERY = 10.0  # seconds between two samples of who is online
SAMPLES = int(WINDOW // SAMPLE_EVERY)  # the ring buffer: an hour of samples
ROOMS_PER_SAMPLE = 20  # a sample keeps the online counts of this many rooms at most (the fullest)
PLOTTED_ROOMS = 6  # rooms drawn as their own line; the others are summed as OTHER
OTHER = "(other rooms)"
ALL_ROOMS = "all rooms"
BUSIEST = 10  # rows of the busiest-rooms table
FRESH_FOR = 2.0  # seconds a snapshot is reused


@dataclass(frozen=True)
class Sample:
    """Who was online at one moment: the total and the fullest rooms' counts."""

    ts: float
    total: int
    rooms: dict[str, int]


@dataclass
class Snapshot:
    """What the Activity tab shows, as plain rows (``ts`` in unix seconds)."""

    ts: float
    per_minute: list[dict[str, Any]]  # {"minute", "room", "messages"}, every minute of the hour, zeros too
    online: list[dict[str, Any]]  # {"ts", "room", "online"}: ALL_ROOMS and the fullest rooms
    busiest: list[dict[str, Any]]  # {"room", "online", "messages"} (messages in the last hour)
    totals: dict[str, int] = field(default_factory=dict)  # rooms, online, last_hour, stored

    def as_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "per_minute": self.per_minute, "online": self.online, "busiest": self.busiest,
                "totals": self.totals}


class Activity:
    """The sampler (started and stopped with the chat server) and the snapshots built from it."""

    def __init__(self, hub: Hub, every: float = SAMPLE_EVERY) -> None:
        self.hub = hub
        self.every = every
        self.samples: deque[Sample] = deque(maxlen=SAMPLES)
        self._task: Optional[asyncio.Task[None]] = None
        self._cached: Optional[Snapshot] = None
        self._building: Optional[asyncio.Task[Snapshot]] = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # Redis away for a moment: a gap in the plot, not a dead sampler
                log.warning("could not sample who is online: %s", exc)
            await asyncio.sleep(self.every)

    async def sample(self) -> Sample:
        """Record who is online now, from presence (:meth:`Hub.rooms_summary`)."""
        summary = await self.hub.rooms_summary()
        counts = {r["room"]: int(r["online"]) for r in summary if r["online"]}
        fullest = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:ROOMS_PER_SAMPLE])
        s = Sample(time.time(), sum(counts.values()), fullest)
        self.samples.append(s)
        return s

    async def snapshot(self) -> Snapshot:
        """The numbers now, reused for :data:`FRESH_FOR` seconds; concurrent callers share one build."""
        if self._cached is not None and time.time() - self._cached.ts < FRESH_FOR:
            return self._cached
        if self._building is None or self._building.done():
            self._building = asyncio.get_running_loop().create_task(self._build())
        self._cached = await asyncio.shield(self._building)
        return self._cached

    async def _build(self) -> Snapshot:
        now = time.time()
        since = minute_of(now) - WINDOW + 60  # 60 whole minutes, the current one included
        counts = await self.hub.store.minute_counts(since)
        summary = await self.hub.rooms_summary()
        stored = await self.hub.store.count()
        online = {r["room"]: int(r["online"]) for r in summary}
        return Snapshot(
            ts=now,
            per_minute=per_minute_rows(counts, since, now),
            online=online_rows(list(self.samples)),
            busiest=busiest_rows(counts, online),
            totals={"rooms": len(summary), "online": sum(online.values()),
                    "last_hour": sum(n for _, _, n in counts), "stored": stored},
        )


def minute_of(ts: float) -> int:
    """The start of ``ts``'s minute, in unix seconds."""
    return int(ts // 60) * 60


def per_minute_rows(counts: list[tuple[str, int, int]], since: float, now: float,
                    rooms: int = PLOTTED_ROOMS) -> list[dict[str, Any]]:
    """One row per minute and plotted room, zeros included (a line drops to 0 in a quiet minute):
    the ``rooms`` busiest rooms of the hour by name, the rest summed as :data:`OTHER`."""
    totals: dict[str, int] = {}
    for room, _, n in counts:
        totals[room] = totals.get(room, 0) + n
    top = [room for room, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:rooms]]
    series = top + ([OTHER] if len(totals) > len(top) else [])
    grid = {(room, minute): 0 for room in series for minute in range(int(since), minute_of(now) + 1, 60)}
    for room, minute, n in counts:
        key = (room if room in top else OTHER, minute)
        if key in grid:
            grid[key] += n
    ordered = sorted(grid.items(), key=lambda kv: (kv[0][1], kv[0][0]))  # by minute, then room
    return [{"minute": minute, "room": room, "messages": n} for (room, minute), n in ordered]


def online_rows(samples: list[Sample], rooms: int = PLOTTED_ROOMS - 1) -> list[dict[str, Any]]:
    """:data:`ALL_ROOMS` at every sample, and a line for each of the ``rooms`` rooms fullest at their peak."""
    peak: dict[str, int] = {}
    for s in samples:
        for room, n in s.rooms.items():
            peak[room] = max(peak.get(room, 0), n)
    top = [room for room, _ in sorted(peak.items(), key=lambda kv: (-kv[1], kv[0]))[:rooms]]
    out: list[dict[str, Any]] = []
    for s in samples:
        out.append({"ts": s.ts, "room": ALL_ROOMS, "online": s.total})
        out += [{"ts": s.ts, "room": room, "online": s.rooms.get(room, 0)} for room in top]
    return out


def busiest_rows(counts: list[tuple[str, int, int]], online: dict[str, int],
                 limit: int = BUSIEST) -> list[dict[str, Any]]:
    """The rooms with the most messages in the last hour, then the most people online."""
    messages: dict[str, int] = {}
    for room, _, n in counts:
        messages[room] = messages.get(room, 0) + n
    rooms = set(messages) | {room for room, n in online.items() if n}
    ranked = sorted(rooms, key=lambda r: (-messages.get(r, 0), -online.get(r, 0), r))[:limit]
    return [{"room": r, "online": online.get(r, 0), "messages": messages.get(r, 0)} for r in ranked]
