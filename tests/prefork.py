"""Start a test's server by forking a process that has already imported it.

The suite starts about two hundred servers and is CPU-bound on two cores: importing
FastAPI is most of a ``python -m chat_core`` start, importing Gradio most of a
``python gradio_app.py`` one. multiprocessing's forkserver imports them once per test
worker; each server is then a fork of it that runs the very command line it was given
(``runpy``, with that argv, environment, working directory and log), in a process of
its own on a port of its own: the same code from ``main`` on, only its imports done
before. What a fork could get wrong is started the ordinary way instead
(:func:`forkable` says which).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Optional

# What the commands import (not the modules they run: runpy would warn that those were imported)
PRELOAD = ["chat_core.web", "chat_core.serve", "chat_core.gradio_support", "gradio", "uvicorn.main"]
# Read by the servers when they start, never at import (gradio/analytics.py reads its one
# in a function): these may differ from the forkserver's.
READ_AT_START = ("CHAT_", "PYTHONUNBUFFERED", "GRADIO_ANALYTICS_ENABLED", "PYTEST_")

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)
_forkserver_env: Optional[dict[str, str]] = None  # what its imports saw: os.environ when it started
_plain_path: list[str] = []  # sys.path of a plain `python` here, without its first entry (the script's place)


def _started() -> dict[str, str]:
    """Start the forkserver (once, at the first server: a worker that starts none pays nothing)."""
    global _forkserver_env
    if _forkserver_env is None:
        _forkserver_env = dict(os.environ)
        probe = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"]
        _plain_path[:] = json.loads(subprocess.check_output(probe, text=True))
        multiprocessing.forkserver.ensure_running()
    return _forkserver_env


def forkable(command: Sequence[str], env: Mapping[str, str], preexec: bool) -> bool:
    """A fork runs ``command`` as Python would if it is ``python -m mod ...`` or
    ``python script.py ...``, needs nothing run before it starts (``preexec_fn``), starts no
    worker processes of its own, and differs in its environment only where a server reads
    it at start (an import done earlier would have seen another value)."""
    if preexec or len(command) < 2 or command[0] != sys.executable:
        return False
    if any(arg.startswith(("--workers", "--reload")) for arg in command):
        return False
    if command[1] != "-m" and (command[1].startswith("-") or not command[1].endswith(".py")):
        return False
    seen = _started()
    changed = {k for k in set(env) | set(seen) if env.get(k) != seen.get(k)}
    return all(k.startswith(READ_AT_START) for k in changed)


def _run(argv: list[str], env: dict[str, str], cwd: str, log: Optional[str], path: list[str]) -> None:
    """In the fork: become ``python *argv`` with this environment, directory, path and output;
    end as Python ends (atexit handlers run; an unhandled Ctrl-C ends it by SIGINT)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    out = os.open(log or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = False
    try:
        if argv[0] == "-m":  # as Python does: the current directory first on the path
            sys.path[:] = [cwd, *path]
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:  # the script's directory first
            sys.path[:] = [os.path.dirname(os.path.abspath(argv[0])), *path]
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except KeyboardInterrupt:  # as Python: the traceback, the atexit handlers, then death by SIGINT
        traceback.print_exc()
        interrupted = True
    finally:
        atexit._run_exitfuncs()
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


class Forked:
    """The part of :class:`subprocess.Popen` that ServerProcess and the tests use, for a fork."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: str, log: Optional[str]) -> None:
        self.args = list(command)
        _started()  # the forkserver, and the plain path the fork is given, whoever forks first
        # daemon: a server a test left running is stopped when its test process exits, not waited for
        self._process = _context.Process(
            target=_run, args=(list(command[1:]), dict(env), cwd, log, _plain_path), daemon=True
        )
        self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]

    @property
    def returncode(self) -> Optional[int]:
        return self._process.exitcode

    def poll(self) -> Optional[int]:
        return self._process.exitcode

    def wait(self, timeout: Optional[float] = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # it ended by itself, as Popen.send_signal allows
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
