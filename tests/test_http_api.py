"""The HTTP API and the edge, in-process (Starlette's TestClient: no server to
start): what docs/protocol.md promises about paging, /healthz counts, origins on a
Space, frame sizes and flood forgiveness."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from chat_core import limits
from chat_core.settings import Settings
from chat_core.web import create_app

OFF = dict(rate=0, join_rate=0, frame_rate=0, ip_rate=0, ip_join_rate=0, conn_rate=0, room_rate=0, name_rate=0,
           max_conn_per_ip=0, name_reserve=0)


def client(**settings) -> TestClient:
    return TestClient(create_app(Settings(db=":memory:", **{**OFF, **settings})), base_url="http://127.0.0.1")


def post(ws, n: int) -> None:
    for i in range(n):
        ws.send_text(json.dumps({"type": "msg", "payload": {"text": f"m{i}"}}))
    seen = 0
    while seen < n:
        if json.loads(ws.receive_text())["type"] == "msg":
            seen += 1


def until(ws, kind: str) -> dict:
    while True:
        frame = json.loads(ws.receive_text())
        if frame["type"] == kind:
            return frame


def join(ws, user: str, **extra) -> dict:
    ws.send_text(json.dumps({"type": "join", "payload": {"user": user, **extra}}))
    while True:
        frame = json.loads(ws.receive_text())
        if frame["type"] in ("welcome", "error"):
            return frame


def test_history_pages_newest_first_without_since_and_forward_with_it() -> None:
    with client() as c, c.websocket_connect("/ws") as ws:
        join(ws, "pager")
        post(ws, 30)
        page = c.get("/api/rooms/lobby/messages", params={"limit": 5}).json()["messages"]
        assert [m["id"] for m in page] == [26, 27, 28, 29, 30]  # the newest 5, oldest first
        forward = c.get("/api/rooms/lobby/messages", params={"since": 10, "limit": 3}).json()["messages"]
        assert [m["id"] for m in forward] == [11, 12, 13]
        assert c.get("/api/rooms/lobby/messages", params={"limit": 1001}).status_code == 422  # limit ≤ 1000
        assert c.get("/api/rooms/-bad/messages").status_code == 422
        health = c.get("/healthz").json()
        assert health["messages"] == 30 and 1 <= health["commits"] <= 30


def test_the_spaces_own_origin_may_open_the_socket_and_others_not() -> None:
    env = {"SPACE_ID": "me/chat", "SPACE_HOST": "me-chat.hf.space"}
    settings = Settings.from_env(env, **{**OFF, "db": ":memory:"})
    assert settings.trust_proxy == "first"
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        with c.websocket_connect("/ws", headers={"origin": "https://me-chat.hf.space"}) as ws:
            assert join(ws, "space")["type"] == "welcome"
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect("/ws", headers={"origin": "https://other-chat.hf.space"}) as ws:
                ws.receive_text()


def test_a_frame_just_under_max_frame_is_read_and_one_over_closes_1009() -> None:
    with client(max_frame=4096) as c, c.websocket_connect("/ws") as ws:
        join(ws, "big")
        frame = json.dumps({"type": "msg", "payload": {"text": ""}})
        just_under = frame.replace('""', '"' + "x" * (4096 - len(frame)) + '"')
        assert len(just_under.encode()) == 4096
        ws.send_text(just_under)
        assert until(ws, "error")["code"] == "text_too_long"  # read and answered, not closed
        ws.send_text(just_under.replace('"x', '"xx'))
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1009


def test_flood_refusals_are_forgiven_at_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    flood = limits.Flood(rate=5, limit=20)
    assert not any(flood.strike() for _ in range(20))
    assert flood.strike()  # the 21st refusal in the same instant: flooding
    flood = limits.Flood(rate=5, limit=20)
    for _ in range(100):  # 5 refusals a second, each second: forgiven as fast as they come
        for _ in range(5):
            assert not flood.strike()
        now[0] += 1.0
