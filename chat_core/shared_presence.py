"""Names and presence over several processes (the Redis engine): :class:`Presence`
whose rooms know everyone in them on any process, and whose notices come from the
shared roster's events (:mod:`chat_core.redis_roster`) instead of being told
directly, so that every process tells each change once, in one order.

A room's ``roster`` mirrors the shared one while the room is open here: loaded
when it opens, kept by the events, reloaded after every reconnect to Redis.
``room.members`` stays this process's own connections (who to deliver to).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Optional

from . import protocol
from .identity import Claims, bad_token, name_taken
from .presence import Presence
from .protocol import CloseCode
from .redis_roster import Claimed, RedisRoster
from .rooms import Member, Room, RoomRegistry
from .settings import Settings

log = logging.getLogger("chat_core.redis")


class SharedPresence(Presence):
    def __init__(self, settings: Settings, registry: RoomRegistry, claims: Claims, roster: RedisRoster) -> None:
        super().__init__(settings, registry, claims)
        self.roster = roster
        self._conns = itertools.count(1)
        self._taking: dict[str, list[dict[str, Any]]] = {}  # conn -> its events that came before its welcome
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beating: Optional[asyncio.Task[None]] = None
        self._held: set[str] = set()  # name keys held on any process (refreshed by each heartbeat)
        self._loading: dict[str, list[dict[str, Any]]] = {}  # room -> its events while its roster loads
        self._unsure = False  # a roster update failed: put right at the next heartbeat (resync)

    # --- joining -------------------------------------------------------------

    def is_held(self, key: str) -> bool:
        return super().is_held(key) or key in self._held

    async def check_held(self, key: str) -> None:
        if await self.roster.held(key):
            self._held.add(key)
        else:
            self._held.discard(key)

    async def open_room(self, room: Room) -> None:
        if room.roster is not None or room.name in self._loading:
            while room.roster is None and room.name in self._loading:  # a join beside us is loading it
                await asyncio.sleep(0.01)
            if room.roster is not None:
                return
        self._loading[room.name] = []
        try:
            roster = await self.roster.load(room.name)
        finally:
            early = self._loading.pop(room.name, [])
        if room.roster is None:
            self._set_roster(room, roster)
        for event in early:  # changes published while the roster was being read
            self.on_event(event)

    def _set_roster(self, room: Room, roster: dict[str, tuple[str, str]]) -> None:
        for key, member in room.members.items():  # this process's own, whatever Redis says
            roster[key] = (member.name or "", member.conn)
        room.roster = roster
        room.names = sorted((name for name, _ in roster.values()), key=str.casefold)

    async def take(self, room: Room, member: Member, key: str, name: str, token: Optional[str], proven: bool) -> None:
        if not member.conn:
            member.conn = f"{self.roster.process}:{next(self._conns)}"
        local = room.members.get(key)
        if local is not None and local is not member and not proven:
            raise name_taken()  # (Presence.holder says which refusal; this only keeps Redis out of it)
        self._taking.setdefault(member.conn, [])
        try:
            outcome, holder = await self.roster.claim(room.name, key, name, member.conn, proven)
            if outcome is Claimed.TAKEN and holder.startswith(self.roster.process + ":") and not self._is_live(holder):
                outcome, holder = await self.roster.claim(room.name, key, name, member.conn, True)  # our own stale one
        except BaseException:  # (it may have run all the same: a timeout; untake lets it go)
            self._taking.pop(member.conn, None)
            raise
        if outcome is Claimed.TAKEN:  # held elsewhere, and nothing proves this joiner may take it over
            self._taking.pop(member.conn, None)
            raise name_taken() if token is None else bad_token()

    def _is_live(self, conn: str) -> bool:
        return any(m.conn == conn for m in self.registry_members())

    def registry_members(self) -> list[Member]:
        return [m for room in self.registry.rooms.values() for m in room.members.values()]

    def untake(self, room: Room, member: Member, key: str) -> None:
        self._taking.pop(member.conn, None)
        if room.members.get(key) is not member:
            self._spawn(self.roster.release(room.name, key, member.conn))

    def enter(self, room: Room, member: Member, name: str, key: str, token: Optional[str]) -> bool:
        changed = super().enter(room, member, name, key, token)  # (puts the name on room.names)
        if room.roster is not None:
            old = room.roster.get(key)
            room.roster[key] = (name, member.conn)
            if old is not None and old[1] != member.conn:
                room.remove_name(old[0])  # a holder before us whose leave has not come yet: listed once
        return changed

    def joined(self, room: Room, member: Member, changed: bool) -> None:
        """Tell the room from the roster's own event (it may have come already)."""
        early = self._taking.pop(member.conn, [])
        for event in early:
            self.on_event(event)

    def _left(self, room: Room, member: Member, size: int) -> None:
        key = member.key or ""
        if room.roster is not None and room.roster.get(key, ("", ""))[1] == member.conn:
            del room.roster[key]
            room.remove_name(member.name or "")
        self._spawn(self.roster.release(room.name, key, member.conn))

    def online(self, room: Room) -> int:
        return len(room.roster) if room.roster is not None else len(room.members)

    async def counts(self, rooms: list[str]) -> dict[str, int]:
        try:
            return await self.roster.counts(rooms)
        except Exception:  # Redis away: what this process knows
            return await super().counts(rooms)

    # --- what other processes (and this one) did ----------------------------------

    def typing(self, room: Room, member: Member) -> bool:
        """Told here at once, and to the other processes through the channel."""
        if not super().typing(room, member):
            return False
        task = asyncio.get_running_loop().create_task(self._publish_typing(room.name, member))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _publish_typing(self, room: str, member: Member) -> None:
        try:
            await self.roster.typing(room, member.name or "", member.conn)
        except Exception as exc:  # a typing hint lost while Redis is away is no loss
            log.debug("typing not published: %s", exc)

    def on_event(self, event: dict[str, Any]) -> None:
        """A roster change from the channel: mirror it, tell the room (once)."""
        conn = event.get("conn", "")
        if event.get("p") == "typing":
            self._typing(event, conn)
            return
        if conn in self._taking:
            self._taking[conn].append(event)  # told after that joiner's welcome
            return
        if event.get("room", "") in self._loading:
            self._loading[event["room"]].append(event)  # applied once the roster is read
            return
        room = self.registry.rooms.get(event.get("room", ""))
        if room is None or room.roster is None:
            return
        key, name = event["key"], event["name"]
        if event["p"] == "join":
            old = room.roster.get(key)
            if old is None or old[1] != conn:
                if old is not None:
                    room.remove_name(old[0])
                room.roster[key] = (name, conn)
                room.add_name(name)
            self.announce(room, "join", name, len(room.roster))
            return
        size = len(room.roster)
        if room.roster.get(key, ("", ""))[1] == conn:
            del room.roster[key]
            room.remove_name(name)
        local = room.members.get(key)
        if local is not None and local.conn == conn:  # ours, taken over (or swept): it goes
            local.outbox.close(CloseCode.REPLACED, "replaced by a newer connection of the same user")
            self.leave(local)
        self.announce(room, "leave", name, size)

    def _typing(self, event: dict[str, Any], conn: str) -> None:
        room = self.registry.rooms.get(event.get("room", ""))
        if room is None or not room.members or conn.startswith(self.roster.process + ":"):
            return  # nobody here to tell, or told already (it was typed here)
        self.fanout.broadcast(room, protocol.typing(event.get("name", ""), room.name))

    async def resync(self) -> None:
        """After a reconnect to Redis: the rooms open here afresh, and what this process
        holds put back; a name someone else took meanwhile is closed here."""
        rooms = list(self.registry.rooms.values())
        held = [(r.name, key, m.name or "", m.conn) for r in rooms for key, m in r.members.items() if m.conn]
        lost = set(await self.roster.resync(held))
        for room in rooms:
            for member in [m for m in room.members.values() if m.conn in lost]:
                member.outbox.close(CloseCode.REPLACED, "replaced by a newer connection of the same user")
                self.leave(member)
            self._set_roster(room, await self.roster.load(room.name))

    # --- the heartbeat -----------------------------------------------------------

    def start(self) -> None:
        self._beating = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            try:
                gone = await self.roster.heartbeat()
                if gone:
                    log.info("%d user(s) of a server process that stopped answering left", gone)
                if self._unsure:
                    self._unsure = False
                    await self.resync()
                self._held = await self.roster.held()
            except Exception as exc:  # Redis away: the subscription says so; beat again soon
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(self.roster.ttl / 3)

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
        try:
            await asyncio.wait_for(self.roster.leave_all(), 2.0)
        except Exception as exc:
            log.debug("could not let this process's names go: %s", exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._unsure = True
            log.debug("roster update failed (put right at the next heartbeat): %s", task.exception())
