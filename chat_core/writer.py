"""The commit path: messages get their ids and are stored, a batch at a time, before
anyone sees them.

:class:`HistoryWriter` gathers posts while the previous batch is being written and
commits them as the next batch (group commit: a busy room costs one store
transaction per batch, not one per message). Each batch goes through a
:class:`Sequencer`, which gives every message the next id of its room and stores
the batch atomically: all of it or, raising, none, with the ids given back. Only
then does it deliver the messages (to be fanned out). The embedded engine's sequencer is
:class:`LocalSequencer`: ids counted in this process, the batch in one SQLite
transaction. A cross-process engine (Redis) replaces exactly this step: ids, storage
and publication in one atomic script.

The writer is supervised: an error it did not expect is logged with its traceback
and it goes on; while batches cannot be stored, :attr:`HistoryWriter.health` is
``DEGRADED`` with the cause (``/healthz`` answers 503), which is logged once per outage.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Optional, Protocol

from . import changes, protocol
from .refusal import Refusal
from .resend import RecentSends
from .rooms import Member
from .store import Change, Entry, Message, Store, Update

log = logging.getLogger("chat_core.writer")

# A failing disk: named in one line, no traceback.
EXPECTED_STORE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)


PROBE_EVERY = 1.0  # seconds between asking a degraded engine whether it can store again


class Health(enum.Enum):
    """Whether the history writer is working: ``DEGRADED`` while messages cannot be stored."""

    OK = "ok"
    DEGRADED = "degraded"


@dataclass
class Draft:
    """A message, or a change to one (``kind``), on its way: no id yet."""

    member: Member
    room: str
    user: str
    text: str
    ts: float
    cid: Optional[str] = None
    author: str = ""
    kind: Optional[Change] = None  # None: a new message
    target: int = 0  # a change's message
    emoji: str = ""
    moderator: bool = False  # a moderator's delete: the author rule does not apply
    bot: bool = False  # a new message from a bot
    done: Optional[asyncio.Future[Optional[Refusal]]] = None  # told the outcome (None: stored), if given

    def message(self, msg_id: int) -> Message:
        return Message(self.room, msg_id, self.user, self.text, self.ts, self.cid, self.author, bot=self.bot)

    def update(self, msg_id: int, state: Message, on: bool) -> Update:
        text = state.text if self.kind is Change.EDIT else ""
        assert self.kind is not None
        return Update(self.room, msg_id, self.kind, self.target, self.user, self.ts, text, self.emoji, on, state)

    def change(self, current: Optional[Message]) -> tuple[Message, bool]:
        """The target after this change (:func:`chat_core.changes.apply`), or :class:`Refusal`."""
        assert self.kind is not None
        return changes.apply(current, self.kind, self.author, self.user, self.ts, self.text, self.emoji,
                             self.moderator)


class Sent(NamedTuple):
    """What became of one draft: ``entry`` stored now; or ``again``: its ``cid`` was sent
    already and ``entry`` is the message stored then (given back to the sender alone); or
    ``refused``, a change the rules do not allow (told to the sender alone)."""

    entry: Optional[Entry]
    again: bool = False
    refused: Optional[Refusal] = None


Deliver = Callable[[Sequence[Entry]], None]


class Sequencer(Protocol):
    expected: tuple[type[BaseException], ...]  # errors of a store that is away: logged in one line

    @property
    def problem(self) -> str:
        """Why delivery does not work now ("" while it does)."""

    async def start(self, deliver: Deliver, wanted: Callable[[str], bool]) -> None:
        """Learn where every room's ids stand; from now on hand every stored message to
        ``deliver``, each room's in id order, once (``wanted``: a room has members here)."""

    async def commit(self, drafts: Sequence[Draft]) -> list[Sent]:
        """Give each draft the next id of its room and store the batch: all of it, or
        (raising) none, with no id used up; a draft whose ``cid`` its author sent
        already is not stored again. Delivery of what is new follows, through ``deliver``."""

    async def close(self) -> None:
        """Stop delivering."""

    async def writable(self) -> bool:
        """Whether a batch could be stored now, if that can be told without storing one
        (the writer asks while it is degraded and idle, to recover without a message)."""


