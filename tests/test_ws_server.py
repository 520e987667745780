"""The chat over real sockets: a uvicorn server subprocess, real WebSocket clients, real SQLite."""

import asyncio
import base64
import json
import os
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed

from servers import ServerProcess
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_two_clients_chat_both_ways(server):
    async def go():
        a, b = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await a.join("alice")
        _, welcome = await b.join("bob")
        assert welcome["payload"]["users"] == ["alice", "bob"]
        health = get_json(server.url + "/healthz")  # both written to by chat_core.transport
        assert health["connections"] == health["frame_writer"] == 2
        assert health["engine"] == ("redis" if "--redis-url" in server.args else "sqlite")
        await a.recv_notice("join", "bob")
        await a.say("hi bob")
        await b.say("hi alice")
        for c in (a, b):
            got = [(await c.recv_type("msg"))["payload"] for _ in range(2)]
            assert [(m["user"], m["text"]) for m in got] == [("alice", "hi bob"), ("bob", "hi alice")]
            assert [m["id"] for m in got] == [1, 2] and all(m["room"] == "lobby" for m in got)
        await b.close()
        await a.recv_notice("leave", "bob")
        await a.close()
    run(go())


def test_seed_client_works_unchanged(server):
    """A client that knows only the seed README's frames and fields."""
    async def go():
        seed, other = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await other.join("other")
        await other.say("before you came")
        await other.recv_type("msg")
        await seed.send({"type": "join", "payload": {"user": "seedling"}})
        await seed.send({"type": "msg", "payload": {"text": "Hello everyone"}})
        await seed.send({"type": "ping"})
        seen = {"msg": [], "join": [], "pong": []}
        kinds = []
        while len(seen["msg"]) < 2 or not seen["pong"]:
            frame = await seed.recv()
            kinds.append(frame["type"])
            if frame["type"] in seen:
                seen[frame["type"]].append(frame)
        # exactly what a seed client expects, plus the one new frame type, `welcome`; no errors
        assert sorted(kinds) == ["join", "msg", "msg", "pong", "welcome"], kinds
        history, mine = seen["msg"]
        assert history["payload"]["user"] == "other" and history["payload"]["text"] == "before you came"
        assert mine["payload"]["user"] == "seedling" and mine["payload"]["text"] == "Hello everyone"
        assert isinstance(mine["payload"]["ts"], (int, float)) and abs(mine["payload"]["ts"] - time.time()) < 60
        assert isinstance(seen["pong"][0]["ts"], (int, float))
        assert [j["payload"]["user"] for j in seen["join"]] == ["seedling"]
        await seed.send("not json")
        err = await seed.recv_type("error")
        assert isinstance(err["message"], str) and err["message"]
        await seed.close()
        left = await other.recv_type("leave")
        assert left["payload"]["user"] == "seedling" and "ts" in left["payload"]
        await other.close()
    run(go())


def test_history_on_join_and_since(tmp_path, engine_args):
    srv = ServerProcess([*engine_args, "--history-limit", "5"], log_path=tmp_path / "s.log")
    with srv:
        async def go():
            a = await Client.open(srv.ws_url)
            await a.join("alice")
            for i in range(1, 13):
                await a.say(f"m{i}")
            for _ in range(12):
                await a.recv_type("msg")
            b = await Client.open(srv.ws_url)
            history, welcome = await b.join("bob")
            assert [h["payload"]["text"] for h in history] == ["m8", "m9", "m10", "m11", "m12"]
            assert welcome["payload"]["last_id"] == 12 and welcome["payload"]["gap"] is None
            await b.close()
            c = await Client.open(srv.ws_url)
            history, welcome = await c.join("carol", since=3)
            assert [h["payload"]["id"] for h in history] == list(range(4, 13))
            assert welcome["payload"]["gap"] is None
            await c.close()
            await a.close()
        run(go())


def test_since_gives_exactly_the_missed_messages_after_a_drop(server):
    async def go():
        a, b = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await a.join("alice")
        await b.join("bob")
        await a.say("one")
        last = (await b.recv_type("msg"))["payload"]["id"]
        await b.close()
        for t in ("two", "three", "four"):
            await a.say(t)
        b2 = await Client.open(server.ws_url)  # rejoins while those may still be in flight
        history, welcome = await b2.join("bob", since=last)
        await a.say("five")
        seen = [h["payload"]["text"] for h in history]
        while seen[-1:] != ["five"]:
            seen.append((await b2.recv_type("msg"))["payload"]["text"])
        assert seen == ["two", "three", "four", "five"]  # each exactly once, in order
        await a.close()
        await b2.close()
    run(go())


