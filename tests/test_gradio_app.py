"""gradio_app.py without a browser.

- `python gradio_app.py` and `uvicorn gradio_app:app` serve the same routes;
- the chat's routes live on Gradio's port without hiding Gradio's own (/assets);
- `--share` asks Gradio's tunnel client for this server's host and port (a stand-in
  tunnel here: there is no internet), and the UI and /ws answer through it;
- GRADIO_SSR_MODE=true (as on Spaces) does not put a proxy without WebSockets in front;
- Spaces: bind address and /data storage;
- the widget markup, the README front matter, Python 3.10 syntax.

The server helpers here are used by the browser tests too (test_browser_chat.py, test_browser_servers.py, ...).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from ci import missing
from servers import ROOT, ServerProcess

SERVER_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
TESTIDS = [
    "chat-name",
    "chat-join",
    "chat-input",
    "chat-send",
    "chat-messages",
    "chat-users",
    "chat-status",
    "chat-room",
]


# --- helpers (shared with the browser tests) ----------------------------------


def start_server(
    tmp_path: Path,
    *,
    command: Optional[list[str]] = None,
    args: tuple[str, ...] = (),
    env: Optional[dict[str, str]] = None,
    health: str = "/healthz",
    name: str = "server",
) -> ServerProcess:
    """`python gradio_app.py --db <tmp>/<name>.db` (or `command`) on a free port, answering `health`."""
    db_args = ["--db", str(tmp_path / f"{name}.db")] if command is None else []
    srv = ServerProcess(
        [*db_args, *args],
        command=command or [sys.executable, "gradio_app.py"],
        env={**SERVER_ENV, **(env or {})},
        log_path=tmp_path / f"{name}.log",
    )
    srv.start(timeout=120, health=health)
    return srv


def uvicorn_command() -> list[str]:
    return [sys.executable, "-m", "uvicorn", "gradio_app:app"]


FRPC_STAND_IN = '''#!{python}
"""Stands in for Gradio's frpc share-tunnel client: records its arguments and relays
a new loopback port to the local host and port it was asked to share."""
import json, socket, sys, threading
args = sys.argv[1:]
with open({record!r}, "w") as f:
    json.dump(args, f)
local = (args[args.index("-i") + 1], int(args[args.index("-l") + 1]))
listener = socket.create_server(("127.0.0.1", 0))
print("start proxy success: http://127.0.0.1:%d" % listener.getsockname()[1], flush=True)
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
while True:
    client, _ = listener.accept()
    upstream = socket.create_connection(local)
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
'''


def start_shared_server(tmp_path: Path) -> tuple[ServerProcess, str, list[str]]:
    """`python gradio_app.py --share` with the stand-in tunnel client where Gradio looks
    for frpc (under HF_HOME). Returns the server, the public URL (http: the stand-in has
    no TLS) and the arguments Gradio started the tunnel client with."""
    from gradio import tunneling

    home = tmp_path / "hf"
    record = tmp_path / "frpc-args.json"
    binary = home / "gradio" / "frpc" / Path(tunneling.BINARY_PATH).name
    binary.parent.mkdir(parents=True)
    binary.write_text(FRPC_STAND_IN.format(python=sys.executable, record=str(record)))
    binary.chmod(0o755)
    srv = start_server(
        tmp_path,
        args=("--share",),
        env={
            "HF_HOME": str(home),
            "GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9",  # the stand-in never dials it
        },
    )
    deadline = time.monotonic() + 40
    found = None
    while time.monotonic() < deadline and not found:  # the tunnel starts after the server answers
        found = re.search(r"Running on public URL: https?://(127\.0\.0\.1:\d+)", srv.log_text())
        time.sleep(0.1)
    if not found:
        srv.stop()
        raise AssertionError(f"no share link was made; log:\n{srv.log_text()}")
    return srv, "http://" + found.group(1), json.loads(record.read_text())


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def ws_join(base_url: str, user: str, room: str = "lobby", origin: Optional[str] = None) -> dict:
    """Join over a real WebSocket at <base_url>/ws; return the welcome payload."""
    from websockets.asyncio.client import connect

    async def go() -> dict:
        async with connect(base_url.replace("http", "ws", 1) + "/ws", open_timeout=10, origin=origin) as ws:
            await ws.send(json.dumps({"type": "join", "payload": {"user": user, "room": room}}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] in ("welcome", "error"):
                    return frame

    frame = asyncio.run(go())
    assert frame["type"] == "welcome", frame
    return frame["payload"]


# --- one app from both commands ------------------------------------------------


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("both")
    launched = start_server(tmp, name="launch")
    try:
        served = start_server(tmp, command=uvicorn_command(), env={"CHAT_DB": str(tmp / "uvicorn.db")}, name="uvicorn")
    except BaseException:
        launched.stop()
        raise
    yield launched, served
    served.stop()
    launched.stop()


PATHS = [
    "/",
    "/healthz",
    "/api/rooms",
    "/api/rooms/lobby/messages?since=0",
    "/api/rooms/bad%20room/messages",
    "/chat",
    "/assets/chat.js",
    "/assets/chat.css",
    "/assets/page.html",
    "/assets/no-such-file.js",
    "/openapi.json",
    "/docs",
    "/config",
    "/theme.css",
    "/gradio_api/info",
    "/no-such-page",
]


@pytest.mark.timeout(300)
def test_python_and_uvicorn_serve_the_same_app(both) -> None:
    launched, served = both
    for path in PATHS:
        a, b = fetch(launched.url + path), fetch(served.url + path)
        assert (a[0], a[1]) == (b[0], b[1]), f"{path}: launch {a[:2]} vs uvicorn {b[:2]}"
    for srv in both:
        status, kind, body = fetch(srv.url + "/")
        assert status == 200 and kind.startswith("text/html")
        assert b"chat-widget" in body  # the widget is in the page's Gradio config
        build = re.search(rb"\./(assets/index-[\w-]+\.js)", body)
        assert build, "no Gradio build script in the page"
        assert fetch(srv.url + "/" + build.group(1).decode())[0] == 200, "Gradio's /assets is hidden"
        assert fetch(srv.url + "/assets/chat.js")[2] == (ROOT / "assets" / "chat.js").read_bytes()
        assert fetch(srv.url + "/chat")[2] == (ROOT / "assets" / "page.html").read_bytes()
        spec = json.loads(fetch(srv.url + "/openapi.json")[2])
        assert {"/api/rooms", "/api/rooms/{room}/messages", "/healthz"} <= set(spec["paths"])
        assert json.loads(fetch(srv.url + "/healthz")[2])["status"] == "ok"
        welcome = ws_join(srv.url, "probe")
        assert welcome["user"] == "probe" and welcome["room"] == "lobby"
    assert fetch(launched.url + "/openapi.json")[2] == fetch(served.url + "/openapi.json")[2]


@pytest.mark.timeout(180)
def test_ssr_mode_from_the_environment_keeps_the_chat_reachable(tmp_path: Path) -> None:
    """Spaces set GRADIO_SSR_MODE=true; Gradio's Node proxy would answer /healthz with a
    page and refuse the WebSocket upgrade, so the app renders in the browser instead."""
    srv = start_server(tmp_path, env={"GRADIO_SSR_MODE": "true"})
    try:
        status, kind, body = fetch(srv.url + "/healthz")
        assert status == 200 and kind == "application/json", (status, kind, body[:200])
        assert ws_join(srv.url, "ssr")["user"] == "ssr"
        assert fetch(srv.url + "/")[0] == 200
        assert "SSR" not in srv.log_text()
    finally:
        srv.stop()


@pytest.mark.timeout(180)
def test_share_asks_for_a_tunnel_to_this_host_and_port(tmp_path: Path) -> None:
    srv, public, args = start_shared_server(tmp_path)
    try:
        assert args[0] == "http"
        assert args[args.index("-i") + 1] == "127.0.0.1"
        assert args[args.index("-l") + 1] == str(srv.port)
        # through the tunnel: the page, the API and the WebSocket
        assert fetch(public + "/")[0] == 200
        assert json.loads(fetch(public + "/healthz")[2])["status"] == "ok"
        assert ws_join(public, "through-the-tunnel")["user"] == "through-the-tunnel"
        # a page on this app's own share link may open /ws; one on somebody else's may not
        origin = public.rstrip("/")
        assert ws_join(public, "from-the-link", origin=origin)["user"] == "from-the-link"
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as info:
            ws_join(public, "evil", origin="https://attacker.gradio.live")
        assert info.value.response.status_code == 403
    finally:
        srv.stop()


def raw_handshake(port: int) -> tuple[str, socket.socket]:
    """Open /ws by hand: (the response head, the socket), to see frames a client library would hide."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: permessage-deflate\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    return head.decode("latin-1").lower(), sock


