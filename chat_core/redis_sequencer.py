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

from .redis_history import COMMAND_TIMEOUT, RedisHistory, message, parse_state, parse_update, state_json, where
from .refusal import Refusal
from .rules import CID_WINDOW
from .store import Change, Entry, Message
from .writer import Deliver, Draft, Sent, sent_back

log = logging.getLogger("chat_core.redis")

COMMIT = """
-- One batch of a room's entries: new messages, and changes to stored ones (edit, delete, react).
-- KEYS[1]: room -> newest id (hash); KEYS[2]: room -> newest time (hash); then 7 keys per entry:
--   its room's message stream, the key remembering a message's cid (chat_core.resend), the room's
--   message states (hash), its changes (stream), the edits of a change's message (set), the deleted
--   messages (sorted set), the ids in the states hash (sorted set)
-- ARGV[1]: channel; ARGV[2]: entries kept per room (0: all); ARGV[3]: deadline, ms of Redis time (0: none);
-- ARGV[4]: seconds a cid is remembered; then one JSON object per entry:
--   a message {r, u, t, ts, c, a}; a change {r, k, g, u, ts, t, e, o, s, x}: kind, its message's id,
--   ..., the message as it will stand (s), and as it stood when the change was checked (x, '' if it
--   never changed): a message changed since (by another process) is not changed, its id is 0
local deadline = tonumber(ARGV[3])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > deadline then
    return redis.error_reply('EXPIRED the batch reached Redis after its deadline: nothing was written')
  end
end
local keep, window = tonumber(ARGV[2]), tonumber(ARGV[4])
local function add(stream, id, fields)
  if keep > 0 then
    redis.call('XADD', stream, 'MAXLEN', keep, id .. '-0', unpack(fields))
  else
    redis.call('XADD', stream, id .. '-0', unpack(fields))
  end
end
local ids, out = {}, {}
for i = 0, #ARGV - 5 do
  local it = cjson.decode(ARGV[5 + i])
  local b = 2 + 7 * i
  local stream, sent, states, changes = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4]
  local edits, deleted, changed = KEYS[b + 5], KEYS[b + 6], KEYS[b + 7]
  if it.k == nil then
    local before = false
    if it.c ~= '' then before = redis.call('GET', sent) end
    if before then
      ids[#ids + 1] = -tonumber(before)  -- sent already: not stored again
    else
      local id = redis.call('HINCRBY', KEYS[1], it.r, 1)
      redis.call('HSET', KEYS[2], it.r, it.ts)
      local fields = {'u', it.u, 't', it.t, 'ts', it.ts, 'a', it.a}
      if it.c ~= '' then
        fields[#fields + 1] = 'c'
        fields[#fields + 1] = it.c
        redis.call('SET', sent, id, 'EX', window)
      end
      if (it.b or '') ~= '' then  -- a bot's message
        fields[#fields + 1] = 'b'
        fields[#fields + 1] = it.b
      end
      add(stream, id, fields)
      if keep > 0 and id % 100 == 0 then  -- what the stream let go of goes everywhere
        local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
        if #head > 0 then  -- (older than its oldest message: never the state of a message still kept)
          local first = '(' .. string.match(head[1][1], '^(%d+)')
          local old = redis.call('ZRANGEBYSCORE', changed, '-inf', first)
          if #old > 0 then redis.call('HDEL', states, unpack(old)) end
          redis.call('ZREMRANGEBYSCORE', changed, '-inf', first)
          redis.call('ZREMRANGEBYSCORE', deleted, '-inf', first)
        end
      end
      ids[#ids + 1] = id
      local published = {it.r, id, it.u, it.t, it.ts, it.c}
      if (it.b or '') ~= '' then published[7] = it.b end  -- (only for a bot's: older processes read six)
      out[#out + 1] = published
    end
  elseif (redis.call('HGET', states, it.g) or '') ~= it.x then
    ids[#ids + 1] = 0  -- changed meanwhile: checked again and retried by the sender
  else
    local id = redis.call('HINCRBY', KEYS[1], it.r, 1)
    redis.call('HSET', KEYS[2], it.r, it.ts)
    local change = {k = it.k, g = it.g, u = it.u, ts = it.ts, t = it.t, e = it.e, o = it.o}
    add(changes, id, {'j', cjson.encode(change)})
    redis.call('HSET', states, it.g, it.s)
    redis.call('ZADD', changed, it.g, it.g)
    if it.k == 'edit' then redis.call('SADD', edits, id) end
    if it.k == 'delete' then  -- no text anywhere: the message's entry and its edits go
      redis.call('XDEL', stream, it.g .. '-0')
      for _, e in ipairs(redis.call('SMEMBERS', edits)) do redis.call('XDEL', changes, e .. '-0') end
      redis.call('DEL', edits)
      redis.call('ZADD', deleted, it.g, it.g)
    end
    change.s, change.r, change.i = it.s, it.r, id
    ids[#ids + 1] = id
    out[#out + 1] = change
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
        """Commit the batch; a change whose message another process changed meanwhile is
        checked again against it and committed again (a few times at most)."""
        outcomes: list[Optional[Sent]] = [None] * len(drafts)
        todo = list(range(len(drafts)))
        for _attempt in range(4):
            todo = await self._commit_some(drafts, todo, outcomes)
            if not todo:
                break
        for i in todo:
            outcomes[i] = Sent(None, refused=Refusal("busy", "That message is being changed by others; try again."))
        return [o for o in outcomes if o is not None]

    async def _commit_some(self, drafts: Sequence[Draft], todo: list[int], outcomes: list[Optional[Sent]]) -> list[int]:
        if not self.synced or self.link is not Link.UP:  # (until caught up, ids Redis lost may still be raised)
            raise RedisConnectionError("not subscribed to Redis (reconnecting)")
        k = self.keys
        states = await self._states([drafts[i] for i in todo if drafts[i].kind is not None])
        keys = [k.last_ids, k.times]
        deadline = int(time.time() * 1000 + self._offset_ms + DEADLINE * 1000)
        args: list[Any] = [k.events, self.history.keep, deadline, int(CID_WINDOW)]
        sending: list[int] = []
        for i in todo:
            d = drafts[i]
            keys += [k.stream(d.room), k.sent(d.room, d.author, d.cid or ""), k.states(d.room), k.changes(d.room),
                     k.edits(d.room, d.target), k.deleted(d.room), k.changed(d.room)]
            if d.kind is None:
                item: dict[str, Any] = {"r": d.room, "u": d.user, "t": d.text, "ts": repr(d.ts), "c": d.cid or "",
                                        "a": d.author, "b": "1" if d.bot else ""}
            else:
                raw, current = states[(d.room, d.target)]
                try:
                    state, on = d.change(current)
                except Refusal as exc:
                    outcomes[i] = Sent(None, refused=exc)
                    keys = keys[:-7]
                    continue
                new = state_json(state)
                states[(d.room, d.target)] = (new, state)  # (a second change of it in this batch follows this one)
                item = {"r": d.room, "k": d.kind.value, "g": d.target, "u": d.user, "ts": repr(d.ts),
                        "t": state.text if d.kind is Change.EDIT else "", "e": d.emoji, "o": on, "s": new, "x": raw}
            args.append(json.dumps(item, ensure_ascii=False))
            sending.append(i)
        if not sending:
            return []
        try:
            ids = [int(i) for i in await self._commit(keys=keys, args=args)]
        except ResponseError as exc:
            if str(exc).startswith("EXPIRED"):  # (or this machine's clock moved: measure it again)
                await self._sync_clock()
            raise
        again = [i for i, new_id in zip(sending, ids, strict=True) if new_id == 0]  # changed meanwhile: again
        done = [(n, i, new_id) for n, (i, new_id) in enumerate(zip(sending, ids, strict=True)) if new_id != 0]
        fresh: list[Entry] = []
        known: dict[int, int] = {}
        for m, (n, i, new_id) in enumerate(done):
            d = drafts[i]
            if new_id < 0:
                known[m] = -new_id
            elif d.kind is None:
                fresh.append(d.message(new_id))
            else:
                after = states[(d.room, d.target)][1]
                assert after is not None
                fresh.append(d.update(new_id, after, json.loads(args[4 + n])["o"]))
        settled = await sent_back(self.history, [drafts[i] for _, i, _ in done], fresh, known)
        for (_, i, _), sent in zip(done, settled, strict=True):
            outcomes[i] = sent
        return again

    async def _states(self, drafts: Sequence[Draft]) -> dict[tuple[str, int], tuple[str, Optional[Message]]]:
        """The messages these changes are to: (the state as kept, '' for a message never
        changed; the message as it stands, None if not in the history)."""
        out: dict[tuple[str, int], tuple[str, Optional[Message]]] = {}
        for d in drafts:
            key = (d.room, d.target)
            if key in out:
                continue
            raw = await self.redis.hget(self.keys.states(d.room), str(d.target))
            if raw is not None:
                out[key] = (raw, parse_state(d.room, d.target, raw))
            else:
                entries = await self.redis.xrange(self.keys.stream(d.room), f"{d.target}-0", f"{d.target}-0")
                out[key] = ("", message(d.room, *entries[0]) if entries else None)
        return out

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
                missed = await self.history.between(room, top - 1, top)
            self.delivered[room] = top
            self._deliver(missed)

    async def _take(self, batch: list[Any]) -> None:
        """A published batch: each entry delivered once, after any this process missed."""
        out: list[Entry] = []
        try:
            for item in batch:
                entry: Entry
                if isinstance(item, dict):  # a change
                    entry = parse_update(item["r"], int(item["i"]), item)
                else:
                    room, msg_id, user, text, ts, cid, *bot = item  # (bot: not from a process before bots)
                    entry = Message(room, int(msg_id), user, text, float(ts), cid or None, bot=bool(bot and bot[0]))
                room, last = entry.room, self.delivered.get(entry.room, 0)
                if entry.id <= last:
                    continue  # already delivered (caught up from the stream)
                if entry.id > last + 1 and self._wanted(room):
                    out += await self.history.between(room, last, entry.id - 1)
                out.append(entry)
                self.delivered[room] = entry.id
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
