"""The engine: where history lives and how a stored message reaches every process,
chosen by URL the way encode/broadcaster picks a backend.

- embedded (the default): the ``--db`` store (SQLite, or memory), ids counted in
  this one process, delivery in process (:class:`chat_core.writer.LocalSequencer`);
- ``--redis-url``: history, ids and fan-out in Redis, for any number of processes
  (:mod:`chat_core.redis_history`, :mod:`chat_core.redis_sequencer`).

The rest of the chat sees a :class:`chat_core.store.Store` and a
:class:`chat_core.writer.Sequencer`, whichever it is.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from .hub import PresenceFactory
from .identity import Claims, load_secret
from .moderation import ModerationStore
from .moderation_store import SQLiteModeration
from .rooms import RoomRegistry
from .session import AddressLimits
from .settings import Settings
from .store import SQLiteStore, Store, check_free, check_store, open_store
from .writer import LocalSequencer, Sequencer

log = logging.getLogger("chat_core.engine")


class Kind(enum.Enum):
    SQLITE = "sqlite"
    MEMORY = "memory"
    REDIS = "redis"


@dataclass
class Engine:
    kind: Kind
    store: Store
    sequencer: Sequencer
    where: str  # the database or Redis, without any password
    presence: Optional[PresenceFactory] = None  # None: this process's own (chat_core.presence.Presence)
    limits: Optional[Callable[[Settings], AddressLimits]] = None  # None: this process's own (AddressLimits)
    moderation: Optional[ModerationStore] = None  # None: kept in memory (the :memory: engine)

    async def status(self) -> dict[str, Any]:
        """For /healthz: the engine, and with Redis whether it answers and how many
        stored messages this process has not delivered yet (null: Redis did not say)."""
        out: dict[str, Any] = {"engine": self.kind.value}
        if self.kind is Kind.REDIS:
            from .redis_sequencer import RedisSequencer

            assert isinstance(self.sequencer, RedisSequencer)
            out["redis"] = self.sequencer.link.value
            try:
                out["behind"] = await asyncio.wait_for(self.sequencer.behind(), 1.0)
            except Exception:  # Redis away or slow: /healthz still answers at once
                out["behind"] = None
        return out

    async def secret(self, configured: str) -> bytes:
        """The secret for tokens and tickets: ``CHAT_SECRET``, else one kept beside the
        database, else (Redis) the one every process shares."""
        if self.kind is Kind.REDIS and not configured:
            from .redis_history import RedisHistory

            assert isinstance(self.store, RedisHistory)
            try:
                return await self.store.shared_secret(load_secret("", None))
            except self.sequencer.expected as exc:
                log.warning(
                    "Redis is not answering (%s): this process uses a secret of its own, so its /ws "
                    "tickets and login tokens hold only here; set CHAT_SECRET on every process",
                    exc,
                )
                return load_secret("", None)
        path = self.store.path + ".secret" if isinstance(self.store, SQLiteStore) else None
        return load_secret(configured, path)


def open_engine(settings: Settings) -> Engine:
    if settings.redis_url:
        from .redis_history import RedisHistory, where
        from .redis_moderation import RedisModeration
        from .redis_roster import RedisRoster
        from .redis_sequencer import RedisSequencer
        from .shared_presence import SharedPresence

        history = RedisHistory(settings.redis_url, settings.history_keep)
        sequencer = RedisSequencer(history)
        roster = RedisRoster(history, settings.presence_ttl)
        moderation = RedisModeration(history)

        def shared(settings: Settings, registry: RoomRegistry, claims: Claims) -> SharedPresence:
            presence = SharedPresence(settings, registry, claims, roster)

            def on_event(event: dict[str, Any]) -> None:  # the channel carries both
                (moderation.on_change if event.get("p") == "mod" else presence.on_event)(event)

            async def on_resync() -> None:  # what was announced while Redis was away is read again
                await presence.resync()
                moderation.on_change({"kind": "reload"})

            sequencer.on_event, sequencer.on_resync = on_event, on_resync
            return presence

        from .redis_limits import SharedLimits

        return Engine(Kind.REDIS, history, sequencer, where(settings.redis_url), shared,
                      lambda settings: SharedLimits(settings, roster), moderation)
    store = open_store(settings.db, keep=settings.history_keep, durable=settings.durable)
    if isinstance(store, SQLiteStore):
        return Engine(Kind.SQLITE, store, LocalSequencer(store), settings.db, moderation=SQLiteModeration(store))
    return Engine(Kind.MEMORY, store, LocalSequencer(store), settings.db)


def check_engine(settings: Settings) -> None:
    """At startup, before anything is served: the embedded store can be opened and no
    other process holds it (:class:`chat_core.store.StoreUnusable`,
    :class:`chat_core.store.StoreInUse`). Redis is not needed to start."""
    if settings.redis_url:
        return
    check_store(settings.db)
    check_free(settings.db)