@pytest.mark.timeout(180)
def test_launch_gives_websockets_the_chat_settings(tmp_path: Path) -> None:
    """Gradio's launch() starts uvicorn itself; the chat's ping interval and
    no-compression setting still reach the WebSocket layer."""
    srv = start_server(tmp_path, args=("--ping-interval", "0.5", "--ping-timeout", "5"))
    try:
        head, sock = raw_handshake(srv.port)  # from the first connection on (chat_uvicorn)
        with sock:
            assert head.startswith("http/1.1 101"), head
            assert "permessage-deflate" not in head, head
            started = time.monotonic()
            opcode = sock.recv(2)[0] & 0x0F  # the server says nothing before our join: a ping
            assert opcode == 0x9, f"expected a ping, got opcode {opcode:#x}"
            assert time.monotonic() - started < 3
    finally:
        srv.stop()


# --- pieces ------------------------------------------------------------------------


def test_chat_routes_claim_only_what_the_chat_serves() -> None:
    import gradio_app
    from chat_core.settings import Settings
    from chat_core.web import create_app

    routes = gradio_app.ChatRoutes(app=None, chat=create_app(Settings(db=":memory:"), gradio_app.ASSETS))

    def claims(path: str, kind: str = "http", method: str = "GET", root: str = "") -> bool:
        scope = {"type": kind, "path": root + path, "root_path": root, "headers": [], "query_string": b""}
        if kind == "http":
            scope["method"] = method
        return routes.claims(scope)

    for path in (
        "/api/rooms",
        "/api/rooms/lobby/messages",
        "/healthz",
        "/chat",
        "/openapi.json",
        "/docs",
        "/assets/chat.js",
        "/assets/chat.css",
    ):
        assert claims(path), path
        assert claims(path, root="/prefix"), path
    assert claims("/ws", kind="websocket") and claims("/ws", kind="websocket", root="/p")
    assert claims("/healthz", method="POST")  # the chat answers: 405
    for path in (
        "/",
        "/config",
        "/theme.css",
        "/gradio_api/info",
        "/assets/index-DphvyggB.js",
        "/assets/../gradio_app.py",
        "/assets/",
        "/chat/x",
        "/file=x",
    ):
        assert not claims(path), path
    assert not claims("/queue/join", kind="websocket")


