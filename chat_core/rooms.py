"""Rooms: who is in each, and each room's recent history, kept encoded.

:class:`RoomRegistry` holds the rooms this process has members in. A room's
history is read from the store once, however many join it at the same moment
(they wait on the same load), and the room is let go when its last member leaves
and nobody is waiting on it. It also knows, for every room ever written to, the
newest stored id and when it was written: what the rooms list shows.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from . import protocol
from .outbox import Outbox
from .store import Change, Message, Store, Update


class Role(enum.Enum):
    """What a connection's name is: a person's, a moderator's login, or a bot's (held with its key)."""

    PERSON = "person"
    MODERATOR = "moderator"  # logged in with a login listed in --moderators: writes in locked and slow rooms
    BOT = "bot"  # joined with the name's bot key (--bot-keys): its messages are marked, its own rate applies


class Member:
    """One connection as the hub sees it."""

    __slots__ = ("outbox", "name", "key", "room", "token", "author", "conn", "address", "role")

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.name: Optional[str] = None
        self.key: Optional[str] = None  # chat_core.names.name_key: one key for look-alike names
        self.room: Optional[Room] = None
        self.token: Optional[str] = None  # the resume token this connection holds its name with
        self.author = ""  # identity.author_of(token): whose messages these are
        self.conn = ""  # this connection in the shared rosters (Redis engine), once it took a name there
        self.address = ""  # the client's address (for address bans)
        self.role = Role.PERSON

    def send(self, frame: str) -> bool:
        return self.outbox.put(frame)


@dataclass(eq=False)
class Room:
    name: str
    cache_size: int
    members: dict[str, Member] = field(default_factory=dict)
    recent: deque[tuple[int, str]] = field(default_factory=deque)  # (id, encoded msg frame), oldest first
    # (id, encoded change frame, its message's id, an edit?), since recent[0]
    updates: deque[tuple[int, str, int, bool]] = field(default_factory=deque)
    last_id: int = 0  # newest id broadcast in this room
    loaded: Optional[asyncio.Future[None]] = None
    joining: int = 0  # joins waiting on this room's history: keeps it alive
    joined: list[str] = field(default_factory=list)  # coalesced presence changes
    left: list[str] = field(default_factory=list)
    more: int = 0
    timer: Optional[asyncio.TimerHandle] = None
    names: list[str] = field(default_factory=list)  # members' names, sorted by casefold: `welcome.users`
    # Redis engine: everyone in the room on any process, key -> (name, connection); None: members only
    roster: Optional[dict[str, tuple[str, str]]] = None

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
            first = self.recent[0][0]
            while self.updates and self.updates[0][0] < first:
                self.updates.popleft()
        self.last_id = msg_id

    def remember_update(self, update: Update, frame: str, state: Optional[str]) -> None:
        """A change: kept for replays, and the cached frame of its message (``state``) replaced.
        A delete takes the message's edits out of the cache (no text anywhere), as the stores do."""
        update_id, target = update.id, update.target
        if update.kind is Change.DELETE:
            self.updates = deque(e for e in self.updates if not (e[2] == target and e[3]))
        self.updates.append((update_id, frame, target, update.kind is Change.EDIT))
        if len(self.updates) > self.cache_size:
            self.updates_from = self.updates.popleft()[0] + 1
        if state is not None and self.recent and target >= self.recent[0][0]:
            for i, (msg_id, _) in enumerate(self.recent):
                if msg_id == target:
                    self.recent[i] = (msg_id, state)
                    break
        self.last_id = update_id

    @property
    def first_cached(self) -> int:
        """The first id from which the cache holds every entry (messages and changes)."""
        first = self.recent[0][0] if self.recent else self.last_id + 1
        return max(first, self.updates_from)

    updates_from: int = 0  # the cache holds every change from this id on


