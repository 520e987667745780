"""The chat widget in a real browser against servers of its own: restarted, cut off by a
relay that stands in for the network, under a path prefix, behind a share link, two
processes on Redis. Debian's Chromium driven by Playwright, as in test_browser_chat.py
(whose tests share one server); a file of its own so that these, the slow ones, run
beside those (pytest-xdist gives each file to one worker).

Without Playwright or Chromium these tests skip, except on CI, where they fail.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from browsers import MESSAGES, People, expect, expect_message, expect_state, expect_users, join, messages, say
from redis_server import RedisServer
from test_gradio_app import start_server, start_shared_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


# --- servers and the network between pages and server ---------------------


class Relay:
    """A TCP relay on a loopback port, standing in for the network (or a share tunnel)
    between pages and the server. `cut()` drops every connection and refuses new ones
    until `restore()`: for the pages behind it, the server is gone."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.open = True
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src)
            self._drop(dst)

    def _drop(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        self.open = False
        with self.lock:
            socks = list(self.sockets)
        for sock in socks:
            self._drop(sock)

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.listener.close()
        self.cut()


# --- the tests ---------------------------------------------------------------


def test_restart_reconnects_and_replays_what_was_missed_once(tmp_path: Path, people: People) -> None:
    srv = start_server(tmp_path)
    relay = Relay(srv.port)  # bob reaches the server through a line we can cut
    try:
        alice = people.open(srv.url)
        join(alice, "alice")
        bob = people.open(relay.url)
        join(bob, "bob")
        say(alice, "before the restart")
        expect_message(bob, "before the restart")

        srv.stop()  # SIGTERM: the server goes away while both pages are open
        for page in (alice, bob):
            expect_state(page, "reconnecting")
            expect(page.get_by_test_id("chat-status")).to_contain_text("Reconnecting")
            expect(page.get_by_test_id("chat-input")).to_be_enabled()  # people can still write
        say(alice, "sent while the server was stopped")  # waits, shown as pending
        waiting = alice.locator(f"{MESSAGES} li.chat-pending", has_text="sent while the server was stopped")
        expect(waiting).to_have_attribute("data-state", "waiting")
        expect(waiting.get_by_test_id("chat-pending-state")).to_contain_text("waits for the connection")
        people.shot(alice, "reconnecting")
        alice.wait_for_timeout(1500)

        srv.start(timeout=120)
        for page in (alice, bob):
            expect_state(page, "connected", timeout=40_000)
        expect(alice.locator(f"{MESSAGES} li.chat-system", has_text="Reconnected")).to_have_count(1)
        for page in (alice, bob):  # sent after the reconnect, there exactly once
            expect_message(page, "sent while the server was stopped")
        expect(waiting).to_have_count(0)
        say(alice, "after the restart, from alice")
        expect_message(bob, "after the restart, from alice")
        say(bob, "after the restart, from bob")
        expect_message(alice, "after the restart, from bob")
        expect_message(alice, "before the restart")  # still there, once

        relay.cut()  # bob's network goes away; the server stays up
        expect_state(bob, "reconnecting")
        missed = [f"while bob was away {i}" for i in range(1, 4)]
        for text in missed:
            say(alice, text)
        expect_message(alice, missed[-1])
        say(bob, "written offline, then the page was reloaded")
        kept = bob.evaluate("() => localStorage.getItem('chat:outgoing')")
        assert kept and "then the page was reloaded" in kept  # kept across a reload (the page is behind the cut)
        relay.restore()
        bob.reload()  # at once: the old page had no time to send it; the new one sends it from storage
        expect_state(bob, "connected", timeout=40_000)
        expect_message(bob, missed[-1])
        for text in missed:
            expect_message(bob, text, count=1)
        for page in (alice, bob):
            expect_message(page, "written offline, then the page was reloaded", count=1)
        bob.wait_for_timeout(500)  # nothing more trickles in
        expect(bob.locator(f"{MESSAGES} li.chat-pending")).to_have_count(0)
        assert messages(bob) == messages(alice)
        ids = [m[0] for m in messages(bob)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        people.shot(bob, "bob-after-away")
    finally:
        relay.close()
        srv.stop()


def test_uvicorn_under_a_path_prefix(tmp_path: Path, people: People) -> None:
    """`uvicorn gradio_app:app` behind a prefix: the page, /ws and the API all live under /p."""
    script = (
        "import contextlib, sys, uvicorn\n"
        "from starlette.applications import Starlette\n"
        "from starlette.routing import Mount\n"
        "from gradio_app import app\n"
        "@contextlib.asynccontextmanager\n"
        "async def lifespan(_):\n"
        "    async with app.router.lifespan_context(app):\n"
        "        yield\n"
        "outer = Starlette(routes=[Mount('/p', app=app)], lifespan=lifespan)\n"
        "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
        "uvicorn.run(outer, host='127.0.0.1', port=port, log_level='warning')\n"
    )
    srv = start_server(
        tmp_path,
        command=[sys.executable, "-c", script],
        health="/p/healthz",
        env={"CHAT_DB": str(tmp_path / "prefix.db")},
    )
    try:
        page = people.open(srv.url + "/p/")
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        join(page, "prefixed")
        plain = people.open(srv.url + "/p/chat")
        join(plain, "plain")
        say(plain, "under a prefix")
        expect_message(page, "under a prefix")
        assert sockets and all(url.startswith(f"ws://127.0.0.1:{srv.port}/p/ws") for url in sockets), sockets
        people.shot(page, "prefix")
    finally:
        srv.stop()


def test_share_link_carries_the_ui_and_the_websocket(tmp_path: Path, people: People) -> None:
    """`--share`: through Gradio's tunnel (a stand-in here: there is no internet) the UI
    and /ws both work, and a page behind the link chats with a page on the local URL."""
    srv, public, args = start_shared_server(tmp_path)
    try:
        assert args[args.index("-l") + 1] == str(srv.port)
        shared = people.open(public, route_cdn=True)
        join(shared, "remote")
        local = people.open(srv.url, route_cdn=True)  # with --share every page loads Gradio from the CDN
        join(local, "local")
        say(shared, "through the share link")
        expect_message(local, "through the share link")
        say(local, "back through the link")
        expect_message(shared, "back through the link")
        people.shot(shared, "shared")
    finally:
        srv.stop()


def test_big_room_presence_and_replay_gap(tmp_path: Path, people: People) -> None:
    """Above --notice-limit members, joins and leaves come as `presence`; a reconnect
    that missed more than --replay-limit messages shows a gap line, once."""
    srv = start_server(tmp_path, args=("--notice-limit", "1", "--replay-limit", "3", "--presence-interval", "0.2"))
    relay = Relay(srv.port)
    try:
        kim = people.open(srv.url + "/chat")
        join(kim, "kim")
        lee = people.open(relay.url + "/chat")
        join(lee, "lee")
        expect_users(kim, ["kim", "lee"])  # from a presence frame: no "lee joined" line
        expect(kim.get_by_test_id("chat-online")).to_have_text("2")
        expect(kim.locator(f"{MESSAGES} li.chat-system")).to_have_count(0)

        relay.cut()
        expect_state(lee, "reconnecting")
        expect_users(kim, ["kim"])
        for i in range(1, 7):
            say(kim, f"burst {i}")
        expect_message(kim, "burst 6")
        relay.restore()
        expect_state(lee, "connected", timeout=40_000)
        expect_message(lee, "burst 6")
        assert [m[2] for m in messages(lee)] == ["burst 4", "burst 5", "burst 6"]
        gap = lee.locator(f"{MESSAGES} li.chat-gap")
        expect(gap).to_have_count(1)
        # the gap sits where the missing messages would be: right before "burst 4"
        assert lee.eval_on_selector(f"{MESSAGES} li.chat-gap", "el => el.nextElementSibling.dataset.id") == str(
            messages(lee)[0][0]
        )
        people.shot(lee, "gap")
    finally:
        relay.close()
        srv.stop()


def test_two_gradio_processes_on_redis_are_one_chat(
    redis_url: str, redis_server: RedisServer, tmp_path: Path, people: People
) -> None:
    """Two `python gradio_app.py --redis-url …` on two ports, a tab on each: one chat. While
    Redis is away the page says the chat is degraded and keeps the refused message beside its
    error, to send again; after, it chats on, that message there once."""
    servers = [start_server(tmp_path, args=("--redis-url", redis_url), name=f"on-redis-{i}") for i in range(2)]
    try:
        room = "two-processes"
        alice = people.open(servers[0].url)
        join(alice, "alice", room)
        bob = people.open(servers[1].url)
        join(bob, "bob", room)
        expect_users(alice, ["alice", "bob"])
        expect_users(bob, ["alice", "bob"])
        say(alice, "Hello from the first process.")
        expect_message(bob, "Hello from the first process.")
        say(bob, "And back from the second.")
        expect_message(alice, "And back from the second.")
        expect_message(bob, "And back from the second.")  # bob's own, once the server has stored it
        assert [(m[1], m[2]) for m in messages(alice)] == [(m[1], m[2]) for m in messages(bob)]
        people.shot(alice, "alice-on-process-1")
        people.shot(bob, "bob-on-process-2")

        redis_server.stop()
        try:
            box = alice.get_by_test_id("chat-input")
            box.fill("Sent while Redis is away.")
            box.press("Enter")
            expect_state(alice, "degraded")
            expect(alice.get_by_test_id("chat-status")).to_contain_text("cannot save messages")
            refused = alice.locator(f"{MESSAGES} li.chat-pending", has_text="Sent while Redis is away.")
            expect(refused).to_have_attribute("data-state", "failed")  # kept beside its error, not lost
            expect(refused.get_by_test_id("chat-pending-state")).to_contain_text("could not be saved")
            people.shot(alice, "alice-while-redis-is-away")
        finally:
            redis_server.start()
        for _attempt in range(15):  # the person sends it again until it goes (the server reconnects by itself)
            if not refused.count():
                break
            if refused.get_attribute("data-state") == "failed":
                refused.get_by_test_id("chat-retry").click()
            try:
                expect_message(bob, "Sent while Redis is away.", timeout=2_000)
                break
            except AssertionError:
                continue
        expect_message(bob, "Sent while Redis is away.")
        expect_message(alice, "Sent while Redis is away.")
        expect(refused).to_have_count(0)
        expect_state(alice, "connected")
        bob.context.close()
        expect_users(alice, ["alice"])
        expect(alice.locator(f"{MESSAGES} li.chat-system", has_text="bob left")).to_have_count(1)
    finally:
        for srv in servers:
            srv.stop()
