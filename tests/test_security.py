"""Issue 4 against real servers: identity, abuse limits, origins, logins, liveness, shutdown, crashes."""

import asyncio
import base64
import json
import signal
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from servers import ServerProcess
from wsclient import Client


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def srv_with(tmp_path, *args, env=None, name="s"):
    return ServerProcess(["--db", str(tmp_path / "chat.db"), *args], env=env, log_path=tmp_path / f"{name}.log")


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, json.loads(r.read())


# --- identity --------------------------------------------------------------

def test_resume_token_reclaims_a_name_from_a_ghost_and_survives_restart(tmp_path):
    srv = srv_with(tmp_path, "--name-reserve", "3600")
    with srv:
        async def first():
            ghost, other = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
            _, welcome = await ghost.join("alice")
            token = welcome["payload"]["token"]
            await other.join("bob")
            impostor = await Client.open(srv.ws_url)
            await impostor.send({"type": "join", "payload": {"user": "Alice"}})
            assert (await impostor.recv())["code"] == "name_taken"
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            await impostor.send({"type": "join", "payload": {"user": "alice", "token": forged}})
            assert (await impostor.recv())["code"] == "bad_token"
            _, bobs = await (await Client.open(srv.ws_url)).join("carol")
            await impostor.send({"type": "join", "payload": {"user": "alice", "token": bobs["payload"]["token"]}})
            assert (await impostor.recv())["code"] == "bad_token"  # carol's token is not alice's
            back = await Client.open(srv.ws_url)
            _, again = await back.join("alice", token=token)  # the ghost still holds the name
            assert again["payload"]["user"] == "alice"
            with pytest.raises(ConnectionClosed) as info:
                await ghost.recv_type("never")
            assert info.value.rcvd.code == 4001
            await back.say("still me")
            assert (await other.recv_type("msg"))["payload"]["user"] == "alice"
            return token
        token = run(first())
    with srv:  # the same database: the name is still reserved for the same token
        async def second():
            other = await Client.open(srv.ws_url)
            await other.send({"type": "join", "payload": {"user": "alice"}})
            assert (await other.recv())["code"] == "name_taken"
            back = await Client.open(srv.ws_url)
            _, welcome = await back.join("alice", token=token)
            assert welcome["payload"]["user"] == "alice" and welcome["payload"]["token"] == token
        run(second())
    assert (tmp_path / "chat.db.secret").stat().st_mode & 0o777 == 0o600


# --- abuse limits ----------------------------------------------------------

def test_message_rate_limit_then_close_for_flooding(tmp_path):
    srv = srv_with(tmp_path, "--rate", "5", "--burst", "10", "--flood-limit", "20")
    with srv:
        async def go():
            flood, calm = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
            await flood.join("flood")
            await calm.join("calm")
            for i in range(15):
                await flood.say(f"m{i}")
            sent, limited = [], []
            while len(sent) + len(limited) < 15:
                f = await flood.recv()
                if f["type"] == "msg":
                    sent.append(f)
                elif f["type"] == "error":
                    assert f["code"] == "rate_limited"
                    limited.append(f)
            assert 10 <= len(sent) <= 11 and len(limited) == 15 - len(sent)
            for i in range(40):  # keeps flooding
                try:
                    await flood.say(f"x{i}")
                except ConnectionClosed:
                    break
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await flood.recv()
            assert info.value.rcvd.code == 1008
            seen = []
            while True:
                f = await calm.recv()
                if f["type"] == "msg":
                    seen.append(f["payload"]["text"])
                if f["type"] == "leave":
                    break
            assert seen == [f"m{i}" for i in range(len(sent))]  # nothing past the limit was broadcast
            await calm.say("fine")
            assert (await calm.recv_type("msg"))["payload"]["text"] == "fine"
        run(go())


def test_join_attempts_are_limited(tmp_path):
    srv = srv_with(tmp_path, env={"CHAT_JOIN_RATE": "1", "CHAT_JOIN_BURST": "3"})
    with srv:
        async def go():
            c = await Client.open(srv.ws_url)
            codes = []
            for i in range(6):
                await c.send({"type": "join", "payload": {"user": f"n{i}"}})
                while True:
                    f = await c.recv()
                    if f["type"] in ("welcome", "error"):
                        codes.append(f.get("code", "ok"))
                        break
            assert codes == ["ok", "ok", "ok", "rate_limited", "rate_limited", "rate_limited"]
        run(go())


