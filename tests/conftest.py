"""Fixtures shared by the test modules (pyproject.toml's pytest `pythonpath` makes the repository
root and tests/ importable: chat_core, gradio_app, servers, wsclient, browsers)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from browsers import CHROMIUM, CHROMIUM_ARGS, IMPORT_ERROR, Browser, People, missing, sync_playwright
from servers import ServerProcess


@pytest.fixture
def server(tmp_path):
    """A real chat server (uvicorn, SQLite in tmp_path) on a free port."""
    srv = ServerProcess(["--db", str(tmp_path / "chat.db")], log_path=tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one per test module (skips, or fails under CI=true, without it)."""
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
