"""The Redis engine's :class:`chat_core.moderation.ModerationStore`: what every process
must agree on, in Redis.

- ``chat:bans``: hash ``kind:value`` -> the ban (JSON); an expired ban is dropped when read;
- ``chat:rules``: hash room -> its rules (JSON), only for rooms whose rules are not the default;
- ``chat:audit``: stream of the audit log, trimmed to about ``AUDIT_KEEP`` entries.

A change is announced on the chat's event channel as ``{"p": "mod", ...}``; every
process (this one too) then reads the bans and rules again, or closes the kicked
connections it holds. After a reconnect to Redis, whatever was announced meanwhile
is read again the same way (:meth:`chat_core.moderation.Moderation.reload_soon`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .moderation import AuditEntry, Ban, BanKind, ModerationStore, RoomRules
from .redis_history import RedisHistory

AUDIT_KEEP = 10_000  # entries of the audit log kept in Redis (XADD MAXLEN ~)


class RedisModeration(ModerationStore):
    def __init__(self, history: RedisHistory) -> None:
        super().__init__()
        self.redis = history.redis
        prefix = history.keys.prefix
        self.events = history.keys.events
        self.bans_key, self.rules_key, self.audit_key = prefix + "bans", prefix + "rules", prefix + "audit"

    async def load(self) -> tuple[list[Ban], dict[str, RoomRules]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.bans_key)
            pipe.hgetall(self.rules_key)
            raw_bans, raw_rules = await pipe.execute()
        now, bans, expired = time.time(), list[Ban](), list[str]()
        for field, raw in raw_bans.items():
            ban = Ban.from_json(json.loads(raw))
            if ban.until > now:
                bans.append(ban)
            else:
                expired.append(field)
        if expired:
            await self.redis.hdel(self.bans_key, *expired)
        return bans, {room: RoomRules.from_json(json.loads(raw)) for room, raw in raw_rules.items()}

    async def save_ban(self, ban: Ban) -> None:
        await self.redis.hset(self.bans_key, f"{ban.kind.value}:{ban.value}", json.dumps(ban.to_json()))

    async def drop_ban(self, kind: BanKind, value: str) -> None:
        await self.redis.hdel(self.bans_key, f"{kind.value}:{value}")

    async def save_rules(self, room: str, rules: RoomRules) -> None:
        if rules == RoomRules():
            await self.redis.hdel(self.rules_key, room)
        else:
            await self.redis.hset(self.rules_key, room, json.dumps(rules.to_json()))

    async def audit(self, entry: AuditEntry) -> None:
        await self.redis.xadd(self.audit_key, {"entry": json.dumps(entry.to_json())}, maxlen=AUDIT_KEEP,
                              approximate=True)

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        if not limit:
            return []
        rows = await self.redis.xrevrange(self.audit_key, count=limit)
        return [AuditEntry.from_json(json.loads(fields["entry"])) for _, fields in rows]

    async def announce(self, event: dict[str, Any]) -> None:
        await self.redis.publish(self.events, json.dumps({"p": "mod", **event}))