class RoomRegistry:
    """The rooms with members here, and the newest stored message of every room."""

    def __init__(self, store: Store, cache_size: int, idle: float) -> None:
        self.store = store
        self.cache_size = cache_size
        self.idle = idle  # seconds after its last message that an empty room leaves the list
        self.rooms: dict[str, Room] = {}
        self.stored: dict[str, tuple[int, float]] = {}  # room -> (newest id, its time), stored and broadcast

    async def start(self) -> None:
        self.stored = await self.store.rooms()

    def last_id(self, name: str) -> int:
        entry = self.stored.get(name)
        return entry[0] if entry is not None else 0

    def note_stored(self, entry: Message | Update) -> None:
        self.stored[entry.room] = (entry.id, entry.ts)

    # --- the rooms list ------------------------------------------------------

    def is_listed(self, name: str) -> bool:
        """In the rooms list: someone is in it, or its last message is under ``idle`` old."""
        room = self.rooms.get(name)
        if room is not None and (room.members or room.joining):
            return True
        entry = self.stored.get(name)
        return entry is not None and time.time() - entry[1] < self.idle

    def listed(self) -> list[str]:
        return sorted(name for name in set(self.rooms) | set(self.stored) if self.is_listed(name))

    # --- opening and letting go ------------------------------------------------

    async def open(self, name: str) -> Room:
        """The room, its recent history loaded; the caller is counted in ``room.joining``
        and must :meth:`release` it (or become a member) when done."""
        room = self.rooms.get(name)
        if room is None:
            return await self._load(name)
        room.joining += 1
        if room.loaded is not None and not room.loaded.done():
            try:
                await asyncio.shield(room.loaded)
            except BaseException:
                self.release(room)
                raise
        return room

    async def _load(self, name: str) -> Room:
        room = Room(name, self.cache_size, last_id=self.last_id(name))
        self.rooms[name] = room
        room.loaded = asyncio.get_running_loop().create_future()
        room.joining += 1
        try:
            stored = await self.store.after(name, 0, self.cache_size)
            first = stored[0].id if stored else room.last_id + 1
            changes = await self.store.updates_after(name, first - 1, self.cache_size)
        except BaseException as exc:
            room.loaded.set_exception(exc)
            room.loaded.exception()  # retrieved: joiners waiting on it re-raise it themselves
            self.release(room)
            raise
        # entries broadcast while the history was being read are newer than any of it
        top = max(stored[-1].id if stored else 0, changes[-1].id if changes else 0)
        newer = [entry for entry in room.recent if entry[0] > top]
        newer_updates = [entry for entry in room.updates if entry[0] > top]
        newer_ids = [e[0] for e in newer] + [e[0] for e in newer_updates]
        room.recent.clear()
        room.updates.clear()
        for m in stored:
            room.remember(m.id, protocol.msg_frame(m.payload()))
        room.updates.extend((u.id, protocol.update_frame(u), u.target, u.kind is Change.EDIT) for u in changes)
        # (more changes than the cache holds: replays read them from the store)
        room.updates_from = first if len(changes) < self.cache_size else top + 1
        room.recent.extend(newer)
        room.updates.extend(newer_updates)
        room.last_id = max(room.last_id, top, *newer_ids)
        room.loaded.set_result(None)
        return room

    def release(self, room: Room) -> None:
        """A join waiting on ``room`` is done with it (refused, or it became a member)."""
        room.joining -= 1
        self.drop_if_empty(room)

    def drop_if_empty(self, room: Room) -> None:
        if not room.members and not room.joining and self.rooms.get(room.name) is room:
            if room.timer is not None:
                room.timer.cancel()
            del self.rooms[room.name]

    # --- history for a joiner --------------------------------------------------

    def history(self, room: Room, since: Optional[int], older: list[Message], older_updates: list[Update],
                history_limit: int, replay_limit: int) -> tuple[list[str], Optional[int]]:
        """Encoded history frames for a joiner, and the first id among them: without
        ``since`` the last ``history_limit`` messages as they stand; with it, every entry
        after it, messages and changes in id order (``older`` and ``older_updates`` from
        the store, then the cache), at most ``replay_limit`` (0: all)."""
        if since is None:
            entries = list(room.recent)[-history_limit:] if history_limit else []
        else:
            found = {m.id: protocol.msg_frame(m.payload()) for m in older}
            found.update((u.id, protocol.update_frame(u)) for u in older_updates)
            found.update(e for e in room.recent if e[0] > since)  # (the cache's: as they stand now)
            found.update((e[0], e[1]) for e in room.updates if e[0] > since)
            entries = sorted((e for e in found.items() if since < e[0] <= room.last_id), key=lambda e: e[0])
            if replay_limit:
                entries = entries[-replay_limit:]
        first = entries[0][0] if entries else None
        return [frame for _, frame in entries], first
