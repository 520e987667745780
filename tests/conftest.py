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
