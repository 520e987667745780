"""A Python client for the chat (docs/protocol.md), on the ``websockets`` library.

    async with ChatClient("http://127.0.0.1:7860", "buildbot", room="ci") as chat:
        stored = await chat.send("build 1234 passed")      # returns once it is in the history
        async for event in chat:                            # messages, changes, joins, ... as objects
            if isinstance(event, Message) and event.text == "!status":
                await chat.send("all green")

    send_message("http://127.0.0.1:7860", "buildbot", "build 1234 passed")   # the same, for scripts

What it does for you: the join and its resume token; every ``send`` carries a
``cid``, so a message sent again after a reconnect is stored once (the server
answers a resent ``cid`` with the stored message); a dropped connection is opened
again with backoff and jitter, and the join sent with ``since`` and the token, so
the events go on with exactly what was missed, each message once. Close codes 4001
(the name was taken over) and 4003 (a moderator removed us) end the client instead.

``python -m chat_core.client URL --name NAME --send TEXT`` posts one message and
exits 0 once it is stored (see :mod:`chat_core.client_cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

BACKOFF = (0.5, 30.0)  # seconds: the first wait before reconnecting, and the longest
STOPPING = {4001, 4003}  # close codes after which coming back by ourselves would be wrong
NOT_STORED = {"store_unavailable", "shutting_down"}  # refusals of a msg that mean: send it again (protocol.md)
RESEND_AFTER = 1.0  # seconds before a message refused with store_unavailable goes again on the same connection


class State(enum.Enum):
    CONNECTING = "connecting"
    JOINED = "joined"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True)
class Message:
    id: int
    room: str
    user: str
    text: str
    ts: float
    cid: Optional[str] = None
    edited: Optional[float] = None
    deleted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)
    bot: bool = False


@dataclass(frozen=True)
class Change:
    """An edit, delete or reaction (``kind``) of message ``target``."""

    kind: str
    id: int
    room: str
    target: int
    user: str
    ts: float
    text: str = ""
    emoji: str = ""
    on: bool = False


@dataclass(frozen=True)
class Notice:
    """Someone joined or left (``kind``), or is typing."""

    kind: str
    room: str
    user: str


@dataclass(frozen=True)
class Welcome:
    user: str
    room: str
    users: list[str]
    online: int
    last_id: int
    topic: str = ""


@dataclass(frozen=True)
class RoomRules:
    room: str
    topic: str
    slow: float
    locked: bool


@dataclass(frozen=True)
class ErrorEvent:
    code: str
    message: str
    cid: Optional[str] = None


@dataclass(frozen=True)
class StateChanged:
    state: State
    detail: str = ""


Event = Union[Message, Change, Notice, Welcome, RoomRules, ErrorEvent, StateChanged]


class ChatError(Exception):
    """The server refused something; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Closed(ChatError):
    """The client stopped: closed by us, or by the server with a code that says not to come back."""


