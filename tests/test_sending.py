"""Sending that neither loses nor doubles a message (`cid`), and `typing`, against a
real server on both engines (the `server` and `engine_args` fixtures)."""

import asyncio
import json
import urllib.request

from servers import ServerProcess
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def stored(srv, room="lobby"):
    with urllib.request.urlopen(f"{srv.url}/api/rooms/{room}/messages", timeout=5) as r:
        return json.loads(r.read())["messages"]


async def send(client, text, cid=None):
    payload = {"text": text} if cid is None else {"text": text, "cid": cid}
    await client.send({"type": "msg", "payload": payload})


async def quiet(client, seconds=0.5):
    """The frames that arrive within ``seconds`` (none expected, usually)."""
    got = []
    try:
        while True:
            got.append(await client.recv(seconds))
    except asyncio.TimeoutError:
        return got


def test_a_cid_sent_twice_is_stored_once_and_the_sender_gets_the_original_back(server):
    async def go():
        alice, bob = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        await alice.recv_notice("join", "bob")
        await send(alice, "hello", "c-1")
        first = (await alice.recv_type("msg"))["payload"]
        assert first["cid"] == "c-1" and first["text"] == "hello"
        await send(alice, "hello (again)", "c-1")  # the same cid: a resend
        again = (await alice.recv_type("msg"))["payload"]
        assert again == first  # the stored one, same id, same text
        await send(alice, "next", "c-2")
        assert (await alice.recv_type("msg"))["payload"]["id"] == first["id"] + 1
        seen = [(await bob.recv_type("msg"))["payload"] for _ in range(2)]
        assert [(m["text"], m["cid"]) for m in seen] == [("hello", "c-1"), ("next", "c-2")]
        assert not [f for f in await quiet(bob) if f["type"] == "msg"]  # bob saw it once
        await send(bob, "mine", "c-1")  # another author's c-1 is another message
        assert (await bob.recv_type("msg"))["payload"]["text"] == "mine"
        for c in (alice, bob):
            await c.close()

    run(go())
    assert [(m["text"], m.get("cid")) for m in stored(server)] == [("hello", "c-1"), ("next", "c-2"), ("mine", "c-1")]


def test_a_message_without_cid_is_exactly_the_seed_payload(server):
    async def go():
        c = await Client.open(server.ws_url)
        await c.join("alice")
        await c.say("plain")
        assert set((await c.recv_type("msg"))["payload"]) == {"user", "text", "ts", "id", "room"}
        await c.close()

    run(go())


def test_a_resend_after_a_restart_is_not_stored_again(tmp_path, engine_args):
    """The message went in just before the restart; the client never saw its echo and
    sends it again, with its token, to the new server process (the name stays reserved
    for that token, as it does by default)."""
    srv = ServerProcess(engine_args, env={"CHAT_NAME_RESERVE": "3600"}, log_path=tmp_path / "s.log")
    with srv:

        async def first():
            c = await Client.open(srv.ws_url)
            _, welcome = await c.join("alice")
            await send(c, "before the restart", "k7")
            sent = (await c.recv_type("msg"))["payload"]
            await c.close()
            return welcome["payload"]["token"], sent

        token, sent = run(first())
    with srv:

        async def again():
            c = await Client.open(srv.ws_url)
            await c.join("alice", since=sent["id"], token=token)
            await send(c, "before the restart", "k7")
            back = (await c.recv_type("msg"))["payload"]
            await c.close()
            return back

        assert run(again()) == sent
        assert [m["text"] for m in stored(srv)] == ["before the restart"]


def test_someone_who_takes_the_free_name_later_is_another_author(server):
    """A name alone proves nothing: the later holder's cid is a new message of theirs."""

    async def go():
        alice = await Client.open(server.ws_url)
        await alice.join("alice")
        await send(alice, "from the first alice", "same")
        first = (await alice.recv_type("msg"))["payload"]
        await alice.close()
        await asyncio.sleep(0.3)
        later = await Client.open(server.ws_url)
        await later.join("alice")  # no token: the name was free (tests reserve nothing)
        await send(later, "from the later alice", "same")
        got = (await later.recv_type("msg"))["payload"]
        assert got["id"] == first["id"] + 1 and got["text"] == "from the later alice"
        await later.close()

    run(go())


def test_refusals_of_a_msg_carry_its_cid(server):
    async def go():
        c = await Client.open(server.ws_url)
        await send(c, "too early", "e1")
        err = await c.recv_type("error")
        assert (err["code"], err["cid"]) == ("not_joined", "e1")
        await c.join("alice")
        await send(c, "x" * 2001, "e2")
        err = await c.recv_type("error")
        assert (err["code"], err["cid"]) == ("text_too_long", "e2")
        await send(c, "   ", "e3")
        assert (await c.recv_type("error"))["cid"] == "e3"
        await c.send({"type": "msg", "payload": {"text": "hi", "cid": "no spaces allowed"}})
        err = await c.recv_type("error")
        assert err["code"] == "bad_field" and "cid" in err["message"] and "cid" not in err
        await send(c, "no cid")
        assert "cid" not in await c.recv_type("msg")
        await c.close()

    run(go())


def test_typing_is_relayed_to_the_others_at_most_every_2_s_and_never_stored(server):
    async def go():
        alice, bob = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        await alice.recv_notice("join", "bob")
        for _ in range(5):
            await alice.send({"type": "typing"})
        frame = await bob.recv_type("typing")
        assert frame["payload"]["user"] == "alice" and frame["payload"]["room"] == "lobby"
        assert not [f for f in await quiet(bob, 1.0) if f["type"] == "typing"]  # one relay for the burst
        assert not [f for f in await quiet(alice, 0.2) if f["type"] == "typing"]  # not to oneself
        await asyncio.sleep(1.2)
        await alice.send({"type": "typing"})
        assert (await bob.recv_type("typing"))["payload"]["user"] == "alice"
        late = await Client.open(server.ws_url)
        history, _ = await late.join("carol")
        assert all(f["type"] == "msg" for f in history)  # nothing of it was kept
        for c in (alice, bob, late):
            await c.close()

    run(go())


def test_typing_before_join_is_refused_and_big_rooms_relay_none(tmp_path, engine_args):
    with ServerProcess([*engine_args, "--notice-limit", "1"], log_path=tmp_path / "s.log") as srv:

        async def go():
            a, b = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
            await a.send({"type": "typing"})
            assert (await a.recv_type("error"))["code"] == "not_joined"
            await a.join("alice")
            await b.join("bob")  # two members: above notice_limit
            await asyncio.sleep(0.3)
            await a.send({"type": "typing"})
            assert not [f for f in await quiet(b, 1.0) if f["type"] == "typing"]
            for c in (a, b):
                await c.close()

        run(go())
