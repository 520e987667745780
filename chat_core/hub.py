"""The hub: the chat as one object, with no web framework in it. It reads like a
message's journey; each step is a module of its own:

- ``join``: the room is opened (:mod:`chat_core.rooms`: its history loaded once),
  the name checked and taken (:mod:`chat_core.presence` with the claims of
  :mod:`chat_core.identity`), history and `welcome` queued, the room told;
- ``post``: the message is queued for the history writer (:mod:`chat_core.writer`),
  which gives it its id and stores its batch;
- ``_deliver``: only then is each message encoded once and handed to the outbox of
  every member of its room (:mod:`chat_core.fanout`).

So what anyone has seen is in the store, ids in a room increase by one, and no
recipient's socket is ever awaited here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Optional

from . import protocol
from .identity import Claims, Proof
from .moderation import Moderation, ModerationStore, RoomRules
from .outbox import Outbox, State
from .presence import Presence
from .protocol import CloseCode, Join
from .refusal import Refusal
from .rooms import Member, Role, Room, RoomRegistry
from .settings import Settings
from .store import Change, Entry, Message, Store, Update
from .writer import Draft, Health, HistoryWriter, LocalSequencer, Sequencer

__all__ = ["Health", "Hub", "Member", "Room"]

log = logging.getLogger("chat_core.hub")

PresenceFactory = Callable[[Settings, RoomRegistry, Claims], Presence]


class Hub:
    """Everything the server knows about who is where. One per process."""

    def __init__(self, settings: Settings, store: Store, claims: Optional[Claims] = None,
                 sequencer: Optional[Sequencer] = None, presence: Optional[PresenceFactory] = None,
                 moderation: Optional[ModerationStore] = None) -> None:
        self.settings = settings
        self.store = store
        if claims is None:  # (not `claims or`: an empty Claims is falsy)
            claims = Claims(store, secrets.token_bytes(32), settings.token_ttl, settings.name_reserve)
        self.claims = claims
        cache = max(settings.history_limit, settings.replay_limit, 1)
        if settings.history_keep:
            cache = min(cache, max(settings.history_keep, settings.history_limit))
        self.registry = RoomRegistry(store, cache, settings.room_idle)
        self.presence = (presence or Presence)(settings, self.registry, self.claims)
        self.writer = HistoryWriter(sequencer or LocalSequencer(store), self._save_names, settings.commit_delay)
        self.members: set[Member] = set()
        self.moderation = Moderation(moderation or ModerationStore())
        self.moderation.on_kick, self.moderation.on_rules = self._kick, self._tell_rules
        self._reading: Optional[asyncio.Task[None]] = None  # rooms and names, while the store is away at start

    @property
    def rooms(self) -> dict[str, Room]:
        return self.registry.rooms

    @property
    def health(self) -> Health:
        return Health.DEGRADED if self.health_reason else Health.OK

    @property
    def health_reason(self) -> str:
        """Why messages cannot be stored or delivered now ("" while they can)."""
        return "; ".join(r for r in (self.writer.reason, self.writer.sequencer.problem) if r)

    # --- life cycle --------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start writing. A store that is away (Redis not answering)
        does not stop the start: the rooms list and the names are read once it answers,
        and until then messages are refused with ``store_unavailable``."""
        await self.store.open()
        sequencer = self.writer.sequencer
        await sequencer.start(self._deliver, self.registry.rooms.__contains__)
        self.presence.start()
        try:
            await self._read_state()
        except sequencer.expected as exc:
            log.error("chat history: cannot read the rooms and names yet (%s: %s); retrying", type(exc).__name__, exc)
            self._reading = asyncio.get_running_loop().create_task(self._read_state_later())
        self.writer.start()

    async def _read_state(self) -> None:
        await self.registry.start()
        await self.claims.open()
        await self.moderation.open()

    async def _read_state_later(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._read_state()
            except self.writer.sequencer.expected:
                continue
            log.warning("chat history: rooms and names read")
            return

    async def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down",
                        timeout: float = 3.0) -> None:
        """Write what is pending, then close every connection with ``code`` after its queued frames."""
        await self.writer.stop(timeout)
        self.presence.cancel_timers()
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
        if self._reading is not None:
            self._reading.cancel()
        await self.presence.close()
        await self.writer.sequencer.close()
        await self.store.close()

    # --- connections -------------------------------------------------------

    def attach(self, outbox: Outbox) -> Member:
        member = Member(outbox)
        self.members.add(member)
        return member

    def detach(self, member: Member) -> None:
        """The connection is gone (or going): leave its room. Safe to call twice."""
        self.members.discard(member)
        self.presence.leave(member)

    async def join(self, member: Member, join: Join, trusted: bool = False) -> None:
        """Enter (or switch to) a room: history, then `welcome`, then the join notice.
        ``trusted``: the name is the joiner's login, which proves it."""
        key, registry, presence = join.key, self.registry, self.presence
        self.moderation.check_join(key, member.address)
        if not registry.is_listed(join.room) and len(registry.listed()) >= self.settings.max_rooms > 0:
            raise Refusal("too_many_rooms", "There are too many rooms in use; join one from the list.")
        room = await registry.open(join.room)  # counts us in room.joining
        taken = False
        try:
            presence.holder(room, member, key, join.token)  # refuse early, before reading history
            since = join.since
            if since is not None and since > room.last_id:
                since = None  # the client knows ids this server never gave out: start afresh
            await presence.open_room(room)
            older: list[Message] = []
            older_updates: list[Update] = []
            if since is not None and since + 1 < room.first_cached:
                limit = self.settings.replay_limit or 2**31
                older = await self.store.after(room.name, since, limit)
                older_updates = await self.store.updates_after(room.name, since, limit)
            await self.claims.refresh(key)
            await presence.check_held(key)
            own = member.key == key and member.token is not None
            proven = trusted or own or self.claims.proof(key, join.token, held=True) is Proof.TOKEN
            if presence.holder(room, member, key, join.token) is None and not own:
                self.claims.check(key, join.token, presence.is_held(key), trusted)  # before anyone hears of it
            taken = True  # (a take that fails half way, say a timeout after it ran, is let go too)
            await presence.take(room, member, key, join.user, join.token, proven)
            # From here on nothing awaits: the room cannot change under us.
            holder = presence.holder(room, member, key, join.token)
            if member.outbox.closed:
                raise Refusal("closed", "connection closed")
            token = member.token if own and join.token is None else None
            if token is None:
                token = self.claims.admit(key, join.user, join.token, presence.is_held(key), trusted or own)
        except BaseException:
            if taken:
                presence.untake(room, member, key)
            registry.release(room)
            raise
        if holder is not None:
            holder.outbox.close(CloseCode.REPLACED, "replaced by a newer connection of the same user")
            presence.leave(holder)
        frames, first = registry.history(room, since, older, older_updates, self.settings.history_limit,
                                         self.settings.replay_limit)
        changed = presence.enter(room, member, join.user, key, token)
        room.joining -= 1
        gap = None
        if since is not None and since < room.last_id and (first is None or first > since + 1):
            gap = {"after": since, "first": first if first is not None else room.last_id + 1}
        member.outbox.put_many(frames)
        member.send(presence.welcome(room, member, gap, self.moderation.room_rules(room.name).to_json()))
        presence.joined(room, member, changed)
        if self.claims.dirty:
            self.writer.wake()

    def check_post(self, member: Member) -> float:
        """Refuse a message or change ``member`` may not send now (before it counts against
        any limit); the room's slow mode for ``member`` in seconds (0: none)."""
        if member.room is None or member.name is None:
            raise Refusal("not_joined", "Join a room (send a \"join\" frame) before sending messages.")
        if self.writer.stopping:
            raise Refusal("shutting_down", "The server is restarting; send it again once reconnected.")
        return self.moderation.check_post(member.room.name, member.role is Role.MODERATOR)

    def post(self, member: Member, text: str, cid: Optional[str] = None) -> None:
        """Queue a chat message from ``member``; it is broadcast once stored (a ``cid`` its
        author sent already gets the stored one back instead, see :mod:`chat_core.resend`)."""
        self.check_post(member)
        assert member.room is not None and member.name is not None
        self.writer.post(Draft(member, member.room.name, member.name, text, protocol.now(), cid, member.author,
                               bot=member.role is Role.BOT))

    def change(self, member: Member, kind: Change, target: int, text: str = "", emoji: str = "") -> None:
        """Queue an edit, delete or reaction of message ``target`` in ``member``'s room; the
        rules (:mod:`chat_core.changes`) are checked as it is stored, then it is broadcast."""
        self.check_post(member)
        assert member.room is not None and member.name is not None
        self.writer.post(Draft(member, member.room.name, member.name, text, protocol.now(), None, member.author,
                               kind, target, emoji))

    async def remove(self, room: str, msg_id: int, actor: str) -> Optional[Refusal]:
        """A moderator deletes message ``msg_id`` of ``room``, whoever wrote it: stored and
        broadcast as any delete, then audited. The refusal, if it was not deleted."""
        reply = Member(Reply())
        reply.name = "moderator"
        done: asyncio.Future[Optional[Refusal]] = asyncio.get_running_loop().create_future()
        message = await self.store.message(room, msg_id)
        self.writer.post(Draft(reply, room, reply.name, "", protocol.now(), None, "", Change.DELETE, msg_id,
                               moderator=True, done=done))
        refused = await asyncio.wait_for(done, 30.0)
        if refused is None:
            await self.moderation.record_delete(actor, room, msg_id, message.user if message else "?")
        return refused

    def _kick(self, room: str, key: str, address: str) -> None:
        """Close this process's connections in ``room`` ("": any) of name ``key`` or from ``address``."""
        if not key and not address:
            return
        for member in list(self.members):
            if room and (member.room is None or member.room.name != room):
                continue
            if (key and member.key == key) or (address and member.address == address):
                member.outbox.close(CloseCode.KICKED, "removed by a moderator", drop=False)
                self.presence.leave(member)

    def _tell_rules(self, room: str, rules: RoomRules) -> None:
        """The members of ``room`` here hear of its new topic, slow mode or lock."""
        found = self.registry.rooms.get(room)
        if found is not None and found.members:
            self.presence.fanout.broadcast(found, protocol.room_rules(room, rules.topic, rules.slow, rules.locked))

    def typing(self, member: Member) -> None:
        """``member`` is typing: the others in its room are told (never stored)."""
        if member.room is not None:
            self.presence.typing(member.room, member)

    # --- delivery ------------------------------------------------------------

    def _deliver(self, entries: Sequence[Entry]) -> None:
        """Stored messages and changes to the members of their rooms, each encoded once."""
        rooms, registry, fanout = self.registry.rooms, self.registry, self.presence.fanout
        for e in entries:
            registry.note_stored(e)
            room = rooms.get(e.room)
            if room is None or e.id <= room.last_id:  # (a room opened meanwhile read it already)
                continue
            if isinstance(e, Message):
                frame = protocol.msg_frame(e.payload())
                room.remember(e.id, frame)
            else:
                frame = protocol.update_frame(e)
                state = protocol.msg_frame(e.state.payload()) if e.state is not None else None
                room.remember_update(e, frame, state)
            fanout.broadcast(room, frame)

    async def _save_names(self) -> None:
        if not self.claims.dirty:
            return
        try:
            await self.claims.flush(self.presence.is_held)
        except Exception as exc:
            self.writer.degrade("names could not be saved", exc)

    # --- reading -----------------------------------------------------------

    def is_listed(self, name: str) -> bool:
        return self.registry.is_listed(name)

    async def rooms_summary(self) -> list[dict[str, Any]]:
        names = self.registry.listed()
        online = await self.presence.counts(names)
        return [{"room": name, "online": online.get(name, 0), "last_id": self.registry.last_id(name)}
                for name in names]

    async def rooms_moderated(self) -> list[dict[str, Any]]:
        """:meth:`rooms_summary`, each room with who is online (as far as this process sees
        them) and its rules: what moderators look at, in the admin API and the dashboard."""
        out = []
        for item in await self.rooms_summary():
            room = self.registry.rooms.get(item["room"])
            out.append({**item, "users": list(room.names) if room is not None else [],
                        **self.moderation.room_rules(item["room"]).to_json()})
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "process": os.getpid(),  # which server process answered (several on Redis)
            "connections": len(self.members),
            "rooms": sum(1 for r in self.registry.rooms.values() if r.members),
            "messages": self.writer.messages,
            "commits": self.writer.commits,
            "overflow_closes": self.presence.fanout.overflow_closes,
            "frame_writer": sum(1 for m in self.members if m.outbox.direct),
            "tasks": len(asyncio.all_tasks()),
            "failed_batches": self.writer.failed_batches,
        }


class Reply(Outbox):
    """The outbox of a change no socket sent (a moderator's delete): what the writer
    answers is kept, nothing is sent."""

    def __init__(self) -> None:  # (no socket, no loop, no limit: nothing of Outbox's own)
        self.state = State.OPEN
        self.frames: list[str] = []

    def put(self, frame: str, encoded: Optional[bytes] = None) -> bool:
        self.frames.append(frame)
        return True

