"""Reference 2: the seed README's design, "the before".

FastAPI on uvicorn with default settings; a ConnectionManager holding a dict
of WebSocket objects; `broadcast` builds the frame with the standard json
module and awaits `send_text` on each socket in turn; history is an in-memory
list trimmed to 100. Every join and leave is announced to everyone else, one
awaited send at a time (the seed has no coalescing, so a crowd is quadratic).

Added only what the benchmark's client needs to speak docs/protocol.md: rooms
(one dict of sockets per room), the `welcome` frame after the history, and the
`id`/`room` fields of a `msg`. No persistence.

    python bench/ref_seed.py --port 8766 [--max-seconds 1800]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

HISTORY_LIMIT = 100
app = FastAPI()


class ConnectionManager:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, WebSocket]] = {}
        self.names: dict[str, dict[str, str]] = {}

    def connect(self, room: str, user_id: str, user: str, websocket: WebSocket) -> None:
        self.rooms.setdefault(room, {})[user_id] = websocket
        self.names.setdefault(room, {})[user_id] = user

    def disconnect(self, room: str, user_id: str) -> None:
        self.rooms.get(room, {}).pop(user_id, None)
        self.names.get(room, {}).pop(user_id, None)

    async def broadcast(self, room: str, message: dict, exclude: str | None = None) -> None:
        data = json.dumps(message)
        for user_id, ws in list(self.rooms.get(room, {}).items()):
            if user_id == exclude:
                continue
            try:
                await ws.send_text(data)
            except Exception:
                self.disconnect(room, user_id)


manager = ConnectionManager()
MESSAGE_HISTORY: dict[str, list[dict]] = {}
LAST_ID: dict[str, int] = {}


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    user_id = str(uuid.uuid4())
    username = None
    room = None
    try:
        while True:
            data = await websocket.receive_text()
            try:
                obj = json.loads(data)
            except Exception:
                await websocket.send_text(json.dumps({"type": "error", "code": "bad_json", "message": "invalid json"}))
                continue
            typ = obj.get("type")
            payload = obj.get("payload") or {}
            if typ == "join":
                if room is not None:
                    manager.disconnect(room, user_id)
                    await manager.broadcast(
                        room, {"type": "leave", "payload": {"user": username, "ts": time.time(), "room": room}}
                    )
                username = str(payload.get("user", "anonymous"))[:32]
                room = str(payload.get("room", "lobby"))
                for m in MESSAGE_HISTORY.get(room, []):
                    await websocket.send_text(json.dumps(m))
                manager.connect(room, user_id, username, websocket)
                users = sorted(manager.names[room].values())
                await websocket.send_text(
                    json.dumps(
                        {
                            "type": "welcome",
                            "payload": {
                                "user": username,
                                "room": room,
                                "ts": time.time(),
                                "users": users[:200],
                                "online": len(users),
                                "last_id": LAST_ID.get(room, 0),
                                "gap": None,
                                "token": "",
                            },
                        }
                    )
                )
                await manager.broadcast(
                    room,
                    {"type": "join", "payload": {"user": username, "ts": time.time(), "room": room}},
                    exclude=user_id,
                )
            elif typ == "msg":
                if room is None:
                    await websocket.send_text(
                        json.dumps({"type": "error", "code": "not_joined", "message": "join first"})
                    )
                    continue
                text = payload.get("text", "")
                LAST_ID[room] = LAST_ID.get(room, 0) + 1
                message = {
                    "type": "msg",
                    "payload": {"user": username, "text": text, "ts": time.time(), "id": LAST_ID[room], "room": room},
                }
                history = MESSAGE_HISTORY.setdefault(room, [])
                history.append(message)
                if len(history) > HISTORY_LIMIT:
                    del history[: len(history) - HISTORY_LIMIT]
                await manager.broadcast(room, message)
            elif typ == "ping":
                await websocket.send_text(json.dumps({"type": "pong", "ts": time.time()}))
            else:
                await websocket.send_text(
                    json.dumps({"type": "error", "code": "unknown_type", "message": "unknown type"})
                )
    except WebSocketDisconnect:
        pass
    finally:
        if room is not None:
            manager.disconnect(room, user_id)
            await manager.broadcast(
                room, {"type": "leave", "payload": {"user": username, "ts": time.time(), "room": room}}
            )


if __name__ == "__main__":
    import uvicorn

    ap = argparse.ArgumentParser(description="seed-design reference chat server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    a = ap.parse_args()
    stopper = threading.Timer(a.max_seconds, os._exit, (3,))
    stopper.daemon = True  # every run stops by itself, and never holds up a normal exit
    stopper.start()
    uvicorn.run(app, host=a.host, port=a.port)
