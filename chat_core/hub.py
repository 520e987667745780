"""Rooms, members and fan-out: the heart of the server, with no web framework in it.

A message goes: ``post`` (validated, queued) -> the writer task assigns ids and
stores a whole batch -> only then is each message encoded once and appended to
the outbox of every member of its room. So what anyone has seen is in the store,
ids in a room increase by one, and no recipient's socket is ever awaited here.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import logging
import secrets
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Optional

from . import protocol
from .identity import Claims, Proof, bad_token, name_taken
from .outbox import OVERFLOW, Outbox
from .protocol import Join
from .refusal import Refusal
from .settings import Settings
from .store import Message, Store

log = logging.getLogger("chat_core.hub")

PRESENCE_NAMES = 50  # names listed per `presence` frame, each of joined / left
REPLACED = 4001  # close code for a connection whose user reconnected elsewhere with a resume token
EXPECTED_STORE_ERRORS = (sqlite3.Error, OSError)  # a failing disk: named in one line, no traceback


class Health(enum.Enum):
    """Whether the history writer is working: ``DEGRADED`` while messages cannot be stored."""

    OK = "ok"
    DEGRADED = "degraded"


class Member:
    """One connection as the hub sees it."""

    __slots__ = ("outbox", "name", "key", "room", "token")

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.name: Optional[str] = None
        self.key: Optional[str] = None  # chat_core.names.name_key: one key for look-alike names
        self.room: Optional[Room] = None
        self.token: Optional[str] = None  # the resume token this connection holds its name with

    def send(self, frame: str) -> bool:
        return self.outbox.put(frame)


@dataclass(eq=False)
class Room:
    name: str
    cache_size: int
    members: dict[str, Member] = field(default_factory=dict)
    recent: deque = field(default_factory=deque)  # (id, encoded msg frame), oldest first
    last_id: int = 0  # newest id broadcast in this room
    loaded: Optional[asyncio.Future] = None
    joining: int = 0  # joins waiting on this room's history: keeps it alive
    joined: list[str] = field(default_factory=list)  # coalesced presence changes
    left: list[str] = field(default_factory=list)
    more: int = 0
    timer: Optional[asyncio.TimerHandle] = None
    names: list[str] = field(default_factory=list)  # members' names, sorted by casefold: `welcome.users`

    def add_name(self, name: str) -> None:
        bisect.insort(self.names, name, key=str.casefold)

    def remove_name(self, name: str) -> None:
        i = bisect.bisect_left(self.names, name.casefold(), key=str.casefold)
        while i < len(self.names) and self.names[i] != name:
            i += 1
        if i < len(self.names):
            del self.names[i]

    def remember(self, msg_id: int, frame: str) -> None:
        self.recent.append((msg_id, frame))
        if len(self.recent) > self.cache_size:
            self.recent.popleft()
        self.last_id = msg_id

    @property
    def first_cached(self) -> int:
        return self.recent[0][0] if self.recent else self.last_id + 1


@dataclass
class _Post:
    member: Member
    room: str
    user: str
    text: str
    ts: float


class Hub:
    """Everything the server knows about who is where. One per process."""

    def __init__(self, settings: Settings, store: Store, claims: Optional[Claims] = None) -> None:
        self.settings = settings
        self.store = store
        self.claims = claims or Claims(store, secrets.token_bytes(32), settings.token_ttl, settings.name_reserve)
        self.rooms: dict[str, Room] = {}
        self.members: set[Member] = set()
        self.overflow_closes = 0
        self.messages_sent = 0
        self.commits = 0  # store batches: messages_sent / commits is the group-commit batch size
        self.health = Health.OK
        self.health_reason = ""
        self.failed_batches = 0  # batches that could not be stored since the writer last worked
        self._held: Counter[str] = Counter()  # name key -> connections holding it, in any room
        self._last_ids: dict[str, int] = {}  # newest id assigned (stored or being stored) per room
        self._stored_ids: dict[str, int] = {}  # newest id stored and broadcast per room
        self._last_ts: dict[str, float] = {}  # time of the newest stored message per room
        self._pending: list[_Post] = []
        self._wakeup: Optional[asyncio.Future[None]] = None
        self._writer: Optional[asyncio.Task[None]] = None
        self._stopping = False
        self._cache_size = max(settings.history_limit, settings.replay_limit, 1)
        if settings.history_keep:
            self._cache_size = min(self._cache_size, max(settings.history_keep, settings.history_limit))

    # --- life cycle --------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        rooms = await self.store.rooms()
        self._last_ids = {room: last for room, (last, _) in rooms.items()}
        self._last_ts = {room: ts for room, (_, ts) in rooms.items()}
        self._stored_ids = dict(self._last_ids)
        await self.claims.open()
        self._writer = asyncio.get_running_loop().create_task(self._supervise_writer())

    async def close_all(self, code: int = 1001, reason: str = "server shutting down", timeout: float = 3.0) -> None:
        """Write what is pending, then close every connection with ``code`` after its queued frames."""
        self._stopping = True
        if self._writer is not None and not self._writer.done():
            self._wake()
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout)
            except asyncio.TimeoutError:
                log.warning("history writer did not finish in %.1fs", timeout)
                self._writer.cancel()
        for room in self.rooms.values():
            if room.timer is not None:
                room.timer.cancel()
                room.timer = None
        tasks = []
        for member in list(self.members):
            member.outbox.close(code, reason, drop=False)
            if member.outbox.task is not None:
                tasks.append(member.outbox.task)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def stop(self) -> None:
        """Close every connection (1001) and the store."""
        await self.close_all()
        await self.store.close()

    # --- connections -------------------------------------------------------

    def attach(self, outbox: Outbox) -> Member:
        member = Member(outbox)
        self.members.add(member)
        return member

    def detach(self, member: Member) -> None:
        """The connection is gone (or going): leave its room. Safe to call twice."""
        self.members.discard(member)
        self._leave(member)

    async def join(self, member: Member, join: Join, trusted: bool = False) -> None:
        """Enter (or switch to) a room: history, then `welcome`, then the join notice.
        ``trusted``: the name is the joiner's login, which proves it."""
        key = join.key
        if not self.is_listed(join.room) and self.listed_count() >= self.settings.max_rooms > 0:
            raise Refusal("too_many_rooms", "There are too many rooms in use; join one from the list.")
        room = await self._open_room(join.room)  # counts us in room.joining
        try:
            self._holder(room, member, key, join.token)  # refuse early, before reading history
            since = join.since
            if since is not None and since > room.last_id:
                since = None  # the client knows ids this server never gave out: start afresh
            older: list[Message] = []
            if since is not None and since + 1 < room.first_cached:
                older = await self.store.after(room.name, since, self.settings.replay_limit or 2**31)
            # From here on nothing awaits: the room cannot change under us.
            holder = self._holder(room, member, key, join.token)
            if member.outbox.closed:
                raise Refusal("closed", "connection closed")
            own = member.key == key and member.token is not None
            token = member.token if own and join.token is None else None
            if token is None:
                token = self.claims.admit(key, join.user, join.token, self._held[key] > 0, trusted or own)
        except BaseException:
            room.joining -= 1
            self._drop_if_empty(room)
            raise
        if holder is not None:
            holder.outbox.close(REPLACED, "replaced by a newer connection of the same user")
            self._leave(holder)
        same_place = member.room is room and member.key == key
        if not same_place:
            self._leave(member)
        frames, first = self._history(room, since, older)
        if same_place:
            room.remove_name(member.name or "")  # the same name, maybe in other letter case
        else:
            self._held[key] += 1
        room.add_name(join.user)
        member.name, member.key, member.room, member.token = join.user, key, room, token
        room.members[key] = member
        room.joining -= 1
        gap = None
        if since is not None and since < room.last_id and (first is None or first > since + 1):
            gap = {"after": since, "first": first if first is not None else room.last_id + 1}
        member.outbox.put_many(frames)
        member.send(self._welcome(room, member, gap))
        if not same_place:
            self._announce(room, "join", join.user, len(room.members))
        if self.claims.dirty:
            self._wake()

    def check_post(self, member: Member) -> None:
        """Refuse a message ``member`` may not send now (before it counts against any limit)."""
        if member.room is None or member.name is None:
            raise Refusal("not_joined", "Join a room (send a \"join\" frame) before sending messages.")
        if self._stopping:
            raise Refusal("shutting_down", "The server is restarting; send it again once reconnected.")

    def post(self, member: Member, text: str) -> None:
        """Queue a chat message from ``member``; it is broadcast once stored."""
        self.check_post(member)
        assert member.room is not None and member.name is not None
        self._pending.append(_Post(member, member.room.name, member.name, text, protocol.now()))
        self._wake()

    # --- reading -----------------------------------------------------------

    def is_listed(self, name: str) -> bool:
        """In the rooms list: someone is in it, or its last message is under ``room_idle`` old."""
        room = self.rooms.get(name)
        if room is not None and (room.members or room.joining):
            return True
        last = self._last_ts.get(name)
        return last is not None and time.time() - last < self.settings.room_idle

    def listed_count(self) -> int:
        return sum(1 for name in set(self.rooms) | set(self._last_ts) if self.is_listed(name))

    def rooms_summary(self) -> list[dict[str, Any]]:
        names = [name for name in set(self.rooms) | set(self._stored_ids) if self.is_listed(name)]
        return [
            {"room": name, "online": len(self.rooms[name].members) if name in self.rooms else 0,
             "last_id": self._stored_ids.get(name, 0)}
            for name in sorted(names)
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "connections": len(self.members),
            "rooms": sum(1 for r in self.rooms.values() if r.members),
            "messages": self.messages_sent,
            "commits": self.commits,
            "overflow_closes": self.overflow_closes,
            "frame_writer": sum(1 for m in self.members if m.outbox.direct),
            "tasks": len(asyncio.all_tasks()),
            "failed_batches": self.failed_batches,
        }

    # --- inside ------------------------------------------------------------

    async def _open_room(self, name: str) -> Room:
        """The room, its recent history loaded; the caller is counted in ``room.joining``."""
        room = self.rooms.get(name)
        if room is None:
            room = Room(name, self._cache_size, last_id=self._stored_ids.get(name, 0))
            self.rooms[name] = room
            room.loaded = asyncio.get_running_loop().create_future()
            room.joining += 1
            try:
                stored = await self.store.after(name, 0, self._cache_size)
            except BaseException as exc:
                room.loaded.set_exception(exc)
                room.loaded.exception()  # retrieved: joiners waiting on it re-raise it themselves
                room.joining -= 1
                self._drop_if_empty(room)
                raise
            newer = [entry for entry in room.recent if not stored or entry[0] > stored[-1].id]
            room.recent.clear()
            for m in stored:
                room.remember(m.id, protocol.encode({"type": "msg", "payload": m.payload()}))
            for msg_id, frame in newer:
                room.remember(msg_id, frame)
            room.loaded.set_result(None)
            return room
        room.joining += 1
        if room.loaded is not None and not room.loaded.done():
            try:
                await asyncio.shield(room.loaded)
            except BaseException:
                room.joining -= 1
                self._drop_if_empty(room)
                raise
        return room

    def _drop_if_empty(self, room: Room) -> None:
        if not room.members and not room.joining and self.rooms.get(room.name) is room:
            if room.timer is not None:
                room.timer.cancel()
            del self.rooms[room.name]

    def _holder(self, room: Room, member: Member, key: str, token: Optional[str]) -> Optional[Member]:
        """Who holds the name in ``room`` and is to be replaced by this join, if anyone;
        refused unless the name is free there, ours, or the token proves the holder stale."""
        holder = room.members.get(key)
        if holder is None or holder is member:
            return None
        if holder.outbox.closed:  # a connection on its way out: let the name go now
            self._leave(holder)
            return None
        if token is None:
            raise name_taken()
        if self.claims.proof(key, token, held=True) is not Proof.TOKEN:
            raise bad_token()
        return holder

    def _history(self, room: Room, since: Optional[int], older: list[Message]) -> tuple[list[str], Optional[int]]:
        """Encoded history frames for a joiner, and the first id among them."""
        if since is None:
            limit = self.settings.history_limit
            entries = list(room.recent)[-limit:] if limit else []
        else:
            limit = self.settings.replay_limit
            entries = [(m.id, protocol.encode({"type": "msg", "payload": m.payload()}))
                       for m in older if m.id <= room.last_id]
            top = entries[-1][0] if entries else since
            entries += [e for e in room.recent if e[0] > top]
            if limit:
                entries = entries[-limit:]
        first = entries[0][0] if entries else None
        return [frame for _, frame in entries], first

    def _welcome(self, room: Room, member: Member, gap: Optional[dict[str, int]]) -> str:
        names = room.names  # kept sorted as members come and go: no sort per join in a crowd
        shown = self.settings.users_shown
        payload: dict[str, Any] = {
            "user": member.name, "room": room.name, "ts": protocol.now(),
            "users": names[:shown] if shown else names, "online": len(room.members),
            "last_id": room.last_id, "gap": gap,
        }
        if member.token is not None:
            payload["token"] = member.token
        return protocol.encode({"type": "welcome", "payload": payload})

    def _leave(self, member: Member) -> None:
        room = member.room
        if room is None:
            return
        member.room = None
        key = member.key or ""
        if room.members.get(key) is member:
            size = len(room.members)
            del room.members[key]
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]
            self.claims.touch(key)  # the reservation runs from the moment its holder left
            room.remove_name(member.name or "")
            self._announce(room, "leave", member.name or "", size)
        self._drop_if_empty(room)

    def _announce(self, room: Room, kind: str, user: str, size: int) -> None:
        """A join/leave notice, or, in a big room, a change folded into the next `presence` frame."""
        limit = self.settings.notice_limit
        if not limit or size <= limit:
            self._broadcast(room, protocol.notice(kind, user, room.name))
            return
        names = room.joined if kind == "join" else room.left
        if len(names) < PRESENCE_NAMES:
            names.append(user)
        else:
            room.more += 1
        if room.timer is None:
            room.timer = asyncio.get_running_loop().call_later(
                self.settings.presence_interval, self._flush_presence, room)

    def _flush_presence(self, room: Room) -> None:
        room.timer = None
        payload = {"room": room.name, "online": len(room.members), "joined": room.joined,
                   "left": room.left, "more": room.more, "ts": protocol.now()}
        room.joined, room.left, room.more = [], [], 0
        if room.members:
            self._broadcast(room, protocol.encode({"type": "presence", "payload": payload}))

    def _broadcast(self, room: Room, frame: str) -> None:
        encoded = protocol.wire(frame)  # once for the whole room
        dropped = [m for m in room.members.values() if not m.outbox.put(frame, encoded)]
        for member in dropped:  # closed (for reading too slowly, or on its way out): out of the room now
            if member.outbox.close_code == OVERFLOW:
                self.overflow_closes += 1
                log.info("closed a slow client in %s (outbox full)", room.name)
            self._leave(member)

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _supervise_writer(self) -> None:
        """The history writer, kept running: an error it did not expect is logged with
        its traceback, `/healthz` says degraded, and it starts again."""
        while True:
            try:
                await self._write_loop()
                return
            except Exception as exc:
                self._degrade("the history writer failed", exc)
                await asyncio.sleep(0.1)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._stopping:
                    await self._flush_claims()
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
                if self.settings.commit_delay:
                    await asyncio.sleep(self.settings.commit_delay)
            batch, self._pending = self._pending, []
            if batch:
                await self._commit(batch)
            if self.claims.dirty:
                await self._flush_claims()

    async def _flush_claims(self) -> None:
        try:
            await self.claims.flush(lambda key: self._held[key] > 0)
        except Exception as exc:
            self._degrade("names could not be saved", exc)

    async def _commit(self, batch: list[_Post]) -> None:
        before: dict[str, int] = {}
        messages = []
        for post in batch:
            last = self._last_ids.get(post.room, 0)
            before.setdefault(post.room, last)
            self._last_ids[post.room] = last + 1
            messages.append(Message(post.room, last + 1, post.user, post.text, post.ts))
        try:
            await self.store.append(messages)
        except Exception as exc:
            self._last_ids.update(before)  # nobody saw these ids: give them out again
            self._degrade(f"{len(messages)} message(s) could not be stored, so none were sent", exc)
            err = protocol.error("store_unavailable", "The message could not be saved, so it was not sent. Try again.")
            for post in batch:
                post.member.send(err)
            return
        self._recovered()
        rooms = self.rooms
        for m in messages:
            frame = protocol.encode({"type": "msg", "payload": m.payload()})
            self._stored_ids[m.room] = m.id
            self._last_ts[m.room] = m.ts
            room = rooms.get(m.room)
            if room is not None:
                room.remember(m.id, frame)
                self._broadcast(room, frame)
        self.messages_sent += len(messages)
        self.commits += 1

    def _degrade(self, what: str, exc: BaseException) -> None:
        """Writes fail: say so once (the real cause, with a traceback only for an error
        nobody expected), then quietly count until a write works again."""
        self.failed_batches += 1
        reason = f"{what}: {type(exc).__name__}: {exc}"
        if self.health is Health.DEGRADED and reason == self.health_reason:
            log.debug("%s", reason)
            return
        self.health, self.health_reason = Health.DEGRADED, reason
        if isinstance(exc, EXPECTED_STORE_ERRORS):
            log.error("chat history: %s (refusing messages until writes work again)", reason)
        else:
            log.error("chat history: %s", reason, exc_info=exc)

    def _recovered(self) -> None:
        if self.health is Health.DEGRADED:
            log.warning("chat history: writes work again after %d failed batch(es)", self.failed_batches)
            self.health, self.health_reason, self.failed_batches = Health.OK, "", 0
