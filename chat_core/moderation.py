"""Moderation: bans, room rules (topic, slow mode, lock) and the audit log, apart from
any web framework and any engine.

What it keeps is small and read on every join and every message, so each process
holds all of it in memory (:class:`Moderation`) and the engine's
:class:`ModerationStore` keeps it across restarts: the embedded one in the SQLite
file (:mod:`chat_core.moderation_store`), the Redis one in Redis, where a change made
by one process is announced to the others, which read it all again
(:mod:`chat_core.redis_moderation`). Who may moderate is decided at the edges
(:mod:`chat_core.moderators`); this module only records and enforces.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .refusal import Refusal

log = logging.getLogger("chat_core.moderation")

MAX_TOPIC = 200  # characters
MAX_REASON = 200
MAX_SLOW = 3600.0  # seconds between two messages of one user, at most
MAX_BAN = 365 * 86400.0  # seconds
AUDIT_SHOWN = 200  # entries of the log the dashboard and the API show at most


class BanKind(enum.Enum):
    NAME = "name"  # a name (its key: look-alike names are the same name)
    ADDRESS = "address"  # a client address


class Action(enum.Enum):
    """What a moderator did: the audit log's ``action``."""

    DELETE = "delete"
    KICK = "kick"
    BAN = "ban"
    UNBAN = "unban"
    TOPIC = "topic"
    SLOW = "slow"
    LOCK = "lock"
    UNLOCK = "unlock"


@dataclass(frozen=True)
class Ban:
    kind: BanKind
    value: str  # the name key, or the address
    until: float  # unix time
    by: str = ""
    reason: str = ""
    shown: str = ""  # the name as the moderator wrote it (value is its key)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ban:
        return cls(BanKind(data["kind"]), str(data["value"]), float(data["until"]), str(data.get("by", "")),
                   str(data.get("reason", "")), str(data.get("shown", "")))


@dataclass(frozen=True)
class RoomRules:
    """A room's settings: empty topic, no slow mode and unlocked unless a moderator said so."""

    topic: str = ""
    slow: float = 0.0  # seconds between two messages of one user (0: off)
    locked: bool = False  # read-only, except for moderators

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomRules:
        return cls(str(data.get("topic", "")), float(data.get("slow", 0.0)), bool(data.get("locked", False)))


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    actor: str  # "admin" (the admin token) or the moderator's login
    action: Action
    room: str = ""
    target: str = ""  # a message id, a name or an address
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "action": self.action.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(float(data["ts"]), str(data["actor"]), Action(data["action"]), str(data.get("room", "")),
                   str(data.get("target", "")), str(data.get("detail", "")))


class ModerationStore:
    """Where bans, room rules and the audit log are kept; this base keeps them in memory
    (the ``:memory:`` engine). ``on_change`` is called when another process changed them."""

    def __init__(self) -> None:
        self.bans: dict[tuple[BanKind, str], Ban] = {}
        self.rules: dict[str, RoomRules] = {}
        self.log: list[AuditEntry] = []
        self.on_change: Callable[[dict[str, Any]], None] = lambda event: None

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def load(self) -> tuple[list[Ban], dict[str, RoomRules]]:
        return list(self.bans.values()), dict(self.rules)

    async def save_ban(self, ban: Ban) -> None:
        self.bans[(ban.kind, ban.value)] = ban

    async def drop_ban(self, kind: BanKind, value: str) -> None:
        self.bans.pop((kind, value), None)

    async def save_rules(self, room: str, rules: RoomRules) -> None:
        if rules == RoomRules():
            self.rules.pop(room, None)
        else:
            self.rules[room] = rules

    async def audit(self, entry: AuditEntry) -> None:
        self.log.append(entry)
        del self.log[:-10 * AUDIT_SHOWN]

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        return list(reversed(self.log[-limit:])) if limit else []

    async def announce(self, event: dict[str, Any]) -> None:
        """Tell the other processes (none here)."""


