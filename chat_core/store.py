"""Message history backends behind one small interface, chosen by URL.

``sqlite:///chat.db`` (or a plain path) keeps history on disk; ``:memory:`` /
``memory://`` keeps it in this process only. A backend is durable when
:meth:`Store.append` returns: the hub broadcasts a message only after that, so
whatever a client has seen is in the history.

SQLite runs on one dedicated thread, never on the event loop. One server process
owns a database file: ids are handed out in memory, so a second process on the
same file would reuse them (a lock file refuses it, see :class:`StoreInUse`).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import sqlite3
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional, TypeVar, Union

from .search import BUDGET, SCAN, BadQuery, Query

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one server per file is up to the user
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger("chat_core.store")


class StoreInUse(RuntimeError):
    """Another server process holds this database."""


class StoreUnusable(RuntimeError):
    """The history store cannot be opened (a corrupt or foreign file, no permission...);
    the message is one line naming the file, what is wrong and what to do."""


@dataclass
class Claim:
    """A name held with a resume token: only the token's hash is kept, so a copy of
    the database gives nobody a working token."""

    key: str  # chat_core.names.name_key of the name
    name: str
    token_hash: bytes
    created: float
    last_seen: float


Reactions = tuple[tuple[str, tuple[str, ...]], ...]  # (emoji, names who gave it), in the order first given


@dataclass(frozen=True)
class Message:
    """A message as it stands now (edits, a delete and reactions applied)."""

    room: str
    id: int
    user: str
    text: str
    ts: float
    cid: Optional[str] = None  # the sender's own id for it (chat_core.resend)
    author: str = ""  # identity.author_of the sender's token; never sent to clients
    edited: Optional[float] = None  # time of the last edit
    deleted: bool = False  # then text is "" and nothing else of it is kept but who and when
    reactions: Reactions = ()
    bot: bool = False  # sent by a bot (a name held with its bot key: chat_core.bots)

    def payload(self) -> dict[str, Any]:
        """The ``msg`` payload: the seed's fields, and the others only when they say something."""
        p: dict[str, Any] = {"user": self.user, "text": self.text, "ts": self.ts, "id": self.id, "room": self.room}
        if self.cid is not None:
            p["cid"] = self.cid
        if self.edited is not None:
            p["edited"] = self.edited
        if self.deleted:
            p["deleted"] = True
        if self.reactions:
            p["reactions"] = {emoji: list(names) for emoji, names in self.reactions}
        if self.bot:
            p["bot"] = True
        return p


class Change(enum.Enum):
    """What an :class:`Update` does to its message."""

    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"


@dataclass(frozen=True)
class Update:
    """A change to a message: an entry of the room's sequence with an id of its own, so a
    client back with ``since`` gets the changes it missed in order (docs/protocol.md)."""

    room: str
    id: int
    kind: Change
    target: int  # the message's id
    user: str  # who made the change
    ts: float
    text: str = ""  # EDIT: the new text ("" once the message is deleted)
    emoji: str = ""  # REACT
    on: bool = False  # REACT: given (True) or taken back
    state: Optional[Message] = field(default=None, compare=False)  # the message after it, when known

    @property
    def frame_type(self) -> str:
        return self.kind.value

    def payload(self) -> dict[str, Any]:
        p: dict[str, Any] = {"id": self.id, "target": self.target, "user": self.user, "room": self.room, "ts": self.ts}
        if self.kind is Change.EDIT:
            p["text"] = self.text
        elif self.kind is Change.REACT:
            p["emoji"], p["on"] = self.emoji, self.on
        return p


Entry = Union[Message, Update]  # what the room's sequence holds


