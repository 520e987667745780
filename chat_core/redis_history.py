"""History in Redis, for several server processes: the Redis engine's store.

Each room's messages are a stream whose entry ids are the message ids (message 42
is entry ``42-0``), so "everything after id N" is one ``XRANGE`` and trimming to
``history_keep`` is the stream's own ``MAXLEN``. Two hashes hold, per room, the
newest id given out and the time of the newest message (the rooms list). Messages
are written only by :class:`chat_core.redis_sequencer.RedisSequencer`'s script;
this module reads them, and keeps the names claimed with resume tokens.

All keys start with ``chat:`` (see :class:`Keys`); a Redis used for other things as
well keeps them apart that way. redis-py's own retries are off: a command that may
have run is never sent twice (see :func:`connect`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Optional
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .search import BUDGET, SCAN, Query
from .store import Change, Claim, Entry, Message, Store, Update, matching

log = logging.getLogger("chat_core.redis")

COMMAND_TIMEOUT = 2.0  # seconds a Redis command may take before the chat says Redis is not answering
SCAN_PAGE = 1000  # stream entries per XREVRANGE when counting messages per minute
SCAN_CAP = 50_000  # entries read per room at most for one count (about 830 a minute for an hour)


class Keys:
    """The names of the chat's keys and channel, in one place."""

    def __init__(self, prefix: str = "chat:") -> None:
        self.prefix = prefix
        self.last_ids = prefix + "last"  # hash: room -> newest id given out
        self.times = prefix + "ts"  # hash: room -> time of its newest message
        self.claims = prefix + "claims"  # hash: name key -> claim (JSON)
        self.secret = prefix + "secret"  # the servers' shared secret (tokens, tickets)
        self.events = prefix + "events"  # pub/sub channel: every stored batch

    def stream(self, room: str) -> str:
        return f"{self.prefix}h:{room}"

    def states(self, room: str) -> str:
        """Hash: message id -> the message as it stands (JSON), for messages that changed."""
        return f"{self.prefix}m:{room}"

    def changes(self, room: str) -> str:
        """Stream: the room's changes (edits, deletes, reactions) under their own ids."""
        return f"{self.prefix}x:{room}"

    def edits(self, room: str, target: int) -> str:
        """Set: the ids of the edits of one message (their texts go when it is deleted)."""
        return f"{self.prefix}xe:{room}:{target}"

    def deleted(self, room: str) -> str:
        """Sorted set: the ids of deleted messages (their stream entries, text and all, are gone)."""
        return f"{self.prefix}d:{room}"

    def changed(self, room: str) -> str:
        """Sorted set: the ids in ``states``, to trim it with the stream."""
        return f"{self.prefix}mz:{room}"

    def sent(self, room: str, author: str, cid: str) -> str:
        """Remembers, for ``CID_WINDOW`` seconds, the id of the message sent with ``cid``."""
        return f"{self.prefix}s:{room}:{author}:{cid}"


def connect(url: str, timeout: float = COMMAND_TIMEOUT) -> Any:
    """A client for ``url`` whose commands fail after ``timeout`` seconds and are
    never retried by redis-py (the chat decides what to do again). Typed ``Any``:
    redis-py's annotations cannot say that ``decode_responses`` gives ``str``."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def where(url: str) -> str:
    """``url`` without its password, for logs and /healthz."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or ''}"


def message(room: str, entry_id: str, fields: dict[str, str]) -> Message:
    return Message(room, int(entry_id.split("-", 1)[0]), fields["u"], fields["t"], float(fields["ts"]),
                   fields.get("c"), fields.get("a", ""), bot=bool(fields.get("b")))


def state_json(m: Message) -> str:
    """A message as it stands, as ``Keys.states`` keeps it."""
    return json.dumps({"u": m.user, "t": m.text, "ts": m.ts, "c": m.cid, "a": m.author, "ed": m.edited,
                       "d": m.deleted, "re": [[e, list(n)] for e, n in m.reactions], "b": m.bot}, ensure_ascii=False)