class LocalSequencer:
    """Ids counted in this process (one process per database: see
    :func:`chat_core.store.lock_database`), the batch stored in one transaction and
    delivered as soon as it is stored."""

    expected: tuple[type[BaseException], ...] = EXPECTED_STORE_ERRORS
    problem = ""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sends = RecentSends()
        self._last_ids: dict[str, int] = {}  # newest id given out per room
        self._deliver: Deliver = lambda messages: None

    async def start(self, deliver: Deliver, wanted: Callable[[str], bool]) -> None:
        self._last_ids = await self.store.last_ids()
        self.sends.load(await self.store.recent_sends(time.time() - self.sends.window))
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = lambda messages: None

    async def writable(self) -> bool:
        return False  # a disk that failed a write says whether it works again only at the next one

    async def commit(self, drafts: Sequence[Draft]) -> list[Sent]:
        before: dict[str, int] = {}
        entries: list[Entry] = []  # in id order
        messages: list[Message] = []
        changed: dict[tuple[str, int], Message] = {}  # messages as they stand after this batch's changes
        known: dict[int, int] = {}  # draft index -> id of the message its cid was sent with
        refused: dict[int, Refusal] = {}
        sends = self.sends

        def next_id(room: str) -> int:
            last = self._last_ids.get(room, 0)
            before.setdefault(room, last)
            self._last_ids[room] = last + 1
            return last + 1

        try:
            for i, d in enumerate(drafts):
                if d.kind is not None:
                    key = (d.room, d.target)
                    current = changed.get(key)
                    if current is None:
                        made = next((m for m in messages if (m.room, m.id) == key), None)
                        current = made or await self.store.message(d.room, d.target)
                    try:
                        state, on = d.change(current)
                    except Refusal as exc:
                        refused[i] = exc
                        continue
                    changed[key] = state
                    entries.append(d.update(next_id(d.room), state, on))
                    continue
                if d.cid is not None:
                    sent = sends.find(d.room, d.author, d.cid)
                    if sent is not None:
                        known[i] = sent
                        continue
                m = d.message(next_id(d.room))
                messages.append(m)
                entries.append(m)
                sends.add(m)  # (a second draft of the batch with this cid is a resend too)
            if entries:  # (a message of this batch that a change of it changed goes in as it stands)
                new = {(m.room, m.id) for m in messages}
                await self.store.append(
                    [changed.get((m.room, m.id), m) for m in messages],
                    [e for e in entries if isinstance(e, Update)],
                    [m for key, m in changed.items() if key not in new],
                )
        except BaseException:
            self._last_ids.update(before)  # nobody saw these ids: give them out again
            sends.forget(messages)
            raise
        self._deliver(entries)
        return await sent_back(self.store, drafts, entries, known, refused)


async def sent_back(store: Store, drafts: Sequence[Draft], fresh: Sequence[Entry], known: dict[int, int],
                    refused: Optional[dict[int, Refusal]] = None) -> list[Sent]:
    """Each draft's outcome, in order: its new entry; the message stored with its ``cid``
    before (read back from the store; if the store no longer has it, the draft under the
    id it was stored with); or its refusal."""
    refused = refused or {}
    if not known and not refused:
        return [Sent(e) for e in fresh]
    new = iter(fresh)
    batch = {(e.room, e.id): e for e in fresh if isinstance(e, Message)}
    out = []
    for i, d in enumerate(drafts):
        if i in refused:
            out.append(Sent(None, refused=refused[i]))
        elif i not in known:
            out.append(Sent(next(new)))
        else:
            msg_id = known[i]
            original = batch.get((d.room, msg_id)) or await store.message(d.room, msg_id) or d.message(msg_id)
            out.append(Sent(original, again=True))
    return out


