"""The hub in-process: real asyncio, real outboxes, a memory store; no web framework."""

import asyncio
import json
import time

import pytest

from chat_core.hub import Hub
from chat_core.outbox import TaskOutbox
from chat_core.protocol import Join
from chat_core.refusal import Refusal
from chat_core.settings import Settings
from chat_core.store import MemoryStore


class Peer:
    def __init__(self, hub, limit=1000):
        self.frames = []
        self.closed_with = None
        self.outbox = TaskOutbox(self._send, limit)
        self.member = hub.attach(self.outbox)
        self.outbox.start()

    async def _send(self, message):  # the connection's ASGI send
        if message["type"] == "websocket.send":
            self.frames.append(json.loads(message["text"]))
        elif message["type"] == "websocket.close":
            self.closed_with = message["code"]

    def types(self):
        return [f["type"] for f in self.frames]

    def texts(self):
        return [f["payload"]["text"] for f in self.frames if f["type"] == "msg"]


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def run_hub(test, **settings):
    async def go():
        hub = Hub(Settings(db=":memory:", **settings), MemoryStore())
        await hub.start()
        try:
            await test(hub)
        finally:
            await hub.stop()
    asyncio.run(go())


def test_messages_are_stored_then_fanned_out_in_order():
    async def t(hub):
        a, b = Peer(hub), Peer(hub)
        await hub.join(a.member, Join("alice"))
        await hub.join(b.member, Join("bob"))
        for i in range(20):
            hub.post(a.member if i % 2 else b.member, f"m{i}")
        await settle()
        assert a.texts() == b.texts() == [f"m{i}" for i in range(20)]
        ids = [f["payload"]["id"] for f in a.frames if f["type"] == "msg"]
        assert ids == list(range(1, 21))
        stored = await hub.store.after("lobby", 0, 100)
        assert [m.text for m in stored] == a.texts()
    run_hub(t)


def test_join_order_history_welcome_notice_and_presence():
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        hub.post(a.member, "first")
        await settle()
        b = Peer(hub)
        await hub.join(b.member, Join("Bob"))
        await settle()
        assert b.types() == ["msg", "welcome", "join"]
        welcome = b.frames[1]["payload"]
        assert welcome["users"] == ["alice", "Bob"] and welcome["online"] == 2 and welcome["last_id"] == 1
        notice = a.frames[-1]
        assert notice["type"] == "join" and set(notice["payload"]) == {"user", "ts", "room"}
        assert (notice["payload"]["user"], notice["payload"]["room"]) == ("Bob", "lobby")
        assert abs(notice["payload"]["ts"] - time.time()) < 5
        with pytest.raises(Refusal) as e:
            await hub.join(Peer(hub).member, Join("BOB"))
        assert e.value.code == "name_taken"
        hub.detach(b.member)
        await settle()
        assert a.frames[-1]["type"] == "leave" and a.frames[-1]["payload"]["user"] == "Bob"
        assert await hub.rooms_summary() == [{"room": "lobby", "online": 1, "last_id": 1}]
    run_hub(t)


def test_second_join_switches_room_and_rooms_stay_apart():
    async def t(hub):
        a, b = Peer(hub), Peer(hub)
        await hub.join(a.member, Join("alice"))
        await hub.join(b.member, Join("bob"))
        await hub.join(b.member, Join("bob", room="python"))
        hub.post(a.member, "lobby only")
        hub.post(b.member, "python only")
        await settle()
        assert a.texts() == ["lobby only"] and b.texts() == ["python only"]
        seen = [(f["type"], f["payload"]["user"], f["payload"]["room"]) for f in a.frames[-2:]]
        assert seen == [("leave", "bob", "lobby"), ("msg", "alice", "lobby")]  # bob left, then only lobby's
        assert {r["room"]: r["online"] for r in await hub.rooms_summary()} == {"lobby": 1, "python": 1}
    run_hub(t)


def test_big_rooms_coalesce_notices():
    async def t(hub):
        peers = [Peer(hub) for _ in range(30)]
        for i, p in enumerate(peers):
            await hub.join(p.member, Join(f"u{i}"))
        await asyncio.sleep(0.2)
        first = peers[0]
        notices = [f for f in first.frames if f["type"] == "join"]
        presence = [f for f in first.frames if f["type"] == "presence"]
        assert len(notices) == 5  # rooms up to notice_limit get one notice per change
        assert len(presence) == 1
        assert presence[0]["payload"]["online"] == 30
        assert presence[0]["payload"]["joined"] == [f"u{i}" for i in range(5, 30)]
        total = sum(len(p.frames) for p in peers)
        assert total < 30 * 8  # linear, not quadratic
    run_hub(t, notice_limit=5, presence_interval=0.05)


def test_overflow_closes_only_the_slow_peer_with_1013():
    async def t(hub):
        fast = Peer(hub)
        reader = Peer(hub, limit=5)  # the same limit, but reading: it must stay
        slow = Peer(hub, limit=5)
        gate = asyncio.Event()

        async def stuck(message):  # a peer that takes no frame (a close still goes out)
            if message["type"] == "websocket.send":
                await gate.wait()
            await slow._send(message)
        slow.outbox._send = stuck
        await hub.join(fast.member, Join("fast"))
        await hub.join(reader.member, Join("reader"))
        await hub.join(slow.member, Join("slow"))
        await settle()
        for i in range(20):  # one message a batch: a peer that reads keeps up
            hub.post(fast.member, f"m{i}")
            await settle()
        assert len(fast.texts()) == 20 and reader.texts() == [f"m{i}" for i in range(20)]
        assert reader.closed_with is None and "reader" in hub.rooms["lobby"].members
        assert slow.closed_with == 1013 and hub.stats()["overflow_closes"] == 1
        assert "slow" not in hub.rooms["lobby"].members
        gate.set()
    run_hub(t)