def test_spaces_bind_everywhere_and_keep_history_in_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import chat_core.settings
    import gradio_app

    no_flags = gradio_app.parse_args([])
    assert gradio_app.bind_host(no_flags, {}) is None  # Gradio's default: 127.0.0.1
    assert gradio_app.bind_host(no_flags, {"SPACE_ID": "me/chat"}) == "0.0.0.0"
    assert gradio_app.bind_host(no_flags, {"SPACE_ID": "me/chat", "GRADIO_SERVER_NAME": "::"}) == "::"
    assert gradio_app.bind_host(gradio_app.parse_args(["--host", "10.1.2.3"]), {"SPACE_ID": "x"}) == "10.1.2.3"

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(chat_core.settings, "SPACE_DATA", data)  # the Space defaults' one place
    space = {"SPACE_ID": "me/chat"}
    assert gradio_app.settings_from(no_flags, space).db == str(data / "chat.db")
    assert gradio_app.settings_from(None, space).db == str(data / "chat.db")  # uvicorn gradio_app:app
    assert gradio_app.settings_from(no_flags, {}).db == "chat.db"  # not on a Space
    assert gradio_app.settings_from(no_flags, {**space, "CHAT_DB": "/x/y.db"}).db == "/x/y.db"
    assert gradio_app.settings_from(gradio_app.parse_args(["--db", "z.db"]), space).db == "z.db"
    monkeypatch.setattr(chat_core.settings, "SPACE_DATA", tmp_path / "missing")  # a Space without storage
    assert gradio_app.settings_from(no_flags, space).db == "chat.db"


