"""Sending that neither loses nor doubles a message: the embedded engine's memory of
client ids.

A client may give a ``msg`` its own id, the ``cid``, and send it again whenever it
is not sure the first one arrived (its socket died, the server restarted). A
``cid`` the same author already sent in the same room within ``CID_WINDOW``
seconds is not stored again: the sender gets the stored message back. The author
is :func:`chat_core.identity.author_of` the token the name is held with, so
someone who takes a free name later cannot touch (or guess away) an earlier
holder's sends.

:class:`RecentSends` is that memory for one process, read back from the store at
start (so a restart forgets nothing) and trimmed by age. The Redis engine keeps it
in Redis instead, in its commit script (:mod:`chat_core.redis_sequencer`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Optional

from .rules import CID_WINDOW
from .store import Message

Key = tuple[str, str, str]  # room, author, cid


class RecentSends:
    def __init__(self, window: float = CID_WINDOW) -> None:
        self.window = window
        self._ids: dict[Key, tuple[int, float]] = {}  # -> (message id, its time)
        self._order: deque[tuple[float, Key]] = deque()  # oldest first

    def load(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.add(m)

    def find(self, room: str, author: str, cid: str) -> Optional[int]:
        """The id of the message ``author`` sent with ``cid`` in ``room``, if still remembered."""
        self._trim()
        found = self._ids.get((room, author, cid))
        return None if found is None else found[0]

    def add(self, m: Message) -> None:
        if m.cid is not None:
            key = (m.room, m.author, m.cid)
            self._ids[key] = (m.id, m.ts)
            self._order.append((m.ts, key))

    def forget(self, messages: Iterable[Message]) -> None:
        """Take back ``messages`` (their batch was not stored)."""
        for m in messages:
            key = (m.room, m.author, m.cid or "")
            if m.cid is not None and self._ids.get(key) == (m.id, m.ts):
                del self._ids[key]

    def _trim(self) -> None:
        cutoff = time.time() - self.window
        order, ids = self._order, self._ids
        while order and order[0][0] < cutoff:
            ts, key = order.popleft()
            found = ids.get(key)
            if found is not None and found[1] == ts:  # (not a later send of the same key)
                del ids[key]

    def __len__(self) -> int:
        return len(self._ids)