def test_connections_per_address_and_trusted_proxy(tmp_path):
    async def open_n(url, n, xff=None):
        """n sockets claiming ``xff``, each shown to work (a ping answered), not just opened."""
        headers = {"X-Forwarded-For": xff} if xff else None
        out = []
        for _ in range(n):
            c = await Client.open(url, additional_headers=headers)
            await c.send({"type": "ping"})
            assert (await c.recv())["type"] == "pong"
            out.append(c)
        return out

    async def refused(url, xff=None):
        headers = {"X-Forwarded-For": xff} if xff else None
        c = await Client.open(url, additional_headers=headers)
        f = await c.recv()
        assert f["code"] == "too_many_connections"
        with pytest.raises(ConnectionClosed) as info:
            await c.recv()
        assert info.value.rcvd.code == 1008

    srv = srv_with(tmp_path, env={"CHAT_MAX_CONN_PER_IP": "3"})
    with srv:
        async def untrusted():
            held = await open_n(srv.ws_url, 2, "10.0.0.1")
            held += await open_n(srv.ws_url, 1, "10.0.0.2")  # the header is not trusted: all are 127.0.0.1
            await refused(srv.ws_url, "10.0.0.3")
            await held[0].close()
            await asyncio.sleep(0.2)
            await open_n(srv.ws_url, 1)  # a slot came free: it works
            await refused(srv.ws_url)  # and the cap is exact again
        run(untrusted())
    srv = srv_with(tmp_path, env={"CHAT_MAX_CONN_PER_IP": "3", "CHAT_TRUST_PROXY": "1"}, name="s2")
    with srv:
        async def trusted():
            await open_n(srv.ws_url, 3, "203.0.113.9, 10.0.0.1")  # one proxy: the last entry is the client
            await open_n(srv.ws_url, 3, "10.0.0.2")
            await refused(srv.ws_url, "10.0.0.1")
            await refused(srv.ws_url, "198.51.100.1, 10.0.0.2")  # what the client wrote itself is ignored
        run(trusted())
    srv = srv_with(tmp_path, env={"CHAT_MAX_CONN_PER_IP": "2", "CHAT_TRUST_PROXY": "2"}, name="s4")
    with srv:
        async def two_proxies():  # the second entry from the right is the client
            await open_n(srv.ws_url, 2, "10.9.9.9, 203.0.113.5, 10.0.0.1")
            await open_n(srv.ws_url, 2, "203.0.113.6, 10.0.0.1")
            await refused(srv.ws_url, "1.2.3.4, 203.0.113.5, 10.0.0.7")
        run(two_proxies())
    srv = srv_with(tmp_path, env={"CHAT_MAX_CONN_PER_IP": "2", "SPACE_ID": "someone/chat"}, name="s3")
    with srv:  # on a Space, the real client is the first X-Forwarded-For entry
        async def space():
            await open_n(srv.ws_url, 2, "198.51.100.7, 10.1.1.1")
            await open_n(srv.ws_url, 2, "198.51.100.8, 10.1.1.1")
            await refused(srv.ws_url, "198.51.100.7, 10.1.1.2")
        run(space())


# --- origins and logins ----------------------------------------------------

def test_origin_checks(tmp_path):
    srv = srv_with(tmp_path, env={"CHAT_ALLOWED_ORIGINS": "https://*.hf.space, http://friend.example:8080"})
    with srv:
        async def go():
            ok = [None, srv.url, "https://me-chat.hf.space", "http://friend.example:8080"]
            for origin in ok:
                c = await Client.open(srv.ws_url, origin=origin)
                await c.join("o" + str(ok.index(origin)) + str(time.time_ns() % 1000))
                await c.close()
            bad = ["http://evil.example", f"http://127.0.0.1:{srv.port + 1}", "https://a.b.hf.space",
                   "http://friend.example:8081", "null", "https://friend.example:8080"]
            for origin in bad:
                with pytest.raises(InvalidStatus) as info:
                    await Client.open(srv.ws_url, origin=origin)
                assert info.value.response.status_code == 403, origin
        run(go())
    srv = srv_with(tmp_path, "--require-origin", name="s2")
    with srv:
        async def strict():
            with pytest.raises(InvalidStatus) as info:
                await Client.open(srv.ws_url)
            assert info.value.response.status_code == 403
            await (await Client.open(srv.ws_url, origin=srv.url)).join("fine")
        run(strict())


def test_forwarded_host_counts_only_behind_a_trusted_proxy(tmp_path):
    for trust, allowed in (("", False), ("1", True)):
        srv = srv_with(tmp_path, env={"CHAT_TRUST_PROXY": trust}, name=f"p{trust}")
        with srv:
            async def go(srv=srv, allowed=allowed):
                hdr = {"X-Forwarded-Host": "chat.example.org"}
                if allowed:
                    await Client.open(srv.ws_url, origin="https://chat.example.org", additional_headers=hdr)
                else:
                    with pytest.raises(InvalidStatus) as info:
                        await Client.open(srv.ws_url, origin="https://chat.example.org", additional_headers=hdr)
                    assert info.value.response.status_code == 403
            run(go())


def test_basic_auth_on_the_fastapi_server(tmp_path):
    srv = srv_with(tmp_path, "--auth", "ann:s3cret,ben:pw")
    good = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()}
    with srv:
        for headers in (None, bad):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(srv.url + "/api/rooms", headers)
            assert e.value.code == 401
        assert get(srv.url + "/api/rooms", good)[0] == 200

        async def go():
            with pytest.raises(InvalidStatus) as info:
                await Client.open(srv.ws_url)
            assert info.value.response.status_code == 403
            c = await Client.open(srv.ws_url, additional_headers=good)
            _, welcome = await c.join("somebody-else")
            assert welcome["payload"]["user"] == "ann"  # with logins on, the chat name is the login name
        run(go())


