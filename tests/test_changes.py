"""Edits, deletes and reactions against a real server on both engines (the `server` and
`engine_args` fixtures), and across two processes on Redis."""

import asyncio
import json
import sqlite3
import urllib.request

from servers import ServerProcess
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def stored(srv, room="lobby"):
    with urllib.request.urlopen(f"{srv.url}/api/rooms/{room}/messages", timeout=5) as r:
        return json.loads(r.read())["messages"]


async def said(client, text):
    await client.say(text)
    return (await client.recv_type("msg"))["payload"]


async def edit(client, msg_id, text):
    await client.send({"type": "edit", "payload": {"id": msg_id, "text": text}})


async def delete(client, msg_id):
    await client.send({"type": "delete", "payload": {"id": msg_id}})


async def react(client, msg_id, emoji):
    await client.send({"type": "react", "payload": {"id": msg_id, "emoji": emoji}})


async def error_code(client):
    return (await client.recv_type("error"))["code"]


def test_the_author_edits_and_deletes_and_everyone_sees_it_live_in_history_and_in_the_api(server):
    async def go():
        alice, bob = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        m = await said(alice, "helo")
        await bob.recv_type("msg")
        await edit(alice, m["id"], "hello")
        for c in (alice, bob):
            change = (await c.recv_type("edit"))["payload"]
            assert (change["target"], change["text"], change["user"]) == (m["id"], "hello", "alice")
            assert change["id"] == m["id"] + 1  # an entry of the room's sequence
        [now] = [x for x in stored(server) if x["id"] == m["id"]]
        assert now["text"] == "hello" and now["edited"] == change["ts"]
        late = await Client.open(server.ws_url)
        history, welcome = await late.join("carol")
        assert [(h["payload"]["text"], "edited" in h["payload"]) for h in history] == [("hello", True)]
        assert welcome["payload"]["last_id"] == change["id"]
        await delete(alice, m["id"])
        for c in (alice, bob, late):
            assert (await c.recv_type("delete"))["payload"]["target"] == m["id"]
        [gone] = stored(server)
        assert gone["deleted"] is True and gone["text"] == "" and gone["user"] == "alice" and "edited" not in gone
        await edit(alice, m["id"], "back from the dead")
        assert await error_code(alice) == "message_deleted"
        for c in (alice, bob, late):
            await c.close()

    run(go())
    db = server.db
    if db:  # no text anywhere, in the database itself
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT text FROM messages UNION ALL SELECT text FROM changes").fetchall()
        assert not any("hel" in text for (text,) in rows), rows


def test_someone_who_takes_the_free_name_later_cannot_edit_or_delete(server):
    async def go():
        first = await Client.open(server.ws_url)
        await first.join("alice")
        m = await said(first, "written by the first alice")
        await first.close()
        await asyncio.sleep(0.3)
        later = await Client.open(server.ws_url)
        await later.join("alice")  # the name was free: a new token, another author
        await edit(later, m["id"], "rewritten by someone else")
        assert await error_code(later) == "not_author"
        await delete(later, m["id"])
        assert await error_code(later) == "not_author"
        other = await Client.open(server.ws_url)
        await other.join("mallory")
        await delete(other, m["id"])
        assert await error_code(other) == "not_author"
        for c in (later, other):
            await c.close()

    run(go())
    assert [m["text"] for m in stored(server)] == ["written by the first alice"]


def test_reactions_toggle_and_say_who_gave_them(server):
    async def go():
        alice, bob = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        m = await said(alice, "react to this")
        await react(bob, m["id"], "👍")
        await react(alice, m["id"], "👍")
        await react(bob, m["id"], "🇫🇷")
        got = [(await alice.recv_type("react"))["payload"] for _ in range(3)]
        assert sorted((r["user"], r["emoji"], r["on"]) for r in got) == [
            ("alice", "👍", True),
            ("bob", "🇫🇷", True),
            ("bob", "👍", True),
        ]
        reactions = stored(server)[0]["reactions"]
        assert {e: sorted(n) for e, n in reactions.items()} == {"👍": ["alice", "bob"], "🇫🇷": ["bob"]}
        await react(bob, m["id"], "👍")  # again: taken back
        assert (await alice.recv_type("react"))["payload"]["on"] is False
        assert stored(server)[0]["reactions"] == {"👍": ["alice"], "🇫🇷": ["bob"]}
        for bad in ("a", "👍 ok", "", "👍" * 11, "<b>"):
            await react(bob, m["id"], bad)
            assert await error_code(bob) in ("bad_emoji", "bad_field"), bad
        await react(bob, 999, "👍")
        assert await error_code(bob) == "no_such_message"
        for c in (alice, bob):
            await c.close()

    run(go())