def test_flags_cover_the_launch_options_and_the_chat_settings() -> None:
    import gradio_app

    args = gradio_app.parse_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--share",
            "--inbrowser",
            "--db",
            "a.db",
            "--history-limit",
            "7",
            "--max-text",
            "99",
        ]
    )
    assert (args.host, args.port, args.share, args.inbrowser) == ("0.0.0.0", 9000, True, True)
    settings = gradio_app.settings_from(args, {})
    assert (settings.db, settings.history_limit, settings.max_text) == ("a.db", 7, 99)
    assert gradio_app.server_options(gradio_app.chat_app(settings))["ssr_mode"] is False
    # --share allows no wildcard over everybody's share links: only this app's, once made
    assert settings.allowed_origins == ""
    both = gradio_app.settings_from(gradio_app.parse_args(["--share", "--allowed-origins", "https://a.example"]), {})
    assert both.allowed_origins == "https://a.example"
    logins = gradio_app.settings_from(gradio_app.parse_args(["--auth", "a:b,c:d"]), {})
    assert gradio_app.server_options(gradio_app.chat_app(logins))["auth"] == [("a", "b"), ("c", "d")]
    assert gradio_app.server_options(gradio_app.chat_app(settings))["auth"] is None


def test_widget_markup_is_one_piece_with_stable_hooks() -> None:
    import gradio_app

    html = gradio_app.WIDGET_HTML
    page = (ROOT / "assets" / "page.html").read_text()
    assert html.startswith("<section") and html.rstrip().endswith("</section>")
    assert html in page  # the plain page and the Gradio component show the same markup
    for testid in TESTIDS:
        assert f'data-testid="{testid}"' in html, testid
    assert "<script" not in html.lower()  # gr.HTML would not run it anyway
    # relative URLs only, so a path prefix (root_path) keeps working
    for url in re.findall(r'(?:href|src)="([^"]+)"', page + gradio_app.WIDGET_HEAD):
        assert not url.startswith(("/", "http:", "https:")), url
    assert re.search(r"assets/chat\.js\?v=\w+", gradio_app.WIDGET_HEAD)


def test_readme_front_matter_matches_the_pinned_gradio() -> None:
    import gradio

    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if not text.startswith("---"):
        text = (ROOT / "docs" / "app_readme_sections.md").read_text()
        text = text[text.index("---") :]
    front = text.split("---", 2)[1]
    fields = dict(line.split(":", 1) for line in front.strip().splitlines() if ":" in line)
    fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
    assert fields["sdk"] == "gradio"
    assert fields["app_file"] == "gradio_app.py"
    pinned = re.search(r"^gradio==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and fields["sdk_version"] == pinned.group(1) == gradio.__version__
    assert fields["python_version"].startswith("3.10")
    assert fields.get("title") and fields.get("emoji")


PROJECT_PY = ["gradio_app.py", "chat_core", "scripts", "tests", "bench"]
NEWER_THAN_310 = [
    r"\bimport tomllib\b",
    r"\bTaskGroup\b",
    r"\btyping\.Self\b",
    r"from typing import .*\bSelf\b",
    r"\bExceptionGroup\b",
    r"except\*",
    r"\bdatetime\.UTC\b",
    r"\basyncio\.timeout\(",
    r"\bStrEnum\b",
    r"\bNotRequired\b",
    r"\bLiteralString\b",
]


def test_runs_on_python_310() -> None:
    """Spaces default to Python 3.10: no syntax, module or call newer than that.

    Checked statically here (the parser in 3.10 mode, then vermin for library calls);
    test_imports_on_python_310 runs the app under 3.10 itself."""
    files = [p for name in PROJECT_PY for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))]
    for path in files:
        source = path.read_text()
        ast.parse(source, filename=str(path), feature_version=(3, 10))
        for pattern in NEWER_THAN_310:
            assert not re.search(pattern, source), f"{path} uses {pattern}, newer than Python 3.10"
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vermin; sys.exit(vermin.main())",
            "--target=3.10-",
            "--no-tips",
            "--violations",
            "--eval-annotations",
            *PROJECT_PY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout + found.stderr


