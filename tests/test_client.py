"""chat_core.client against real servers on both engines: sending that waits for the
store, events as objects, a server restart in the middle of a stream (nothing lost,
nothing doubled), the --send exit codes, and the terminal chat driven in tmux."""

import asyncio
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from chat_core.client import Change, ChatClient, ChatError, ErrorEvent, Message, Notice, send_message
from servers import ROOT, ServerProcess


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def next_of(chat, kind, timeout=10.0, where=lambda event: True):
    async def find():
        async for event in chat:
            if isinstance(event, kind) and where(event):
                return event
        raise AssertionError("the client stopped")

    return await asyncio.wait_for(find(), timeout)


def cli(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "chat_core.client", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_send_returns_the_stored_message_and_others_get_events(server):
    async def go():
        async with ChatClient(server.url, "ann") as ann, ChatClient(server.url, "bob") as bob:
            stored = await ann.send("hello from Python")
            assert stored.id >= 1 and stored.user == "ann" and stored.text == "hello from Python"
            got = await next_of(bob, Message)
            assert (got.id, got.text) == (stored.id, "hello from Python")
            await ann.edit(stored.id, "hello, edited")
            change = await next_of(bob, Change)
            assert (change.kind, change.target, change.text) == ("edit", stored.id, "hello, edited")
            await bob.react(stored.id, "👍")
            change = await next_of(ann, Change, where=lambda c: c.kind == "react")
            assert (change.kind, change.emoji, change.on) == ("react", "👍", True)
            await ann.typing()
            assert (await next_of(bob, Notice, where=lambda n: n.kind == "typing")).user == "ann"
            with pytest.raises(ChatError) as info:
                await ann.send("x" * 5000)
            assert info.value.code == "text_too_long"
        late = ChatClient(server.url, "cat")
        await late.connect()
        assert [m.text for m in late.history] == ["hello, edited"]
        await late.close()

    run(go())
    stored = send_message(server.url, "script", "from a script")
    assert stored.text == "from a script"


def test_a_server_restart_mid_stream_loses_and_doubles_nothing(tmp_path, engine_args):
    srv = ServerProcess(engine_args, log_path=tmp_path / "server.log").start()
    try:

        async def go():
            sender = ChatClient(srv.url, "sender", backoff=(0.2, 1.0))
            reader = ChatClient(srv.url, "reader", backoff=(0.2, 1.0))
            await sender.connect()
            await reader.connect()
            sent = []

            async def send_all():
                for i in range(60):
                    sent.append(await sender.send(f"n{i}", timeout=60))

            task = asyncio.create_task(send_all())
            while len(sent) < 20:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(srv.stop)  # 1001 to both; the sender keeps sending
            await asyncio.to_thread(srv.start)
            await task
            seen = []
            async for event in reader:
                if isinstance(event, Message):
                    seen.append(event.text)
                    if len(seen) == 60:
                        break
            await sender.close()
            await reader.close()
            return [m.text for m in sent], seen

        sent, seen = run(go())
        assert sent == [f"n{i}" for i in range(60)]
        assert seen == sent  # every message once, in order, across the restart
        stored = httpx.get(srv.url + "/api/rooms/lobby/messages?limit=1000").json()["messages"]
        assert [m["text"] for m in stored] == sent  # stored once each
    finally:
        srv.stop()


def test_a_message_sent_while_redis_is_down_is_stored_once_when_it_is_back(redis_url, redis_server, tmp_path):
    """The server refuses it with store_unavailable (not stored); the client sends it again
    until it is stored, on the same connection, and send() returns the stored message."""
    with ServerProcess(["--redis-url", redis_url], log_path=tmp_path / "server.log") as srv:

        async def go():
            async with ChatClient(srv.url, "ann") as ann:
                redis_server.stop()
                try:
                    task = asyncio.create_task(ann.send("through the outage", timeout=60))
                    await next_of(ann, ErrorEvent, where=lambda e: e.code == "store_unavailable")
                    assert not task.done()
                finally:
                    redis_server.start()
                return await task

        stored = run(go())
        assert stored.text == "through the outage"
        texts = [m["text"] for m in httpx.get(srv.url + "/api/rooms/lobby/messages").json()["messages"]]
        assert texts == ["through the outage"]


def test_send_exit_codes_stored_refused_rate_limited_unreachable(tmp_path):
    env = {"CHAT_RATE": "0.01", "CHAT_BURST": "1"}  # one message per name, then rate_limited
    with ServerProcess(["--db", str(tmp_path / "c.db")], env=env) as srv:
        ok = cli(srv.url, "--name", "ci", "--send", "build 12 passed")
        assert ok.returncode == 0 and "stored as #1" in ok.stdout, ok.stderr
        again = cli(srv.url, "--name", "ci", "--send", "build 13 passed")
        assert again.returncode == 1 and "rate_limited" in again.stderr
        long = cli(srv.url, "--name", "other", "--send", "x" * 3000)
        assert long.returncode == 1 and "text_too_long" in long.stderr
        bad = cli(srv.url, "--name", "", "--send", "hi")
        assert bad.returncode == 1 and "bad_name" in bad.stderr
        texts = [m["text"] for m in httpx.get(srv.url + "/api/rooms/lobby/messages").json()["messages"]]
        assert texts == ["build 12 passed"]
    gone = cli(srv.url, "--name", "ci", "--send", "nobody home", timeout=60)
    assert gone.returncode == 2 and "could not reach" in gone.stderr


def tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)


def wait_pane(session, *texts, timeout=20.0):
    """The screen once every one of `texts` is on it at the same time (a capture taken
    mid-redraw may hold only part of the screen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pane = tmux("capture-pane", "-p", "-t", session).stdout
        if all(text in pane for text in texts):
            return pane
        time.sleep(0.1)
    raise AssertionError(f"{texts!r} not on the screen:\n{pane}")


def test_the_terminal_chat_in_tmux_shows_incoming_while_a_line_is_half_typed(server, tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install tmux; .ci/run installs it)")
    send_message(server.url, "bob", "before you came")
    session = f"chat-{os.getpid()}"
    command = f"{sys.executable} -m chat_core.client {server.url} --name ann; echo exit=$?; sleep 30"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "20", "-c", str(ROOT), command)
    try:
        wait_pane(session, "bob: before you came")  # the history
        wait_pane(session, "#lobby as ann: joined")  # the state, in the bottom bar
        tmux("send-keys", "-t", session, "-l", "half a li")
        wait_pane(session, "ann> half a li")
        send_message(server.url, "bob", "a message while ann types")
        # the line being typed is still whole, below it
        pane = wait_pane(session, "bob: a message while ann types", "ann> half a li")
        assert pane.index("bob: a message while ann types") < pane.index("ann> half a li")
        tmux("send-keys", "-t", session, "-l", "ne")
        tmux("send-keys", "-t", session, "Enter")
        wait_pane(session, "ann: half a line")
        stored = httpx.get(server.url + "/api/rooms/lobby/messages").json()["messages"]
        assert [m["text"] for m in stored][-1] == "half a line"
        tmux("send-keys", "-t", session, "C-d")
        assert "exit=0" in wait_pane(session, "exit=")
        assert "left the chat" in wait_pane(session, "exit=")
    finally:
        tmux("kill-session", "-t", session)
