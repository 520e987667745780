"""The suite's forked servers (prefork.py) are the servers a user starts: the same log,
the same answers, the same exit on SIGTERM as ``python -m chat_core`` started the
ordinary way; and what a fork could get wrong is started the ordinary way."""

import json
import os
import signal
import sys
import urllib.request

import pytest

import prefork
from servers import ServerProcess


def test_forkable_only_where_a_fork_runs_what_python_would():
    env = dict(os.environ)
    py = sys.executable
    assert prefork.forkable([py, "-m", "chat_core", "--port", "1"], env, preexec=False)
    assert prefork.forkable([py, "gradio_app.py"], {**env, "CHAT_RATE": "9", "PYTHONUNBUFFERED": "1"}, preexec=False)
    refused = [
        ([py, "-m", "chat_core"], env, True),  # a preexec_fn (resource limits) runs before Python starts
        ([py, "-m", "chat_core", "--workers", "2"], env, False),  # processes of its own
        ([py, "-c", "print(1)"], env, False),
        ([py, "-X", "dev", "-m", "chat_core"], env, False),
        (["/usr/bin/env", "python", "-m", "chat_core"], env, False),
        ([py, "-m", "chat_core"], {**env, "PYTHONPATH": "/elsewhere"}, False),  # read at import, already done
        ([py, "-m", "chat_core"], {k: v for k, v in env.items() if k != "PATH"}, False),
    ]
    for command, e, preexec in refused:
        assert not prefork.forkable(command, e, preexec), command


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "popen"])
def test_a_forked_server_is_the_server_a_user_starts(tmp_path, monkeypatch, forked):
    monkeypatch.setattr("servers.PREFORK", forked)
    srv = ServerProcess(log_path=tmp_path / "log")
    with srv:
        assert isinstance(srv.proc, prefork.Forked) is forked
        with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as r:
            assert json.load(r)["status"] == "ok"
        pid = srv.proc.pid
        assert pid != os.getpid() and os.getpgid(pid) > 0
        code = srv.stop(signal.SIGTERM)
    assert code == -signal.SIGTERM  # as Popen reports a Python killed by the signal it re-raises
    log = srv.log_text()
    assert f"Uvicorn running on http://127.0.0.1:{srv.port}" in log
    assert "Application startup complete" in log and "Finished server process" in log


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "popen"])
def test_a_forked_server_reads_its_own_settings(tmp_path, monkeypatch, forked):
    """Its environment and argv are its own, not the forkserver's: a bad value stops it with the one line."""
    monkeypatch.setattr("servers.PREFORK", forked)
    srv = ServerProcess(env={"CHAT_REQUIRE_ORIGIN": "ture"}, log_path=tmp_path / "log")
    with pytest.raises(RuntimeError, match="server exited with 1"):
        srv.start()
    assert isinstance(srv.proc, prefork.Forked) is forked
    line = "error: setting --require-origin (CHAT_REQUIRE_ORIGIN): 'ture' is not a boolean"
    assert line in srv.log_text()
    srv.stop()
