"""The Redis engine's commit path: ids, storage and publication in one atomic step,
and delivery of what every process stored, in order, once.

One Lua script per batch (as Centrifugo's Redis engine does per publish): for each
message, increment its room's counter, ``XADD`` it to the room's stream (trimmed to
``history_keep``) under its id, then ``PUBLISH`` the whole batch. A script runs
atomically, so ids in a room increase by one with no gap whichever process sent.

Every process, this one included, delivers messages from the subscription only:
Redis sends a channel's messages to each subscriber in publish order, which is id
order per room, so every process delivers a room's messages in the same order. The
subscription keeps nothing for a subscriber that was away: after any reconnect the
process reads each room's stream from the last id it delivered there, and drops
what it already has (a message arriving twice is delivered once). A batch that
reaches Redis after its deadline (Redis paused, the command timed out, the sender
was told "not sent") is refused by the script itself, so a message refused is never
stored later behind the sender's back.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Optional

from redis.exceptions import ConnectionError as RedisConnectionError, RedisError, ResponseError

from .redis_history import COMMAND_TIMEOUT, RedisHistory, where
from .rules import CID_WINDOW
from .store import Message
from .writer import Deliver, Draft, Sent, sent_back

log = logging.getLogger("chat_core.redis")

COMMIT = """
-- KEYS[1]: room -> newest id (hash); KEYS[2]: room -> newest time (hash); then, for each message,
-- its room's stream and the key remembering its cid (chat_core.resend)
-- ARGV[1]: channel; ARGV[2]: messages kept per room (0: all); ARGV[3]: deadline, ms of Redis time (0: none);
-- ARGV[4]: seconds a cid is remembered; then room, user, text, time, cid ('' for none), author for each message
local deadline = tonumber(ARGV[3])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > deadline then
    return redis.error_reply('EXPIRED the batch reached Redis after its deadline: nothing was written')
  end
