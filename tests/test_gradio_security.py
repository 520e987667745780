"""Issue 4 where Gradio is involved: its login in front of the UI, /ws and the API;
a hostile page on another origin; SIGTERM under `python gradio_app.py`.

Real servers, real Chromium (the browser fixtures are in conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from browsers import People, StaticSite, expect, expect_message, expect_state, say
from servers import ServerProcess
from test_gradio_app import start_server
from wsclient import Client

pytestmark = [pytest.mark.timeout(240)]

LOGINS = "ann:pw-ann,ben:pw-ben"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("auth"), args=("--auth", LOGINS))
    yield srv
    srv.stop()


def run(coro) -> object:
    """asyncio.run in a thread of its own: Playwright's sync API owns this thread's loop."""
    out: dict = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(asyncio.wait_for(coro, 60))
        except BaseException as exc:  # handed to the test's thread
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def status_of(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def log_in(people: People, url: str, user: str, password: str):
    context = people.browser.new_context(viewport={"width": 1200, "height": 860})
    people.contexts.append(context)
    page = context.new_page()
    page.on("dialog", lambda d: (people.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda err: people.errors.append(str(err)))
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.get_by_test_id("chat-name").wait_for(state="visible", timeout=60_000)
    return page


def test_without_login_the_api_and_socket_refuse(auth_server: ServerProcess) -> None:
    code, headers = status_of(auth_server.url + "/api/rooms")
    assert code == 401 and "www-authenticate" not in {k.lower() for k in headers}  # no browser login box
    assert status_of(auth_server.url + "/api/rooms/lobby/messages")[0] == 401
    with urllib.request.urlopen(auth_server.url + "/api/me", timeout=10) as r:
        assert json.loads(r.read()) == {"user": None, "ticket": None}

    async def go():
        with pytest.raises(InvalidStatus) as info:
            await Client.open(auth_server.ws_url)
        assert info.value.response.status_code == 403

    run(go())


def test_gradio_login_names_the_chat_user(auth_server: ServerProcess, people: People) -> None:
    ann = log_in(people, auth_server.url, "ann", "pw-ann")
    name = ann.get_by_test_id("chat-name")
    expect(name).to_have_value("ann")
    expect(name).to_have_js_property("readOnly", True)
    expect_state(ann, "connected")
    ben = log_in(people, auth_server.url, "ben", "pw-ben")
    expect_state(ben, "connected")
    say(ann, "logged in as ann")
    expect_message(ben, "logged in as ann")
    author = ben.locator('[data-testid="chat-messages"] li[data-id] .chat-author').last
    expect(author).to_have_text("ann")
    people.shot(ben, "logged-in")
    # the session cookie opens the API too; a wrong password opens nothing
    rooms = ann.evaluate("fetch('api/rooms').then(r => r.status)")
    assert rooms == 200
    me = ann.evaluate("fetch('api/me').then(r => r.json())")
    assert me["user"] == "ann" and isinstance(me["ticket"], str) and len(me["ticket"]) >= 40
    stranger = people.browser.new_context()
    people.contexts.append(stranger)
    page = stranger.new_page()
    page.goto(auth_server.url)
    page.get_by_label("username").fill("ann")
    page.get_by_label("password").fill("wrong")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text("Incorrect Credentials")).to_be_visible()  # Gradio answered: refused
    assert page.get_by_test_id("chat-name").count() == 0
    page.goto(auth_server.url + "/chat")  # the plain page sends strangers to the login
    expect(page.get_by_label("password")).to_be_visible()
    assert page.url.rstrip("/") == auth_server.url


def hostile_site(root: Path, target_port: int) -> tuple[StaticSite, str]:
    """Another server on another port, serving a page that tries to use the chat's socket."""
    site = StaticSite(root)
    return site, site.page(
        "index.html",
        f"""<!doctype html><title>evil</title><script>
window.result = "pending";
const ws = new WebSocket("ws://127.0.0.1:{target_port}/ws");
ws.onopen = () => {{ window.result = "open"; ws.send(JSON.stringify({{type: "join", payload: {{user: "evil"}}}})); }};
ws.onerror = () => {{ window.result = "error"; }};
ws.onclose = (e) => {{ if (window.result !== "open") window.result = "closed:" + e.code; }};
</script>""",
    )


def test_a_page_on_another_site_cannot_open_the_socket(tmp_path: Path, browser) -> None:
    srv = start_server(tmp_path)
    site, url = hostile_site(tmp_path / "site", srv.port)
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("window.result !== 'pending'", timeout=20_000)
        assert page.evaluate("window.result") in ("error", "closed:1006")
        with urllib.request.urlopen(srv.url + "/healthz", timeout=10) as r:
            assert json.loads(r.read())["connections"] == 0
        # the same browser on the chat's own page connects fine
        page.goto(srv.url + "/chat")
        assert (
            page.evaluate("""() => new Promise(ok => {
            const ws = new WebSocket(new URL('ws', location.href).href.replace(/^http/, 'ws'));
            ws.onopen = () => ok('open'); ws.onerror = () => ok('error'); })""")
            == "open"
        )
        context.close()

        async def by_hand() -> int:  # the same handshake, to see the server's answer
            origin = site.origin
            with pytest.raises(InvalidStatus) as info:
                await Client.open(srv.ws_url, origin=origin)
            return info.value.response.status_code

        assert run(by_hand()) == 403
    finally:
        site.close()
        srv.stop()


def test_sigterm_under_gradio_closes_with_1001_and_exits_quickly(tmp_path: Path) -> None:
    srv = start_server(tmp_path, args=("--commit-delay", "1"))  # messages still pending at SIGTERM

    async def go():
        a = await Client.open(srv.ws_url)
        _, _ = await a.join("alice")
        for i in range(50):
            await a.say(f"m{i}")
        await asyncio.sleep(0.2)  # read by the server, held by --commit-delay
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frame = await a.recv(timeout=10)
                if frame["type"] == "msg":
                    echoed.append(frame["payload"]["text"])
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        return t0

    echoed: list[str] = []
    try:
        t0 = run(go())
        srv.proc.wait(timeout=10)
        took = time.monotonic() - t0
        print(f"python gradio_app.py: SIGTERM to exit {took:.2f}s")
        assert took < 5
    finally:
        srv.stop()
    # what is on disk once the process is gone
    assert srv.db is not None
    with sqlite3.connect(srv.db) as db:
        stored = [text for (text,) in db.execute("SELECT text FROM messages WHERE room = 'lobby' ORDER BY id")]
    # Everything the server took in was written and echoed before it closed; what was
    # still on its way in when SIGTERM came was never accepted (the client resends it).
    assert stored == echoed == [f"m{i}" for i in range(len(stored))]
    assert len(stored) == 50  # all were pending when SIGTERM came, and all were written
