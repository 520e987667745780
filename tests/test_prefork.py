"""The suite's forked servers (prefork.py) are the servers a user starts: the same log,
the same answers, the same exit on SIGTERM as ``python -m chat_core`` started the
ordinary way; and what a fork could get wrong is started the ordinary way."""

import json
import os
import signal
import subprocess
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
        ([py, "-m", "uvicorn", "--workers=2", "app:app"], env, False),
        ([py, "-m", "uvicorn", "--reload", "app:app"], env, False),
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
        assert srv.proc.poll() is None and srv.proc.pid != os.getpid()
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


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "popen"])
def test_ctrl_c_ends_a_forked_server_as_it_ends_python(tmp_path, monkeypatch, forked):
    """SIGINT: uvicorn stops, then re-raises it; Python prints the KeyboardInterrupt and ends by the signal (-2)."""
    monkeypatch.setattr("servers.PREFORK", forked)
    srv = ServerProcess(log_path=tmp_path / "log").start()
    assert isinstance(srv.proc, prefork.Forked) is forked
    assert srv.stop(signal.SIGINT) == -signal.SIGINT
    log = srv.log_text()
    assert "Finished server process" in log and log.rstrip().endswith("KeyboardInterrupt")
    assert "ForkServerProcess" not in log  # not multiprocessing's report of a process that raised


def test_a_forked_server_has_the_path_of_a_plain_python(tmp_path):
    """Not the test process's (tests/ and what pytest adds): a lazy import finds what it would find."""
    script = tmp_path / "where.py"
    script.write_text("import sys\nprint(sys.path)\n")
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=10).stdout
    forked = prefork.Forked([sys.executable, str(script)], dict(os.environ), str(tmp_path), str(tmp_path / "log"))
    assert forked.wait(10) == 0
    assert (tmp_path / "log").read_text() == plain