class Store:
    """The history interface. ``keep`` is how many messages a room keeps (0: all)."""

    shared = False  # other processes write to it too (then claims are read afresh: Claims.refresh)

    def __init__(self, keep: int = 0) -> None:
        self.keep = keep

    async def open(self) -> None:
        """Prepare the backend (create tables...)."""

    async def close(self) -> None:
        """Release the backend; appends that returned are durable."""

    async def append(self, messages: Sequence[Message], updates: Sequence[Update] = (),
                     changed: Sequence[Message] = ()) -> None:
        """Store a batch atomically: all of it or, raising, none. ``updates`` are the batch's
        changes, ``changed`` the messages they changed, as they stand after them."""
        raise NotImplementedError

    async def message(self, room: str, msg_id: int) -> Optional[Message]:
        """One message as it stands, if still kept."""
        found = await self.after(room, msg_id - 1, 1, first=True)
        return found[0] if found and found[0].id == msg_id else None

    async def updates_after(self, room: str, since: int, limit: int) -> list[Update]:
        """The first ``limit`` changes of ``room`` with id > ``since``, in id order."""
        return []

    async def last_ids(self) -> dict[str, int]:
        """The newest id of every room ever written to."""
        return {room: last for room, (last, _) in (await self.rooms()).items()}

    async def rooms(self) -> dict[str, tuple[int, float]]:
        """Every room ever written to: (newest id, time of its newest message)."""
        raise NotImplementedError

    async def load_claims(self) -> list[Claim]:
        """The names held with a resume token (see :class:`chat_core.identity.Claims`)."""
        return []

    async def load_claim(self, key: str) -> Optional[Claim]:
        """The claim on one name key, if any (a shared store only)."""
        return None

    async def save_claims(self, claims: Sequence[Claim], dropped: Sequence[str] = ()) -> None:
        """Write these claims (replacing any of the same key) and forget the ``dropped`` keys."""

    async def after(self, room: str, since: int, limit: int, first: bool = False) -> list[Message]:
        """``limit`` messages of ``room`` with id > ``since``, oldest first: the newest
        such messages, or with ``first`` the ones right after ``since`` (to page forward)."""
        raise NotImplementedError

    async def count(self) -> int:
        raise NotImplementedError

    async def minute_counts(self, since_ts: float) -> list[tuple[str, int, int]]:
        """(room, minute start in unix seconds, messages) for the messages sent at or after
        ``since_ts`` and not deleted (chat_core.activity); changes are not messages."""
        raise NotImplementedError

    async def recent_sends(self, since_ts: float) -> list[Message]:
        """The messages sent with a ``cid`` after ``since_ts``, oldest first (what a
        restarted server must still recognise as sent: :mod:`chat_core.resend`)."""
        return []

    # How much of a room :meth:`search` looks through: None, all of it; else its newest this many messages.
    search_scope: Optional[int] = SCAN

    async def search(self, room: str, query: Query, limit: int) -> list[Message]:
        """At most ``limit`` messages of ``room`` that match ``query`` as they stand now (never a
        deleted one), newest first (:mod:`chat_core.search`)."""
        raise NotImplementedError