def test_restart_keeps_history_and_ids_continue(tmp_path, engine_args):
    srv = ServerProcess(engine_args, log_path=tmp_path / "s.log")

    async def chat(words):
        c = await Client.open(srv.ws_url)
        history, _ = await c.join("alice")
        for w in words:
            await c.say(w)
        ids = [(await c.recv_type("msg"))["payload"]["id"] for _ in words]
        await c.close()
        return history, ids

    with srv:
        _, ids1 = run(chat(["a", "b", "c"]))
    assert ids1 == [1, 2, 3]
    with srv:
        history, ids2 = run(chat(["d"]))
        assert [h["payload"]["text"] for h in history] == ["a", "b", "c"]
        assert ids2 == [4]
        assert [m["text"] for m in get_json(srv.url + "/api/rooms/lobby/messages")["messages"]] == ["a", "b", "c", "d"]


BAD_INPUT = [
    ("not json", "bad_json"),
    ("[1,2,3]", "bad_frame"),
    ('"just a string"', "bad_frame"),
    ('{"type":"dance"}', "unknown_type"),
    ('{"type":"msg","payload":{}}', "bad_field"),
    ('{"type":"msg","payload":{"text":["x"]}}', "bad_field"),
    ('{"type":"msg","payload":{"text":"   "}}', "empty_text"),
    ('{"type":"msg","payload":{"text":"' + "x" * 2001 + '"}}', "text_too_long"),
    ('{"type":"join","payload":{"user":""}}', "bad_name"),
    ('{"type":"join","payload":{"user":"' + "n" * 33 + '"}}', "bad_name"),
    ('{"type":"join","payload":{"user":"bad\\u0007bell"}}', "bad_name"),
    ('{"type":"join","payload":{"user":"ALICE"}}', "name_taken"),
    ('{"type":"join","payload":{"user":"zed","room":"no spaces"}}', "bad_room"),
]


def test_every_bad_input_gets_a_coded_error_and_harms_no_one(server):
    async def go():
        alice, mallory = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice")
        await mallory.send({"type": "msg", "payload": {"text": "too early"}})
        assert (await mallory.recv())["code"] == "not_joined"
        await mallory.join("mallory")
        await mallory.recv_notice("join", "mallory")
        await alice.recv_notice("join", "mallory")
        for raw, code in BAD_INPUT:
            await mallory.send(raw)
            frame = await mallory.recv()
            assert frame["type"] == "error" and frame["code"] == code, (raw[:40], frame)
            assert frame["message"][0].isupper() and frame["message"].endswith(".")
        await mallory.send(b"\x00\x01binary")
        assert (await mallory.recv())["code"] == "binary_not_supported"
        await mallory.say("still here")  # the connection stayed open through all of it
        assert (await mallory.recv_type("msg"))["payload"]["text"] == "still here"
        assert (await alice.recv())["payload"]["text"] == "still here"  # alice saw nothing else
        await alice.close()
        await mallory.close()
    run(go())
    log = server.log_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log


def test_oversized_frame_closes_with_1009_and_only_that_client(server):
    async def go():
        a, big = await Client.open(server.ws_url), await Client.open(server.ws_url, max_size=None)
        await a.join("alice")
        await big.join("big")
        await big.send("x" * 70_000)
        with pytest.raises(ConnectionClosed) as info:
            await big.recv_type("never")
        assert info.value.rcvd.code == 1009
        await a.say("fine")
        assert (await a.recv_type("msg"))["payload"]["text"] == "fine"
        await a.close()
    run(go())


def test_second_join_switches_room_and_rooms_stay_apart(server):
    async def go():
        a, b, c = [await Client.open(server.ws_url) for _ in range(3)]
        await a.join("alice", room="red")
        await b.join("bob", room="blue")
        await c.join("carol", room="red")
        await a.recv_notice("join", "carol")
        await b.say("blue only")
        await a.say("red only")
        assert (await c.recv_type("msg"))["payload"]["text"] == "red only"
        assert (await b.recv_type("msg"))["payload"]["text"] == "blue only"
        history, welcome = await c.join("carol", room="blue")  # switch
        assert [h["payload"]["text"] for h in history] == ["blue only"]
        assert welcome["payload"]["room"] == "blue" and welcome["payload"]["users"] == ["bob", "carol"]
        await a.recv_notice("leave", "carol")
        rooms = {r["room"]: r for r in get_json(server.url + "/api/rooms")["rooms"]}
        assert rooms["red"]["online"] == 1 and rooms["blue"]["online"] == 2
        assert rooms["red"]["last_id"] == 1 and rooms["blue"]["last_id"] == 1
        for x in (a, b, c):
            await x.close()
    run(go())


def test_http_api_and_openapi(server):
    spec = get_json(server.url + "/openapi.json")
    assert {"/api/rooms", "/api/rooms/{room}/messages", "/healthz"} <= set(spec["paths"])
    health = get_json(server.url + "/healthz")
    assert health["status"] == "ok" and health["connections"] == 0
    assert get_json(server.url + "/api/rooms/empty/messages") == {"room": "empty", "messages": []}
    with pytest.raises(urllib.error.HTTPError) as e:
        get_json(server.url + "/api/rooms/bad%20room/messages")
    assert e.value.code == 422


N = 500


