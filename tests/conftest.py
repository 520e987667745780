"""Fixtures shared by the test modules (pyproject.toml's pytest `pythonpath` makes the repository
root and tests/ importable: chat_core, gradio_app, servers, wsclient, browsers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from browsers import CHROMIUM, CHROMIUM_ARGS, IMPORT_ERROR, Browser, People, missing, sync_playwright
from redis_server import RedisServer
from servers import ADMIN_TOKEN, ServerProcess

ENGINES = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (skips, or fails on CI, without the binary)."""
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()  # a test stopped it
    redis_server.resume()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=ENGINES)
def engine_args(request: pytest.FixtureRequest, tmp_path) -> list[str]:
    """The flags that put a server on each engine in turn: SQLite in tmp_path, or the session's Redis."""
    if request.param == "redis":
        return ["--redis-url", request.getfixturevalue("redis_url")]
    return ["--db", str(tmp_path / "chat.db")]


@pytest.fixture
def mod(tmp_path, engine_args) -> Iterator[ServerProcess]:
    """A real server with an admin token (servers.ADMIN_TOKEN), on each engine in turn."""
    with ServerProcess([*engine_args, "--admin-token", ADMIN_TOKEN], log_path=tmp_path / "server.log") as srv:
        yield srv


@pytest.fixture
def two(redis_url: str, tmp_path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two chat processes on the same Redis."""
    with ExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            srv = ServerProcess(["--redis-url", redis_url], log_path=tmp_path / f"{name}.log")
            stack.enter_context(srv)
            servers.append(srv)
        yield servers[0], servers[1]


@pytest.fixture
def server(tmp_path, engine_args):
    """A real chat server (uvicorn) on a free port, on each engine in turn."""
    srv = ServerProcess(engine_args, log_path=tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one per test module (skips, or fails on CI, without it)."""
    if IMPORT_ERROR is not None:
        missing(f"playwright is not installed: {IMPORT_ERROR}")
    if not os.path.exists(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def people(browser: Browser, request: pytest.FixtureRequest) -> Iterator[People]:
    """People with a page each (`people.open(url)`); no dialog and no uncaught page error allowed."""
    crowd = People(browser, request.node.name)
    yield crowd
    crowd.close()
    assert not crowd.dialogs, f"a dialog opened: {crowd.dialogs}"
    assert not crowd.errors, f"uncaught errors in the page: {crowd.errors}"


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long-running soak test (run in CI)")
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright")
    config.addinivalue_line("markers", "redis: needs a redis-server binary")


# Test files by how long they take alone (seconds of wall time, `-n 0`, measured on the 2-core machine
# at 763d69c), longest first. Under `--dist loadfile` a worker takes whole files in the order they are
# collected (pyproject's `--no-loadscope-reorder` keeps that order: xdist's own sorts by test count,
# which put the few long tests of bench, the browser servers and the soak last and left the two cores
# half idle for the suite's last ~50 s). Starting the long files first lets the short ones fill in.
LONGEST_FIRST = [
    "test_browser_servers.py",  # 66
    "test_bench.py",  # 66
    "test_redis.py",  # 57
    "test_browser_chat.py",  # 49
    "test_soak.py",  # 45
    "test_gradio_attacks.py",  # 42
    "test_activity.py",  # 40
    "test_bots.py",  # 33
    "test_ws_server.py",  # 30
    "test_attacks.py",  # 27
    "test_dashboard_moderation.py",  # 26
    "test_moderation.py",  # 24
    "test_gradio_app.py",  # 24
    "test_sending.py",  # 23
    "test_gradio_security.py",  # 20
    "test_fuzz.py",  # 19
    "test_security.py",  # 18
    "test_slowloris.py",  # 15
    "test_history.py",  # 15
    "test_promises.py",  # 13
    "test_client.py",  # 12
    "test_changes.py",  # 11
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long files first (LONGEST_FIRST), then the rest in their usual order; within a file,
    the tests keep theirs."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
