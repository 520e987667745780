"""The hub in-process: real asyncio, real outboxes, a memory store; no web framework."""

import asyncio
import json

import pytest

from chat_core.hub import Hub
from chat_core.outbox import Outbox
from chat_core.protocol import Join
from chat_core.refusal import Refusal
from chat_core.settings import Settings
from chat_core.store import MemoryStore


class Peer:
    def __init__(self, hub, limit=1000):
        self.frames = []
        self.closed_with = None
        self.outbox = Outbox(self._send, limit)
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
        assert a.frames[-1] == {"type": "join", "payload": {"user": "Bob", "ts": a.frames[-1]["payload"]["ts"], "room": "lobby"}}
        with pytest.raises(Refusal) as e:
            await hub.join(Peer(hub).member, Join("BOB"))
        assert e.value.code == "name_taken"
        hub.detach(b.member)
        await settle()
        assert a.frames[-1]["type"] == "leave" and a.frames[-1]["payload"]["user"] == "Bob"
        assert hub.rooms_summary() == [{"room": "lobby", "online": 1, "last_id": 1}]
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
        assert [f["type"] for f in a.frames][-3:] == ["leave", "msg", "msg"] or "leave" in a.types()
        assert {r["room"]: r["online"] for r in hub.rooms_summary()} == {"lobby": 1, "python": 1}
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
        slow = Peer(hub, limit=5)
        gate = asyncio.Event()

        async def stuck(message):  # a peer that takes no frame (a close still goes out)
            if message["type"] == "websocket.send":
                await gate.wait()
            await slow._send(message)
        slow.outbox._send = stuck
        await hub.join(fast.member, Join("fast"))
        await hub.join(slow.member, Join("slow"))
        for i in range(20):
            hub.post(fast.member, f"m{i}")
        await settle()
        assert len(fast.texts()) == 20
        assert slow.closed_with == 1013 and hub.overflow_closes == 1
        assert "slow" not in hub.rooms["lobby"].members
        gate.set()
    run_hub(t)


def test_failed_write_sends_nothing_and_reuses_no_visible_id():
    async def t(hub):
        a = Peer(hub)
        await hub.join(a.member, Join("alice"))
        real_append = hub.store.append

        async def broken(messages):
            raise OSError("disk full")
        hub.store.append = broken
        hub.post(a.member, "lost")
        await settle()
        assert a.frames[-1]["type"] == "error" and a.frames[-1]["code"] == "store_unavailable"
        hub.store.append = real_append
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
