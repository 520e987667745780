"""Start real chat servers for tests: a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import prefork
from chat_core.settings import limits_off

ROOT = Path(__file__).resolve().parent.parent
# Abuse limits off, and names not reserved after their holder leaves: tests about
# something else reconnect and send in bursts on purpose (the limit tests set their own).
NO_LIMITS = limits_off()
# Servers are forks of a process that has imported them (prefork.py); PREFORK=0 starts each the ordinary way.
PREFORK = os.environ.get("PREFORK", "1") != "0"


ADMIN_TOKEN = "moderator-token-0123456789"  # the --admin-token of the `mod` fixture (conftest.py)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m chat_core`` (or any command given) on 127.0.0.1:port; restartable on the same port."""

    def __init__(
        self,
        args: Sequence[str] = (),
        env: Optional[dict] = None,
        port: Optional[int] = None,
        command: Optional[Sequence[str]] = None,
        log_path: Optional[Path] = None,
        preexec_fn=None,
    ) -> None:
        self.port = port or free_port()
        self.args = list(args)
        # Abuse limits are off unless a test sets them: most tests send in bursts on purpose.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **NO_LIMITS, **(env or {})}
        self.command = list(command) if command else [sys.executable, "-m", "chat_core"]
        if (
            not command
            and not {"--db", "--redis-url"} & set(self.args)
            and not {"CHAT_DB", "CHAT_REDIS_URL"} & set(self.env)
        ):
            # never the checkout's chat.db: tests run side by side (pytest-xdist), and one file is one server;
            # a folder of its own, kept across restarts of this server
            self.args += ["--db", str(Path(tempfile.mkdtemp(prefix="chat-test-")) / "chat.db")]
        self.log_path = log_path
        self.preexec_fn = preexec_fn  # run in the child before the server starts (resource limits)
        self.proc: Optional[subprocess.Popen | prefork.Forked] = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Optional[str]:
        """The SQLite file given with ``--db``; None on Redis or without the flag."""
        return self.args[self.args.index("--db") + 1] if "--db" in self.args else None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30.0, health: str = "/healthz") -> ServerProcess:
        argv = [*self.command, "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        if PREFORK and prefork.forkable(argv, self.env, self.preexec_fn is not None):
            self._log = None
            self.proc = prefork.Forked(argv, self.env, str(ROOT), str(self.log_path) if self.log_path else None)
        else:
            self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + health, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer {health} within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