def parse_state(room: str, msg_id: int, raw: str) -> Message:
    d = json.loads(raw)
    return Message(room, msg_id, d["u"], d["t"], float(d["ts"]), d.get("c"), d.get("a") or "", d.get("ed"),
                   bool(d.get("d")), tuple((e, tuple(n)) for e, n in d.get("re") or ()), bool(d.get("b")))


def parse_update(room: str, update_id: int, d: dict[str, Any]) -> Update:
    """A change as the commit script stores and publishes it."""
    state = parse_state(room, int(d["g"]), d["s"]) if d.get("s") else None
    return Update(room, update_id, Change(d["k"]), int(d["g"]), d["u"], float(d["ts"]), d.get("t") or "",
                  d.get("e") or "", bool(d.get("o")), state)


def claim(key: str, raw: str) -> Claim:
    d = json.loads(raw)
    return Claim(key, d["name"], bytes.fromhex(d["hash"]), d["created"], d["seen"])


class RedisHistory(Store):
    """The history interface over the streams the sequencer's script writes."""

    shared = True

    def __init__(self, url: str, keep: int = 0, keys: Optional[Keys] = None) -> None:
        super().__init__(keep)
        self.url = url
        self.keys = keys or Keys()
        self.redis = connect(url)

    async def close(self) -> None:
        await self.redis.aclose()

    async def append(self, messages: Sequence[Message], updates: Sequence[Update] = (),
                     changed: Sequence[Message] = ()) -> None:
        raise NotImplementedError("messages reach Redis through RedisSequencer.commit")

    async def rooms(self) -> dict[str, tuple[int, float]]:
        last, times = await self._hashes()
        return {room: (int(n), float(times.get(room, 0.0))) for room, n in last.items() if int(n) > 0}

    async def last_ids(self) -> dict[str, int]:
        return {room: int(n) for room, n in (await self.redis.hgetall(self.keys.last_ids)).items()}

    async def _hashes(self) -> tuple[dict[str, str], dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.last_ids)
            pipe.hgetall(self.keys.times)
            last, times = await pipe.execute()
        return last, times

    async def after(self, room: str, since: int, limit: int, first: bool = False) -> list[Message]:
        """Messages as they stand: the stream's, with their changes, and deleted ones (whose
        entries are gone) from their tombstones."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            if first:
                pipe.xrange(k.stream(room), f"({since}-0", "+", count=limit)
                pipe.zrangebyscore(k.deleted(room), f"({since}", "+inf", start=0, num=limit)
            else:
                pipe.xrevrange(k.stream(room), "+", f"({since}-0", count=limit)
                pipe.zrevrangebyscore(k.deleted(room), "+inf", f"({since}", start=0, num=limit)
            entries, gone = await pipe.execute()
        found = {int(entry_id.split("-", 1)[0]): (entry_id, fields) for entry_id, fields in entries}
        ids = sorted({*found, *(int(i) for i in gone)})
        ids = ids[:limit] if first else ids[-limit:]
        return await self._as_they_stand(room, ids, found)

    async def _as_they_stand(self, room: str, ids: list[int], found: dict[int, tuple[str, dict[str, str]]]
                             ) -> list[Message]:
        if not ids:
            return []
        states = await self.redis.hmget(self.keys.states(room), [str(i) for i in ids])
        out = []
        for msg_id, raw in zip(ids, states, strict=True):
            if raw is not None:
                out.append(parse_state(room, msg_id, raw))
            elif msg_id in found:
                out.append(message(room, *found[msg_id]))
        return out

    async def updates_after(self, room: str, since: int, limit: int) -> list[Update]:
        entries = await self.redis.xrange(self.keys.changes(room), f"({since}-0", "+", count=limit)
        return [parse_update(room, int(entry_id.split("-", 1)[0]), json.loads(fields["j"]))
                for entry_id, fields in entries]

    async def between(self, room: str, after: int, upto: int) -> list[Entry]:
        """The stored entries of ``room`` (messages as they stand, and changes) with
        ``after`` < id <= ``upto``, in id order."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(k.stream(room), f"({after}-0", f"{upto}-0")
            pipe.zrangebyscore(k.deleted(room), f"({after}", upto)
            pipe.xrange(k.changes(room), f"({after}-0", f"{upto}-0")
            entries, gone, changes = await pipe.execute()
        found = {int(entry_id.split("-", 1)[0]): (entry_id, fields) for entry_id, fields in entries}
        out: list[Entry] = list(await self._as_they_stand(room, sorted({*found, *(int(i) for i in gone)}), found))
        out += [parse_update(room, int(i.split("-", 1)[0]), json.loads(fields["j"])) for i, fields in changes]
        return sorted(out, key=lambda e: e.id)

    async def count(self) -> int:
        rooms = await self.redis.hkeys(self.keys.last_ids)
        if not rooms:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.xlen(self.keys.stream(room))
            return sum(await pipe.execute())

    async def minute_counts(self, since_ts: float) -> list[tuple[str, int, int]]:
        """Bounded: only rooms whose newest message is at or after ``since_ts`` (the times hash),
        each read newest first in pages of :data:`SCAN_PAGE` until an entry is older or
        :data:`SCAN_CAP` entries were read (past that, the hour's oldest minutes count short).
        Deleted messages have no stream entry, so they do not count; changes are another stream."""
        last, times = await self._hashes()
        found: dict[tuple[str, int], int] = {}
        for room in sorted(r for r, t in times.items() if float(t) >= since_ts and r in last):
            top, read = "+", 0
            while read < SCAN_CAP:
                page = await self.redis.xrevrange(self.keys.stream(room), top, "-", count=SCAN_PAGE)
                for _, fields in page:
                    ts = float(fields["ts"])
                    if ts < since_ts:
                        break
                    key = (room, int(ts // 60) * 60)
                    found[key] = found.get(key, 0) + 1
                else:
                    read += len(page)
                    if len(page) == SCAN_PAGE:
                        top = f"({page[-1][0]}"
                        continue
                break
        return sorted((room, minute, n) for (room, minute), n in found.items())

    async def search(self, room: str, query: Query, limit: int) -> list[Message]:
        """Bounded (Redis has no full-text index here): the room's newest :data:`~chat_core.search.SCAN`
        messages, read newest first in pages of :data:`SCAN_PAGE`, as they stand (edits applied;
        a deleted message has no stream entry), matched by :meth:`Query.matches` on a thread;
        what is found within :data:`~chat_core.search.BUDGET` seconds."""
        out: list[Message] = []
        top, read = "+", 0
        deadline = time.monotonic() + BUDGET
        while read < SCAN and len(out) < limit and time.monotonic() < deadline:
            page = await self.redis.xrevrange(self.keys.stream(room), top, "-", count=min(SCAN_PAGE, SCAN - read))
            found = {int(entry_id.split("-", 1)[0]): (entry_id, fields) for entry_id, fields in page}
            standing = await self._as_they_stand(room, sorted(found, reverse=True), found)
            out += await asyncio.to_thread(matching, standing, query, limit - len(out), deadline)  # (off the loop)
            read += len(page)
            if len(page) < SCAN_PAGE:
                break
            top = f"({page[-1][0]}"
        return out[:limit]

    # --- names held with a resume token ------------------------------------------

    async def load_claims(self) -> list[Claim]:
        return [claim(key, raw) for key, raw in (await self.redis.hgetall(self.keys.claims)).items()]

    async def load_claim(self, key: str) -> Optional[Claim]:
        raw = await self.redis.hget(self.keys.claims, key)
        return None if raw is None else claim(key, raw)

    async def save_claims(self, claims: Sequence[Claim], dropped: Sequence[str] = ()) -> None:
        mapping: dict[str, Any] = {
            c.key: json.dumps({"name": c.name, "hash": c.token_hash.hex(), "created": c.created, "seen": c.last_seen})
            for c in claims
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            if mapping:
                pipe.hset(self.keys.claims, mapping=mapping)
            if dropped:
                pipe.hdel(self.keys.claims, *dropped)
            await pipe.execute()

    async def shared_secret(self, candidate: bytes) -> bytes:
        """The secret every process uses: the first one to start sets it."""
        await self.redis.set(self.keys.secret, candidate.hex(), nx=True)
        stored = await self.redis.get(self.keys.secret)
        return bytes.fromhex(stored)
