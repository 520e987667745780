"""Presence across processes (the Redis engine): who holds which name in which room,
whichever process their connection is on.

Each room's roster is a hash in Redis, name key -> ``{"n": name, "c": connection,
"p": process}``. Taking a name is one script: free, ours already, held by a process
that is gone, or taken over with a proven token (the old holder's process then
closes it with 4001); anything else is ``name_taken``. Every change is published on
the chat's channel as a ``join`` or ``leave`` event, and every process, the
joiner's too, tells its own members from that event: each notice reaches everyone
in the room once, in the same order as the messages.

A process proves it is alive by a heartbeat (a sorted set of processes with their
expiry); every heartbeat also sweeps the processes whose expiry passed (killed
without a word) and announces their users as leaving, so they are gone within
``presence_ttl`` (plus a third of it). After a reconnect to Redis a process sends
what it holds (:meth:`RedisRoster.resync`): what Redis lost is put back, what it
let go meanwhile is taken back or, if someone else has it now, closed here.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterable
from typing import Any, Optional

from .redis_history import Keys, RedisHistory

log = logging.getLogger("chat_core.redis")

_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_LEAVE = """
local function leave(room, key, holder, replaced)
  redis.call('HDEL', prefix .. 'p:' .. room, key)
  if redis.call('HINCRBY', prefix .. 'held', key, -1) <= 0 then redis.call('HDEL', prefix .. 'held', key) end
  redis.call('SREM', prefix .. 'pm:' .. holder.p, room .. '\\n' .. key .. '\\n' .. holder.c)
  redis.call('PUBLISH', channel, cjson.encode({p = 'leave', room = room, key = key, name = holder.n,
                                               conn = holder.c, replaced = replaced}))
end
"""

CLAIM = (
    _NOW
    + """
-- ARGV: prefix, channel, room, key, name, connection, process, force (1: a proven token may take over), ttl
local prefix, channel, room, key, name, conn, proc, force, ttl = unpack(ARGV)
redis.call('ZADD', prefix .. 'procs', 'GT', now + tonumber(ttl) * 1000, proc)  -- alive, whatever the heartbeat
"""
    + _LEAVE
    + """
local roster = prefix .. 'p:' .. room
local raw = redis.call('HGET', roster, key)
if raw then
  local holder = cjson.decode(raw)
  if holder.c == conn then
    redis.call('HSET', roster, key, cjson.encode({n = name, c = conn, p = proc}))
    return {'mine'}
  end
  local expiry = redis.call('ZSCORE', prefix .. 'procs', holder.p)
  local alive = expiry and tonumber(expiry) > now
  if alive and force ~= '1' then
    return {'taken', holder.p, holder.c}
  end
  leave(room, key, holder, alive and 1 or 0)
end
redis.call('HSET', roster, key, cjson.encode({n = name, c = conn, p = proc}))
redis.call('HINCRBY', prefix .. 'held', key, 1)
redis.call('SADD', prefix .. 'pm:' .. proc, room .. '\\n' .. key .. '\\n' .. conn)
redis.call('PUBLISH', channel, cjson.encode({p = 'join', room = room, key = key, name = name, conn = conn}))
return {'ok'}
"""
)

RELEASE = (
    """
-- ARGV: prefix, channel, room, key, connection, process
local prefix, channel, room, key, conn, proc = unpack(ARGV)
"""
    + _LEAVE
    + """
local raw = redis.call('HGET', prefix .. 'p:' .. room, key)
redis.call('SREM', prefix .. 'pm:' .. proc, room .. '\\n' .. key .. '\\n' .. conn)
if raw then
  local holder = cjson.decode(raw)
  if holder.c == conn then leave(room, key, holder, 0) end
end
return 1
"""
)

HEARTBEAT = (
    _NOW
    + """
-- ARGV: prefix, channel, process, seconds it stays alive without another heartbeat
local prefix, channel, proc, ttl = unpack(ARGV)
"""
    + _LEAVE
    + """
local procs = prefix .. 'procs'
redis.call('ZADD', procs, now + tonumber(ttl) * 1000, proc)
local gone = 0
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', procs, '-inf', now)) do
  for _, entry in ipairs(redis.call('SMEMBERS', prefix .. 'pm:' .. dead)) do
    local room, key, conn = string.match(entry, '^(.-)\\n(.-)\\n(.*)$')
    local raw = redis.call('HGET', prefix .. 'p:' .. room, key)
    if raw then
      local holder = cjson.decode(raw)
      if holder.c == conn then leave(room, key, holder, 0); gone = gone + 1 end
    end
  end
  redis.call('DEL', prefix .. 'pm:' .. dead)
  for _, entry in ipairs(redis.call('SMEMBERS', prefix .. 'pi:' .. dead)) do  -- its open connections
    local address, conn = string.match(entry, '^(.*)\\n(.-)$')
    redis.call('HDEL', prefix .. 'ip:' .. address, conn)
  end
  redis.call('DEL', prefix .. 'pi:' .. dead)
  redis.call('ZREM', procs, dead)
end
return gone
"""
)

RESYNC = (
    _NOW
    + """