def break_store(hub, exc):
    """Make every append raise ``exc``; returns what puts the real store back."""
    real_append = hub.store.append

    async def broken(*batch):
        raise exc
    hub.store.append = broken

    def mend():
        hub.store.append = real_append
    return mend


def test_failed_write_sends_nothing_and_reuses_no_visible_id():
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        mend = break_store(hub, OSError("disk full"))
        hub.post(a.member, "lost")
        await settle()
        assert a.frames[-1]["type"] == "error" and a.frames[-1]["code"] == "store_unavailable"
        mend()
        hub.post(a.member, "kept")
        await settle()
        assert a.texts() == ["kept"] and a.frames[-1]["payload"]["id"] == 1
    run_hub(t)


def test_since_replays_exactly_the_missed_and_marks_gaps():
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        for i in range(10):
            hub.post(a.member, f"m{i + 1}")
        await settle()
        b = Peer(hub)
        await hub.join(b.member, Join("bob", since=7))
        await settle()
        assert b.texts() == ["m8", "m9", "m10"]
        assert b.frames[3]["payload"]["gap"] is None
        c = Peer(hub)
        await hub.join(c.member, Join("carol", since=2))  # replay_limit is 4
        await settle()
        assert c.texts() == ["m7", "m8", "m9", "m10"]
        assert c.frames[4]["payload"]["gap"] == {"after": 2, "first": 7}
        d = Peer(hub)
        await hub.join(d.member, Join("dave", since=10))
        await settle()
        assert d.types()[0] == "welcome"
    run_hub(t, history_limit=3, replay_limit=4)


def test_the_writer_survives_an_unexpected_error_and_health_says_so(caplog):
    """A store that raises something nobody expected: logged once with its traceback,
    the hub degraded with the reason, senders told, and the writer goes on."""
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        mend = break_store(hub, KeyError("a bug in the store"))
        with caplog.at_level("ERROR", logger="chat_core.writer"):
            for i in range(3):
                hub.post(a.member, f"lost {i}")
                await settle()
        assert [f["code"] for f in a.frames if f["type"] == "error"] == ["store_unavailable"] * 3
        assert hub.health.value == "degraded" and "KeyError" in hub.health_reason
        assert hub.stats()["failed_batches"] == 3
        records = [r for r in caplog.records if r.name == "chat_core.writer"]
        assert len(records) == 1 and records[0].exc_info is not None  # once, with the traceback
        mend()
        hub.post(a.member, "kept")
        await settle()
        assert a.texts() == ["kept"] and hub.health.value == "ok" and hub.stats()["failed_batches"] == 0
    run_hub(t)


def test_welcome_lists_at_most_users_shown_and_counts_everyone():
    async def t(hub):
        peers = [Peer(hub) for _ in range(6)]
        for i, p in enumerate(peers):
            await hub.join(p.member, Join(f"u{i}"))
        await settle()
        welcome = next(f for f in peers[-1].frames if f["type"] == "welcome")["payload"]
        assert welcome["users"] == ["u0", "u1", "u2"] and welcome["online"] == 6  # online > len(users)
    run_hub(t, users_shown=3)


def test_presence_frames_carry_left_and_cap_names_at_50_with_more():
    async def t(hub):
        watcher = Peer(hub)
        await hub.join(watcher.member, Join("watcher"))
        peers = [Peer(hub) for _ in range(60)]
        for i, p in enumerate(peers):
            await hub.join(p.member, Join(f"p{i:02}"))
        await asyncio.sleep(0.15)
        for p in peers[:3]:
            hub.detach(p.member)
        await asyncio.sleep(0.15)
        frames = [f["payload"] for f in watcher.frames if f["type"] == "presence"]
        joined = [n for f in frames for n in f["joined"]]
        assert len(frames[0]["joined"]) <= 50 and sum(f["more"] for f in frames) == 60 - len(joined) > 0
        assert frames[-1]["left"] == ["p00", "p01", "p02"] and frames[-1]["online"] == 58
    run_hub(t, notice_limit=1, presence_interval=0.05)


def test_history_limit_0_sends_none_and_replay_limit_0_sends_all_that_is_kept():
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        for i in range(30):
            hub.post(a.member, f"m{i}")
        await settle()
        fresh = Peer(hub)
        await hub.join(fresh.member, Join("fresh"))
        assert fresh.texts() == []  # history_limit 0: none without since
        back = Peer(hub)
        await hub.join(back.member, Join("back", since=2))
        await settle()
        assert back.texts() == [f"m{i}" for i in range(2, 30)]  # replay_limit 0: all after since
    run_hub(t, history_limit=0, replay_limit=0)


def test_a_message_while_stopping_is_refused_with_shutting_down():
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        await hub.writer.stop(1.0)
        with pytest.raises(Refusal) as e:
            hub.post(a.member, "too late")
        assert e.value.code == "shutting_down"
    run_hub(t)