class HistoryWriter:
    def __init__(self, sequencer: Sequencer, after_batch: Callable[[], Awaitable[None]],
                 commit_delay: float = 0.0) -> None:
        self.sequencer = sequencer
        self.after_batch = after_batch  # other bookkeeping the writer's turn carries (saving names)
        self.commit_delay = commit_delay
        self.health = Health.OK
        self.reason = ""  # why DEGRADED
        self.failed_batches = 0  # batches that could not be stored since writes last worked
        self.messages = 0  # stored and delivered since start
        self.commits = 0  # batches: messages / commits is the group-commit batch size
        self._cause = ""
        self._pending: list[Draft] = []
        self._wakeup: Optional[asyncio.Future[None]] = None
        self._task: Optional[asyncio.Task[None]] = None
        self.stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    def post(self, draft: Draft) -> None:
        self._pending.append(draft)
        self.wake()

    def wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def stop(self, timeout: float) -> None:
        """Write what is pending (and the names), then end."""
        self.stopping = True
        task = self._task
        if task is None or task.done():
            return
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            log.warning("history writer did not finish in %.1fs", timeout)
            task.cancel()

    async def _supervise(self) -> None:
        while True:
            try:
                await self._loop()
                return
            except Exception as exc:
                self.degrade("the history writer failed", exc)
                await asyncio.sleep(0.1)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self.stopping:
                    await self.after_batch()
                    return
                self._wakeup = loop.create_future()
                if self.health is Health.DEGRADED:
                    await asyncio.wait([self._wakeup], timeout=PROBE_EVERY)
                    if not self._wakeup.done() and await self._probe():
                        self._recovered()
                else:
                    await self._wakeup
                self._wakeup = None
                if self.commit_delay:
                    await asyncio.sleep(self.commit_delay)
            batch, self._pending = self._pending, []
            if batch:
                await self._commit(batch)
            await self.after_batch()

    async def _commit(self, batch: list[Draft]) -> None:
        try:
            sent = await self.sequencer.commit(batch)
        except Exception as exc:
            self.degrade(f"{len(batch)} message(s) could not be stored, so none were sent", exc)
            text = "The message could not be saved, so it was not sent. Try again."
            err = protocol.error("store_unavailable", text)
            for draft in batch:
                draft.member.send(err if draft.cid is None else protocol.error("store_unavailable", text, draft.cid))
                if draft.done is not None and not draft.done.done():
                    draft.done.set_result(Refusal("store_unavailable", text))
            return
        self._recovered()
        fresh = 0
        for draft, (entry, again, refused) in zip(batch, sent, strict=True):
            if draft.done is not None and not draft.done.done():
                draft.done.set_result(refused)
            if refused is not None:  # a change the rules do not allow: told to its sender alone
                draft.member.send(protocol.error(refused.code, refused.message))
            elif again and entry is not None:  # sent before: the stored one goes back to its sender, nobody else
                draft.member.send(protocol.msg_frame(entry.payload()))
            else:
                fresh += 1
        self.messages += fresh
        self.commits += 1

    async def _probe(self) -> bool:
        try:
            return await self.sequencer.writable()
        except Exception:
            return False

    def degrade(self, what: str, exc: BaseException) -> None:
        """Writes fail: say so once per outage (the real cause, with a traceback only for
        an error nobody expected), then quietly count until a write works again."""
        self.failed_batches += 1
        cause = f"{type(exc).__name__}: {exc}"
        if self.health is Health.DEGRADED and cause == self._cause:
            log.debug("%s: %s", what, cause)
            return
        self.health, self.reason, self._cause = Health.DEGRADED, f"{what}: {cause}", cause
        if isinstance(exc, self.sequencer.expected):
            log.error("chat history: %s (refusing messages until writes work again)", self.reason)
        else:
            log.error("chat history: %s", self.reason, exc_info=exc)

    def _recovered(self) -> None:
        if self.health is Health.DEGRADED:
            log.warning("chat history: writes work again after %d failed batch(es)", self.failed_batches)
            self.health, self.reason, self._cause, self.failed_batches = Health.OK, "", "", 0
