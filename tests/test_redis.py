"""Several server processes on one Redis (issue 11): real `python -m chat_core`
processes on free ports, a real redis-server (the `redis_server` fixture), real
WebSocket clients. What one process stores, every process delivers, in the same
order with the same ids; a Redis that pauses or restarts loses nothing anyone
received, gives out no id twice, and chatting resumes by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from redis_server import RedisServer
from servers import ServerProcess
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def health(srv: ServerProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def until_health(srv: ServerProcess, status: int, seconds: float) -> None:
    """Wait (at most ``seconds``) until /healthz answers ``status``."""
    deadline = time.monotonic() + seconds
    while health(srv)[0] != status and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


def history(srv: ServerProcess, room: str = "lobby") -> list[dict]:
    with urllib.request.urlopen(f"{srv.url}/api/rooms/{room}/messages?limit=1000", timeout=5) as r:
        return json.loads(r.read())["messages"]


async def texts_until(client: Client, count: int, timeout: float = 10.0) -> list[dict]:
    got = []
    while len(got) < count:
        got.append((await client.recv_type("msg", timeout))["payload"])
    return got


def test_two_processes_deliver_the_same_messages_in_the_same_order(two) -> None:
    a_srv, b_srv = two

    async def go() -> None:
        alice, bob = await Client.open(a_srv.ws_url), await Client.open(b_srv.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        for i in range(20):  # both send at once: the order is Redis's, the same everywhere
            await alice.say(f"a{i}")
            await bob.say(f"b{i}")
        seen_a, seen_b = await texts_until(alice, 40), await texts_until(bob, 40)
        assert [(m["id"], m["text"]) for m in seen_a] == [(m["id"], m["text"]) for m in seen_b]
        assert [m["id"] for m in seen_a] == list(range(1, 41))
        assert sorted(m["text"] for m in seen_a) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
        assert await alice.nothing_within(0.3) and await bob.nothing_within(0.1)  # each once
        await alice.close()
        await bob.close()

    run(go())
    assert [m["id"] for m in history(a_srv)] == [m["id"] for m in history(b_srv)] == list(range(1, 41))
    for srv in two:
        status, body = health(srv)
        assert status == 200 and body["engine"] == "redis" and body["redis"] == "up" and body["behind"] == 0


def test_typing_and_resends_are_one_across_processes(two) -> None:
    """Typing on one process reaches the other; a resend (same cid) on the other
    process, after moving there with the token, gets the original back."""
    a_srv, b_srv = two

    async def go() -> None:
        alice, bob = await Client.open(a_srv.ws_url), await Client.open(b_srv.ws_url)
        _, welcome = await alice.join("alice")
        await bob.join("bob")
        await alice.recv_notice("join", "bob")
        await alice.send({"type": "typing"})
        assert (await bob.recv_type("typing"))["payload"]["user"] == "alice"
        await bob.send({"type": "typing"})
        assert (await alice.recv_type("typing"))["payload"]["user"] == "bob"
        await alice.send({"type": "msg", "payload": {"text": "once", "cid": "r1"}})
        original = (await alice.recv_type("msg"))["payload"]
        moved = await Client.open(b_srv.ws_url)
        await moved.join("alice", since=original["id"], token=welcome["payload"]["token"])
        await moved.send({"type": "msg", "payload": {"text": "once", "cid": "r1"}})
        assert (await moved.recv_type("msg"))["payload"] == original
        assert (await bob.recv_type("msg"))["payload"] == original
        later = []
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                later.append(await bob.recv(1.0))
        assert not [f for f in later if f["type"] == "msg"], "bob saw the resend"
        for c in (alice, bob, moved):
            await c.close()

    run(go())
    assert [m["text"] for m in history(a_srv)] == ["once"]


def test_a_client_moving_to_the_other_process_gets_exactly_what_it_missed(two) -> None:
    a_srv, b_srv = two

    async def go() -> None:
        talker = await Client.open(a_srv.ws_url)
        await talker.join("talker")
        mover = await Client.open(a_srv.ws_url)
        await mover.join("mover")
        await talker.say("seen 1")
        await talker.say("seen 2")
        last = (await texts_until(mover, 2))[-1]["id"]
        await mover.close()
        for i in range(5):
            await talker.say(f"missed {i}")
        await texts_until(talker, 7)
        back = await Client.open(b_srv.ws_url)
        replay, welcome = await back.join("mover", since=last)
        assert [f["payload"]["text"] for f in replay] == [f"missed {i}" for i in range(5)]
        assert [f["payload"]["id"] for f in replay] == list(range(last + 1, last + 6))
        assert welcome["payload"].get("gap") is None
        await talker.say("after")
        assert (await back.recv_type("msg"))["payload"]["id"] == last + 6
        await talker.close()
        await back.close()

    run(go())


def chat_through(server: RedisServer, a_srv: ServerProcess, b_srv: ServerProcess, outage) -> None:
    """Clients on both processes send steadily, each message with a ``cid``, while
    ``outage`` happens to Redis, and send again what was refused (as the widget does);
    then every message is in the history exactly once, whatever anyone received is in
    it, ids never repeat, and chatting resumes."""

    async def go() -> None:
        clients = {"alice": await Client.open(a_srv.ws_url), "bob": await Client.open(b_srv.ws_url)}
        for name, client in clients.items():
            await client.join(name)
        received: dict[str, list[dict]] = {"alice": [], "bob": []}
        refused: dict[str, set[str]] = {"alice": set(), "bob": set()}  # cids told "not stored"
        confirmed: set[str] = set()  # cids whose message came back to its sender

        async def read(name: str, client: Client) -> None:
            while True:
                frame = await client.recv(30)
                if frame["type"] == "msg":
                    received[name].append(frame["payload"])
                    if frame["payload"].get("cid", "").startswith(name):
                        confirmed.add(frame["payload"]["cid"])
                elif frame["type"] == "error":
                    assert frame["code"] == "store_unavailable", frame
                    refused[name].add(frame["cid"])

        async def say(name: str, cid: str) -> None:
            await clients[name].send({"type": "msg", "payload": {"text": f"text of {cid}", "cid": cid}})

        readers = [asyncio.ensure_future(read(name, c)) for name, c in clients.items()]
        stop = time.monotonic() + 9
        cids: list[str] = []
        outage_task = asyncio.get_running_loop().run_in_executor(None, outage)
        while time.monotonic() < stop:
            for name in clients:
                cids.append(f"{name}-{len(cids)}")
                await say(name, cids[-1])
            await asyncio.sleep(0.1)
        await outage_task
        # Chatting resumes by itself, and what was refused is sent again until it is stored.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            missing = [cid for cid in cids if cid not in confirmed]
            if not missing:
                break
            for cid in missing:
                await say(cid.split("-")[0], cid)
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"not stored after the outage: {missing}")
        await asyncio.sleep(0.5)
        for task in readers:
            task.cancel()
        for name, got in received.items():
            # A resend of a message already stored is answered to its sender alone with the
            # stored message (docs/protocol.md, `cid`), which may come before or after the
            # broadcast of the first send: repeats are allowed only of one's own messages,
            # and each repeat must be the stored message itself.
            others = [m["id"] for m in got if not m["cid"].startswith(name)]
            assert others == sorted(set(others)), f"{name} saw another's message twice or out of order"
            first: dict[int, dict] = {}
            for m in got:
                assert first.setdefault(m["id"], m) == m, f"{name} saw {m['id']} as two messages"
            received[name] = sorted(first.values(), key=lambda m: m["id"])
        assert [m["id"] for m in received["alice"]] == [m["id"] for m in received["bob"]]
        stored = history(a_srv)
        assert [m["id"] for m in stored] == list(range(1, len(stored) + 1))  # no id reused or skipped
        by_id = {m["id"]: m["text"] for m in stored}
        for m in received["alice"]:
            assert by_id.get(m["id"]) == m["text"], f"{m} was received but is not in the history"
        assert sorted(m["cid"] for m in stored) == sorted(cids), "a message was lost or stored twice"
        assert refused["alice"] or refused["bob"], "the outage refused nothing: it tested nothing"
        for client in clients.values():
            await client.close()

    run(go())
    for srv in (a_srv, b_srv):
        assert srv.proc is not None and srv.proc.poll() is None, "a chat process died"


def test_redis_paused_for_5_s_loses_nothing_and_chatting_resumes(two, redis_server: RedisServer) -> None:
    def outage() -> None:
        time.sleep(2)
        redis_server.pause()
        try:
            time.sleep(5)
        finally:
            redis_server.resume()

    chat_through(redis_server, *two, outage)


def test_redis_restarted_with_its_aof_loses_nothing_and_chatting_resumes(two, redis_server: RedisServer) -> None:
    def outage() -> None:
        time.sleep(2)
        redis_server.stop()
        time.sleep(2)
        redis_server.start()

    chat_through(redis_server, *two, outage)
    for srv in two:
        status, body = health(srv)
        assert status == 200 and body["redis"] == "up"


def test_while_redis_is_down_health_says_degraded_and_messages_are_refused(redis_url, redis_server, tmp_path) -> None:
    with ServerProcess(["--redis-url", redis_url], log_path=tmp_path / "s.log") as srv:

        async def go() -> None:
            c = await Client.open(srv.ws_url)
            await c.join("alice")
            redis_server.stop()
            try:
                await c.say("into the void")
                error = await c.recv_type("error", 10)
                assert error["code"] == "store_unavailable"
                await until_health(srv, 503, 10)
                status, body = health(srv)
                assert status == 503 and body["status"] == "degraded" and "Redis at redis://127.0.0.1" in body["reason"]
                assert body["redis"] == "down" and body["behind"] is None
                for _ in range(3):  # the history cannot be read: a 503, to try again later
                    with pytest.raises(urllib.error.HTTPError) as refused:
                        history(srv)
                    assert refused.value.code == 503
            finally:
                redis_server.start()
            await until_health(srv, 200, 15)
            assert health(srv)[0] == 200
            await c.say("back")
            assert (await c.recv_type("msg", 10))["payload"]["text"] == "back"
            assert [m["text"] for m in history(srv)] == ["back"]
            await c.close()

        run(go())
    log = srv.log_text()
    assert "into the void" not in log
    # the outage of the history reads in the log once, with its cause, and its end once
    assert log.count("chat history: a read failed (") == 1 and log.count("chat history: reads work again") == 1


def test_without_redis_a_second_process_on_the_database_names_redis_url(tmp_path) -> None:
    db = str(tmp_path / "chat.db")
    with ServerProcess(["--db", db], log_path=tmp_path / "a.log"):
        second = ServerProcess(["--db", db], log_path=tmp_path / "b.log")
        with pytest.raises(RuntimeError, match="exited"):
            second.start(timeout=20)
        second.stop()
        assert "--redis-url" in second.log_text() and "in use by another chat server" in second.log_text()


def test_a_bad_redis_url_stops_startup_with_one_line(tmp_path) -> None:
    srv = ServerProcess(["--redis-url", "http://localhost:6379"], log_path=tmp_path / "s.log")
    with pytest.raises(RuntimeError, match="exited"):
        srv.start(timeout=20)
    srv.stop()
    lines = [line for line in srv.log_text().splitlines() if line.strip()]
    assert lines == [lines[0]] and "--redis-url" in lines[0] and "is not a Redis URL" in lines[0]


def test_uvicorn_workers_on_redis_chat_as_one(redis_url: str, tmp_path: Path) -> None:
    """`uvicorn gradio_app:app --workers 2` with CHAT_REDIS_URL: clients that landed on
    different workers chat (each /healthz names the process that answered)."""
    srv = ServerProcess(
        ["--workers", "2"],
        command=[sys.executable, "-m", "uvicorn", "gradio_app:app"],
        env={"CHAT_REDIS_URL": redis_url, "GRADIO_ANALYTICS_ENABLED": "False"},
        log_path=tmp_path / "uvicorn.log",
    )
    with srv.start(timeout=90):

        async def go() -> None:
            clients: list[Client] = []
            per_process: dict[int, int] = {}  # pid -> its connections, as it last answered /healthz
            deadline = time.monotonic() + 60
            while len(per_process) < 2 and time.monotonic() < deadline:  # both workers up (one may be slower)
                _, body = health(srv)
                per_process[body["process"]] = body["connections"]
            while not (len(per_process) == 2 and all(per_process.values())) and len(clients) < 200:
                for _ in range(10):  # the kernel hands new connections to either worker
                    c = await Client.open(srv.ws_url)
                    await c.join(f"user{len(clients)}")
                    clients.append(c)
                for _ in range(10):
                    _, body = health(srv)  # answered by either worker too
                    per_process[body["process"]] = body["connections"]
            assert len(per_process) == 2 and all(n > 0 for n in per_process.values()), per_process
            await clients[0].say("hello, every worker")
            for c in clients:
                assert (await c.recv_type("msg", 10))["payload"]["text"] == "hello, every worker"
            for c in clients:
                await c.close()

        run(go())


def test_without_redis_uvicorn_workers_stop_with_the_reason(tmp_path: Path) -> None:
    srv = ServerProcess(
        ["--workers", "2"],
        command=[sys.executable, "-m", "uvicorn", "gradio_app:app"],
        env={"CHAT_DB": str(tmp_path / "chat.db"), "GRADIO_ANALYTICS_ENABLED": "False"},
        log_path=tmp_path / "uvicorn.log",
    )
    try:
        srv.start(timeout=90)  # the first worker may answer before the second fails
    except RuntimeError:
        pass  # it exited before answering
    else:
        assert srv.proc is not None
        srv.proc.wait(60)  # uvicorn stops every worker when one fails to start
    srv.stop()  # (uvicorn's parent exits with 0 even so: its own choice)
    log = srv.log_text()
    assert "in use by another chat server" in log and "--redis-url" in log and "stopping the parent process" in log


def test_a_process_started_while_redis_is_down_comes_up_degraded_and_recovers(
    redis_url, redis_server, tmp_path
) -> None:
    redis_server.stop()
    try:
        srv = ServerProcess(["--redis-url", redis_server.url], log_path=tmp_path / "s.log")
        srv.start(timeout=30, health="/api/rooms")  # /healthz says 503 meanwhile

        async def go() -> None:
            status, body = health(srv)
            assert status == 503 and body["redis"] != "up"
            c = await Client.open(srv.ws_url)
            await c.send({"type": "join", "payload": {"user": "early"}})
            assert (await c.recv_type("error", 10))["code"] == "store_unavailable"
            redis_server.start()
            await until_health(srv, 200, 20)
            assert health(srv)[0] == 200
            await c.join("early")
            await c.say("made it")
            assert (await c.recv_type("msg", 10))["payload"]["id"] == 1
            await c.close()

        run(go())
    finally:
        srv.stop()
        if redis_server.proc is None:
            redis_server.start()


def test_presence_and_names_are_one_across_processes(two) -> None:
    """Who is online, each once; join and leave notices from the other process, once;
    a name held on one process is taken on the other; a resume token presented on the
    other takes it over and closes the holder with 4001."""
    a_srv, b_srv = two

    async def go() -> None:
        alice = await Client.open(a_srv.ws_url)
        _, welcome_a = await alice.join("alice")
        alice_token = welcome_a["payload"]["token"]
        bob = await Client.open(b_srv.ws_url)
        _, welcome_b = await bob.join("bob")
        assert welcome_b["payload"]["users"] == ["alice", "bob"] and welcome_b["payload"]["online"] == 2
        await alice.recv_notice("join", "bob")
        assert await alice.nothing_within(0.3)  # once

        thief = await Client.open(b_srv.ws_url)
        await thief.send({"type": "join", "payload": {"user": "ALICE"}})
        assert (await thief.recv_type("error"))["code"] == "name_taken"
        await thief.send({"type": "join", "payload": {"user": "alice", "token": "not-her-token"}})
        assert (await thief.recv_type("error"))["code"] == "bad_token"

        again = await Client.open(b_srv.ws_url)  # alice, from another tab that landed on B
        _, welcome = await again.join("alice", token=alice_token)
        assert welcome["payload"]["users"] == ["alice", "bob"] and welcome["payload"]["online"] == 2
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await alice.recv(10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

        await again.close()
        await bob.recv_notice("leave", "alice")
        status, body = health(b_srv)
        rooms = {r["room"]: r for r in json.loads(urllib.request.urlopen(b_srv.url + "/api/rooms").read())["rooms"]}
        assert status == 200 and rooms["lobby"]["online"] == 1  # bob, on B; counted in Redis
        for c in (bob, thief):
            await c.close()

    run(go())


def test_a_killed_process_has_its_users_leave_within_the_expiry(redis_url: str, tmp_path: Path) -> None:
    ttl = 3.0
    args = ["--redis-url", redis_url, "--presence-ttl", str(ttl)]
    with ServerProcess(args, log_path=tmp_path / "a.log") as a_srv:
        b_srv = ServerProcess(args, log_path=tmp_path / "b.log").start()

        async def go() -> None:
            watcher = await Client.open(a_srv.ws_url)
            await watcher.join("watcher")
            doomed = await Client.open(b_srv.ws_url)
            await doomed.join("doomed")
            await watcher.recv_notice("join", "doomed")
            killed = time.monotonic()
            b_srv.kill()  # SIGKILL: no leave, no close frame
            await watcher.recv_notice("leave", "doomed", timeout=ttl * 2 + 3)
            assert time.monotonic() - killed < ttl * 4 / 3 + 2
            again = await Client.open(a_srv.ws_url)
            _, welcome = await again.join("doomed")  # the name is free again
            assert welcome["payload"]["users"] == ["doomed", "watcher"]
            for c in (watcher, again):
                await c.close()

        try:
            run(go())
        finally:
            b_srv.stop()


def test_limits_per_address_hold_across_processes(redis_url: str, tmp_path: Path) -> None:
    """Messages per address and open connections per address, counted over both processes:
    moving to the other process dodges neither."""
    env = {"CHAT_IP_RATE": "1", "CHAT_MAX_CONN_PER_IP": "3"}  # bursts of 2 messages per address
    with ExitStack() as stack:
        a_srv, b_srv = (
            stack.enter_context(ServerProcess(["--redis-url", redis_url], env=env, log_path=tmp_path / f"{n}.log"))
            for n in "ab"
        )

        async def go() -> None:
            on_a, on_b = await Client.open(a_srv.ws_url), await Client.open(b_srv.ws_url)
            await on_a.join("one")
            await on_b.join("two")
            await on_a.say("first")
            await on_a.say("second")  # the address's burst of 2 is spent
            assert [(await on_a.recv_type("msg"))["payload"]["text"] for _ in range(2)] == ["first", "second"]
            await on_b.say("third, from the same address on the other process")
            frames = [await on_b.recv()]
            while frames[-1]["type"] != "error":
                frames.append(await on_b.recv())
            assert frames[-1]["code"] == "rate_limited"
            assert [f["payload"]["text"] for f in frames if f["type"] == "msg"] == ["first", "second"]
            assert await on_b.nothing_within(0.5)  # the third was not sent

            third = await Client.open(a_srv.ws_url)  # 3 open now: the cap
            await third.send({"type": "ping"})
            assert (await third.recv())["type"] == "pong"  # (answered once it is counted in)
            fourth = await Client.open(b_srv.ws_url)
            assert (await fourth.recv_type("error"))["code"] == "too_many_connections"
            with pytest.raises(ConnectionClosed):
                await fourth.recv(5)
            await third.close()
            await asyncio.sleep(0.5)  # its slot is given back in Redis
            fifth = await Client.open(b_srv.ws_url)
            await fifth.join("five")
            for c in (on_a, on_b, fifth):
                await c.close()

        run(go())


def test_every_lua_script_compiles(redis_server: RedisServer) -> None:
    """A script Redis cannot compile fails only when first run (a heartbeat, say, logged
    and retried): load each one here."""
    from chat_core import redis_limits, redis_roster, redis_sequencer

    client = redis_server.client()
    scripts = {
        f"{module.__name__}.{name}": value
        for module in (redis_sequencer, redis_roster, redis_limits)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and "redis.call" in value
    }
    assert len(scripts) >= 8
    for name, source in scripts.items():
        assert client.script_load(source), name