def stall_server(tmp_path, engine_args, outbox=50):
    return ServerProcess(
        [*engine_args, "--outbox", str(outbox), "--max-text", "60000", "--max-frame", "200000"],
        log_path=tmp_path / "s.log")


async def ids_until_closed(client):
    """Read what the server had queued for ``client``: its message ids, then the close frame it got."""
    got = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            frame = json.loads(await asyncio.wait_for(client.conn.recv(), 10))
            if frame["type"] == "msg":
                got.append(frame["payload"]["id"])
    return got, info.value.rcvd


def test_stalled_reader_does_not_delay_others_and_overflow_closes_only_it(tmp_path, engine_args):
    """One client stops reading; we measure delivery latency to a reading client meanwhile."""
    srv = stall_server(tmp_path, engine_args, outbox=10)
    with srv:
        async def go():
            sender, reader = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
            stalled = await Client.open(srv.ws_url, max_queue=4)
            await sender.join("sender")
            await reader.join("reader")
            await stalled.join("stalled")
            await reader.recv_notice("join", "stalled")
            await stalled.recv_notice("join", "stalled")  # from now on it reads nothing
            body = base64.b64encode(os.urandom(37_500)).decode()  # 50 kB that no compression shrinks
            drain = asyncio.ensure_future(sender.drain())  # the sender reads its echoes, like any client
            latencies = []
            for i in range(N):  # up to 25 MB: more than the kernel buffers the stalled client can hold
                t0 = time.perf_counter()
                await sender.say(f"{i}:{body}")
                frame = await reader.recv_type("msg", timeout=5)
                latencies.append(time.perf_counter() - t0)
                assert frame["payload"]["text"].startswith(f"{i}:")
                if i % 50 == 49 and get_json(srv.url + "/healthz")["overflow_closes"]:
                    break  # closed; it must take its close frame within 5 s of now (else it is dropped)
            sent = len(latencies)
            latencies.sort()
            p50, worst = latencies[len(latencies) // 2], latencies[-1]
            print(f"reader latency with a stalled peer: p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms")
            assert worst < 1.0, f"a stalled client delayed others: max {worst:.3f}s"
            health = get_json(srv.url + "/healthz")
            assert health["overflow_closes"] == 1 and health["connections"] in (2, 3)
            # the stalled client now reads: what was buffered, then close 1013
            got, closing = await ids_until_closed(stalled)
            assert closing is not None and closing.code == 1013
            assert got == list(range(1, len(got) + 1)) and len(got) < sent
            # it comes back with since and loses nothing
            back = await Client.open(srv.ws_url, max_size=None)
            history, _ = await back.join("stalled", since=got[-1] if got else 0)
            assert [h["payload"]["id"] for h in history] == list(range(len(got) + 1, sent + 1))
            await reader.recv_notice("join", "stalled")  # it came back
            assert await reader.nothing_within(0.1)
            drain.cancel()
            for c in (sender, reader, back):
                await c.close()
        run(go())


def test_a_client_that_takes_nothing_for_stall_timeout_is_closed_and_resumes(tmp_path, engine_args):
    """Long before its outbox fills, a client whose socket takes no byte for
    --stall-timeout seconds is closed with 1013 (the kernel's buffer for it capped
    by --send-buffer); it then resumes with `since` and loses nothing."""
    srv = ServerProcess([*engine_args, "--stall-timeout", "1", "--send-buffer", "16384",
                         "--max-text", "5000"], log_path=tmp_path / "s.log")
    with srv:
        async def go():
            sender = await Client.open(srv.ws_url)
            stalled = await Client.open(srv.ws_url, max_queue=4)
            await sender.join("sender")
            await stalled.join("stalled")
            await stalled.recv_notice("join", "stalled")  # from now on it reads nothing
            drain = asyncio.ensure_future(sender.drain())
            body = base64.b64encode(os.urandom(3_000)).decode()  # 4 kB
            started, sent, closed_at = time.monotonic(), 0, None
            while time.monotonic() - started < 20 and closed_at is None:  # 40 kB/s
                await sender.say(f"{sent}:{body}")
                sent += 1
                await asyncio.sleep(0.1)
                if get_json(srv.url + "/healthz")["overflow_closes"]:
                    closed_at = time.monotonic() - started
            assert closed_at is not None, "the stalled client was never closed"
            print(f"stalled client closed after {closed_at:.1f} s, {sent} messages ({sent * 4} kB) sent")
            assert closed_at < 10  # the 1000-frame outbox would take 100 s at this rate
            got, closing = await ids_until_closed(stalled)
            assert closing is not None and closing.code == 1013
            assert "no progress" in closing.reason
            assert got == list(range(1, len(got) + 1)) and len(got) < sent
            back = await Client.open(srv.ws_url, max_size=None)
            history, _ = await back.join("stalled", since=got[-1] if got else 0)
            assert [h["payload"]["id"] for h in history] == list(range(len(got) + 1, sent + 1))
            drain.cancel()
            for c in (sender, back):
                await c.close()
        run(go())
