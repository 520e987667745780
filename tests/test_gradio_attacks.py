"""Issue 9 where Gradio is involved, against real `python gradio_app.py` (and
`uvicorn gradio_app:app`) servers and real Chromium: another page using the
visitor's login cookie, CORS, X-Forwarded-For trusted from loopback, DNS
rebinding, a corrupt database, oversized fragmented messages.

A second origin served on another port of 127.0.0.1 stands in for somebody
else's share link: it is the same *site* as the chat (ports do not count for
SameSite), so the browser sends the chat's Lax session cookie with its requests,
as it would send the `SameSite=None` cookie Gradio sets on a share link.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from browsers import People, StaticSite, expect_message, expect_state, gradio_dir, join, say
from servers import ROOT, ServerProcess, free_port
from test_gradio_app import readme_uvicorn_flags, start_server, uvicorn_command
from test_gradio_security import log_in, run
from wsclient import fragmented_close_code

pytestmark = [pytest.mark.timeout(240)]


READ_PATHS = [  # what a logged-in user may read: the history, and the History tab's search and export
    "/api/rooms/lobby/messages",
    "/api/rooms/lobby/search?q=secret",
    "/api/rooms/lobby/export?format=jsonl",
]


def other_site(root: Path, chat_port: int) -> tuple[StaticSite, str]:
    """A page on another origin that tries, with the visitor's cookies, to read the
    chat's API and to open its socket."""
    site = StaticSite(root)
    return site, site.page(
        "index.html",
        f"""<!doctype html><title>another app</title><script>
window.api = "pending"; window.socket = "pending";
const reads = {{}};  // path -> "read:<body>" or "blocked", for the history, its search and its export
Promise.all({json.dumps(READ_PATHS)}.map(path =>
  fetch("http://127.0.0.1:{chat_port}" + path, {{credentials: "include"}})
    .then(r => r.text()).then(t => {{ reads[path] = "read:" + t; }}, e => {{ reads[path] = "blocked"; }})
)).then(() => {{ window.api = reads; }});
const ws = new WebSocket("ws://127.0.0.1:{chat_port}/ws");
ws.onmessage = (e) => {{ window.socket = "frame:" + e.data; }};
ws.onopen = () => ws.send(JSON.stringify({{type: "join", payload: {{user: "x"}}}}));
ws.onerror = () => {{ if (window.socket === "pending") window.socket = "refused"; }};
</script>""",
    )


def test_another_apps_page_cannot_act_or_read_as_the_logged_in_user(tmp_path: Path, people: People) -> None:
    """Before: Gradio's CORS layer answered the chat's API with Access-Control-Allow-Origin
    for this page and Allow-Credentials, so it read the protected history. Now neither the
    history nor the History tab's search and export answer another site's page."""
    srv = start_server(tmp_path, args=("--auth", "ann:pw-ann"))
    site = None
    try:
        ann = log_in(people, srv.url, "ann", "pw-ann")
        expect_state(ann, "connected")  # her own page, with its ticket, chats
        say(ann, "the secret plan")
        expect_message(ann, "the secret plan")
        site, url = other_site(tmp_path / "site", srv.port)
        page = ann.context.new_page()  # the same browser context: ann's cookies
        page.goto(url)
        page.wait_for_function("window.api !== 'pending' && window.socket !== 'pending'", timeout=20_000)
        # no Access-Control-Allow-Origin for it: the history, its search and its export stay unread
        assert page.evaluate("window.api") == dict.fromkeys(READ_PATHS, "blocked")
        assert page.evaluate("window.socket") == "refused"
        # while ann's own page (her origin, her cookie) reads each of them, the secret message too
        for path in READ_PATHS:
            status, text = ann.evaluate("p => fetch(p).then(async r => [r.status, await r.text()])", path)
            assert status == 200 and "the secret plan" in text, (path, status, text[:200])
    finally:
        if site is not None:
            site.close()
        srv.stop()


def test_a_listed_origin_with_the_cookie_but_no_ticket_is_refused(tmp_path: Path, people: People) -> None:
    srv = None
    site = StaticSite(tmp_path / "site")
    origin = site.origin
    try:
        srv = start_server(tmp_path, args=("--auth", "ann:pw-ann", "--allowed-origins", origin))
        url = site.page(
            "index.html",
            f"""<!doctype html><script>
window.socket = "pending";
const ws = new WebSocket("ws://127.0.0.1:{srv.port}/ws");
ws.onmessage = (e) => {{ window.socket = "frame:" + e.data; }};
ws.onopen = () => ws.send(JSON.stringify({{type: "join", payload: {{user: "x"}}}}));
ws.onerror = () => {{ if (window.socket === "pending") window.socket = "refused"; }};
</script>""",
        )
        ann = log_in(people, srv.url, "ann", "pw-ann")
        expect_state(ann, "connected")
        page = ann.context.new_page()
        page.goto(url)
        page.wait_for_function("window.socket !== 'pending'", timeout=20_000)
        assert page.evaluate("window.socket") == "refused"
        # why: the same handshake by hand, with ann's session cookie and the listed Origin
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in ann.context.cookies(srv.url))

        async def by_hand() -> tuple[int, bytes]:
            try:
                await connect(srv.ws_url, origin=origin, additional_headers={"Cookie": cookie})
            except InvalidStatus as exc:
                return exc.response.status_code, exc.response.body or b""
            return 101, b""

        status, body = run(by_hand())
        assert status == 403 and b"no valid ticket" in body, (status, body)
        assert "ASGI callable returned without completing handshake" not in srv.log_text()
    finally:
        site.close()
        if srv is not None:
            srv.stop()


