"""The per-address limits and caps for all processes at once (the Redis engine), so
that landing on another process dodges none of them.

Each rate is a token bucket kept in a Redis hash (level and time, expiring once it
would be full again), taken by one script for all the buckets a frame spends
(a message: its address's and its name's), all or none. Open connections per
address are a hash of connection -> process, whose entries of processes that died
are dropped when counted (and by the roster's heartbeat sweep). If Redis does not
answer, each process falls back to its own buckets (:class:`AddressLimits`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .redis_roster import RedisRoster
from .session import AddressLimits
from .settings import Settings

log = logging.getLogger("chat_core.redis")

TAKE = """
-- ARGV: prefix, then name, rate, burst for each bucket; 1 when each had a token (all are taken), else 0
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
for i = 2, #ARGV, 3 do
  local key = ARGV[1] .. 'rl:' .. ARGV[i]
  local rate, burst = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local state = redis.call('HMGET', key, 'l', 't')
  local level = tonumber(state[1]) or burst
  local last = tonumber(state[2]) or now
  level = math.min(burst, level + math.max(0, now - last) * rate)
  if level < 1 then return 0 end
  levels[i] = level
end
for i = 2, #ARGV, 3 do
  local key = ARGV[1] .. 'rl:' .. ARGV[i]
  redis.call('HSET', key, 'l', levels[i] - 1, 't', now)
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[i + 2]) / tonumber(ARGV[i + 1]) * 1000) + 1000)
end
return 1
"""

ACQUIRE = """
-- ARGV: prefix, address, connection, process, cap (0: none). 1: counted in; 0: the address is at the cap
local prefix, address, conn, proc, cap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = prefix .. 'ip:' .. address
if cap > 0 and redis.call('HLEN', key) >= cap then
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local expiry = redis.call('ZSCORE', prefix .. 'procs', all[i + 1])
    if not expiry or tonumber(expiry) < now then redis.call('HDEL', key, all[i]) end
  end
  if redis.call('HLEN', key) >= cap then return 0 end
end
redis.call('HSET', key, conn, proc)
redis.call('SADD', prefix .. 'pi:' .. proc, address .. '\\n' .. conn)
return 1
"""

RELEASE = """
-- ARGV: prefix, address, connection, process
redis.call('HDEL', ARGV[1] .. 'ip:' .. ARGV[2], ARGV[3])
redis.call('SREM', ARGV[1] .. 'pi:' .. ARGV[4], ARGV[2] .. '\\n' .. ARGV[3])
return 1
"""


class SharedLimits(AddressLimits):
    def __init__(self, settings: Settings, roster: RedisRoster) -> None:
        super().__init__(settings)
        self.settings = settings
        self.redis = roster.redis
        self.prefix = roster.keys.prefix
        self.process = roster.process
        self._take = self.redis.register_script(TAKE)
        self._acquire = self.redis.register_script(ACQUIRE)
        self._release = self.redis.register_script(RELEASE)
        self._tasks: set[asyncio.Task[Any]] = set()
        s = settings
        self.rates = {  # kind -> (rate, burst), as AddressLimits has them
            "m": (s.ip_rate, 2 * s.ip_rate),
            "n": (s.rate, s.burst),
            "j": (s.ip_join_rate, 5 * s.ip_join_rate),
            "c": (s.conn_rate, 10 * s.conn_rate),
            "r": (s.room_rate, 5),
            "nn": (s.name_rate, 10),
        }

    async def slow(self, room: str, key: str, seconds: float) -> bool:
        """Slow mode over every process: a key that lives ``seconds`` (SET NX PX); with
        Redis away, this process's own clock."""
        try:
            return bool(await self.redis.set(f"{self.prefix}slow:{room}:{key}", 1, nx=True,
                                              px=max(1, int(seconds * 1000))))
        except Exception:
            return await super().slow(room, key, seconds)

    async def _spend(self, *buckets: tuple[str, str]) -> bool:
        """A token from each (kind, key) bucket in Redis, all or none."""
        args: list[Any] = [self.prefix]
        for kind, key in buckets:
            rate, burst = self.rates[kind]
            if rate:
                args += [f"{kind}:{key}", rate, max(burst, 1.0)]
        if len(args) == 1:
            return True
        return bool(await self._take(keys=[], args=args))

    async def message(self, address: str, name_key: str) -> bool:
        try:
            return await self._spend(("m", address), ("n", name_key))
        except Exception as exc:
            return self._fallback(exc) and await super().message(address, name_key)

    async def join(self, address: str) -> bool:
        return await self._one("j", address, super().join)

    async def new_room(self, address: str) -> bool:
        return await self._one("r", address, super().new_room)

    async def new_name(self, address: str) -> bool:
        return await self._one("nn", address, super().new_name)

    async def connect(self, address: str) -> bool:
        return await self._one("c", address, super().connect)

    async def _one(self, kind: str, address: str, local: Any) -> bool:
        try:
            return await self._spend((kind, address))
        except Exception as exc:
            return self._fallback(exc) and bool(await local(address))

    async def acquire(self, address: str, conn: str) -> bool:
        try:
            args = [self.prefix, address, f"{self.process}:{conn}", self.process, self.settings.max_conn_per_ip]
            ok = bool(await self._acquire(keys=[], args=args))
        except Exception as exc:
            return self._fallback(exc) and await super().acquire(address, conn)
        if ok:
            self.open.acquire(address)  # kept here too: release knows what to give back
        return ok

    def release(self, address: str, conn: str) -> None:
        super().release(address, conn)
        task = asyncio.get_running_loop().create_task(
            self._release(keys=[], args=[self.prefix, address, f"{self.process}:{conn}", self.process])
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("could not count a connection out in Redis: %s", task.exception())

    def _fallback(self, exc: BaseException) -> bool:
        log.debug("limits in Redis not reachable (%s): this process's own are used", exc)
        return True
