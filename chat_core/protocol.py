"""The wire protocol, apart from any I/O: parse and validate incoming frames,
build and encode outgoing ones.

docs/protocol.md is the definition; this module follows it. Everything here is a
pure function of its inputs so it can be tested (and fuzzed) without a socket.
"""

from __future__ import annotations

import enum
import struct
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Optional, Union

import orjson

from . import names
from .rules import CID_RE, DEFAULT_ROOM, ROOM_RE

MAX_TOKEN = 200  # longer than any token the server issues


class CloseCode(enum.IntEnum):
    """Every WebSocket close code the chat sends (docs/protocol.md, *Close codes*)."""

    GOING_AWAY = 1001  # the server is shutting down: reconnect with `since`
    INVALID_DATA = 1007  # a text frame that is not UTF-8 (sent by the WebSocket layer)
    POLICY = 1008  # kept flooding, or too many connections from one address
    TOO_BIG = 1009  # a message larger than `max_frame`
    INTERNAL = 1011  # an unexpected server error
    TRY_AGAIN_LATER = 1013  # read too slowly (outbox full, or stalled)
    REPLACED = 4001  # the name was taken over with its resume token: do not reconnect by yourself
    KICKED = 4003  # removed by a moderator (kicked, or banned): may join again unless banned


class ProtocolError(Exception):
    """A frame the server refuses; ``code`` is the machine-readable error code, and
    ``cid`` the client id of the ``msg`` refused (so the client knows which one)."""

    def __init__(self, code: str, message: str, cid: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.cid = cid


@dataclass(frozen=True)
class Join:
    user: str
    room: str = DEFAULT_ROOM
    since: Optional[int] = None
    token: Optional[str] = None
    key: str = ""  # names.name_key(user): what counts as the same name
    bot_key: Optional[str] = None  # the key of a bot's name (--bot-keys)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", names.name_key(self.user))


@dataclass(frozen=True)
class Msg:
    text: str
    cid: Optional[str] = None  # the client's own id for it: a resend is not stored twice


@dataclass(frozen=True)
class Edit:
    id: int
    text: str


@dataclass(frozen=True)
class Delete:
    id: int


@dataclass(frozen=True)
class React:
    id: int
    emoji: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Typing:
    pass


Frame = Union[Join, Msg, Ping, Typing, Edit, Delete, React]


def parse(raw: Union[str, bytes], max_text: int) -> Frame:
    """Turn one text frame into a validated :data:`Frame` or raise :class:`ProtocolError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "That frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_frame", "A frame must be a JSON object with a \"type\".")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_frame", "A frame must have a string \"type\".")
    payload = data.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ProtocolError("bad_frame", "The \"payload\" must be a JSON object.")
    if kind == "msg":
        return _parse_msg(payload, max_text)
    if kind == "join":
        return _parse_join(payload)
    if kind == "ping":
        return Ping()
    if kind == "typing":
        return Typing()
    if kind == "edit":
        return Edit(_target(payload), check_text(_field(payload, "text", str), max_text))
    if kind == "delete":
        return Delete(_target(payload))
    if kind == "react":
        return React(_target(payload), check_emoji(_field(payload, "emoji", str)))
    raise ProtocolError(
        "unknown_type", f"Unknown frame type {_show(kind)}; expected join, msg, typing, edit, delete, react or ping."
    )


def _target(payload: dict[str, Any]) -> int:
    target = payload.get("id")
    if isinstance(target, bool) or not isinstance(target, int) or not 0 < target < 2**63:
        raise ProtocolError("bad_field", "The field \"payload.id\" must be a message id: a whole number, 1 or more.")
    return target


def _parse_msg(payload: dict[str, Any], max_text: int) -> Msg:
    cid = payload.get("cid")
    if cid is not None and (not isinstance(cid, str) or not CID_RE.fullmatch(cid)):
        raise ProtocolError("bad_field", "The field \"payload.cid\" must be 1 to 64 of A-Z a-z 0-9 _ . : -.")
    try:
        return Msg(text=check_text(_field(payload, "text", str), max_text), cid=cid)
    except ProtocolError as exc:
        exc.cid = cid
        raise


def _parse_join(payload: dict[str, Any]) -> Join:
    user = check_name(_field(payload, "user", str))
    room = payload.get("room")
    if room is None:
        room = DEFAULT_ROOM
    elif not isinstance(room, str):
        raise ProtocolError("bad_field", "The field \"room\" must be a string.")
    room = check_room(room)
    since = payload.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise ProtocolError("bad_field", "The field \"since\" must be a message id: a whole number, 0 or more.")
    token = payload.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        raise ProtocolError("bad_field", f"The field \"token\" must be a string of at most {MAX_TOKEN} characters.")
    bot_key = payload.get("bot_key")
    if bot_key is not None and (not isinstance(bot_key, str) or len(bot_key) > MAX_TOKEN):
        raise ProtocolError("bad_field", f"The field \"bot_key\" must be a string of at most {MAX_TOKEN} characters.")
    return Join(user=user, room=room, since=since, token=token or None, bot_key=bot_key)


def _field(payload: dict[str, Any], name: str, kind: type) -> Any:
    if name not in payload:
        raise ProtocolError("bad_field", f"The field \"payload.{name}\" is missing.")
    value = payload[name]
    if not isinstance(value, kind):
        described = "string" if kind is str else kind.__name__
        raise ProtocolError("bad_field", f"The field \"payload.{name}\" must be a {described}.")
    return value


def check_text(text: str, max_text: int) -> str:
    if not text.strip():
        raise ProtocolError("empty_text", "An empty message was not sent.")
    if max_text and len(text) > max_text:
        raise ProtocolError("text_too_long", f"Message is longer than {max_text} characters.")
    if "\x00" in text:
        raise ProtocolError("bad_text", "Messages cannot hold the NUL character (U+0000).")
    return text


def check_name(name: str) -> str:
    """The name as shown (PRECIS nickname rules, see :mod:`chat_core.names`), or ``bad_name``."""
    try:
        return names.enforce(name)
    except names.BadName as exc:
        raise ProtocolError("bad_name", str(exc)) from None


def check_room(room: str) -> str:
    if not ROOM_RE.fullmatch(room):
        raise ProtocolError(
            "bad_room",
            "Room names are 1 to 32 letters, digits, '_', '-' or '.', starting with a letter or digit.",
        )
    return room


MAX_EMOJI_CHARS = 10  # code points in one reaction (a family with skin tones needs several)

# What an emoji sequence may hold besides symbols: ZWJ, variation selectors, the keycap,
# skin tones, tag characters (subdivision flags).
_JOINERS = {0x200D, 0xFE0E, 0xFE0F, 0x20E3}


def check_emoji(emoji: str) -> str:
    """One emoji (a sequence of them counts as one: 👍🏽, 👩‍💻, 🇫🇷), or ``bad_emoji``."""
    points = [ord(c) for c in emoji]
    symbols = 0
    ok = 0 < len(points) <= MAX_EMOJI_CHARS
    for i, cp in enumerate(points):
        if not ok:
            break
        category = unicodedata.category(chr(cp))
        if category == "So":
            symbols += 1
        elif cp in _JOINERS or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:
            pass
        elif chr(cp) in "0123456789#*" and points[i + 1 : i + 3] in ([0xFE0F, 0x20E3], [0x20E3]):
            symbols += 1  # a keycap: 1️⃣
        else:
            ok = False
    if not ok or not symbols:
        raise ProtocolError("bad_emoji", "A reaction is one emoji.")
    return emoji


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


# --- outgoing frames -------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    """Encode one outgoing frame to the text sent on the wire (done once per broadcast)."""
    return orjson.dumps(frame).decode()


def wire(frame: str) -> bytes:
    """``frame`` as the bytes of one whole WebSocket text frame from a server
    (RFC 6455 section 5.2: FIN, opcode 1, unmasked, no extension), so one broadcast
    can write the same bytes to every recipient's socket."""
    data = frame.encode()
    n = len(data)
    if n < 126:
        return _SHORT.pack(0x81, n) + data
    if n < 65536:
        return _MEDIUM.pack(0x81, 126, n) + data
    return _LONG.pack(0x81, 127, n) + data


_SHORT, _MEDIUM, _LONG = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")


def now() -> float:
    return round(time.time(), 3)


def error(code: str, message: str, cid: Optional[str] = None, until: Optional[float] = None) -> str:
    """An ``error``; one that refuses a ``msg`` sent with a ``cid`` carries it back, a
    ``banned`` one says until when (unix time)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if cid is not None:
        frame["cid"] = cid
    if until is not None:
        frame["until"] = until
    return encode(frame)


def typing(user: str, room: str) -> str:
    """``user`` is typing in ``room`` (relayed to the others there, never stored)."""
    return encode({"type": "typing", "payload": {"user": user, "room": room, "ts": now()}})


def pong() -> str:
    return encode({"type": "pong", "ts": now()})


def notice(kind: str, user: str, room: str, bot: bool = False) -> str:
    """A ``join`` or ``leave`` notice (``bot``: the name is a bot's)."""
    payload: dict[str, Any] = {"user": user, "ts": now(), "room": room}
    if bot:
        payload["bot"] = True
    return encode({"type": kind, "payload": payload})


def update_frame(update: Any) -> str:
    """A change (``chat_core.store.Update``) as its ``edit``, ``delete`` or ``react`` frame."""
    return encode({"type": update.frame_type, "payload": update.payload()})


def msg_frame(payload: dict[str, Any]) -> str:
    """A stored message as its ``msg`` frame (``Message.payload()``)."""
    return encode({"type": "msg", "payload": payload})


def welcome(user: str, room: str, users: list[str], online: int, last_id: int,
            gap: Optional[dict[str, int]], token: Optional[str], max_text: int = 0,
            rules: Optional[dict[str, Any]] = None) -> str:
    """The join confirmation (docs/protocol.md, ``welcome``); ``rules``: the room's topic,
    slow mode and lock (:func:`room_rules`)."""
    payload: dict[str, Any] = {"user": user, "room": room, "ts": now(), "users": users, "online": online,
                               "last_id": last_id, "gap": gap, "max_text": max_text,
                               **(rules or {"topic": "", "slow": 0, "locked": False})}
    if token is not None:
        payload["token"] = token
    return encode({"type": "welcome", "payload": payload})


def room_rules(room: str, topic: str, slow: float, locked: bool) -> str:
    """A room's rules changed: its topic, slow mode (seconds) and lock (docs/protocol.md, ``room``)."""
    return encode({"type": "room", "payload": {"room": room, "topic": topic, "slow": slow, "locked": locked,
                                               "ts": now()}})


def presence(room: str, online: int, joined: list[str], left: list[str], more: int) -> str:
    """The coalesced join/leave changes of a big room (docs/protocol.md, *Big rooms*)."""
    return encode({"type": "presence", "payload": {"room": room, "online": online, "joined": joined,
                                                   "left": left, "more": more, "ts": now()}})