def xff_connections(url: str, n: int) -> int:
    """Open n sockets from 127.0.0.1, each claiming another client address; count the working ones."""

    async def go() -> int:
        socks, working = [], 0
        for i in range(n):
            try:
                ws = await connect(url, open_timeout=5, additional_headers={"X-Forwarded-For": f"10.9.{i}.1"})
            except InvalidStatus:
                continue
            socks.append(ws)
            try:
                await ws.send(json.dumps({"type": "ping"}))
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                working += frame["type"] == "pong"
            except ConnectionClosed:
                pass
        for ws in socks:
            await ws.close()
        return working

    return run(go())


@pytest.mark.parametrize("command", ["python", "uvicorn"])
def test_x_forwarded_for_from_loopback_does_not_dodge_the_address_cap(tmp_path: Path, command: str) -> None:
    env = {"CHAT_MAX_CONN_PER_IP": "20", "CHAT_CONN_RATE": "0"}
    srv = start_server(
        tmp_path, env=env, command=[*uvicorn_command(), *readme_uvicorn_flags()] if command == "uvicorn" else None
    )
    try:
        working = xff_connections(srv.ws_url, 25)
        assert working == 20, working  # the cap counts the real peer, 127.0.0.1
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python gradio_app.py` as it starts by default, for the checks below that change nothing in it."""
    srv = start_server(tmp_path_factory.mktemp("app"))
    yield srv
    srv.stop()


def test_dns_rebinding_is_refused_for_gradio_pages_too(app: ServerProcess) -> None:
    for path in ("/", "/healthz", "/chat"):
        req = urllib.request.Request(app.url + path, headers={"Host": f"evil.test:{app.port}"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 400, path
    with urllib.request.urlopen(f"http://localhost:{app.port}/", timeout=10) as r:
        assert r.status == 200


@pytest.mark.parametrize("command", ["python", "uvicorn"])
def test_a_corrupt_database_stops_the_gradio_app_with_one_line(tmp_path: Path, command: str) -> None:
    db = tmp_path / "chat.db"
    db.write_bytes(b"\x00garbage, not SQLite\x00" * 200)
    port = str(free_port())
    argv = (
        [*uvicorn_command(), "--port", port]
        if command == "uvicorn"
        else [sys.executable, "gradio_app.py", "--port", port, "--db", str(db)]
    )
    env = {"CHAT_DB": str(db), "GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin"}
    import os

    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    out = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0, out
    assert any(str(db) in line and "not a database" in line for line in out), out
    assert not any("Traceback" in line or "7861" in line for line in out), out


def test_a_fragmented_message_over_max_frame_closes_with_1009_under_gradio(app: ServerProcess) -> None:
    assert run(fragmented_close_code(app.ws_url)) == 1009


def test_gradio_still_builds_its_uvicorn_config_the_way_chat_uvicorn_expects() -> None:
    """gradio_app.chat_uvicorn replaces uvicorn.Config while demo.launch runs; it relies
    on Gradio's start_server building its server through `uvicorn.Config(app=...)`."""
    import ast

    module_source = (gradio_dir() / "http_server.py").read_text()
    (start_server_def,) = [
        node
        for node in ast.parse(module_source).body
        if isinstance(node, ast.FunctionDef) and node.name == "start_server"
    ]
    source = ast.get_source_segment(module_source, start_server_def) or ""
    assert "uvicorn.Config(" in source and "app=app" in source


def test_one_message_cannot_reorder_the_page(app: ServerProcess, people: People) -> None:
    """A U+202E (right-to-left override) in one message stays inside it: every name
    and text is its own bidi island, and the next message reads left to right."""

    page = people.open(app.url + "/chat")
    join(page, "bidi")
    say(page, "abc \u202edef")
    say(page, "after it")
    expect_message(page, "after it")
    styles = page.evaluate("""() => Array.from(document.querySelectorAll(
        '[data-testid="chat-messages"] li[data-id] .chat-text, ' +
        '[data-testid="chat-messages"] li[data-id] .chat-author'))
        .map(el => [el.dir, getComputedStyle(el).unicodeBidi])""")
    assert styles and all(s == ["auto", "isolate"] for s in styles), styles
    people.shot(page, "bidi")