def test_imports_on_python_310() -> None:
    """The app builds under a real Python 3.10 (PYTHON310: an interpreter with
    requirements.txt installed; .ci/run makes one from pyenv's 3.10). Without it this
    skips, except on CI, where it fails."""
    py310 = os.environ.get("PYTHON310")
    if not py310:
        missing("PYTHON310 is not set (a Python 3.10 with requirements.txt installed)")
    done = subprocess.run(
        [py310, "-c", "import gradio_app; print(type(gradio_app.app).__name__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **SERVER_ENV},
    )
    assert done.returncode == 0 and done.stdout.strip() == "ChatRoutes", done.stdout + done.stderr


def readme_uvicorn_flags() -> list[str]:
    """The flags the README gives `uvicorn gradio_app:app` to match `python gradio_app.py`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"`(--ws chat_core\.transport:ChatWebSocketProtocol[^`]*)`", text)
    assert found, "README no longer shows the uvicorn flags"
    return found.group(1).split()


def writers_while_joined(base_url: str) -> tuple[int, int]:
    """(connections, of which written to by the chat's frame writer) while one client is joined."""
    from websockets.asyncio.client import connect

    async def go() -> tuple[int, int]:
        async with connect(base_url.replace("http", "ws", 1) + "/ws", open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "join", "payload": {"user": "probe", "room": "fw"}}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "welcome":
                pass
            health = json.loads(fetch(base_url + "/healthz")[2])
            return health["connections"], health["frame_writer"]

    return asyncio.run(go())


@pytest.mark.timeout(300)
def test_every_documented_command_writes_frames_straight_to_the_socket(both, tmp_path) -> None:
    """`python gradio_app.py` and `uvicorn gradio_app:app` with the README's flags use the
    chat's WebSocket layer; plain `uvicorn gradio_app:app` still chats, through ASGI sends."""
    launched, plain = both
    assert writers_while_joined(launched.url) == (1, 1)
    assert writers_while_joined(plain.url) == (1, 0)
    flagged = start_server(
        tmp_path,
        command=[*uvicorn_command(), *readme_uvicorn_flags()],
        env={"CHAT_DB": str(tmp_path / "flagged.db")},
        name="flagged",
    )
    try:
        assert writers_while_joined(flagged.url) == (1, 1)
        ws_join(flagged.url, "second")  # and it chats
    finally:
        flagged.stop()


@pytest.mark.timeout(120)
def test_a_second_app_on_the_same_database_is_refused_by_name(both) -> None:
    """Gradio moves a second `python gradio_app.py` to the next free port; on the same
    chat.db it would reuse the first one's message ids, so it stops at once and says why."""
    launched, _ = both
    db = launched.db
    assert db is not None
    second = subprocess.run(
        [sys.executable, "gradio_app.py", "--db", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **SERVER_ENV},
    )
    assert second.returncode == 1
    assert f"{db} is in use by another chat server (pid {launched.proc.pid})" in second.stderr
    assert "Running on" not in second.stdout
    ws_join(launched.url, "still-here")  # the first one goes on