class MemoryStore(Store):
    """History in this process only: gone when it stops."""

    def __init__(self, keep: int = 0) -> None:
        super().__init__(keep)
        self._rooms: defaultdict[str, deque[Message]] = defaultdict(lambda: deque(maxlen=keep or None))
        self._updates: defaultdict[str, deque[Update]] = defaultdict(lambda: deque(maxlen=keep or None))

    async def append(self, messages: Sequence[Message], updates: Sequence[Update] = (),
                     changed: Sequence[Message] = ()) -> None:
        for m in messages:
            self._rooms[m.room].append(m)
        for u in updates:
            self._updates[u.room].append(u)
        for m in changed:
            q = self._rooms[m.room]
            for i, old in enumerate(q):
                if old.id == m.id:
                    q[i] = m
        for m in changed:
            if m.deleted:  # no text anywhere: its edits go too
                kept = [u for u in self._updates[m.room] if not (u.target == m.id and u.kind is Change.EDIT)]
                self._updates[m.room] = deque(kept, maxlen=self.keep or None)

    async def updates_after(self, room: str, since: int, limit: int) -> list[Update]:
        return [u for u in self._updates.get(room, ()) if u.id > since][:limit]

    async def rooms(self) -> dict[str, tuple[int, float]]:
        out = {room: (q[-1].id, q[-1].ts) for room, q in self._rooms.items() if q}
        for room, u in ((room, q[-1]) for room, q in self._updates.items() if q):
            if u.id > out.get(room, (0, 0.0))[0]:
                out[room] = (u.id, u.ts)
        return out

    async def after(self, room: str, since: int, limit: int, first: bool = False) -> list[Message]:
        q = self._rooms.get(room)
        if not q:
            return []
        if first:
            return [m for m in q if m.id > since][:limit]
        out: list[Message] = []
        for m in reversed(q):
            if m.id <= since or len(out) >= limit:
                break
            out.append(m)
        out.reverse()
        return out

    async def count(self) -> int:
        return sum(len(q) for q in self._rooms.values())

    async def minute_counts(self, since_ts: float) -> list[tuple[str, int, int]]:
        found: defaultdict[tuple[str, int], int] = defaultdict(int)
        for room, q in self._rooms.items():
            for m in reversed(q):  # newest first: stop at the first one too old
                if m.ts < since_ts:
                    break
                if not m.deleted:
                    found[room, int(m.ts // 60) * 60] += 1
        return sorted((room, minute, n) for (room, minute), n in found.items())

    async def recent_sends(self, since_ts: float) -> list[Message]:
        found = [m for q in self._rooms.values() for m in q if m.cid is not None and m.ts > since_ts]
        return sorted(found, key=lambda m: m.ts)

    async def search(self, room: str, query: Query, limit: int) -> list[Message]:
        q = self._rooms.get(room, ())
        newest = [q[-i] for i in range(1, min(len(q), SCAN) + 1)]  # (taken here: the deque changes on this loop)
        return await asyncio.to_thread(matching, newest, query, limit, time.monotonic() + BUDGET)


SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    id   INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    ts   REAL NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    room   TEXT NOT NULL,
    id     INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    target INTEGER NOT NULL,
    user   TEXT NOT NULL,
    ts     REAL NOT NULL,
    text   TEXT NOT NULL DEFAULT '',
    emoji  TEXT NOT NULL DEFAULT '',
    given  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    created    REAL NOT NULL,
    last_seen  REAL NOT NULL
) WITHOUT ROWID;
"""


class SQLiteStore(Store):
    """History in a SQLite file, in WAL mode, written in batches (group commit).

    ``synchronous=NORMAL`` in WAL mode: a committed batch survives the process being
    killed; a power cut may lose the last batches (``durable=True`` makes every commit
    wait for the disk).
    """

    def __init__(self, path: str, keep: int = 0, durable: bool = False) -> None:
        super().__init__(keep)
        self.path = path
        self.durable = durable
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-sqlite")
        self._db: Optional[sqlite3.Connection] = None
        self._lock: Optional[IO[str]] = None
        self._next_n: Optional[int] = None  # the next message's row in message_words; None: no FTS5 here
        # Searches read on a connection and a thread of their own (WAL lets them run beside the
        # writer), so a slow one never holds up a commit.
        self._reader: Optional[sqlite3.Connection] = None
        self._reading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-sqlite-search")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn`` on the store's one thread, for modules that keep tables of their own in
        this file (chat_core.moderation_store): no second connection, no race with the writer."""
        return await self._run(fn)

    @property
    def connection(self) -> Optional[sqlite3.Connection]:
        return self._db

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            self._lock = lock_database(self.path)  # makes the folder too
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=" + ("FULL" if self.durable else "NORMAL"))
            db.executescript(SCHEMA)
            migrate(db)
            db.execute(f"SELECT {COLUMNS} FROM messages LIMIT 1").fetchall()
            self._next_n = index_words(db)
            self.search_scope = None if self._next_n is not None else SCAN
            if self.path != ":memory:":
                uri = Path(self.path).expanduser().resolve().as_uri() + "?mode=ro"
                self._reader = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
            raise unusable(self.path, exc) from None
        self._db = db

    async def close(self) -> None:
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._reading, self._reader.close)
            self._reader = None
        self._reading.shutdown(wait=True)
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    async def append(self, messages: Sequence[Message], updates: Sequence[Update] = (),
                     changed: Sequence[Message] = ()) -> None:
        await self._run(self._append, messages, updates, changed)

    def _append(self, messages: Sequence[Message], updates: Sequence[Update], changed: Sequence[Message]) -> None:
        db = self._db
        assert db is not None, "store is not open"
        with transaction(db):
            n = self._next_n
            if messages and n is None:
                db.executemany(f"INSERT INTO messages ({COLUMNS}) VALUES ({', '.join('?' * 11)})",
                               [message_row(m) for m in messages])
            elif messages and n is not None:
                self._next_n = n + len(messages)
                db.executemany(f"INSERT INTO messages ({COLUMNS}, n) VALUES ({', '.join('?' * 12)})",
                               [(*message_row(m), n + i) for i, m in enumerate(messages)])
                db.executemany("INSERT INTO message_words (rowid, text, room, id) VALUES (?, ?, ?, ?)",
                               [(n + i, m.text, m.room, m.id) for i, m in enumerate(messages)])
            if updates:
                db.executemany(
                    "INSERT INTO changes (room, id, kind, target, user, ts, text, emoji, given) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(u.room, u.id, u.kind.value, u.target, u.user, u.ts, u.text, u.emoji, int(u.on)) for u in updates])
            for m in changed:
                db.execute(
                    "UPDATE messages SET text = ?, edited = ?, deleted = ?, reactions = ? WHERE room = ? AND id = ?",
                    (m.text, m.edited, int(m.deleted) or None, reactions_json(m.reactions), m.room, m.id),
                )
                if m.deleted:  # no text anywhere: its edits go too
                    db.execute("DELETE FROM changes WHERE room = ? AND target = ? AND kind = 'edit'", (m.room, m.id))
                if self._next_n is not None and (m.deleted or m.edited is not None):
                    reindex(db, m)
            if self.keep:
                self._prune(db, [*messages, *updates])

    def _prune(self, db: sqlite3.Connection, messages: Sequence[Entry]) -> None:
        # Prune a room each time its newest id crosses a multiple of 100: cheap and bounded.
        newest: dict[str, int] = {}
        for m in messages:
            newest[m.room] = m.id
        first = {}
        for m in reversed(messages):
            first[m.room] = m.id
        for room, top in newest.items():
            if top // 100 != (first[room] - 1) // 100 and top > self.keep:
                if self._next_n is not None:
                    db.execute("DELETE FROM message_words WHERE rowid IN "
                               "(SELECT n FROM messages WHERE room = ? AND id <= ?)", (room, top - self.keep))
                db.execute("DELETE FROM messages WHERE room = ? AND id <= ?", (room, top - self.keep))
                db.execute("DELETE FROM changes WHERE room = ? AND id <= ?", (room, top - self.keep))

    async def rooms(self) -> dict[str, tuple[int, float]]:
        return await self._run(self._rooms)

    def _rooms(self) -> dict[str, tuple[int, float]]:
        assert self._db is not None
        # With MAX(), SQLite takes the bare column `ts` from the row holding the maximum.
        out: dict[str, tuple[int, float]] = {}
        for table in ("messages", "changes"):  # (both are entries of a room's sequence: ids go on from the newest)
            for room, last, ts in self._db.execute(f"SELECT room, MAX(id), ts FROM {table} GROUP BY room"):
                if last > out.get(room, (0, 0.0))[0]:
                    out[room] = (last, ts)
        return out

    async def load_claims(self) -> list[Claim]:
        return await self._run(self._load_claims)

    def _load_claims(self) -> list[Claim]:
        assert self._db is not None
        rows = self._db.execute("SELECT key, name, token_hash, created, last_seen FROM claims").fetchall()
        return [Claim(*row) for row in rows]

    async def save_claims(self, claims: Sequence[Claim], dropped: Sequence[str] = ()) -> None:
        await self._run(self._save_claims, list(claims), list(dropped))

    def _save_claims(self, claims: list[Claim], dropped: list[str]) -> None:
        db = self._db
        assert db is not None
        with transaction(db):
            db.executemany("INSERT OR REPLACE INTO claims (key, name, token_hash, created, last_seen) "
                           "VALUES (?, ?, ?, ?, ?)",
                           [(c.key, c.name, c.token_hash, c.created, c.last_seen) for c in claims])
            db.executemany("DELETE FROM claims WHERE key = ?", [(key,) for key in dropped])

    async def after(self, room: str, since: int, limit: int, first: bool = False) -> list[Message]:
        return await self._run(self._after, room, since, limit, first)

    def _after(self, room: str, since: int, limit: int, first: bool) -> list[Message]:
        assert self._db is not None
        order = "ASC" if first else "DESC"
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE room = ? AND id > ? ORDER BY id {order} LIMIT ?",
            (room, since, limit),
        ).fetchall()
        return [row_message(row) for row in (rows if first else reversed(rows))]

    async def updates_after(self, room: str, since: int, limit: int) -> list[Update]:
        return await self._run(self._updates_after, room, since, limit)

    def _updates_after(self, room: str, since: int, limit: int) -> list[Update]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT room, id, kind, target, user, ts, text, emoji, given FROM changes "
            "WHERE room = ? AND id > ? ORDER BY id LIMIT ?", (room, since, limit)).fetchall()
        return [Update(r, i, Change(k), t, u, ts, text, emoji, bool(g)) for r, i, k, t, u, ts, text, emoji, g in rows]

    async def recent_sends(self, since_ts: float) -> list[Message]:
        return await self._run(self._recent_sends, since_ts)

    def _recent_sends(self, since_ts: float) -> list[Message]:
        assert self._db is not None
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE cid IS NOT NULL AND ts > ? ORDER BY ts", (since_ts,)
        ).fetchall()
        return [row_message(row) for row in rows]

    async def search(self, room: str, query: Query, limit: int) -> list[Message]:
        if self._reader is None:  # (a database in memory has no second connection)
            return await self._run(self._search, self._db, room, query, limit)
        return await asyncio.get_running_loop().run_in_executor(
            self._reading, self._search, self._reader, room, query, limit)

    def _search(self, db: Optional[sqlite3.Connection], room: str, query: Query, limit: int) -> list[Message]:
        assert db is not None
        deadline = time.monotonic() + BUDGET
        if self._next_n is None:  # no FTS5 in this SQLite: the newest SCAN messages, matched here
            rows = db.execute(f"SELECT {COLUMNS} FROM messages WHERE room = ? AND deleted IS NULL "
                              "ORDER BY id DESC LIMIT ?", (room, SCAN)).fetchall()
            return matching(list(map(row_message, rows)), query, limit, deadline)
        cols = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # non-zero: stop the query
        try:
            rows = db.execute(
                f"SELECT {cols} FROM message_words w JOIN messages m ON m.room = w.room AND m.id = w.id "
                "WHERE message_words MATCH ? AND w.room = ? AND m.deleted IS NULL ORDER BY w.rowid DESC LIMIT ?",
                (query.fts(), room, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupt" not in str(exc):
                raise
            raise BadQuery("That search is too broad: use longer or rarer words.") from None
        finally:
            db.set_progress_handler(None, 0)
        return [row_message(row) for row in rows]

    async def count(self) -> int:
        return await self._run(lambda: self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])  # type: ignore[union-attr]

    async def minute_counts(self, since_ts: float) -> list[tuple[str, int, int]]:
        return await self._run(self._minute_counts, since_ts)

    def _minute_counts(self, since_ts: float) -> list[tuple[str, int, int]]:
        assert self._db is not None
        # One range scan of the covering index messages_ts (ts, deleted; room comes with the key).
        rows = self._db.execute(
            "SELECT room, CAST(ts / 60 AS INTEGER) * 60 AS minute, COUNT(*) FROM messages "
            "WHERE ts >= ? AND deleted IS NULL GROUP BY room, minute ORDER BY room, minute", (since_ts,)).fetchall()
        return [(room, int(minute), int(n)) for room, minute, n in rows]


COLUMNS = "room, id, user, text, ts, cid, author, edited, deleted, reactions, bot"

# Columns added after the first release, for databases written by an older version.
ADDED = {"cid": "TEXT", "author": "TEXT", "edited": "REAL", "deleted": "INTEGER", "reactions": "TEXT",
         "n": "INTEGER", "bot": "INTEGER"}  # n: the message's row in message_words (index_words)

# The full-text index of what messages say now (Store.search); room and id only to find the message.
WORDS = ("CREATE VIRTUAL TABLE IF NOT EXISTS message_words USING "
         "fts5(text, room UNINDEXED, id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')")
INDEX_PAGE = 10_000  # messages indexed per transaction when an older database is brought up to date


def migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an older version up to :data:`SCHEMA` (only ever adds)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    for column, kind in ADDED.items():
        if column not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN {column} {kind}")
    db.execute("CREATE INDEX IF NOT EXISTS messages_sent ON messages (ts) WHERE cid IS NOT NULL")
    db.execute("CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts, deleted)")  # Store.minute_counts


def matching(newest: Sequence[Message], query: Query, limit: int, deadline: float) -> list[Message]:
    """The messages (newest first) that match, for the engines without an index: on a thread,
    read until ``limit`` are found, or ``deadline`` (monotonic) passes."""
    out: list[Message] = []
    for i, m in enumerate(newest):
        if len(out) >= limit or (i % 256 == 0 and time.monotonic() > deadline):
            break
        if not m.deleted and query.matches(m.text):
            out.append(m)
    return out


def index_words(db: sqlite3.Connection) -> Optional[int]:
    """Make the full-text index and index the messages it lacks (all of them in a database from
    before it, in pages, once); the next row number, or None when this SQLite has no FTS5."""
    try:
        db.execute(WORDS)
    except sqlite3.OperationalError:
        return None
    # Every numbered message has its row (a deleted one's with no text), so the newest row is the
    # highest number given out; and the messages still to number are found through a partial index
    # that holds them alone (empty once indexed: nothing to keep up when a message is written).
    db.execute("CREATE INDEX IF NOT EXISTS messages_unindexed ON messages (room, id) WHERE n IS NULL")
    top = db.execute("SELECT MAX(rowid) FROM message_words").fetchone()[0] or 0
    after: tuple[str, int] = ("", -1)
    while True:  # in key order, so a room's rows go up with its ids (search shows the newest first)
        page = db.execute("SELECT room, id, text, deleted FROM messages WHERE (room, id) > (?, ?) AND n IS NULL "
                          "ORDER BY room, id LIMIT ?", (*after, INDEX_PAGE)).fetchall()
        if not page:
            if after[1] >= 0:
                log.info("search index: every message indexed")
            return top + 1
        if after[1] < 0:
            log.info("search index: indexing the messages of a database from before it (once; "
                     "about a minute per million messages)")
        after = (page[-1][0], page[-1][1])
        with transaction(db):
            db.executemany("UPDATE messages SET n = ? WHERE room = ? AND id = ?",
                           [(top + i + 1, room, msg_id) for i, (room, msg_id, _, _) in enumerate(page)])
            db.executemany("INSERT INTO message_words (rowid, text, room, id) VALUES (?, ?, ?, ?)",
                           [(top + i + 1, "" if deleted else text, room, msg_id)
                            for i, (room, msg_id, text, deleted) in enumerate(page)])
        top += len(page)


def reindex(db: sqlite3.Connection, m: Message) -> None:
    """Index ``m``'s text as it stands now: an edit's new words, or none once it is deleted."""
    db.execute("UPDATE message_words SET text = ? WHERE rowid = (SELECT n FROM messages WHERE room = ? AND id = ?)",
               ("" if m.deleted else m.text, m.room, m.id))


def message_row(m: Message) -> tuple[Any, ...]:
    return (m.room, m.id, m.user, m.text, m.ts, m.cid, m.author or None, m.edited, int(m.deleted) or None,
            reactions_json(m.reactions), int(m.bot) or None)


def row_message(row: tuple[Any, ...]) -> Message:
    room, msg_id, user, text, ts, cid, author, edited, deleted, reactions, bot = row
    return Message(room, msg_id, user, text, ts, cid, author or "", edited, bool(deleted), parse_reactions(reactions),
                   bool(bot))


def reactions_json(reactions: Reactions) -> Optional[str]:
    return json.dumps([[emoji, list(names)] for emoji, names in reactions], ensure_ascii=False) if reactions else None


def parse_reactions(raw: Optional[str]) -> Reactions:
    if not raw:
        return ()
    return tuple((emoji, tuple(names)) for emoji, names in json.loads(raw))


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any error. SQLite may already have rolled
    back by itself (a full disk, an I/O error): then there is nothing to undo, and
    the error that caused it is the one that propagates, not "no transaction is active"."""
    db.execute("BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def unusable(path: str, exc: BaseException) -> StoreUnusable:
    return StoreUnusable(
        f"cannot open the chat history {path}: {exc}. If it is damaged, move it aside (the chat starts "
        "with an empty history) or restore a backup; or give another --db.")


def check_store(url: str) -> None:
    """Raise :class:`StoreUnusable` now, at startup, if ``url`` names an existing file
    that is not a usable chat database: a chat that cannot open its history must stop
    with one clear line rather than come up with the history looking wiped."""
    path = sqlite_path(url)
    if path is None or path == ":memory:" or not Path(path).expanduser().exists():
        return
    try:
        db = sqlite3.connect(f"file:{Path(path).expanduser()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "messages" in tables:
                db.execute("SELECT room, id, user, text, ts FROM messages LIMIT 1").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise unusable(path, exc) from None


def lock_database(path: str) -> Optional[IO[str]]:
    """Hold ``<path>.lock`` for as long as the returned file is open (the OS lets go
    when the process dies, ``kill -9`` included). :class:`StoreInUse` if another
    process holds it."""
    if fcntl is None:
        return None
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    lock = open(str(file) + ".lock", "a+", encoding="utf-8")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise StoreInUse(
            f"{path} is in use by another chat server (pid {holder}). To run several server processes "
            "as one chat, give them all --redis-url (see docs/deploy.md); else stop the other one, or "
            "give this one another --db.") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def check_free(url: str) -> None:
    """Raise :class:`StoreInUse` now, at startup, if ``url``'s database is held by another process."""
    path = sqlite_path(url)
    if path is not None:
        lock = lock_database(path)
        if lock is not None:
            lock.close()


def sqlite_path(url: str) -> Optional[str]:
    """The SQLite file a store URL names, or None for the memory store:
    ``sqlite:///path`` (``sqlite:////abs`` absolute), a plain path, or ``:memory:`` / ``memory://``."""
    if url in (":memory:", "memory://", "memory:", ""):
        return None
    if url.startswith("sqlite://"):
        path = url[len("sqlite:///"):]
        return None if path in ("", ":memory:") else path
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unknown history store {scheme!r}: use sqlite:///path, a file path or :memory:")
    return url


def open_store(url: str, keep: int = 0, durable: bool = False) -> Store:
    """Pick a backend from a URL the way encode/broadcaster does (see :func:`sqlite_path`)."""
    path = sqlite_path(url)
    return MemoryStore(keep) if path is None else SQLiteStore(path, keep, durable)
