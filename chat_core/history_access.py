"""Who may search and export a room's history, and how often: one set of rules for the HTTP
API (:mod:`chat_core.history_api`) and the dashboard's History tab.

History is as public as the chat (anyone who may join a room reads it on joining), so the
rules are about cost, not secrecy: a search is one index query, but an export reads a whole
room, so it is counted per client address and overall. A banned name or address gets nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Optional

from . import protocol
from .export import Format, export
from .limits import KeyedBuckets
from .moderation import Moderation
from .names import name_key
from .protocol import ProtocolError
from .refusal import Refusal
from .search import MAX_RESULTS, BadQuery, Query
from .store import Message, Store

SEARCH_RATE, SEARCH_BURST = 1.0, 10  # searches a second per address, and how many may come at once
SEARCHES_AT_ONCE = 2  # searches running at once in this process (each has its time budget, search.BUDGET)
EXPORT_RATE, EXPORT_BURST = 0.1, 3  # exports begun a second per address (one per 10 s), and at once
EXPORTS_PER_ADDRESS = 1  # exports running at once from one address
EXPORTS_AT_ONCE = 4  # exports running at once in this process
EXPORT_HOLD = 60.0  # seconds an export counts as running: one whose reader stalls frees its place then
EXPORT_LONGEST = 600.0  # seconds an export may take; then it ends where it is


class HistoryAccess:
    """Search and export with the chat's rules applied; every refusal is a :class:`Refusal`
    whose code docs/protocol.md defines (``banned``, ``rate_limited``, ``busy``, ``bad_query``,
    ``bad_room``)."""

    def __init__(self, store: Store, moderation: Moderation) -> None:
        self.store = store
        self.moderation = moderation
        self.searches = KeyedBuckets(SEARCH_RATE, SEARCH_BURST)
        self.exports = KeyedBuckets(EXPORT_RATE, EXPORT_BURST)
        self.running: dict[object, tuple[str, float]] = {}  # exports running: (address, started)
        self.searching = 0

    def admit(self, room: str, address: str, login: Optional[str]) -> str:
        """The room name, checked; refused for a banned name or address."""
        try:
            room = protocol.check_room(room)
        except ProtocolError as exc:
            raise Refusal("bad_room", exc.message) from None
        self.moderation.check_join(name_key(login) if login else "", address)
        return room

    async def search(self, room: str, text: str, address: str, login: Optional[str] = None,
                     limit: int = MAX_RESULTS) -> list[Message]:
        room = self.admit(room, address, login)
        try:
            query = Query.parse(text)
        except BadQuery as exc:
            raise Refusal("bad_query", str(exc)) from None
        if not self.searches.take(address):
            raise Refusal("rate_limited", "Too many searches; wait a few seconds.")
        if self.searching >= SEARCHES_AT_ONCE:
            raise Refusal("busy", "Other searches are running; try again in a moment.")
        self.searching += 1
        try:
            return await self.store.search(room, query, max(1, min(limit, MAX_RESULTS)))
        except BadQuery as exc:  # too broad: it ran out of time
            raise Refusal("bad_query", str(exc)) from None
        finally:
            self.searching -= 1

    def check_export(self, room: str, address: str, login: Optional[str] = None) -> str:
        """The room name, or a refusal, before an export begins (say, before a response's
        headers); it counts as one export begun. Then iterate :meth:`export`."""
        room = self.admit(room, address, login)
        self._check_running(address)
        if not self.exports.take(address):
            raise Refusal("rate_limited", "Too many exports; wait a few seconds.")
        return room

    def _check_running(self, address: str) -> None:
        since = time.monotonic() - EXPORT_HOLD
        counted = [who for who, started in self.running.values() if started > since]
        if counted.count(address) >= EXPORTS_PER_ADDRESS:
            raise Refusal("busy", "An export from you is still running; wait for it to finish.")
        if len(counted) >= EXPORTS_AT_ONCE:
            raise Refusal("busy", "Too many exports are running; try again in a minute.")

    async def export(self, room: str, fmt: Format, address: str) -> AsyncIterator[str]:
        """The file of a room :meth:`check_export` let through, a page at a time, counted as
        running from its first page to its end. Checked again there, with no wait between
        check and count: of requests that all passed at once, only as many as allowed get a file."""
        self._check_running(address)
        slot, started = object(), time.monotonic()
        self.running[slot] = (address, started)
        try:
            async for part in export(self.store, room, fmt):
                yield part
                if time.monotonic() - started > EXPORT_LONGEST:
                    return
        finally:
            del self.running[slot]

    def scope(self) -> str:
        """What a search looks through, in words, for the page."""
        n = self.store.search_scope
        return "the whole room" if n is None else f"the room's newest {n:,} messages"