class Moderation:
    """The bans and room rules in force, read on every join and message; changed only
    through the actions below, each written to the audit log.

    ``on_kick(room, key, address)`` closes this process's matching connections (room
    "" for any room, key or address "" for any); it is called for this process's
    actions and for those announced by others."""

    def __init__(self, store: ModerationStore) -> None:
        self.store = store
        self.bans: dict[tuple[BanKind, str], Ban] = {}
        self.rules: dict[str, RoomRules] = {}
        self.on_kick: Callable[[str, str, str], None] = lambda room, key, address: None
        self.on_rules: Callable[[str, RoomRules], None] = lambda room, rules: None
        self._tasks: set[asyncio.Task[None]] = set()
        store.on_change = self.on_event

    async def open(self) -> None:
        await self.store.open()
        await self.reload()

    async def reload(self) -> None:
        """Read everything again (at start, and when another process changed it)."""
        bans, rules = await self.store.load()
        old = self.rules
        self.bans = {(b.kind, b.value): b for b in bans}
        self.rules = rules
        for room in set(old) | set(rules):
            if old.get(room, RoomRules()) != rules.get(room, RoomRules()):
                self.on_rules(room, rules.get(room, RoomRules()))

    def on_event(self, event: dict[str, Any]) -> None:
        """A change announced by a process (this one too): kicks act at once, the rest is read again."""
        if event.get("kind") == "kick":
            self.on_kick(str(event.get("room", "")), str(event.get("key", "")), str(event.get("address", "")))
        else:
            self.reload_soon()

    def reload_soon(self) -> None:
        """Read everything again in the background (after an announcement, or a reconnect to Redis)."""
        task = asyncio.get_running_loop().create_task(self._reload_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except Exception as exc:  # Redis away again: the next reconnect reads it all
            log.warning("moderation: could not read bans and room rules: %s", exc)

    # --- enforcement (hot path: dictionary look-ups only) ---------------------

    def room_rules(self, room: str) -> RoomRules:
        return self.rules.get(room) or RoomRules()

    def check_join(self, key: str, address: str, now: Optional[float] = None) -> None:
        """Refuse a banned name or address, saying until when."""
        now = time.time() if now is None else now
        for ban in (self.bans.get((BanKind.NAME, key)), self.bans.get((BanKind.ADDRESS, address))):
            if ban is not None and ban.until > now:
                what = "This name" if ban.kind is BanKind.NAME else "Your address"
                until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ban.until))
                reason = f" ({ban.reason})" if ban.reason else ""
                raise Refusal("banned", f"{what} is banned from this chat until {until}{reason}.", until=ban.until)

    def check_post(self, room: str, moderator: bool) -> float:
        """Refuse a message in a locked room; the room's slow mode in seconds (0: none)."""
        rules = self.rules.get(room)
        if rules is None or moderator:
            return 0.0
        if rules.locked:
            raise Refusal("room_locked", "This room is read-only for now: only moderators can write here.")
        return rules.slow

    def active_bans(self, now: Optional[float] = None) -> list[Ban]:
        now = time.time() if now is None else now
        return sorted((b for b in self.bans.values() if b.until > now), key=lambda b: b.until)

    # --- actions (each one audited) -------------------------------------------

    async def _announce(self, event: dict[str, Any]) -> None:
        """Tell the other processes; if Redis is away now, what was stored stands, and every
        process reads it all again once it is back (reload_soon after a reconnect)."""
        try:
            await self.store.announce(event)
        except Exception as exc:
            log.warning("moderation: could not announce %s to the other processes: %s", event.get("kind"), exc)

    async def _record(self, actor: str, action: Action, room: str = "", target: str = "", detail: str = "") -> None:
        await self.store.audit(AuditEntry(time.time(), actor, action, room, target, detail))

    async def record_delete(self, actor: str, room: str, msg_id: int, user: str) -> None:
        await self._record(actor, Action.DELETE, room, str(msg_id), f"message by {user}")

    async def kick(self, actor: str, room: str, key: str, shown: str) -> None:
        self.on_kick(room, key, "")
        await self._record(actor, Action.KICK, room, shown)
        await self._announce({"kind": "kick", "room": room, "key": key})

    async def ban(self, actor: str, kind: BanKind, value: str, seconds: float, reason: str = "",
                  shown: str = "") -> Ban:
        ban = Ban(kind, value, time.time() + seconds, actor, reason[:MAX_REASON], shown or value)
        await self.store.save_ban(ban)
        self.bans[(kind, value)] = ban
        key, address = (value, "") if kind is BanKind.NAME else ("", value)
        self.on_kick("", key, address)
        await self._record(actor, Action.BAN, "", ban.shown, f"for {describe_seconds(seconds)}"
                           + (f": {ban.reason}" if ban.reason else ""))
        await self._announce({"kind": "kick", "room": "", "key": key, "address": address})
        await self._announce({"kind": "reload"})
        return ban

    async def unban(self, actor: str, kind: BanKind, value: str) -> bool:
        ban = self.bans.pop((kind, value), None)
        await self.store.drop_ban(kind, value)
        await self._record(actor, Action.UNBAN, "", ban.shown if ban else value)
        await self._announce({"kind": "reload"})
        return ban is not None

    async def set_rules(self, actor: str, room: str, topic: Optional[str] = None, slow: Optional[float] = None,
                        locked: Optional[bool] = None) -> RoomRules:
        """Change what is given of a room's rules; each change audited, the room told."""
        old = self.room_rules(room)
        new = RoomRules(old.topic if topic is None else topic, old.slow if slow is None else slow,
                        old.locked if locked is None else locked)
        if new == old:
            return old
        await self.store.save_rules(room, new)
        self.rules[room] = new
        if new.topic != old.topic:
            await self._record(actor, Action.TOPIC, room, "", new.topic)
        if new.slow != old.slow:
            await self._record(actor, Action.SLOW, room, "", f"{new.slow:g} s" if new.slow else "off")
        if new.locked != old.locked:
            await self._record(actor, Action.LOCK if new.locked else Action.UNLOCK, room)
        self.on_rules(room, new)
        await self._announce({"kind": "reload"})
        return new

    async def audit_log(self, limit: int = AUDIT_SHOWN) -> list[AuditEntry]:
        return await self.store.audit_log(min(max(limit, 0), AUDIT_SHOWN))


def describe_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