def ws_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` (the page's address) or ``ws(s)://…/ws`` as the socket's URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def message_of(p: dict[str, Any]) -> Message:
    return Message(int(p["id"]), str(p.get("room", "")), str(p.get("user", "")), str(p.get("text", "")),
                   float(p.get("ts", 0.0)), p.get("cid"), p.get("edited"), bool(p.get("deleted", False)),
                   dict(p.get("reactions") or {}), bool(p.get("bot", False)))


class ChatClient:
    """One connection to one room, kept open until :meth:`close`; events in order, each once."""

    def __init__(self, url: str, name: str, room: str = "lobby", token: Optional[str] = None, *,
                 since: Optional[int] = None, backoff: tuple[float, float] = BACKOFF,
                 headers: Optional[dict[str, str]] = None, events: int = 10_000,
                 bot_key: Optional[str] = None) -> None:
        self.url = ws_url(url)
        self.name = name
        self.bot_key = bot_key  # the name's bot key (--bot-keys on the server): join as that bot
        self.room = room
        self.token = token  # from the first welcome on: ours
        self.last_id = since  # newest entry id seen in the room: what a reconnect asks after
        self.backoff = backoff
        self.headers = headers or {}
        self.state = State.CONNECTING
        self.welcome: Optional[Welcome] = None
        self.users: set[str] = set()  # who is online in the room, as far as the welcome and the notices tell
        self.history: list[Message] = []  # what the first join brought, oldest first (events are what came after)
        self._events: asyncio.Queue[Optional[Event]] = asyncio.Queue(events)
        self._socket: Optional[ClientConnection] = None
        self._joined = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[Message]] = {}  # cid -> the stored message
        self._sent: dict[str, str] = {}  # cid -> text, until stored: sent again after a reconnect
        self._tasks: set[asyncio.Task[None]] = set()  # resends in flight (kept so they are not collected)
        self._task: Optional[asyncio.Task[None]] = None
        self._closed: Optional[ChatError] = None
        self._cids = itertools.count(1)
        self._prefix = secrets.token_hex(4)

    # --- life cycle -------------------------------------------------------------

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    async def connect(self, timeout: float = 15.0) -> None:
        """Open the socket and join; :class:`ChatError` if the join is refused."""
        socket = await connect(self.url, open_timeout=timeout, additional_headers=self.headers)
        await self._join(socket, timeout)
        self._task = asyncio.get_running_loop().create_task(self._run(socket))

    async def close(self) -> None:
        self._stop(Closed("closed", "The client was closed."))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._socket is not None:
            await self._socket.close()

    def _stop(self, why: ChatError) -> None:
        if self._closed is not None:
            return
        self._closed = why
        self._set_state(State.CLOSED, why.message)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(why)
        self._put(None)

    # --- sending ------------------------------------------------------------------

    async def send(self, text: str, timeout: float = 30.0) -> Message:
        """Post ``text``; the stored message once the server has it (:class:`ChatError` if refused).
        A reconnect meanwhile sends it again with the same ``cid``: it is stored once."""
        cid = f"{self._prefix}-{next(self._cids)}"
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = waiter
        self._sent[cid] = text
        try:
            await self._send({"type": "msg", "payload": {"text": text, "cid": cid}})
            # (asyncio.wait, not wait_for: on Python < 3.12 wait_for can swallow a cancel that
            # comes as the waiter completes, and the caller would never stop)
            done, _ = await asyncio.wait([waiter], timeout=timeout)
            if not done:
                raise TimeoutError(f"not stored within {timeout:g} s")
            return waiter.result()
        finally:
            self._waiting.pop(cid, None)
            self._sent.pop(cid, None)

    async def edit(self, msg_id: int, text: str) -> None:
        await self._send({"type": "edit", "payload": {"id": msg_id, "text": text}})

    async def delete(self, msg_id: int) -> None:
        await self._send({"type": "delete", "payload": {"id": msg_id}})

    async def react(self, msg_id: int, emoji: str) -> None:
        await self._send({"type": "react", "payload": {"id": msg_id, "emoji": emoji}})

    async def typing(self) -> None:
        await self._send({"type": "typing"})

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._closed is not None:
            raise self._closed
        socket = self._socket
        if socket is None or self.state is not State.JOINED:
            return  # reconnecting: messages go again from self._sent once joined; the rest is dropped
        with contextlib.suppress(ConnectionClosed):
            await socket.send(json.dumps(frame))

    # --- events -------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        """Everything that happens in the room, in order, until the client stops."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # (for any other reader)
                return
            yield event

    def _put(self, event: Optional[Event]) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:  # nobody reads the events: drop the oldest rather than grow
            self._events.get_nowait()
            self._events.put_nowait(event)

    def _set_state(self, state: State, detail: str = "") -> None:
        if state is not self.state:
            self.state = state
            self._put(StateChanged(state, detail))

    # --- the connection -------------------------------------------------------------

    async def _join(self, socket: ClientConnection, timeout: float) -> None:
        payload: dict[str, Any] = {"user": self.name, "room": self.room}
        if self.token is not None:
            payload["token"] = self.token
        if self.last_id is not None:
            payload["since"] = self.last_id
        if self.bot_key is not None:
            payload["bot_key"] = self.bot_key
        await socket.send(json.dumps({"type": "join", "payload": payload}))
        await asyncio.wait_for(self._until_welcome(socket), timeout)
        self._socket = socket
        self._set_state(State.JOINED)
        for cid, text in list(self._sent.items()):  # sent before the reconnect: again, same cid (stored once)
            await socket.send(json.dumps({"type": "msg", "payload": {"text": text, "cid": cid}}))

    async def _until_welcome(self, socket: ClientConnection) -> None:
        first = self.welcome is None  # the first join's history goes to self.history, not to the events
        while True:
            frame = json.loads(await socket.recv())
            kind = frame.get("type")
            if kind == "error":
                await socket.close()
                raise ChatError(str(frame.get("code")), str(frame.get("message")))
            if first and kind == "msg":
                m = message_of(frame.get("payload") or {})
                self.history.append(m)
                self.last_id = max(self.last_id or 0, m.id)
                continue
            self._frame(frame)
            if kind == "welcome":
                return

    async def _run(self, socket: ClientConnection) -> None:
        attempt = 0
        while self._closed is None:
            try:
                async for raw in socket:
                    self._frame(json.loads(raw))
                code = socket.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            if code in STOPPING:
                reason = "name taken over elsewhere" if code == 4001 else "removed by a moderator"
                self._stop(Closed("closed", f"closed by the server with {code}: {reason}"))
                return
            self._socket = None
            while self._closed is None:
                attempt += 1
                delay = min(self.backoff[0] * 2 ** (attempt - 1), self.backoff[1]) * random.uniform(0.5, 1.5)
                self._set_state(State.RECONNECTING, f"reconnecting in {delay:.1f} s")
                await asyncio.sleep(delay)
                try:
                    socket = await connect(self.url, open_timeout=10, additional_headers=self.headers)
                    await self._join(socket, 10)
                except ChatError as exc:
                    if exc.code in ("name_taken", "rate_limited", "store_unavailable", "shutting_down"):
                        continue  # (the old connection may still hold the name for a moment)
                    self._stop(exc)
                    return
                except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                    continue
                attempt = 0
                break

    def _frame(self, frame: dict[str, Any]) -> None:
        kind, p = frame.get("type"), frame.get("payload") or {}
        if kind == "msg":
            m = message_of(p)
            if m.cid is not None and m.cid in self._waiting and not self._waiting[m.cid].done():
                self._waiting[m.cid].set_result(m)
                self._sent.pop(m.cid, None)
            if self.last_id is not None and m.id <= self.last_id:
                return  # seen already (a resent cid's answer, or a replay overlap)
            self.last_id = m.id
            self._put(m)
        elif kind in ("edit", "delete", "react"):
            if self.last_id is not None and int(p["id"]) <= self.last_id:
                return
            self.last_id = int(p["id"])
            self._put(Change(str(kind), int(p["id"]), str(p.get("room", "")), int(p["target"]), str(p.get("user", "")),
                             float(p.get("ts", 0.0)), str(p.get("text", "")), str(p.get("emoji", "")),
                             bool(p.get("on", False))))
        elif kind in ("join", "leave", "typing"):
            user = str(p.get("user", ""))
            if kind == "join":
                self.users.add(user)
            elif kind == "leave":
                self.users.discard(user)
            self._put(Notice(str(kind), str(p.get("room", "")), user))
        elif kind == "presence":
            self.users.difference_update(p.get("left") or [])
            self.users.update(p.get("joined") or [])
        elif kind == "welcome":
            self.token = p.get("token") or self.token
            self.name = str(p.get("user", self.name))
            last = int(p.get("last_id", 0))
            self.last_id = max(self.last_id or 0, last) if self.last_id is not None else last
            self.users = set(p.get("users", []))
            self.welcome = Welcome(self.name, str(p.get("room", self.room)), list(p.get("users", [])),
                                   int(p.get("online", 0)), last, str(p.get("topic", "")))
            self._put(self.welcome)
        elif kind == "room":
            self._put(RoomRules(str(p.get("room", "")), str(p.get("topic", "")), float(p.get("slow", 0)),
                                bool(p.get("locked", False))))
        elif kind == "error":
            cid = frame.get("cid")
            err = ErrorEvent(str(frame.get("code")), str(frame.get("message")), cid)
            waiter = self._waiting.get(cid) if cid is not None else None
            if waiter is not None and not waiter.done() and err.code in NOT_STORED:
                # Not stored, so not refused: shutting_down goes again after the reconnect (from
                # self._sent), store_unavailable in a moment; send() gives up at its timeout.
                if err.code == "store_unavailable":
                    asyncio.get_running_loop().call_later(RESEND_AFTER, self._resend, str(cid))
            elif waiter is not None and not waiter.done():
                self._sent.pop(str(cid), None)
                waiter.set_exception(ChatError(err.code, err.message))
            self._put(err)

    def _resend(self, cid: str) -> None:
        if cid in self._sent and self._closed is None:
            task = asyncio.get_running_loop().create_task(self._resend_now(cid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resend_now(self, cid: str) -> None:
        text = self._sent.get(cid)
        if text is not None:
            with contextlib.suppress(Exception):  # closed meanwhile: send() reports it to its caller
                await self._send({"type": "msg", "payload": {"text": text, "cid": cid}})


def send_message(url: str, name: str, text: str, room: str = "lobby", token: Optional[str] = None,
                 timeout: float = 30.0) -> Message:
    """Post one message and return it once stored (:class:`ChatError` if refused): for scripts."""
    async def go() -> Message:
        async with ChatClient(url, name, room, token) as chat:
            return await chat.send(text, timeout)
    return asyncio.run(go())


if __name__ == "__main__":  # python -m chat_core.client
    from .client_cli import main

    main()