-- After a reconnect: ARGV: prefix, channel, process, ttl, then room, key, name, connection for each name
-- held here. Returns the connections whose name someone else holds now.
local prefix, channel, proc, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if ttl > 0 then redis.call('ZADD', prefix .. 'procs', now + ttl * 1000, proc) end
"""
    + _LEAVE
    + """
local mine, lost = {}, {}
for i = 5, #ARGV, 4 do
  local room, key, name, conn = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local entry = room .. '\\n' .. key .. '\\n' .. conn
  mine[entry] = true
  local roster = prefix .. 'p:' .. room
  local raw = redis.call('HGET', roster, key)
  if raw and cjson.decode(raw).c ~= conn then
    lost[#lost + 1] = conn
  else
    if not raw then
      redis.call('HSET', roster, key, cjson.encode({n = name, c = conn, p = proc}))
      redis.call('HINCRBY', prefix .. 'held', key, 1)
      redis.call('PUBLISH', channel, cjson.encode({p = 'join', room = room, key = key, name = name, conn = conn}))
    end
    redis.call('SADD', prefix .. 'pm:' .. proc, entry)
  end
end
for _, entry in ipairs(redis.call('SMEMBERS', prefix .. 'pm:' .. proc)) do
  if not mine[entry] then
    local room, key, conn = string.match(entry, '^(.-)\\n(.-)\\n(.*)$')
    local raw = redis.call('HGET', prefix .. 'p:' .. room, key)
    redis.call('SREM', prefix .. 'pm:' .. proc, entry)
    if raw and cjson.decode(raw).c == conn then leave(room, key, cjson.decode(raw), 0) end
  end
end
return lost
"""
)


class Claimed(enum.Enum):
    """How taking a name in a room's roster went."""

    OK = "ok"  # taken (it was free, its holder's process is gone, or a proven token took it over)
    MINE = "mine"  # this connection holds it already
    TAKEN = "taken"  # a live connection elsewhere holds it


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class RedisRoster:
    """This process's side of the shared rosters."""

    def __init__(self, history: RedisHistory, ttl: float) -> None:
        self.redis = history.redis
        self.keys: Keys = history.keys
        self.ttl = ttl
        self.process = process_id()
        self._claim = self.redis.register_script(CLAIM)
        self._release = self.redis.register_script(RELEASE)
        self._heartbeat = self.redis.register_script(HEARTBEAT)
        self._resync = self.redis.register_script(RESYNC)

    def _head(self) -> list[Any]:
        return [self.keys.prefix, self.keys.events]

    async def typing(self, room: str, name: str, conn: str) -> None:
        """Tell every process that ``conn`` is typing in ``room`` (published, not kept)."""
        event = {"p": "typing", "room": room, "name": name, "conn": conn}
        await self.redis.publish(self.keys.events, json.dumps(event))

    async def claim(self, room: str, key: str, name: str, conn: str, force: bool) -> tuple[Claimed, str]:
        """Take ``key`` in ``room`` for connection ``conn``; with TAKEN, the holder's connection."""
        args = [*self._head(), room, key, name, conn, self.process, int(force), self.ttl]
        reply = await self._claim(keys=[], args=args)
        outcome = Claimed(reply[0])
        return outcome, (reply[2] if outcome is Claimed.TAKEN else "")

    async def release(self, room: str, key: str, conn: str) -> None:
        await self._release(keys=[], args=[*self._head(), room, key, conn, self.process])

    async def heartbeat(self) -> int:
        """Say this process lives for another ``ttl``; sweep the dead. How many users left with them."""
        return int(await self._heartbeat(keys=[], args=[*self._head(), self.process, self.ttl]))

    async def resync(self, held: Iterable[tuple[str, str, str, str]]) -> list[str]:
        """``held``: (room, key, name, connection) of every name held here. The connections
        whose name another holds now (to be closed)."""
        flat = [x for entry in held for x in entry]
        return list(await self._resync(keys=[], args=[*self._head(), self.process, self.ttl, *flat]))

    async def held(self, key: Optional[str] = None) -> set[str]:
        """The name keys held in some room on some process (or whether ``key`` is)."""
        if key is not None:
            return {key} if await self.redis.hexists(self.keys.prefix + "held", key) else set()
        return set(await self.redis.hkeys(self.keys.prefix + "held"))

    async def load(self, room: str) -> dict[str, tuple[str, str]]:
        """The room's roster: key -> (name, connection)."""
        raw = await self.redis.hgetall(self.keys.prefix + "p:" + room)
        out = {}
        for key, value in raw.items():
            entry = json.loads(value)
            out[key] = (entry["n"], entry["c"])
        return out

    async def counts(self, rooms: list[str]) -> dict[str, int]:
        """How many hold a name in each room, on any process."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hlen(self.keys.prefix + "p:" + room)
            return dict(zip(rooms, await pipe.execute(), strict=True))

    async def leave_all(self) -> None:
        """This process stops: its names (and its count of open connections) go at once,
        not after the expiry. A heartbeat that lives 0 s makes it due, and its own sweep
        lets everything it held go, announced as leaving."""
        await self._heartbeat(keys=[], args=[*self._head(), self.process, 0])
