"""The embedded engine's :class:`chat_core.moderation.ModerationStore`: bans, room rules
and the audit log in the chat's SQLite file, through the store's one connection and
its one thread (so nothing blocks the event loop and nothing races the writer)."""

from __future__ import annotations

import json
import sqlite3
import time

from .moderation import AuditEntry, Ban, BanKind, ModerationStore, RoomRules
from .store import SQLiteStore

AUDIT_KEEP = 100_000  # newest audit entries kept in the file
SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (kind TEXT NOT NULL, value TEXT NOT NULL, ban TEXT NOT NULL,
                                 until REAL NOT NULL, PRIMARY KEY (kind, value));
CREATE TABLE IF NOT EXISTS room_rules (room TEXT PRIMARY KEY, rules TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, entry TEXT NOT NULL);
"""


class SQLiteModeration(ModerationStore):
    def __init__(self, store: SQLiteStore) -> None:
        super().__init__()
        self.sqlite = store

    def _db(self) -> sqlite3.Connection:
        db = self.sqlite.connection
        assert db is not None, "the store is opened first"
        return db

    async def open(self) -> None:
        await self.sqlite.run(lambda: self._db().executescript(SCHEMA))

    async def load(self) -> tuple[list[Ban], dict[str, RoomRules]]:
        def read() -> tuple[list[Ban], dict[str, RoomRules]]:
            db = self._db()
            with db:
                db.execute("DELETE FROM bans WHERE until <= ?", (time.time(),))
            bans = [Ban.from_json(json.loads(raw)) for (raw,) in db.execute("SELECT ban FROM bans")]
            rules = {room: RoomRules.from_json(json.loads(raw))
                     for room, raw in db.execute("SELECT room, rules FROM room_rules")}
            return bans, rules
        return await self.sqlite.run(read)

    async def save_ban(self, ban: Ban) -> None:
        def write() -> None:
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?)",
                           (ban.kind.value, ban.value, json.dumps(ban.to_json()), ban.until))
        await self.sqlite.run(write)

    async def drop_ban(self, kind: BanKind, value: str) -> None:
        def write() -> None:
            with self._db() as db:
                db.execute("DELETE FROM bans WHERE kind = ? AND value = ?", (kind.value, value))
        await self.sqlite.run(write)

    async def save_rules(self, room: str, rules: RoomRules) -> None:
        def write() -> None:
            with self._db() as db:
                if rules == RoomRules():
                    db.execute("DELETE FROM room_rules WHERE room = ?", (room,))
                else:
                    db.execute("INSERT OR REPLACE INTO room_rules VALUES (?, ?)", (room, json.dumps(rules.to_json())))
        await self.sqlite.run(write)

    async def audit(self, entry: AuditEntry) -> None:
        def write() -> None:
            with self._db() as db:
                cursor = db.execute("INSERT INTO audit (ts, entry) VALUES (?, ?)",
                                    (entry.ts, json.dumps(entry.to_json())))
                db.execute("DELETE FROM audit WHERE id <= ?", ((cursor.lastrowid or 0) - AUDIT_KEEP,))
        await self.sqlite.run(write)

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        def read() -> list[AuditEntry]:
            rows = self._db().execute("SELECT entry FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return [AuditEntry.from_json(json.loads(raw)) for (raw,) in rows]
        return await self.sqlite.run(read)
