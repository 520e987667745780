import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import ServerProcess  # noqa: E402


@pytest.fixture
def server(tmp_path):
    """A real chat server (uvicorn, SQLite in tmp_path) on a free port."""
    srv = ServerProcess(["--db", str(tmp_path / "chat.db")], log_path=tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long-running soak test (run in CI)")
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright")
    config.addinivalue_line("markers", "redis: needs a redis-server binary")