end
local keep, window = tonumber(ARGV[2]), tonumber(ARGV[4])
local ids, out = {}, {}
for i = 0, (#KEYS - 2) / 2 - 1 do
  local room, user, text, ts = ARGV[5 + 6 * i], ARGV[6 + 6 * i], ARGV[7 + 6 * i], ARGV[8 + 6 * i]
  local cid, author = ARGV[9 + 6 * i], ARGV[10 + 6 * i]
  local stream, sent = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local before = false
  if cid ~= '' then before = redis.call('GET', sent) end
  if before then
    ids[#ids + 1] = -tonumber(before)  -- sent already: not stored again
  else
    local id = redis.call('HINCRBY', KEYS[1], room, 1)
    redis.call('HSET', KEYS[2], room, ts)
    local fields = {'u', user, 't', text, 'ts', ts}
    if cid ~= '' then
      fields[#fields + 1] = 'c'
      fields[#fields + 1] = cid
      fields[#fields + 1] = 'a'
      fields[#fields + 1] = author
      redis.call('SET', sent, id, 'EX', window)
    end
    if keep > 0 then
      redis.call('XADD', stream, 'MAXLEN', keep, id .. '-0', unpack(fields))
    else
      redis.call('XADD', stream, id .. '-0', unpack(fields))
    end
    ids[#ids + 1] = id
    out[#out + 1] = {room, id, user, text, ts, cid}
  end
end
if #out > 0 then redis.call('PUBLISH', ARGV[1], cjson.encode(out)) end
return ids
"""

RAISE = """
-- After Redis lost writes (restarted from an older state): never give out an id again.
-- KEYS[1]: room -> newest id (hash); ARGV: room, newest id this process delivered, ...
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if current < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

DEADLINE = COMMAND_TIMEOUT / 2  # seconds (of Redis's clock) within which a batch must start running
PING_EVERY = 1.0  # seconds of silence on the subscription before it is pinged
LINK_TIMEOUT = 3.0  # seconds without anything on the subscription, pong included: the link is down
BACKOFF = (0.1, 5.0)  # first and longest wait between reconnects (each with jitter)


async def _nothing() -> None:
    pass


class Link(enum.Enum):
    """The subscription's state."""

    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class RedisSequencer:
    """Commits batches through :data:`COMMIT`; follows the channel and delivers."""

    expected: tuple[type[BaseException], ...] = (RedisError, OSError)  # Redis away: named in one line, no traceback

    def __init__(self, history: RedisHistory) -> None:
        self.history = history
        self.redis = history.redis
        self.keys = history.keys
        self.link = Link.CONNECTING
        self.reason = "connecting to Redis"
        self.delivered: dict[str, int] = {}  # room -> newest id delivered here
        self.synced = False  # delivered holds Redis's ids (set at the first subscription)
        self.reconnects = 0
        self._commit = self.redis.register_script(COMMIT)
        self._raise = self.redis.register_script(RAISE)
        self._deliver: Deliver = lambda messages: None
        self._wanted: Callable[[str], bool] = lambda room: False
        self._offset_ms = 0.0  # Redis's clock minus ours
        self._task: Optional[asyncio.Task[None]] = None
        self._synced: Optional[asyncio.Future[None]] = None
        # Set by the shared presence: roster events from the channel, and its resync after a reconnect.
        self.on_event: Callable[[dict[str, Any]], None] = lambda event: None
        self.on_resync: Callable[[], Awaitable[None]] = _nothing

    @property
    def problem(self) -> str:
        """Why delivery is not working now ("" while it is)."""
        return "" if self.link is Link.UP else f"Redis at {where(self.history.url)}: {self.reason}"

    async def start(self, deliver: Deliver, wanted: Callable[[str], bool]) -> None:
        """Follow the channel; wait (a moment) for the first subscription, so that no
        message this process commits is stored before it listens."""
        self._deliver, self._wanted = deliver, wanted
        self._synced = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._follow())
        try:
            await asyncio.wait_for(asyncio.shield(self._synced), 2 * COMMAND_TIMEOUT)
        except asyncio.TimeoutError:
            log.error(
                "Redis at %s is not answering (%s); the chat starts and refuses messages until it does",
                where(self.history.url),
                self.reason,
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._deliver = lambda messages: None

    # --- committing ------------------------------------------------------------

    async def commit(self, drafts: Sequence[Draft]) -> list[Sent]:
        if not self.synced or self.link is not Link.UP:  # (until caught up, ids Redis lost may still be raised)
            raise RedisConnectionError("not subscribed to Redis (reconnecting)")
        keys = [self.keys.last_ids, self.keys.times]
        deadline = int(time.time() * 1000 + self._offset_ms + DEADLINE * 1000)
        args: list[Any] = [self.keys.events, self.history.keep, deadline, int(CID_WINDOW)]
        for d in drafts:
            keys += [self.keys.stream(d.room), self.keys.sent(d.room, d.author, d.cid or "")]
            args += [d.room, d.user, d.text, repr(d.ts), d.cid or "", d.author]
        try:
            ids = await self._commit(keys=keys, args=args)
        except ResponseError as exc:
            if str(exc).startswith("EXPIRED"):  # (or this machine's clock moved: measure it again)
                await self._sync_clock()
            raise
        fresh = [d.message(int(i)) for d, i in zip(drafts, ids, strict=True) if int(i) > 0]
        known = {n: -int(i) for n, i in enumerate(ids) if int(i) < 0}
        return await sent_back(self.history, drafts, fresh, known)

    async def writable(self) -> bool:
        return self.synced and self.link is Link.UP and bool(await self.redis.ping())

    # --- following the channel -----------------------------------------------

    async def _follow(self) -> None:
        delay = BACKOFF[0]
        while True:
            started = time.monotonic()
            try:
                await self._follow_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, or gone mid-reply: reconnect and catch up
                self._down(exc)
            if time.monotonic() - started > 10 * BACKOFF[1]:
                delay = BACKOFF[0]  # it was up a good while: this is a new outage
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, BACKOFF[1])

    async def _follow_once(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(self.keys.events), COMMAND_TIMEOUT)
            await self._sync_clock()
            await self._catch_up()
            self._up()
            heard = time.monotonic()
            pinged = heard
            while True:
                message = await pubsub.get_message(timeout=PING_EVERY)
                now = time.monotonic()
                if message is not None:
                    heard = now
                    if message["type"] == "message":
                        data = json.loads(message["data"])
                        if isinstance(data, dict):
                            self.on_event(data)
                        else:
                            await self._take(data)
                    continue
                if now - heard > LINK_TIMEOUT:
                    raise TimeoutError(f"nothing from Redis for {now - heard:.1f}s, not even a pong")
                if now - pinged >= PING_EVERY:
                    await pubsub.ping()
                    pinged = now
        finally:
            try:
                await asyncio.wait_for(pubsub.aclose(), 1.0)
            except Exception:  # the connection is gone already
                pass

    async def _sync_clock(self) -> None:
        before = time.time()
        seconds, micros = await self.redis.time()
        after = time.time()
        self._offset_ms = (seconds + micros / 1e6 - (before + after) / 2) * 1000

    async def _catch_up(self) -> None:
        """Deliver what was stored while this process was not listening."""
        newest = await self.history.last_ids()
        if not self.synced:  # the first subscription: nothing was delivered yet
            self.delivered, self.synced = dict(newest), True
            if self._synced is not None and not self._synced.done():
                self._synced.set_result(None)
            return
        await self._deliver_missed(newest)
        await self.on_resync()

    async def _deliver_missed(self, newest: dict[str, int]) -> None:
        behind = {room: mine for room, mine in self.delivered.items() if newest.get(room, 0) < mine}
        if behind:  # Redis restarted without its last writes: those ids stay used
            log.warning(
                "Redis has lost the last messages of %d room(s); their ids will not be given out again", len(behind)
            )
            flat = [x for room, mine in behind.items() for x in (room, mine)]
            await self._raise(keys=[self.keys.last_ids], args=flat)
        for room, top in newest.items():
            last = self.delivered.get(room, 0)
            if top <= last:
                continue
            if self._wanted(room):
                missed = await self.history.between(room, last, top)
            else:  # nobody here: the newest is enough (the rooms list)
                missed = await self.history.after(room, top - 1, 1)
            self.delivered[room] = top
            self._deliver(missed)

    async def _take(self, batch: list[list[Any]]) -> None:
        """A published batch: each message delivered once, after any this process missed."""
        out: list[Message] = []
        try:
            for room, msg_id, user, text, ts, cid in batch:
                msg_id = int(msg_id)
                last = self.delivered.get(room, 0)
                if msg_id <= last:
                    continue  # already delivered (caught up from the stream)
                if msg_id > last + 1 and self._wanted(room):
                    out += await self.history.between(room, last, msg_id - 1)
                out.append(Message(room, msg_id, user, text, float(ts), cid or None))
                self.delivered[room] = msg_id
        finally:  # what was counted as delivered is delivered, even if a read for a gap failed
            if out:
                self._deliver(out)

    async def behind(self) -> int:
        """Messages stored in Redis that this process has not delivered yet."""
        newest = await self.history.last_ids()
        return sum(max(0, top - self.delivered.get(room, 0)) for room, top in newest.items())

    def _up(self) -> None:
        if self.link is Link.DOWN:
            log.warning("Redis at %s answers again (reconnect %d)", where(self.history.url), self.reconnects)
        self.link, self.reason = Link.UP, ""

    def _down(self, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {exc}"
        if self.link is not Link.DOWN:
            log.error("Redis at %s: %s (reconnecting)", where(self.history.url), cause)
        self.link, self.reason = Link.DOWN, cause
        self.reconnects += 1
