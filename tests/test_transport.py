"""chat_core.transport reads uvicorn internals: it checks them at startup and, when
they are not what it was written against, serves through uvicorn's own protocol."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path

from chat_core import transport
from servers import ServerProcess
from wsclient import Client


def test_the_internals_read_are_all_in_this_uvicorn() -> None:
    assert transport.missing_internals() == []
    assert transport.websocket_protocol() is transport.ChatWebSocketProtocol


def test_a_protocol_without_them_is_found_out() -> None:
    class Older:
        def handle_connect(self) -> None:
            self.queue = self.transport = None

        def send(self) -> None:
            pass

    missing = transport.missing_internals(Older)
    assert {"resume_writing", "pause_writing", "writable", "close_sent"} <= set(missing)
    assert "queue" not in missing and "send" not in missing


LAUNCHER = """
import sys
import chat_core.transport as t
t.missing_internals = lambda base=None: ["writable"]  # as if uvicorn had changed
from chat_core.__main__ import main
main(sys.argv[1:])
"""


def test_without_them_the_chat_falls_back_to_asgi_sends_with_one_warning(tmp_path: Path) -> None:
    srv = ServerProcess(["--db", str(tmp_path / "c.db")], command=[sys.executable, "-c", LAUNCHER],
                        log_path=tmp_path / "s.log")

    async def go() -> dict:
        a, b = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
        await a.join("a")
        await b.join("b")
        await a.say("through plain sends")
        assert (await b.recv_type("msg"))["payload"]["text"] == "through plain sends"
        with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as r:
            return json.loads(r.read())
    with srv:
        health = asyncio.run(go())
    assert health["connections"] == 2 and health["frame_writer"] == 0
    warnings = [line for line in srv.log_text().splitlines() if "chat_core.transport reads" in line]
    assert len(warnings) == 1 and "writable" in warnings[0], srv.log_text()
