"""Moderation against real servers on both engines: the admin API's credentials, each
action as a client sees it, what survives a restart, and (Redis) what holds across
two processes."""

import asyncio
import base64
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from chat_core.settings import SettingError, Settings
from servers import ADMIN, ADMIN_TOKEN, ServerProcess
from wsclient import Client

TOKEN, AUTH = ADMIN_TOKEN, ADMIN


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def admin(srv, method, path, **kwargs):
    r = httpx.request(method, srv.url + "/api/admin" + path, headers=AUTH, timeout=10, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


async def closed_code(client, timeout=5.0):
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await client.recv(timeout)
    return info.value.rcvd.code if info.value.rcvd else None


async def error_of(client):
    return await client.recv_type("error")


def test_the_admin_api_wants_the_token_and_says_when_it_is_off(mod, tmp_path):
    url = mod.url + "/api/admin/audit"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    assert httpx.get(url, headers=AUTH).status_code == 200
    spec = httpx.get(mod.url + "/openapi.json").json()
    assert "/api/admin/bans" in spec["paths"] and "HTTPBearer" in spec["components"]["securitySchemes"]
    assert TOKEN not in mod.log_text()
    with ServerProcess(["--db", str(tmp_path / "off.db")]) as off:
        r = httpx.get(off.url + "/api/admin/audit", headers=AUTH)
        assert r.status_code == 404 and "--admin-token" in r.json()["detail"]


def test_guessing_the_token_is_stopped_the_right_one_too(mod):
    codes = [
        httpx.get(mod.url + "/api/admin/audit", headers={"Authorization": f"Bearer guess-{i}"}).status_code
        for i in range(8)
    ]
    assert codes == [401] * 5 + [429] * 3
    assert httpx.get(mod.url + "/api/admin/audit", headers=AUTH).status_code == 429  # a lucky guess gets nothing


def test_a_banned_name_is_closed_and_cannot_join_and_is_told_until_when(mod):
    async def go():
        troll, other = await Client.open(mod.ws_url), await Client.open(mod.ws_url)
        await troll.join("troll")
        await other.join("alice")
        ban = admin(mod, "POST", "/bans", json={"user": "Troll", "seconds": 3600, "reason": "spam"})
        assert ban["until"] > time.time() + 3500
        assert await closed_code(troll) == 4003
        again = await Client.open(mod.ws_url)
        await again.send({"type": "join", "payload": {"user": "troll"}})
        err = await error_of(again)
        assert err["code"] == "banned" and err["until"] == ban["until"] and "spam" in err["message"]
        await other.say("still here")  # the others stay
        assert (await other.recv_type("msg"))["payload"]["text"] == "still here"
        assert [b["shown"] for b in admin(mod, "GET", "/bans")["bans"]] == ["Troll"]
        admin(mod, "DELETE", f"/bans/name/{ban['value']}")
        await again.join("troll")

    run(go())


def test_an_address_ban_refuses_every_name_from_it(mod):
    async def go():
        admin(mod, "POST", "/bans", json={"address": "127.0.0.1", "seconds": 60})
        c = await Client.open(mod.ws_url)
        await c.send({"type": "join", "payload": {"user": "anyone"}})
        assert (await error_of(c))["code"] == "banned"

    run(go())


def test_a_kicked_user_is_closed_with_4003_and_may_rejoin(mod):
    async def go():
        bob, alice = await Client.open(mod.ws_url), await Client.open(mod.ws_url)
        await bob.join("bob")
        await alice.join("alice")
        admin(mod, "POST", "/rooms/lobby/kick", json={"user": "bob"})
        assert await closed_code(bob) == 4003
        assert (await alice.recv_notice("leave", "bob"))["payload"]["user"] == "bob"
        back = await Client.open(mod.ws_url)
        await back.join("bob")

    run(go())


def test_slow_mode_counts_the_address_not_the_name(mod):
    async def go():
        admin(mod, "PATCH", "/rooms/lobby", json={"slow": 30})
        first, second = await Client.open(mod.ws_url), await Client.open(mod.ws_url)
        await first.join("one")
        await second.join("two")  # a second name from the same address
        await first.say("hi")
        assert (await first.recv_type("msg"))["payload"]["text"] == "hi"
        await second.say("me too")
        assert (await error_of(second))["code"] == "slow_mode"

    run(go())


def test_address_bans_take_only_addresses(mod):
    bad = httpx.post(mod.url + "/api/admin/bans", headers=AUTH, json={"address": "not an address", "seconds": 60})
    assert bad.status_code == 422
    ban = admin(mod, "POST", "/bans", json={"address": "::ffff:127.0.0.1", "seconds": 60})
    assert ban["value"] == "127.0.0.1"


def test_slow_mode_refuses_the_second_message_and_a_locked_room_every_one(mod):
    async def go():
        c = await Client.open(mod.ws_url)
        await c.join("alice")
        rules = admin(mod, "PATCH", "/rooms/lobby", json={"slow": 30})
        assert rules["slow"] == 30
        assert (await c.recv_type("room"))["payload"]["slow"] == 30
        await c.say("one")
        assert (await c.recv_type("msg"))["payload"]["text"] == "one"
        await c.say("two")
        assert (await error_of(c))["code"] == "slow_mode"
        admin(mod, "PATCH", "/rooms/lobby", json={"slow": 0, "locked": True})
        assert (await c.recv_type("room"))["payload"]["locked"] is True
        await c.say("three")
        assert (await error_of(c))["code"] == "room_locked"
        texts = [m["text"] for m in httpx.get(mod.url + "/api/rooms/lobby/messages").json()["messages"]]
        assert texts == ["one"]

    run(go())


def test_the_topic_reaches_open_pages_and_welcome_and_survives_a_restart(mod):
    async def go():
        c = await Client.open(mod.ws_url)
        _, welcome = await c.join("alice")
        assert welcome["payload"]["topic"] == "" and welcome["payload"]["locked"] is False
        admin(mod, "PATCH", "/rooms/lobby", json={"topic": "Release day\nbe nice"})
        assert (await c.recv_type("room"))["payload"]["topic"] == "Release day be nice"
        admin(mod, "POST", "/bans", json={"user": "troll", "seconds": 600})

    run(go())
    mod.stop()
    mod.start()

    async def after():
        c = await Client.open(mod.ws_url)
        _, welcome = await c.join("bob")
        assert welcome["payload"]["topic"] == "Release day be nice"
        t = await Client.open(mod.ws_url)
        await t.send({"type": "join", "payload": {"user": "troll"}})
        assert (await error_of(t))["code"] == "banned"

    run(after())
    actions = [e["action"] for e in admin(mod, "GET", "/audit")["audit"]]
    assert actions == ["ban", "topic"]  # newest first, kept across the restart


def test_a_moderator_deletes_any_message_everywhere_and_it_is_audited(mod):
    async def go():
        alice, bob = await Client.open(mod.ws_url), await Client.open(mod.ws_url)
        await alice.join("alice")
        await bob.join("bob")
        await alice.say("spam spam")
        m = (await bob.recv_type("msg"))["payload"]
        admin(mod, "DELETE", f"/rooms/lobby/messages/{m['id']}")
        for c in (alice, bob):
            assert (await c.recv_type("delete"))["payload"]["target"] == m["id"]
        [gone] = httpx.get(mod.url + "/api/rooms/lobby/messages").json()["messages"]
        assert gone["deleted"] is True and gone["text"] == ""
        again = httpx.delete(f"{mod.url}/api/admin/rooms/lobby/messages/{m['id']}", headers=AUTH)
        assert again.status_code == 409
        missing = httpx.delete(f"{mod.url}/api/admin/rooms/lobby/messages/999", headers=AUTH)
        assert missing.status_code == 404
        [entry] = admin(mod, "GET", "/audit")["audit"]
        assert (entry["actor"], entry["action"], entry["room"], entry["target"]) == (
            "admin",
            "delete",
            "lobby",
            str(m["id"]),
        )
        assert "alice" in entry["detail"]

    run(go())


def test_bad_admin_requests_are_422_not_500(mod):
    for method, path, body in [
        ("POST", "/bans", {"seconds": 60}),
        ("POST", "/bans", {"user": "a", "address": "1.2.3.4", "seconds": 60}),
        ("POST", "/bans", {"user": "a", "seconds": -1}),
        ("POST", "/bans", {"user": "a", "seconds": 1e12}),
        ("PATCH", "/rooms/bad room", {"topic": "x"}),
        ("PATCH", "/rooms/lobby", {"slow": 1e9}),
        ("PATCH", "/rooms/lobby", {"topic": "x" * 1000}),
        ("POST", "/rooms/lobby/kick", {}),
        ("DELETE", "/rooms/lobby/messages/0", None),
    ]:
        r = httpx.request(method, mod.url + "/api/admin" + path, headers=AUTH, json=body)
        assert r.status_code == 422, (method, path, body, r.status_code, r.text)


def test_moderators_are_logins_and_others_get_403(tmp_path):
    args = ["--db", str(tmp_path / "c.db"), "--auth", "mod:pw1,bob:pw2", "--moderators", "mod"]
    with ServerProcess(args) as srv:
        url = srv.url + "/api/admin/audit"
        assert httpx.get(url, auth=("mod", "pw1")).status_code == 200
        assert httpx.get(url, auth=("bob", "pw2")).status_code == 403
        assert httpx.get(url, auth=("mod", "pw1"), headers={"Origin": "https://evil.example"}).status_code == 403

        async def go():  # a moderator in the chat writes in a locked room
            httpx.patch(srv.url + "/api/admin/rooms/lobby", json={"locked": True}, auth=("mod", "pw1"))
            ws = srv.ws_url
            m = await Client.open(ws, additional_headers={"Authorization": basic("mod", "pw1")})
            b = await Client.open(ws, additional_headers={"Authorization": basic("bob", "pw2")})
            await m.join("mod")
            await b.join("bob")
            await m.say("announcement")
            assert (await b.recv_type("msg"))["payload"]["text"] == "announcement"
            await b.say("me too")
            assert (await error_of(b))["code"] == "room_locked"

        run(go())
        entry = httpx.get(url, auth=("mod", "pw1")).json()["audit"][0]
        assert (entry["actor"], entry["action"]) == ("mod", "lock")


def test_moderation_settings_are_strict():
    with pytest.raises(SettingError, match="--moderators"):
        Settings.from_env({}, auth="a:b", moderators="c")
    with pytest.raises(SettingError, match="--admin-token"):
        Settings.from_env({}, admin_token="short")
    assert "moderator-token" not in repr(Settings.from_env({}, admin_token=TOKEN))


@pytest.fixture
def two_mod(redis_url, tmp_path):
    """Two chat processes on the same Redis, with the admin token."""
    with (
        ServerProcess(["--redis-url", redis_url, "--admin-token", TOKEN], log_path=tmp_path / "a.log") as a,
        ServerProcess(["--redis-url", redis_url, "--admin-token", TOKEN], log_path=tmp_path / "b.log") as b,
    ):
        yield a, b


def test_moderation_holds_across_processes_on_redis(two_mod):
    a, b = two_mod

    async def go():
        on_b = await Client.open(b.ws_url)
        _, welcome = await on_b.join("troll")
        watcher = await Client.open(b.ws_url)
        await watcher.join("alice")
        admin(a, "PATCH", "/rooms/lobby", json={"topic": "from A"})
        assert (await watcher.recv_type("room"))["payload"]["topic"] == "from A"
        admin(a, "POST", "/bans", json={"user": "troll", "seconds": 600})
        assert await closed_code(on_b) == 4003
        again = await Client.open(b.ws_url)
        await again.send({"type": "join", "payload": {"user": "troll"}})
        assert (await error_of(again))["code"] == "banned"
        late = await Client.open(b.ws_url)
        _, welcome = await late.join("carol")
        assert welcome["payload"]["topic"] == "from A"
        assert [e["action"] for e in admin(b, "GET", "/audit")["audit"]] == ["ban", "topic"]

    run(go())
