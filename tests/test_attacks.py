"""Issue 9, against real `python -m chat_core` servers: what a hostile visitor of a
public link could do, each attack tried as the attacker would and refused.

The Gradio-specific cases (cookies, CORS in a browser, X-Forwarded-For under Gradio's
uvicorn, a corrupt database under every start command) are in test_gradio_attacks.py.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from servers import NO_LIMITS, ROOT, ServerProcess
from wsclient import Client, fragmented_close_code

pytestmark = [pytest.mark.timeout(120)]

ATTACKER = "127.0.0.2"  # a loopback address of its own, so the observer (127.0.0.1) is another client


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def limited(tmp_path: Path, *args: str, env=None, name="s") -> ServerProcess:
    """A server with the default limits (the suite's other servers turn them off)."""
    off = {k: "" for k in NO_LIMITS}
    return ServerProcess(
        ["--db", str(tmp_path / f"{name}.db"), *args], env={**off, **(env or {})}, log_path=tmp_path / f"{name}.log"
    )


def get(url: str, headers=None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, {"text": body.decode(errors="replace")}


async def open_from(url: str, address: str, **kwargs) -> Client:
    return Client(await connect(url, open_timeout=5, local_addr=(address, 0), **kwargs))


# --- limits that a reconnect used to reset -----------------------------------


def test_reconnect_loops_from_one_address_get_only_the_documented_rate(tmp_path: Path) -> None:
    """16 loops of connect, join (a new room each time), send 10, close, for 4 s: before,
    45,144 messages in 8 s and 802 rooms; now at most ip_rate (10/s, bursts of 20) and
    room_rate (1 per 10 s, bursts of 5) get through, and every stored message reached the
    observer."""
    srv = limited(tmp_path, "--max-conn-per-ip", "64")
    seconds = 4.0

    async def loop(n: int, deadline: float, counts: dict) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                c = await open_from(srv.ws_url, ATTACKER)
            except (InvalidStatus, InvalidMessage, OSError):  # 429, or closed at once: too many half-open
                counts["refused_handshakes"] += 1
                await asyncio.sleep(0.01)
                continue
            try:
                await c.send({"type": "join", "payload": {"user": f"bot{n}-{i}", "room": f"r{n}-{i}"}})
                for k in range(10):
                    await c.say(f"spam {n} {i} {k}")
                await c.close()
            except ConnectionClosed:
                pass

    async def go():
        observer = await Client.open(srv.ws_url)
        await observer.join("observer")
        counts = {"refused_handshakes": 0}
        t0 = time.monotonic()
        await asyncio.gather(*(loop(n, t0 + seconds, counts) for n in range(16)))
        took = time.monotonic() - t0
        await asyncio.sleep(0.5)
        return took, counts

    with srv:
        took, counts = run(go())
        _, rooms = get(srv.url + "/api/rooms")
        stored = sum(r["last_id"] for r in rooms["rooms"])
        created = [r for r in rooms["rooms"] if r["room"] != "lobby"]
        print(
            f"{took:.1f}s of attack: {stored} messages stored, {len(created)} rooms, "
            f"{counts['refused_handshakes']} handshakes refused (429)"
        )
        assert stored <= 20 + 10 * took + 10, stored
        assert len(created) <= 5 + 0.1 * took + 1, created
        assert counts["refused_handshakes"] > 0  # conn_rate: 2 a second, bursts of 20


def test_every_frame_counts_towards_the_flood_close(tmp_path: Path) -> None:
    """20,000 pings (or bad frames, unknown types, joins) used to be answered one by
    one; now a connection over frame_rate is refused and, still going, closed (1008)."""
    srv = limited(tmp_path)

    async def flood(frame: str) -> tuple[int, int]:
        c = await Client.open(srv.ws_url)
        answers = 0
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(2000):
                await c.send(frame)
            while True:
                await c.recv(timeout=5)
                answers += 1
        return answers, info.value.rcvd.code if info.value.rcvd else 0

    with srv:
        for frame in [
            '{"type":"ping"}',
            '{"type":"nope"}',
            "not json",
            '{"type":"join","payload":{"user":"x","room":"lobby"}}',
        ]:
            answers, code = run(flood(frame))
            print(f"{frame!r}: {answers} answers, close {code}")
            assert code == 1008 and answers < 200, (frame, answers, code)


def test_messages_are_limited_per_name_across_connections(tmp_path: Path) -> None:
    srv = limited(tmp_path, "--ip-rate", "0", "--name-reserve", "0")

    async def go():
        got = 0
        watcher = await Client.open(srv.ws_url)
        await watcher.join("watcher")
        # the same name from one connection after another, each with a fresh bucket of its own
        for i in range(8):
            c = await Client.open(srv.ws_url)
            await c.join("spammer")
            for k in range(10):
                await c.say(f"{i}.{k}")
            await asyncio.sleep(0.05)
            await c.close()
        try:
            while True:
                if (await watcher.recv(timeout=1))["type"] == "msg":
                    got += 1
        except asyncio.TimeoutError:
            return got

    with srv:
        got = run(go())
        print(f"one name over 8 connections: {got} of 80 messages through")
        assert got <= 10 + 5 * 3, got  # burst 10, rate 5/s, well under 3 s


# --- names and tokens ------------------------------------------------------------


def test_a_name_stays_reserved_for_its_token_and_a_later_taker_gets_a_new_one(tmp_path: Path) -> None:
    srv = limited(tmp_path, "--name-reserve", "2", env={"CHAT_CONN_RATE": "0"})

    async def go():
        owner = await Client.open(srv.ws_url)
        _, welcome = await owner.join("alice")
        token = welcome["payload"]["token"]
        await owner.close()
        thief = await Client.open(srv.ws_url)
        await thief.send({"type": "join", "payload": {"user": "alice"}})
        assert (await thief.recv())["code"] == "name_taken"  # reserved for the owner, in any room
        await thief.send({"type": "join", "payload": {"user": "Alice", "room": "other"}})
        assert (await thief.recv())["code"] == "name_taken"
        back = await Client.open(srv.ws_url)
        _, again = await back.join("alice", room="other", token=token)  # the owner, in another room
        assert again["payload"]["token"] == token
        await back.close()
        await asyncio.sleep(2.5)  # the reservation lapses
        _, taken = await thief.join("alice")
        await thief.recv_notice("join", "alice")
        new_token = taken["payload"]["token"]
        assert new_token != token  # a random token per claim, not an HMAC of the name
        # the earlier owner's token no longer evicts anyone
        old = await Client.open(srv.ws_url)
        await old.send({"type": "join", "payload": {"user": "alice", "token": token}})
        assert (await old.recv())["code"] == "bad_token"
        assert await thief.nothing_within(0.3)
        return token, new_token

    with srv:
        token, new_token = run(go())
    db = sqlite3.connect(tmp_path / "s.db")
    hashes = [row[0] for row in db.execute("SELECT token_hash FROM claims")]
    assert hashes and all(token.encode() not in h and new_token.encode() not in h for h in hashes)


def test_tokens_expire(tmp_path: Path) -> None:
    srv = limited(tmp_path, "--token-ttl", "1", env={"CHAT_CONN_RATE": "0"})

    async def go():
        a = await Client.open(srv.ws_url)
        _, w = await a.join("carol")
        token = w["payload"]["token"]
        await asyncio.sleep(1.5)
        b = await Client.open(srv.ws_url)
        await b.send({"type": "join", "payload": {"user": "carol", "token": token}})
        assert (await b.recv())["code"] == "bad_token"  # expired: it cannot take over the holder

    with srv:
        run(go())


@pytest.fixture(scope="module")
def names_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the name checks below: each takes names no other one takes."""
    tmp = tmp_path_factory.mktemp("names")
    with ServerProcess(["--db", str(tmp / "s.db")], log_path=tmp / "s.log") as srv:
        yield srv


LOOKALIKES = ["аlice", "ＡＬＩＣＥ", "alice\u0301", "AIice", "a1ice"]


def test_look_alike_names_are_the_same_name(names_server: ServerProcess) -> None:
    """While alice is here, each of her look-alikes is refused as taken."""

    async def go() -> dict[str, str]:
        a = await Client.open(names_server.ws_url)
        await a.join("alice")
        codes = {}
        for lookalike in LOOKALIKES:
            b = await Client.open(names_server.ws_url)
            await b.send({"type": "join", "payload": {"user": lookalike}})
            codes[lookalike] = (await b.recv())["code"]
            await b.close()
        await a.close()
        return codes

    assert run(go()) == dict.fromkeys(LOOKALIKES, "name_taken")


@pytest.mark.parametrize(
    "name,code",
    [
        ("\u3164", "bad_name"),
        ("\u2800", "bad_name"),
        ("a" + "\u0301" * 31, "bad_name"),
        ("\ufdfd" * 32, "bad_name"),
        ("👩\u200d💻", None),
        ("❤\ufe0f", None),
        ("李小龍", None),
    ],
)
def test_invisible_and_monstrous_names_are_refused_and_emoji_names_accepted(
    names_server: ServerProcess, name, code
) -> None:
    async def go():
        c = await Client.open(names_server.ws_url)
        await c.send({"type": "join", "payload": {"user": name}})
        frame = await c.recv_type("welcome") if code is None else await c.recv()
        await c.close()
        return frame

    frame = run(go())
    if code is None:
        assert frame["payload"]["user"] == name
    else:
        assert frame["code"] == code


def test_nul_in_a_message_is_refused(server: ServerProcess) -> None:
    async def go():
        c = await Client.open(server.ws_url)
        await c.join("nul")
        await c.say("a\x00b")
        return (await c.recv_type("error"))["code"]

    assert run(go()) == "bad_text"


# --- hosts and origins -----------------------------------------------------------


def handshake_status(port: int, host: str, origin: str) -> int:
    """The HTTP status a WebSocket handshake to /ws with exactly these Host and Origin gets."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        return int(sock.recv(200).split(b" ", 2)[1])


def test_dns_rebinding_another_host_name_on_loopback_is_refused(tmp_path: Path) -> None:
    srv = ServerProcess(["--db", str(tmp_path / "s.db")], log_path=tmp_path / "s.log")
    port = srv.port
    with srv:
        assert get(srv.url + "/api/rooms", {"Host": f"evil.test:{port}"})[0] == 400
        assert get(srv.url + "/healthz", {"Host": f"localhost:{port}"})[0] == 200
        # a page on http://evil.test:PORT is "same origin" with Host evil.test:PORT
        assert handshake_status(port, f"evil.test:{port}", f"http://evil.test:{port}") == 403
        assert handshake_status(port, f"localhost:{port}", f"http://localhost:{port}") == 101
        assert handshake_status(port, f"[::1]:{port}", f"http://[::1]:{port}") == 101
    allowed = ServerProcess(
        ["--db", str(tmp_path / "s2.db"), "--allowed-hosts", "evil.test"], log_path=tmp_path / "s2.log"
    )
    with allowed:
        assert get(allowed.url + "/api/rooms", {"Host": f"evil.test:{allowed.port}"})[0] == 200
        assert handshake_status(allowed.port, f"evil.test:{allowed.port}", f"http://evil.test:{allowed.port}") == 101


# --- start-up and failures you can see ---------------------------------------------


def test_a_corrupt_database_stops_python_m_chat_core_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    db.write_bytes(b"this is not a database" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "chat_core", "--db", str(db), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [lines[-1]] and str(db) in lines[-1] and "not a database" in lines[-1], lines


def test_a_failing_disk_degrades_health_names_the_cause_once_and_recovers(tmp_path: Path) -> None:
    """A file-size limit on the server stands in for a full disk: SQLite's writes fail
    with a real I/O error. Senders get store_unavailable, /healthz says 503 degraded
    with the cause, the log names it once; when the disk has room again, all is well."""
    limit = 200_000

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    srv = ServerProcess(["--db", str(tmp_path / "s.db")], log_path=tmp_path / "s.log", preexec_fn=small_disk)
    srv.start()

    async def send_until_refused(c: Client) -> int:
        for i in range(400):
            await c.say(f"{i} " + "x" * 1900)
            frame = await c.recv()
            while frame["type"] not in ("msg", "error"):
                frame = await c.recv()
            if frame["type"] == "error":
                assert frame["code"] == "store_unavailable", frame
                return i
        raise AssertionError("the disk never filled")

    async def outcome(c: Client) -> str:
        frame = await c.recv()
        while frame["type"] not in ("msg", "error"):
            frame = await c.recv()
        return "stored" if frame["type"] == "msg" else frame["code"]

    async def go():
        c = await Client.open(srv.ws_url)
        await c.join("writer")
        first_failure = await send_until_refused(c)
        code, body = get(srv.url + "/healthz")
        assert code == 503 and body["status"] == "degraded" and "could not be stored" in body["reason"], body
        assert "disk I/O error" in body["reason"] or "full" in body["reason"], body
        more = []
        for i in range(5):  # more batches while the disk is full
            await c.say(f"more {i} " + "y" * 1900)
            more.append(await outcome(c))
        assert set(more) <= {"stored", "store_unavailable"}, more
        psutil.Process(srv.proc.pid).rlimit(psutil.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        await c.say("room again")
        assert await outcome(c) == "stored"
        assert get(srv.url + "/healthz")[0] == 200
        return first_failure, more

    try:
        failed_at, more = run(go())
        log = srv.log_text()
        print(
            f"first refused message: #{failed_at}; then {more}; log:\n"
            + "\n".join(line for line in log.splitlines() if "chat history" in line)
        )
        outages = [line for line in log.splitlines() if "could not be stored" in line]
        recoveries = [line for line in log.splitlines() if "writes work again after" in line]
        # each outage named once with its cause, however many batches failed in it
        assert len(outages) == len(recoveries), log
        assert 1 <= len(outages) <= 1 + more.count("stored"), log
        assert "no transaction is active" not in log and "Traceback" not in log
    finally:
        srv.stop()


def test_healthz_shows_counts_only_to_the_logged_in(tmp_path: Path) -> None:
    srv = ServerProcess(["--db", str(tmp_path / "s.db"), "--auth", "ann:pw"], log_path=tmp_path / "s.log")
    with srv:
        assert get(srv.url + "/healthz") == (200, {"status": "ok"})
        import base64

        basic = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}
        code, body = get(srv.url + "/healthz", basic)
        assert code == 200 and "connections" in body


def test_a_fragmented_message_over_max_frame_closes_with_1009(server: ServerProcess) -> None:
    assert run(fragmented_close_code(server.ws_url)) == 1009