def test_a_client_back_with_since_gets_the_changes_it_missed_in_order(server):
    async def go():
        alice, bob = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice")
        _, welcome = await bob.join("bob")
        one, two = await said(alice, "one"), await said(alice, "two")
        seen = two["id"]
        await bob.close()  # bob goes away having seen both
        await edit(alice, one["id"], "one, edited")
        await react(alice, two["id"], "🎉")
        three = await said(alice, "three")
        await delete(alice, two["id"])
        await alice.recv_type("delete")
        back = await Client.open(server.ws_url)
        history, welcome = await back.join("bob", since=seen, token=welcome["payload"]["token"])
        assert [(h["type"], h["payload"].get("target", h["payload"]["id"])) for h in history] == [
            ("edit", one["id"]),
            ("react", two["id"]),
            ("msg", three["id"]),
            ("delete", two["id"]),
        ]
        assert [h["payload"]["id"] for h in history] == list(range(seen + 1, seen + 5))
        fresh = await Client.open(server.ws_url)
        history, _ = await fresh.join("carol")  # without since: the messages as they stand
        assert [(h["type"], h["payload"]["text"], h["payload"].get("deleted", False)) for h in history] == [
            ("msg", "one, edited", False),
            ("msg", "", True),
            ("msg", "three", False),
        ]
        for c in (alice, back, fresh):
            await c.close()

    run(go())


def test_changes_are_checked_and_limited_like_messages(tmp_path, engine_args):
    with ServerProcess([*engine_args, "--rate", "1", "--burst", "2"], log_path=tmp_path / "s.log") as srv:

        async def go():
            c = await Client.open(srv.ws_url)
            await edit(c, 1, "x")
            assert await error_code(c) == "not_joined"
            await c.join("alice")
            m = await said(c, "mine")
            await c.send({"type": "edit", "payload": {"text": "no id"}})
            assert await error_code(c) == "bad_field"
            await c.send({"type": "edit", "payload": {"id": m["id"], "text": " "}})
            assert await error_code(c) == "empty_text"
            await c.send({"type": "delete", "payload": {"id": True}})
            assert await error_code(c) == "bad_field"
            codes = []
            for _ in range(4):
                await react(c, m["id"], "👍")
            for _ in range(4):
                frame = await c.recv()
                while frame["type"] not in ("react", "error"):
                    frame = await c.recv()
                codes.append(frame.get("code", "ok"))
            assert "rate_limited" in codes
            await c.close()

        run(go())


def test_changes_on_one_process_reach_the_other_and_concurrent_reactions_all_count(two):
    a_srv, b_srv = two

    async def go():
        alice, bob = await Client.open(a_srv.ws_url), await Client.open(b_srv.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        m = await said(alice, "across processes")
        await bob.recv_type("msg")
        await edit(alice, m["id"], "across processes, edited")
        assert (await bob.recv_type("edit"))["payload"]["text"] == "across processes, edited"
        emoji = ["👍", "🎉", "❤️", "😀", "🚀"]
        for e in emoji:  # both processes change the same message at the same moment
            await react(alice, m["id"], e)
            await react(bob, m["id"], e)
        for c in (alice, bob):
            assert len([(await c.recv_type("react")) for _ in range(10)]) == 10
        for srv in two:
            [now] = stored(srv)
            assert now["text"] == "across processes, edited"
            assert set(now["reactions"]) == set(emoji), now
            assert all(sorted(now["reactions"][e]) == ["alice", "bob"] for e in emoji), now
        await delete(alice, m["id"])
        assert (await bob.recv_type("delete"))["payload"]["target"] == m["id"]
        for c in (alice, bob):
            await c.close()

    run(go())
    assert stored(b_srv)[0]["deleted"] is True


def test_trimming_on_redis_never_brings_back_an_edited_text(redis_url, tmp_path):
    """Ids count changes too, so the stream's oldest message may be older than `keep` ids:
    its edited state must stay for as long as the message does."""
    args = ["--redis-url", redis_url, "--history-keep", "100"]
    with ServerProcess(args, log_path=tmp_path / "s.log") as srv:

        async def go():
            c = await Client.open(srv.ws_url)
            await c.join("alice")
            m = await said(c, "first text")
            await edit(c, m["id"], "edited text")
            await c.recv_type("edit")
            for _ in range(150):  # changes move the ids on, not the message stream
                await react(c, m["id"], "👍")
            for _ in range(150):
                await c.recv_type("react")
            for i in range(60):  # a message id crosses a multiple of 100: the trim runs
                await said(c, f"filler {i}")
            await c.close()

        run(go())
        texts = [x["text"] for x in stored(srv)]
        assert "first text" not in texts and texts[0] == "edited text", texts[:3]
