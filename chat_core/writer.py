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

from . import protocol
from .resend import RecentSends
from .rooms import Member
from .store import Message, Store

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
    """A message on its way: no id yet."""

    member: Member
    room: str
    user: str
    text: str
    ts: float
    cid: Optional[str] = None
    author: str = ""

    def message(self, msg_id: int) -> Message:
        return Message(self.room, msg_id, self.user, self.text, self.ts, self.cid, self.author)


class Sent(NamedTuple):
    """What became of one draft: stored now, or ``again``: its ``cid`` was sent already
    and ``message`` is the one stored then (given back to the sender alone)."""

    message: Message
    again: bool = False


Deliver = Callable[[list[Message]], None]


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
        messages: list[Message] = []
        known: dict[int, int] = {}  # draft index -> id of the message its cid was sent with
        sends = self.sends
        for i, d in enumerate(drafts):
            if d.cid is not None:
                sent = sends.find(d.room, d.author, d.cid)
                if sent is not None:
                    known[i] = sent
                    continue
            last = self._last_ids.get(d.room, 0)
            before.setdefault(d.room, last)
            self._last_ids[d.room] = last + 1
            m = d.message(last + 1)
            messages.append(m)
            sends.add(m)  # (a second draft of the batch with this cid is a resend too)
        try:
            if messages:
                await self.store.append(messages)
        except BaseException:
            self._last_ids.update(before)  # nobody saw these ids: give them out again
            sends.forget(messages)
            raise
        self._deliver(messages)
        return await sent_back(self.store, drafts, messages, known)


async def sent_back(store: Store, drafts: Sequence[Draft], fresh: list[Message], known: dict[int, int]) -> list[Sent]:
    """Each draft's outcome, in order: its new message, or the one stored with its ``cid``
    before (read back from the store; if the store no longer has it, the draft under
    the id it was stored with)."""
    if not known:
        return [Sent(m) for m in fresh]
    new = iter(fresh)
    batch = {(m.room, m.id): m for m in fresh}
    out = []
    for i, d in enumerate(drafts):
        if i not in known:
            out.append(Sent(next(new)))
            continue
        msg_id = known[i]
        original = batch.get((d.room, msg_id))
        if original is None:
            found = await store.after(d.room, msg_id - 1, 1, first=True)
            original = found[0] if found and found[0].id == msg_id else d.message(msg_id)
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
            return
        self._recovered()
        fresh = len(sent)
        for draft, (message, again) in zip(batch, sent, strict=True):
            if again:  # sent before: the stored one goes back to its sender, nobody else
                draft.member.send(protocol.msg_frame(message.payload()))
                fresh -= 1
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
