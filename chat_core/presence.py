"""Names and presence: who holds which name in which room, and telling the room.

A name is held per room by one member; :class:`Presence` also counts, over all
rooms, how many connections hold each name (a name held anywhere is reserved for
its token, see :mod:`chat_core.identity`). Changes are told to the room as
``join``/``leave`` notices, or, above ``notice_limit`` members, folded into one
``presence`` frame per room every ``presence_interval`` seconds: notices to every
member on every change would make a crowd quadratic.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Optional

from . import protocol
from .fanout import FanOut
from .identity import Claims, Proof, author_of, bad_token, name_taken
from .names import name_key
from .rooms import Member, Room, RoomRegistry
from .settings import Settings

PRESENCE_NAMES = 50  # names listed per `presence` frame, each of joined / left


class Presence:
    def __init__(self, settings: Settings, registry: RoomRegistry, claims: Claims) -> None:
        self.settings = settings
        self.bot_keys = frozenset(settings.bot_key_map())  # names whose notices say "bot"
        self.registry = registry
        self.claims = claims
        self.fanout = FanOut(self.leave)
        self.held: Counter[str] = Counter()  # name key -> connections holding it, in any room

    def is_held(self, key: str) -> bool:
        return self.held[key] > 0

    def holder(self, room: Room, member: Member, key: str, token: Optional[str]) -> Optional[Member]:
        """Who holds the name in ``room`` and is to be replaced by this join, if anyone;
        refused unless the name is free there, ours, or the token proves the holder stale."""
        holder = room.members.get(key)
        if holder is None or holder is member:
            return None
        if holder.outbox.closed:  # a connection on its way out: let the name go now
            self.leave(holder)
            return None
        if token is None:
            raise name_taken()
        if self.claims.proof(key, token, held=True) is not Proof.TOKEN:
            raise bad_token()
        return holder

    def enter(self, room: Room, member: Member, name: str, key: str, token: Optional[str]) -> bool:
        """``member`` now holds ``name`` in ``room`` (it left any other room first).
        True when that is a change others are told about (not the same place again)."""
        same_place = member.room is room and member.key == key
        if not same_place:
            self.leave(member)
        if same_place:
            room.remove_name(member.name or "")  # the same name, maybe in other letter case
        else:
            self.held[key] += 1
        room.add_name(name)
        if token != member.token:
            member.author = author_of(token) if token else ""
        member.name, member.key, member.room, member.token = name, key, room, token
        room.members[key] = member
        return not same_place

    def leave(self, member: Member) -> None:
        """``member`` leaves its room, if in one (others are told). Safe to call twice."""
        room = member.room
        if room is None:
            return
        member.room = None
        key = member.key or ""
        if room.members.get(key) is member:
            size = self.online(room)
            del room.members[key]
            self.held[key] -= 1
            if self.held[key] <= 0:
                del self.held[key]
            self.claims.touch(key)  # the reservation runs from the moment its holder left
            self._left(room, member, size)
        self.registry.drop_if_empty(room)

    def _left(self, room: Room, member: Member, size: int) -> None:
        room.remove_name(member.name or "")
        self.announce(room, "leave", member.name or "", size)

    def joined(self, room: Room, member: Member, changed: bool) -> None:
        """``member`` entered ``room`` (and has its `welcome`): tell the room, if that is news."""
        if changed:
            self.announce(room, "join", member.name or "", self.online(room))

    def online(self, room: Room) -> int:
        """How many are in ``room``."""
        return len(room.members)

    async def counts(self, rooms: list[str]) -> dict[str, int]:
        """How many are in each of ``rooms`` (the rooms list)."""
        return {name: self.online(self.registry.rooms[name]) for name in rooms if name in self.registry.rooms}

    # --- what the shared engine adds (here: nothing to do) -----------------------

    async def check_held(self, key: str) -> None:
        """Before deciding on the name ``key``: learn whether another process holds it."""

    async def open_room(self, room: Room) -> None:
        """Know who is in ``room`` on other processes."""

    async def take(self, room: Room, member: Member, key: str, name: str, token: Optional[str], proven: bool) -> None:
        """Take the name in ``room`` across processes (``proven``: by ``token`` or login), or
        raise :class:`chat_core.refusal.Refusal`. One process: :meth:`holder` decided."""

    def untake(self, room: Room, member: Member, key: str) -> None:
        """A :meth:`take` whose join failed afterwards: let the name go again."""

    def start(self) -> None:
        """Begin what runs in the background (the shared engine's heartbeat)."""

    async def close(self) -> None:
        """The process stops: its names go at once."""

    def announce(self, room: Room, kind: str, user: str, size: int) -> None:
        """A join/leave notice, or, in a big room, a change folded into the next `presence` frame."""
        limit = self.settings.notice_limit
        if not limit or size <= limit:
            bot = bool(self.bot_keys) and name_key(user) in self.bot_keys
            self.fanout.broadcast(room, protocol.notice(kind, user, room.name, bot))
            return
        names = room.joined if kind == "join" else room.left
        if len(names) < PRESENCE_NAMES:
            names.append(user)
        else:
            room.more += 1
        if room.timer is None:
            room.timer = asyncio.get_running_loop().call_later(self.settings.presence_interval, self.flush, room)

    def flush(self, room: Room) -> None:
        """Send a big room's coalesced changes as one `presence` frame."""
        room.timer = None
        frame = protocol.presence(room.name, self.online(room), room.joined, room.left, room.more)
        room.joined, room.left, room.more = [], [], 0
        if room.members:
            self.fanout.broadcast(room, frame)

    def welcome(self, room: Room, member: Member, gap: Optional[dict[str, int]],
                rules: Optional[dict[str, Any]] = None) -> str:
        names = room.names  # kept sorted as members come and go: no sort per join in a crowd
        shown = self.settings.users_shown
        return protocol.welcome(member.name or "", room.name, names[:shown] if shown else names,
                                self.online(room), room.last_id, gap, member.token, self.settings.max_text, rules)

    def typing(self, room: Room, member: Member) -> bool:
        """Tell the others in ``room`` that ``member`` is typing; not in a big room (one
        keystroke would be a frame to thousands), where False says it was not told."""
        limit = self.settings.notice_limit
        if limit and self.online(room) > limit:
            return False
        self.fanout.broadcast(room, protocol.typing(member.name or "", room.name), skip=member)
        return True

    def cancel_timers(self) -> None:
        for room in self.registry.rooms.values():
            if room.timer is not None:
                room.timer.cancel()
                room.timer = None