# --- liveness, shutdown, crashes -----------------------------------------

def test_dead_peer_is_noticed_and_announced(tmp_path):
    srv = srv_with(tmp_path, "--ping-interval", "0.5", "--ping-timeout", "0.5")
    with srv:
        async def go():
            watcher = await Client.open(srv.ws_url)
            await watcher.join("watcher")
            dead = await Client.open(srv.ws_url)
            await dead.join("dead")
            await watcher.recv_notice("join", "dead")
            dead.conn.transport.pause_reading()  # the network is gone: no pongs, no close frame
            dead.conn.transport.write = lambda data: None
            t0 = time.monotonic()
            await watcher.recv_notice("leave", "dead", timeout=10)
            elapsed = time.monotonic() - t0
            print(f"dead peer announced as leaving after {elapsed:.2f}s")
            assert elapsed < 5
            dead.conn.transport.abort()
        run(go())


def test_sigterm_closes_with_1001_writes_history_and_clients_resume(tmp_path):
    # --commit-delay holds each batch for a second: at SIGTERM the messages are still
    # pending, so this shows that the stop writes them (not only that nothing is lost).
    srv = srv_with(tmp_path, "--commit-delay", "1")
    srv.start()

    async def go():
        a, b = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
        await a.join("alice")
        await b.join("bob")
        for i in range(200):
            await a.say(f"m{i}")
        await asyncio.sleep(0.2)  # read by the server, not yet written
        last_b = 0
        t0 = time.monotonic()
        code = await asyncio.get_running_loop().run_in_executor(None, srv.stop, signal.SIGTERM)
        took = time.monotonic() - t0
        # uvicorn re-raises the signal after a clean stop
        assert code in (0, -signal.SIGTERM) and took < 5, (code, took)
        for c in (a, b):
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    f = await c.recv()
                    if c is b and f["type"] == "msg":
                        last_b = f["payload"]["id"]
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        srv.start()
        b2 = await Client.open(srv.ws_url)
        history, welcome = await b2.join("bob", since=last_b)
        got = [h["payload"]["id"] for h in history]
        assert got == list(range(last_b + 1, welcome["payload"]["last_id"] + 1))
        return took
    try:
        took = run(go())
        print(f"SIGTERM to exit: {took:.2f}s")
        status, body = get(srv.url + "/api/rooms/lobby/messages?limit=1000")
        texts = [m["text"] for m in body["messages"]]
        assert texts == [f"m{i}" for i in range(len(texts))]  # what was stored is a prefix, in order
        assert len(texts) > 100, len(texts)  # and it is what was pending when SIGTERM came
    finally:
        srv.stop()


def test_kill_9_loses_nothing_anyone_received(tmp_path):
    """Clients chat steadily; the server is SIGKILLed; everything any client saw is in the history."""
    srv = srv_with(tmp_path)
    srv.start()

    async def chatter(name, received, stop):
        c = await Client.open(srv.ws_url)
        await c.join(name)
        i = 0

        async def reader():
            try:
                while True:
                    f = await c.recv(timeout=30)
                    if f["type"] == "msg":
                        received.append((f["payload"]["id"], f["payload"]["user"], f["payload"]["text"]))
            except (ConnectionClosed, asyncio.TimeoutError):
                pass
        task = asyncio.ensure_future(reader())
        try:
            while not stop.is_set():
                await c.say(f"{name}-{i}")
                i += 1
                await asyncio.sleep(0.002)
        except ConnectionClosed:
            pass
        await task

    async def go():
        stop = asyncio.Event()
        seen = {n: [] for n in ("a", "b", "c")}
        tasks = [asyncio.ensure_future(chatter(n, seen[n], stop)) for n in seen]
        await asyncio.sleep(1.5)
        srv.proc.send_signal(signal.SIGKILL)
        stop.set()
        await asyncio.wait(tasks, timeout=15)
        return seen
    try:
        seen = run(go())
        srv.proc.wait()
        srv.proc = None
        srv.start()
        stored = []
        while True:  # page through the history API
            since = stored[-1][0] if stored else 0
            _, body = get(srv.url + f"/api/rooms/lobby/messages?since={since}&limit=500")
            page = [(m["id"], m["user"], m["text"]) for m in body["messages"]]
            if not page:
                break
            assert page[0][0] == since + 1
            stored += page
        union = sorted(set().union(*map(set, seen.values())))
        assert len(union) > 50
        for got in seen.values():
            assert got == sorted(got)  # each client saw ids in order
        assert set(union) <= set(stored), "a message someone received is not in the history"
        assert [s[0] for s in stored] == list(range(1, len(stored) + 1))
        print(f"received before the kill: {len(union)} distinct; stored: {len(stored)}")

        async def after():
            c = await Client.open(srv.ws_url)
            await c.join("d")
            await c.say("after restart")
            return (await c.recv_type("msg"))["payload"]["id"]
        assert run(after()) == len(stored) + 1  # ids continue, none reused
    finally:
        srv.stop()
