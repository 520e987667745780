"""Hostile input, property-based (issue 4): whatever a client sends, the server
answers with an error frame, a close code or the documented reply, and the hub
stays consistent.

Three levels:

- ``protocol.parse`` alone: any JSON value, text or bytes gives a frame or a
  ``ProtocolError`` whose code is in docs/protocol.md, and the code is one that
  the docs say applies to that frame;
- the hub in-process (``ChatServer.handle`` with fake connections): sequences of
  arbitrary frames and disconnects from a few peers, checked after every step
  against a small model (who is where, which ids exist, which token holds a name)
  and the hub's invariants;
- a real server subprocess: a few hundred random frames (text, binary, invalid
  UTF-8 as binary, fragmented, oversized) from one client while another chats
  normally; and invalid UTF-8 in text frames (close 1007, no traceback logged).

The answer each frame must get comes from ``doc_answer``: an oracle built from
docs/protocol.md's tables (error codes, the `join` fields) that never calls
chat_core, so the tests fail when the code drifts from the doc.

FUZZ_SEED and FUZZ_FRAMES steer the real-server test; hypothesis prints a
falsifying example for the others.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import random
import re
import time
import unicodedata
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from hypothesis.errors import InvalidArgument
from websockets.exceptions import ConnectionClosed

from chat_core import names, protocol
from chat_core.outbox import TaskOutbox
from chat_core.protocol import Delete, Edit, Join, Msg, Ping, ProtocolError, React, Typing
from chat_core.settings import Settings
from chat_core.web import ChatServer, Session
from servers import ServerProcess
from wsclient import Client

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text()


def _section(start: str, end: str) -> str:
    return DOC[DOC.index(start):DOC.index(end, DOC.index(start))]


def _table(section: str) -> dict[str, list[str]]:
    """The rows of the markdown tables in ``section``, by their first cell (backticks dropped)."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and not set(cells[0]) <= set("-|") and cells[0] not in ("field", "code"):
            rows[cells[0].strip("`")] = cells
    return rows


# Everything the oracle below knows comes from docs/protocol.md, never from chat_core: the test must fail
# when the code drifts from the doc. The *error* table (code | when) and *Close codes* table: the server
# may answer with nothing else.
ERRORS = {code: row[1] for code, row in _table(_section("### `error`", "## Close codes")).items()}
ERROR_CODES = set(ERRORS)
CLOSE_CODES = {int(c) for c in _table(_section("## Close codes", "\n## "))}
# `unknown_type`: "`type` is not `join`, `msg` or `ping`".
FRAME_KINDS = set(re.findall(r"`(\w+)`", ERRORS["unknown_type"].split(" is not ", 1)[1]))
# The `join` table (field | type | required | meaning).
JOIN_FIELDS = _table(_section("### `join`", "### `msg`"))
# user: "...; 1–32 characters; no controls, ..."
NAME_MAX = int(re.search(r"1–(\d+) characters", JOIN_FIELDS["user"][3])[1])
# room: "room to enter, default `lobby`; 1–32 of `A–Z a–z 0–9 _ - .`, starting with a letter or digit"
_room = re.search(r"default `([^`]+)`; 1–(\d+) of `([^`]+)`, starting with a letter or digit", JOIN_FIELDS["room"][3])
DEFAULT_ROOM = _room[1]
DOC_ROOM_RE = re.compile("[A-Za-z0-9][{}]{{0,{}}}".format(
    "".join(f"{c[0]}-{c[2]}" if len(c) == 3 else re.escape(c) for c in _room[3].split()), int(_room[2]) - 1))
# token: "string (≤ 200 characters)"
TOKEN_MAX = int(re.search(r"≤ (\d+) characters", JOIN_FIELDS["token"][1])[1])
# `msg`: "`text` is a string of at most `max_text` characters (default 2,000) that is not blank."
DOC_MAX_TEXT = int(re.search(r"at most `max_text` characters \(default ([\d,]+)\)", DOC)[1].replace(",", ""))


def test_the_docs_tables_were_found():
    assert {"bad_json", "bad_frame", "unknown_type", "bad_field", "not_joined", "empty_text", "text_too_long",
            "bad_name", "bad_room", "bad_text", "name_taken", "bad_token", "binary_not_supported"} <= ERROR_CODES
    assert {1000, 1001, 1007, 1008, 1009, 1011, 1013, 4001} <= CLOSE_CODES
    assert FRAME_KINDS == {"join", "msg", "ping", "typing", "edit", "delete", "react"}
    assert set(JOIN_FIELDS) == {"user", "room", "since", "token", "bot_key"}
    assert NAME_MAX > 1 and TOKEN_MAX > 1 and DOC_MAX_TEXT > 1 and DEFAULT_ROOM == "lobby"
    assert [r for r in ["lobby", "Red", "r.e-d_1", "0", "x" * 32] if DOC_ROOM_RE.fullmatch(r)] == \
        ["lobby", "Red", "r.e-d_1", "0", "x" * 32]
    assert not [r for r in ["", "-bad", ".bad", "_bad", "x" * 33, "röd", "a b", "a/b"] if DOC_ROOM_RE.fullmatch(r)]


# --- strategies -------------------------------------------------------------

INT64 = st.integers(-(2 ** 63), 2 ** 63 - 1)


def json_values(ints=st.integers(), floats=st.floats(allow_nan=False, allow_infinity=False), max_leaves=12):
    scalars = st.none() | st.booleans() | ints | floats | st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
        max_leaves=max_leaves,
    )


ANY_JSON = json_values(floats=st.floats())  # ints of any size, NaN and infinities too
SAFE_JSON = json_values(ints=INT64)  # what the oracle below can judge (orjson reads bigger ints as floats)

NAMES = ["alice", "ALICE", " alice ", "Alice", "bob", "Bob", "ß", "SS", "ss", "ǅ", "ǆ", "x" * 32, "y" * 33,
         "bad\u0007bell", "zero\u200bwidth", "", "   ", "\u3000", "carol", "dave", " ẞ "]
ROOMS = [None, "lobby", "Lobby", "red", "r.e-d_1", "x" * 32, "x" * 33, "-bad", ".bad", "bad room", "", "röd", 5,
         ["red"]]
SINCES = [None, 0, 1, 2, 3, 5, 8, 10 ** 6, 2 ** 63 - 1, -1, 1.5, 2.0, True, False, "3", [1]]
VALID_TOKEN = "\x00valid-token\x00"  # replaced, when sent, by a real token for the frame's user
OTHER_TOKEN = "\x00other-token\x00"  # replaced by a real token for some other name
TOKENS = [None, "", "garbage", "a.b", "YWxpY2U.AAAA", VALID_TOKEN, VALID_TOKEN, OTHER_TOKEN, 7]
FRAME_TYPES = ["join", "msg", "ping", "other", "JOIN", "", "pong", "welcome", "error"]
FIELDS = ["user", "room", "text", "since", "token"]


def join_payloads(small_text):
    return st.fixed_dictionaries(
        {"user": st.sampled_from(NAMES) | small_text},
        optional={
            "room": st.sampled_from(ROOMS) | small_text,
            "since": st.sampled_from(SINCES) | st.integers(0, 40),
            "token": st.sampled_from(TOKENS),
            "extra": SAFE_JSON,
        },
    )


GOOD_JOIN = st.fixed_dictionaries({"type": st.just("join"), "payload": st.fixed_dictionaries(
    {"user": st.sampled_from(["alice", "ALICE", " bob", "Bob", "ß", "ss"])},
    optional={"room": st.sampled_from(["lobby", "red", "Red"]), "since": st.none() | st.integers(0, 8),
              "token": st.sampled_from([None, VALID_TOKEN, VALID_TOKEN, "garbage", OTHER_TOKEN])})})
GOOD_MSG = st.builds(lambda i: {"type": "msg", "payload": {"text": f"m{i}"}}, st.integers(0, 999))


def frame_values(max_text):
    """Python values to be sent as JSON: valid frames, near-valid ones and junk."""
    small_text = st.text(max_size=max_text + 3)
    texts = small_text | st.sampled_from(["hi", "  ", "", "\t\n", "\u3000", "\u200b", "x" * max_text,
                                          "y" * (max_text + 1)])
    join = st.fixed_dictionaries({"type": st.just("join"), "payload": join_payloads(small_text)})
    msg = st.fixed_dictionaries({"type": st.just("msg"), "payload": st.fixed_dictionaries({"text": texts})})
    ping = st.fixed_dictionaries({"type": st.just("ping")}, optional={"payload": st.none() | st.just({}) | SAFE_JSON})
    shaped = st.fixed_dictionaries(
        {"type": st.sampled_from(FRAME_TYPES) | st.text(max_size=6) | SAFE_JSON},
        optional={"payload": SAFE_JSON | st.dictionaries(st.sampled_from(FIELDS), SAFE_JSON)},
    )
    bad_fields = st.fixed_dictionaries({
        "type": st.sampled_from(["join", "msg"]),
        "payload": st.dictionaries(st.sampled_from(FIELDS), SAFE_JSON, max_size=4),
    })
    return st.one_of(GOOD_JOIN, GOOD_JOIN, GOOD_JOIN, join, msg, GOOD_MSG, GOOD_MSG, GOOD_MSG,
                     ping, shaped, bad_fields, SAFE_JSON)


MAX_TEXT = 40  # small, so that text_too_long is cheap to reach
FRAME_VALUES = frame_values(MAX_TEXT)


@st.composite
def wire_texts(draw, values=FRAME_VALUES):
    """What one text frame holds: a JSON encoding of a frame-like value, or a broken one, or any text."""
    kind = draw(st.sampled_from(["json"] * 6 + ["cut", "text", "junk"]))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "junk":
        return draw(st.sampled_from(["", " ", "null", "{}", "[]", "{", '{"type":', "\ufeff{}", '{"type":"ping"}x',
                                     '{"type":"ping","type":"msg"}', "NaN", '{"type":"ping","payload":NaN}',
                                     "[" * 600 + "]" * 600, '{"type":"join","payload":{"user":"a","since":1e999}}']))
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if kind == "cut":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    return text


# --- 1. protocol.parse ------------------------------------------------------


def outcome(raw, max_text=MAX_TEXT):
    """parse()'s result, or the ProtocolError's code; anything else escapes and fails the test."""
    try:
        frame = protocol.parse(raw, max_text)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES, f"undocumented error code {exc.code!r} for {raw!r:.200}"
        assert isinstance(exc.message, str) and exc.message, exc.code
        return exc.code
    assert isinstance(frame, (Join, Msg, Ping, Typing, Edit, Delete, React)), frame
    check_frame(frame, max_text)
    return frame


def check_frame(frame, max_text):
    """What the docs promise about an accepted frame (the `join` table, `msg`)."""
    if isinstance(frame, Join):
        assert isinstance(frame.user, str) and frame.user == frame.user.strip() and 1 <= len(frame.user) <= NAME_MAX
        assert not any(unicodedata.category(c) == "Cc" for c in frame.user)
        assert isinstance(frame.room, str) and DOC_ROOM_RE.fullmatch(frame.room)
        assert frame.since is None or (type(frame.since) is int and frame.since >= 0)
        assert frame.token is None or (isinstance(frame.token, str) and 0 < len(frame.token) <= TOKEN_MAX)
    elif isinstance(frame, Msg):
        assert isinstance(frame.text, str) and frame.text.strip()
        assert not max_text or len(frame.text) <= max_text, (len(frame.text), max_text)


# --- the oracle: what docs/protocol.md says the answer to one text frame is -----------------------------
#
# It never calls chat_core: the JSON is read by the standard library under RFC 8259's rules, and every
# check below cites the row of the doc it follows (*error* table, `join` table, `msg`).

CONTROL_MUST = {"Cc"}  # `join` table, user: "no controls"
PLAIN_NAME = re.compile(r"[A-Za-z0-9 ]+")
INT_RANGE = (-(2 ** 63), 2 ** 64 - 1)  # what JSON readers commonly keep as integers (RFC 8259 section 6)


@dataclass
class Expect:
    """The docs' answer to one frame: ``must`` non-empty: refused with one of ``must | may``; else accepted
    as ``kind`` (ping, msg or join, with ``fields`` as sent) or refused with one of ``may``."""

    must: set = field(default_factory=set)
    may: set = field(default_factory=set)
    kind: Optional[str] = None
    fields: dict = field(default_factory=dict)

    @property
    def refusals(self) -> set:
        return self.must | self.may


class NotJSON(Exception):
    pass


def read_json(raw: Any) -> tuple[Any, set]:
    """``raw`` read as JSON under RFC 8259 (docs: `bad_json`, "the frame is not valid JSON"), and the codes a
    server may answer besides the docs' own because RFC 8259 leaves the case to the implementation."""
    loose: set = set()
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # section 8.1: JSON on a network is UTF-8
        except UnicodeDecodeError:
            raise NotJSON from None
    if raw.startswith("\ufeff"):  # section 8.1: a reader may ignore a byte order mark or refuse the text
        raw, loose = raw[1:], loose | {"bad_json"}

    def number(text: str) -> Any:
        value: Any = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            loose.update({"bad_json", "bad_field"})  # section 6: a reader may limit the range (or read a float)
        if isinstance(value, float) and math.isinf(value):
            loose.add("bad_json")  # section 6: a number too large to hold
        return value

    def no_constants(name: str) -> Any:
        raise NotJSON(name)  # NaN and Infinity are not JSON (section 6)

    def an_object(pairs: list) -> dict:
        if len({k for k, _ in pairs}) < len(pairs):
            loose.add("bad_json")  # section 4: duplicate names are unpredictable; the last one wins here
        return dict(pairs)

    try:
        value = json.loads(raw, parse_int=number, parse_float=number, parse_constant=no_constants,
                           object_pairs_hook=an_object)
    except json.JSONDecodeError:
        raise NotJSON from None
    if any("\ud800" <= c <= "\udfff" for c in raw) or (r"\ud" in raw.lower() and has_lone_surrogate(value)):
        loose.add("bad_json")  # section 8.2: a string with a lone surrogate is unpredictable
    return value, loose


def has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(has_lone_surrogate(v) for v in value)


def doc_answer(raw: Any, max_text: int) -> Expect:
    """From docs/protocol.md alone: how the server must answer the text frame ``raw``."""
    try:
        value, loose = read_json(raw)
    except NotJSON:
        return Expect(must={"bad_json"})  # "the frame is not valid JSON"
    expect = expected_codes(value, max_text)
    expect.may |= loose
    return expect


def not_in_emoji(c: str) -> bool:
    """Letters, digits (but a keycap's), spaces, controls and format characters (but ZWJ and tags)."""
    return unicodedata.category(c)[0] in "LNZC" and c not in "0123456789#*\u200d" and not 0xE0020 <= ord(c) <= 0xE007F


def text_codes(text: Any, max_text: int) -> set:
    """The docs' refusals of a `msg` (or `edit`) `text`."""
    if not isinstance(text, str):
        return {"bad_field"}  # "a field is missing or has the wrong type"
    if not text.strip():
        return {"empty_text"}  # "`text` is empty or only white space"
    if max_text and len(text) > max_text:
        return {"text_too_long"}  # "`text` is longer than `max_text` characters" (0: no limit)
    if "\x00" in text:
        return {"bad_text"}  # "`text` holds a NUL character (U+0000)"
    return set()


def expected_codes(value: Any, max_text: int) -> Expect:
    """The docs' answer to the decoded frame ``value``. Absent and ``null`` optional fields are taken alike."""
    must, may = set(), set()
    # bad_frame: "JSON that is not an object, no string `type`, or a `payload` that is not an object"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return Expect({"bad_frame"})
    payload = value.get("payload")
    if payload is None:
        if "payload" in value:
            may.add("bad_frame")  # `"payload": null` is read as no payload
        payload = {}
    if not isinstance(payload, dict):
        return Expect({"bad_frame"}, may)
    kind = value["type"]
    if kind not in FRAME_KINDS:
        return Expect({"unknown_type"}, may)  # "`type` is not `join`, `msg` or `ping`"
    if kind in ("ping", "typing"):  # `ping`: "Answered with `pong`"; neither has fields
        return Expect(must, may, kind)
    if kind in ("edit", "delete", "react"):  # `id` is the message's id; edit's text as a msg's
        target = payload.get("id")
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            must.add("bad_field")
        if kind == "edit":
            must |= text_codes(payload.get("text"), max_text)
        if kind == "react":
            emoji = payload.get("emoji")
            if not isinstance(emoji, str):
                must.add("bad_field")
            elif not emoji or len(emoji) > 10 or any(not_in_emoji(c) for c in emoji):
                must.add("bad_emoji")  # "one emoji ... at most 10 code points; anything else: `bad_emoji`"
            else:
                may.add("bad_emoji")  # (which symbols make one emoji: the server's call)
        return Expect(must, may, kind, {"id": target, "text": payload.get("text"), "emoji": payload.get("emoji")})
    if kind == "msg":
        text = payload.get("text")
        must |= text_codes(text, max_text)
        cid = payload.get("cid")  # "1 to 64 of `A–Z a–z 0–9 _ . : -`"
        if cid is not None and (not isinstance(cid, str) or not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,64}", cid)):
            must.add("bad_field")
        return Expect(must, may, "msg", {"text": text})
    user = payload.get("user")
    shown = None
    if not isinstance(user, str):
        must.add("bad_field")  # `join` table: user is a required string
    else:
        # bad_name: the docs give names under PRECIS (RFC 8266) plus look-alike rules, which this model
        # does not redo: plain ASCII letters, digits and spaces must pass (shown trimmed, spaces collapsed),
        # controls and over-long names must fail, anything else may go either way.
        name = re.sub(" +", " ", user.strip(" "))  # PRECIS trims and collapses spaces
        categories = {unicodedata.category(c) for c in user}  # controls count even at the ends
        if not 1 <= len(name) <= NAME_MAX or categories & CONTROL_MUST:
            must.add("bad_name")
        elif PLAIN_NAME.fullmatch(name):
            shown = name
        else:
            may.add("bad_name")
    room = payload.get("room")
    if room is not None and not isinstance(room, str):
        must.add("bad_field")  # room: string
    elif isinstance(room, str) and not DOC_ROOM_RE.fullmatch(room):
        must.add("bad_room")  # "room name not of the form above"
    since = payload.get("since")
    if since is not None and (type(since) is not int or since < 0):
        must.add("bad_field")  # since: "integer ≥ 0"
    token = payload.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > TOKEN_MAX):
        must.add("bad_field")  # token: "string (≤ 200 characters)"
    return Expect(must, may, "join", {"user": shown, "raw_user": user, "room": DEFAULT_ROOM if room is None else room,
                                      "since": since, "token": token})


def check_against_docs(text, max_text=MAX_TEXT):
    got = outcome(text, max_text)
    expect = doc_answer(text, max_text)
    where = f"{text!r:.300}: got {got!r}"
    if expect.must:
        assert got in expect.refusals, f"{where}, docs say one of {sorted(expect.refusals)}"
    elif isinstance(got, str):
        assert got in expect.may, f"{where}, though the docs accept it (as {expect.kind})"
    else:  # accepted: as the frame the docs say, with the fields as sent
        f = expect.fields
        if expect.kind == "ping":
            assert isinstance(got, Ping), where
        elif expect.kind == "typing":
            assert isinstance(got, Typing), where
        elif expect.kind in ("edit", "delete", "react"):
            kinds = {"edit": Edit, "delete": Delete, "react": React}
            assert isinstance(got, kinds[expect.kind]) and got.id == f["id"], where
            assert expect.kind != "edit" or got.text == f["text"], where
            assert expect.kind != "react" or got.emoji == f["emoji"], where
        elif expect.kind == "msg":
            assert isinstance(got, Msg) and got.text == f["text"], where
        else:
            assert isinstance(got, Join), where
            assert (got.room, got.since, got.token or None) == (f["room"], f["since"], f["token"] or None), where
            assert f["user"] is None or got.user == f["user"], f"{where}: the name is shown as {f['user']!r}"
    return got


CHANGE_VALUES = st.fixed_dictionaries(
    {"type": st.sampled_from(["edit", "delete", "react", "typing"])},
    optional={"payload": st.fixed_dictionaries({}, optional={
        "id": st.sampled_from([1, 42, 0, -1, True, 1.5, "3", None, 2**63 - 1]) | INT64,
        "text": st.sampled_from(["new text", " ", "", "x" * 41]) | st.text(max_size=44),
        "emoji": st.sampled_from(["👍", "👍🏽", "👩\u200d💻", "🇫🇷", "1️⃣", "❤️", "a", "👍 ok", "", "👍" * 11, "<b>"])
        | st.text(max_size=4),
    }) | SAFE_JSON},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CHANGE_VALUES)
def test_parse_changes_and_typing_follow_the_docs(value):
    check_against_docs(json.dumps(value))


PARSE_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PARSE_SETTINGS
@given(SAFE_JSON, st.booleans())
def test_parse_any_json_value_follows_the_docs(value, ascii_only):
    check_against_docs(json.dumps(value, ensure_ascii=ascii_only))


@PARSE_SETTINGS
@given(FRAME_VALUES, st.booleans())
def test_parse_frame_shaped_values_follow_the_docs(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    got = check_against_docs(text)
    assert check_against_docs(text.encode()) == got  # the same frame as UTF-8 bytes reads the same


@PARSE_SETTINGS
@given(ANY_JSON)
def test_parse_unbounded_numbers_follow_the_docs(value):
    check_against_docs(json.dumps(value))


@PARSE_SETTINGS
@given(st.text(alphabet=st.characters() | st.characters(categories=["Cs"]), max_size=80)  # lone surrogates too
       | wire_texts())
def test_parse_any_text_follows_the_docs(text):
    check_against_docs(text)


@PARSE_SETTINGS
@given(st.binary(max_size=80) | wire_texts().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_parse_any_bytes_follows_the_docs(raw):
    check_against_docs(raw)


@pytest.mark.parametrize("max_text", [0, 1, 2000])
def test_parse_respects_max_text_including_off(max_text):
    long = "x" * 5000
    got = check_against_docs(json.dumps({"type": "msg", "payload": {"text": long}}), max_text)
    assert got == (Msg(long) if max_text == 0 else "text_too_long")


def _join(**payload: Any) -> str:
    return json.dumps({"type": "join", "payload": {"user": "alice", **payload}})


def _msg(text: Any) -> str:
    return json.dumps({"type": "msg", "payload": {"text": text}})


# For each row of the docs' *error* table that a frame alone decides: frames that break that row's rule and
# no other (with max_text = MAX_TEXT). The random frames above rarely break one rule alone.
ONE_FAULT = {
    "bad_json": ["", "{", '{"type": "ping"', "NaN", '{"type": "ping"}x', "{'type': 'ping'}", '{"type": ping}'],
    "bad_frame": ["[]", '"ping"', "1", "null", "{}", '{"type": 1}', '{"type": null}', '{"type": "ping", "payload": []}',
                  '{"type": "msg", "payload": "hi"}'],
    "unknown_type": ['{"type": "pong"}', '{"type": "JOIN", "payload": {"user": "alice"}}', '{"type": ""}'],
    "bad_field": ['{"type": "msg"}', '{"type": "msg", "payload": {}}', _msg(5), _msg(None), _msg(["hi"]),
                  '{"type": "join"}', '{"type": "join", "payload": {"user": 5}}', _join(room=5), _join(room=["red"]),
                  _join(since=-1), _join(since=1.5), _join(since="3"), _join(since=True), _join(token=7),
                  _join(token="x" * (TOKEN_MAX + 1))],
    "empty_text": [_msg(""), _msg(" "), _msg("\t\n ")],
    "text_too_long": [_msg("x" * (MAX_TEXT + 1)), _msg(" " + "x" * MAX_TEXT)],
    "bad_name": [_join(user=""), _join(user="   "), _join(user="x" * (NAME_MAX + 1)), _join(user="bad\u0007bell"),
                 _join(user="\talice")],
    "bad_room": [_join(room=r) for r in ["", "-bad", ".bad", "_bad", "x" * 33, "bad room", "röd", "a/b"]],
    "bad_text": [_msg("a\x00b")],
}
# ... and frames at the edge of each rule that the docs accept
DOCS_ACCEPT = ['{"type": "ping"}', '{"type": "ping", "payload": {"x": 1}}', _msg("x" * MAX_TEXT), _msg(" hi "),
               _join(), _join(user=" x  y "), _join(user="x" * NAME_MAX), _join(room=None),
               *[_join(room=r) for r in ["x" * 32, "0", "r.e-d_1", "Red"]], _join(since=0), _join(since=2 ** 63 - 1),
               _join(token="x" * TOKEN_MAX)]


@pytest.mark.parametrize("code,frame", [(c, f) for c, frames in ONE_FAULT.items() for f in frames])
def test_each_error_row_of_the_docs(code, frame):
    assert code in ERRORS  # a row of the docs' table
    expect = doc_answer(frame, MAX_TEXT)
    assert (expect.must, expect.may) == ({code}, set()), "the oracle misreads the docs"
    assert outcome(frame) == code


@pytest.mark.parametrize("frame", DOCS_ACCEPT)
def test_frames_at_the_edge_of_the_rules_are_accepted(frame):
    expect = doc_answer(frame, MAX_TEXT)
    assert not expect.must and not expect.may, "the oracle misreads the docs"
    assert not isinstance(check_against_docs(frame), str)


# --- 2. the hub, in-process -------------------------------------------------


def note(text: str) -> None:
    """A hypothesis event (shown with --hypothesis-show-statistics), when inside a hypothesis test."""
    try:
        event(text)
    except InvalidArgument:
        pass


class RecordingOutbox(TaskOutbox):
    """An Outbox that also remembers, in order, every frame it accepted."""

    def __init__(self, *args: Any, log: list) -> None:
        super().__init__(*args)
        self.log = log

    def put(self, frame: str, encoded: Optional[bytes] = None) -> bool:
        accepted = super().put(frame, encoded)
        if accepted:
            self.log.append(json.loads(frame))
        return accepted

    def put_many(self, frames: list[str]) -> None:
        if not self.closed:
            self.log.extend(json.loads(f) for f in frames)
        super().put_many(frames)


class Peer:
    """One fake connection, built like tests/test_hub.py's Peer, wrapped in a web Session."""

    def __init__(self, server: ChatServer) -> None:
        self.frames: list = []  # delivered through the outbox's sender task
        self.log: list = []  # accepted into the outbox
        self.closed_with: Optional[int] = None
        self.dead = False
        self.joins: list = []  # (index into log where an accepted join's answer starts, room)
        self.outbox = RecordingOutbox(self._send, server.settings.outbox, log=self.log)
        self.member = server.hub.attach(self.outbox)
        self.session = Session(self.member, server.settings, None, "fuzz")
        self.outbox.start()
        # the model's view of this connection
        self.room: Optional[str] = None
        self.name: Optional[str] = None

    async def _send(self, message: dict) -> None:  # the connection's ASGI send
        if message["type"] == "websocket.send":
            self.frames.append(json.loads(message["text"]))
        elif message["type"] == "websocket.close":
            self.closed_with = message["code"]

    @property
    def key(self) -> Optional[str]:
        return names.name_key(self.name) if self.name is not None else None


async def settle(turns: int = 12) -> None:
    """Let the writer task commit and every sender task deliver (no I/O: a fixed number of turns)."""
    for _ in range(turns):
        await asyncio.sleep(0)


@dataclass(frozen=True)
class ModelJoin:
    """An accepted `join`, as the model reads it from the frame (fields as in the docs' `join` table)."""

    user: str  # as shown: trimmed, spaces collapsed
    room: str
    since: Optional[int]
    token: Optional[str]
    key: str  # what counts as the same name


class Harness:
    """A ChatServer, a few Peers and a model of what the hub should hold."""

    def __init__(self, server: ChatServer, peers: int) -> None:
        self.server = server
        self.hub = server.hub
        self.s = server.settings
        self.slots: list[Optional[Peer]] = [None] * peers
        self.all_peers: list[Peer] = []
        self.messages: dict[str, list] = {}  # room -> [(user, text)], index = id - 1
        self.tokens: dict[str, str] = {}  # name key -> the token its last welcome gave

    def live(self) -> list[Peer]:
        return [p for p in self.slots if p is not None and not p.dead]

    def peer(self, slot: int) -> Peer:
        p = self.slots[slot]
        if p is None or p.dead:
            p = self.slots[slot] = Peer(self.server)
            self.all_peers.append(p)
        return p

    def members(self, room: str) -> dict:
        return {p.key: p for p in self.live() if p.room == room}

    def last_id(self, room: str) -> int:
        return len(self.messages.get(room, ()))

    def encode(self, value: Any, ascii_only: bool) -> str:
        payload = value.get("payload") if isinstance(value, dict) else None
        if isinstance(payload, dict) and payload.get("token") in (VALID_TOKEN, OTHER_TOKEN):
            user = payload.get("user")
            key = names.name_key(user) if isinstance(user, str) else "nobody"
            if payload["token"] == VALID_TOKEN:  # the token the last welcome for this name gave
                token = self.tokens.get(key, "never issued")
            else:
                token = next((t for k, t in self.tokens.items() if k != key), "never issued")
            value = {**value, "payload": {**payload, "token": token}}
        return json.dumps(value, ensure_ascii=ascii_only)

    # --- steps ---

    async def step(self, action: tuple) -> None:
        kind, slot, arg = action
        if kind == "drop":
            p = self.slots[slot]
            if p is not None and not p.dead:
                await self.drop(p)
        else:
            text = arg if isinstance(arg, str) else self.encode(*arg)
            await self.send(self.peer(slot), text)
        self.reap()
        await settle()
        self.check_invariants()

    def marks(self) -> dict:
        return {id(p): len(p.log) for p in self.live()}

    def new_frames(self, p: Peer, marks: dict) -> list:
        return p.log[marks.get(id(p), 0):]

    async def drop(self, p: Peer) -> None:
        """The connection is gone without a close frame: what web.ChatServer._serve does then."""
        marks = self.marks()
        room, name = p.room, p.name
        self.hub.detach(p.member)
        if not p.outbox.closed:
            p.outbox.close(0)
        p.dead, p.room = True, None
        await settle()
        for q in self.live():
            expect = [("leave", name, room)] if room is not None and q.room == room else []
            assert notices(self.new_frames(q, marks)) == expect

    async def send(self, p: Peer, text: str) -> None:
        expect = doc_answer(text, self.s.max_text)  # from docs/protocol.md, not from protocol.parse
        marks = self.marks()
        await self.server.handle(p.session, text)
        direct = self.new_frames(p, marks)  # handle() queues its answer before it returns
        if expect.must or (direct and direct[0]["type"] == "error" and direct[0]["code"] in expect.may):
            note(f"frame: refused, {'must' if expect.must else 'may'}")
            return assert_error(direct, expect.refusals)
        note(f"frame: {expect.kind}")
        if expect.kind == "ping":  # "Answered with `pong`. Allowed before `join`."
            assert [f["type"] for f in direct] == ["pong"] and isinstance(direct[0]["ts"], (int, float)), direct
        elif expect.kind == "msg":
            await self.check_msg(p, expect.fields["text"], direct, marks)
        else:
            await self.check_join(p, self.join_of(expect.fields), direct, marks)

    @staticmethod
    def join_of(fields: dict) -> ModelJoin:
        """The join the docs accept, as the model sees it. A name that is not plain ASCII is shown and
        compared under PRECIS and TR39 rules this model does not redo: chat_core.names (its own tests are
        tests/test_names.py) says how; whether the join is refused is still decided by the model."""
        user = fields["user"] if fields["user"] is not None else names.enforce(fields["raw_user"])
        return ModelJoin(user, fields["room"], fields["since"], fields["token"], names.name_key(user))

    async def check_msg(self, p: Peer, text: str, direct: list, marks: dict) -> None:
        if p.room is None:
            assert_error(direct, {"not_joined"})
            return
        assert direct == []  # broadcast once stored, by the writer task
        room = p.room
        self.messages.setdefault(room, []).append((p.name, text))
        await settle()
        for q in self.live():
            got = self.new_frames(q, marks)
            if q.room == room:
                assert [f["type"] for f in got] == ["msg"], got
                payload = got[0]["payload"]
                assert (payload["user"], payload["text"], payload["room"], payload["id"]) == \
                    (p.name, text, room, self.last_id(room))
            else:
                assert got == []

    async def check_join(self, p: Peer, join: ModelJoin, direct: list, marks: dict) -> None:
        key, room = join.key, join.room
        here = self.members(room)
        holder = here.get(key)
        replaced = None
        # The docs (`join`): taking a free name gives a token in the `welcome`; while a connection holds the
        # name, only that token proves it (token_ttl is 30 days; name_reserve is 0 here, so nothing is
        # reserved once nobody holds it). So the token of the name's last welcome, and no other, proves it.
        proven = join.token is not None and join.token == self.tokens.get(key)
        # name_taken: "... and no valid token was given"; bad_token: "the token does not hold this name
        # while the name is held or reserved". An empty token is neither clearly one nor the other.
        refused = {None: {"name_taken"}, "": {"name_taken", "bad_token"}}.get(join.token, {"bad_token"})
        if holder is not None and holder is not p:
            if not proven:
                note(f"join: {' or '.join(sorted(refused))}")
                return assert_error(direct, refused)
            note("join: took a name with its token")
            replaced = holder
        elif p.key != key and any(q.key == key and q.room is not None for q in self.live() if q is not p):
            # held in another room by someone else: the name is reserved for its token
            if not proven:
                note("join: reserved elsewhere")
                return assert_error(direct, refused)
        # accepted: what everybody sees, in order
        expected_notices: dict = {id(q): [] for q in self.live()}
        if replaced is not None:
            for q in here.values():
                if q is not replaced:
                    expected_notices[id(q)].append(("leave", replaced.name, room))
            replaced.room = None
        same_place = p.room == room and p.key == key
        note("join: " + ("same place" if same_place else "switch" if p.room else "first"))
        if not same_place and p.room is not None:
            for q in self.members(p.room).values():
                if q is not p:
                    expected_notices[id(q)].append(("leave", p.name, p.room))
        p.room, p.name = room, join.user
        p.joins.append((marks[id(p)], room))
        if not same_place:
            for q in self.members(room).values():
                expected_notices[id(q)].append(("join", join.user, room))
        # the joiner: [leave of the replaced], history, welcome, [its own join notice]
        types = [f["type"] for f in direct]
        assert types.count("welcome") == 1, direct
        w = types.index("welcome")
        before, welcome, after = direct[:w], direct[w]["payload"], direct[w + 1:]
        lead = [f for f in before if f["type"] != "msg"]
        history = before[len(lead):]
        assert notices(lead) == expected_notices[id(p)][:len(lead)] and all(f["type"] == "msg" for f in history)
        assert notices(lead + after) == expected_notices[id(p)]
        self.check_welcome_and_history(p, join, welcome, history)
        await settle()
        for q in self.live():
            if q is not p:
                assert notices(self.new_frames(q, marks)) == expected_notices[id(q)]
        if replaced is not None:
            assert replaced.outbox.closed and replaced.closed_with == 4001 and 4001 in CLOSE_CODES  # documented

    def check_welcome_and_history(self, p: Peer, join: ModelJoin, welcome: dict, history: list) -> None:
        room, last = join.room, self.last_id(join.room)
        members = self.members(room)
        assert welcome["user"] == join.user and welcome["room"] == room and welcome["last_id"] == last
        assert welcome["online"] == len(members)
        assert welcome["users"] == sorted((q.name for q in members.values()), key=str.casefold)
        # `welcome`: "token: resume token for this name ...; send it back in a later `join`" (whether it
        # proves the name is checked when a later join sends it back: VALID_TOKEN)
        assert isinstance(welcome["token"], str) and 0 < len(welcome["token"]) <= TOKEN_MAX, welcome
        self.tokens[join.key] = welcome["token"]
        ids = [f["payload"]["id"] for f in history]
        for f in history:
            m = f["payload"]
            assert m["room"] == room and (m["user"], m["text"]) == self.messages[room][m["id"] - 1]
        assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True
        since = join.since if join.since is not None and join.since <= last else None
        if ids:
            assert ids[-1] == last
        if since is None:
            start = max(1, last - self.s.history_limit + 1) if self.s.history_limit else last + 1
            assert welcome["gap"] is None
        else:
            start = max(since + 1, last - self.s.replay_limit + 1)
            if ids and ids[0] > since + 1:
                note("join: since with a gap")
                assert welcome["gap"] == {"after": since, "first": ids[0]}
            else:
                assert welcome["gap"] is None
            assert ids or since == last, f"messages {since + 1}..{last} missed with no gap"
        if not self.s.history_keep:  # everything kept: exactly the newest that the limit allows
            assert ids == list(range(start, last + 1))

    def reap(self) -> None:
        """A connection the hub closed (replaced by a token) ends its route: detach it, as _serve does."""
        for p in self.live():
            if p.outbox.closed:
                self.hub.detach(p.member)
                p.dead, p.room = True, None

    def check_invariants(self) -> None:
        hub, live = self.hub, self.live()
        assert hub.members == {p.member for p in live}
        assert hub.stats()["connections"] == len(live)
        model_rooms = {p.room for p in live if p.room is not None}
        assert set(hub.rooms) == model_rooms  # no empty room kept, no occupied room lost
        assert hub.stats()["rooms"] == len(model_rooms)
        for name, room in hub.rooms.items():
            assert room.name == name and room.joining == 0 and room.members
            assert set(room.members) == set(self.members(name))
            for key, member in room.members.items():
                assert member in hub.members and member.room is room
                assert member.key == key == names.name_key(member.name)  # names unique per room, look-alikes as one
                assert not member.outbox.closed
        for p in live:
            m = p.member
            assert (m.room.name if m.room is not None else None) == p.room
            if m.room is not None:
                assert m.name == p.name
                assert m.room.members.get(m.key) is m and hub.rooms.get(m.room.name) is m.room
            assert p.frames == p.log  # everything queued was delivered, in order
            for f in p.log:
                if f["type"] == "error":
                    assert f["code"] in ERROR_CODES and isinstance(f["message"], str)
        for room, msgs in self.messages.items():
            r = hub.rooms.get(room)
            if r is not None:
                assert r.last_id == len(msgs)


def notices(frames: list) -> list:
    assert all(f["type"] in ("join", "leave") for f in frames), frames
    return [(f["type"], f["payload"]["user"], f["payload"]["room"]) for f in frames]


def assert_error(frames: list, codes: set) -> None:
    """The answer is one error frame, with one of ``codes``."""
    assert len(frames) == 1 and frames[0]["type"] == "error" and frames[0]["code"] in codes, (sorted(codes), frames)
    assert frames[0]["code"] in ERROR_CODES and frames[0]["message"]


def ids_per_stay(p: Peer) -> None:
    """Per peer: between one accepted join and the next, every msg is of that room, ids up by exactly 1."""
    cuts = p.joins + [(len(p.log), None)]
    assert not [f for f in p.log[:cuts[0][0]] if f["type"] == "msg"], "a msg before any join"
    for (start, room), (end, _) in itertools.pairwise(cuts):
        msgs = [f["payload"] for f in p.log[start:end] if f["type"] == "msg"]
        assert all(m["room"] == room for m in msgs)
        ids = [m["id"] for m in msgs]
        assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True, ids


PEERS = 3
peers = st.integers(0, PEERS - 1)
hostile_actions = st.one_of(
    st.tuples(st.just("send"), peers, st.tuples(FRAME_VALUES, st.booleans())),
    st.tuples(st.just("send"), peers, st.tuples(FRAME_VALUES, st.booleans())),
    st.tuples(st.just("send"), peers, wire_texts()),
    st.tuples(st.just("drop"), peers, st.none()),
)
well_formed_actions = st.one_of(
    st.tuples(st.just("send"), peers, st.tuples(GOOD_JOIN, st.just(True))),
    st.tuples(st.just("send"), peers, st.tuples(GOOD_MSG, st.just(True))),
    st.tuples(st.just("send"), peers, st.tuples(GOOD_MSG, st.just(True))),
    st.tuples(st.just("send"), peers, st.just('{"type":"ping"}')),
    st.tuples(st.just("drop"), peers, st.none()),
)
hub_settings = st.fixed_dictionaries({
    "history_limit": st.sampled_from([1, 3, 100]),
    "replay_limit": st.sampled_from([1, 2, 4, 1000]),
    "history_keep": st.sampled_from([0, 0, 2, 5]),
})


class LoopProblems(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


def run_sequence(steps: list, limits: dict) -> None:
    problems: list = []
    handler = LoopProblems()
    logging.getLogger("chat_core").addHandler(handler)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        outside = asyncio.all_tasks()  # this one and asyncio.run's wait_for
        loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx.get("message")))
        s = Settings(db=":memory:", rate=0, join_rate=0, max_conn_per_ip=0, max_text=MAX_TEXT, frame_rate=0,
                     ip_rate=0, ip_join_rate=0, conn_rate=0, room_rate=0, name_rate=0, max_rooms=0,
                     name_reserve=0, **limits)
        server = ChatServer(s)
        await server.start()
        h = Harness(server, PEERS)
        try:
            for action in steps:
                await h.step(action)
            for p in h.all_peers:
                ids_per_stay(p)
        finally:
            live = h.live()
            await server.stop()
        for p in live:  # a stopping server says 1001 to everyone, after what was queued
            assert p.closed_with == 1001 and p.frames == p.log
        await settle()
        assert asyncio.all_tasks() - outside == set()  # no task left behind: senders, writer, timers

    try:
        asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        logging.getLogger("chat_core").removeHandler(handler)
    assert not problems, problems
    assert not handler.records, handler.records


HUB_SETTINGS = settings(max_examples=250, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HUB_SETTINGS
@given(st.lists(hostile_actions, min_size=15, max_size=60), hub_settings)
def test_hub_survives_any_sequence_of_frames_and_drops(steps, limits):
    event(f"steps: {len(steps) // 10 * 10}+")
    run_sequence(steps, limits)


@HUB_SETTINGS
@given(st.lists(well_formed_actions, min_size=15, max_size=80), hub_settings)
def test_hub_stays_consistent_under_well_formed_traffic(steps, limits):
    """Only valid joins (names that collide, tokens, since), messages, pings and drops: the deep paths."""
    event(f"steps: {len(steps) // 10 * 10}+")
    run_sequence(steps, limits)


def test_hub_sequence_regressions():
    """Hand-picked sequences: case-folded names, token takeover, switching rooms and back with since."""
    def j(user, **kw):
        return ("send", kw.pop("slot", 0), ({"type": "join", "payload": {"user": user, **kw}}, True))

    def m(slot, text):
        return ("send", slot, ({"type": "msg", "payload": {"text": text}}, True))

    steps = [
        j("ß", slot=0), j("SS", slot=1), j("ss", slot=1, token=VALID_TOKEN),
        m(1, "took it"), m(1, "2nd"), m(1, "3rd"), m(0, "gone?"),
        j("alice", slot=0, room="red"), m(0, "r1"), m(0, "r2"),
        j("ALICE", slot=2, room="red", token="garbage"), j("Alice", slot=2, room="red", token=OTHER_TOKEN),
        j("alice", slot=0, room="lobby", since=0),
        m(2, "not joined"), j("bob", slot=2, room="red", since=1), j("Bob", slot=2, room="red"),
        ("drop", 1, None), j("alice", slot=1, room="red", token=VALID_TOKEN), j("alice", slot=1, room="red", since=5),
        ("send", 2, b"\xff".decode("latin-1")), ("drop", 2, None), ("drop", 1, None), ("drop", 0, None),
    ]
    for limits in ({"history_limit": 1, "replay_limit": 1, "history_keep": 0},
                   {"history_limit": 100, "replay_limit": 1000, "history_keep": 2}):
        run_sequence(steps, limits)


# --- 3. a real server ---------------------------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class RandomFrames:
    """Seeded random frames for the real server; mirrors the strategies above without hypothesis."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def json_value(self, depth: int = 0) -> Any:
        r = self.r
        k = r.randrange(8 if depth < 3 else 5)
        if k == 0:
            return None
        if k == 1:
            return r.random() < 0.5
        if k == 2:
            return r.choice([0, 1, -1, 2 ** 63, -(2 ** 70), r.randrange(-1000, 1000)])
        if k == 3:
            return r.choice([0.5, -1e300, 1e-300, float(r.randrange(100))])
        if k == 4:
            return self.text(12)
        if k in (5, 6):
            return {self.text(6): self.json_value(depth + 1) for _ in range(r.randrange(4))}
        return [self.json_value(depth + 1) for _ in range(r.randrange(4))]

    def text(self, n: int) -> str:
        r = self.r
        pools = ["abcXYZ019 _-.", "\t\n\r \u3000\u200b\u0007\u0000", "äößẞǅ€😀中文\u202e", '"\\{}[]:,']
        return "".join(r.choice(r.choice(pools)) for _ in range(r.randrange(n + 1)))

    def join(self) -> dict:
        r = self.r
        payload: dict[str, Any] = {"user": r.choice(NAMES + ["fuzz", self.text(8)])}
        if r.random() < 0.7:
            payload["room"] = r.choice(["lobby", "red", "r.e-d_1", "-bad", self.text(6), 5])
        if r.random() < 0.3:
            payload["since"] = r.choice(SINCES)
        if r.random() < 0.2:
            payload["token"] = r.choice(["garbage", "a.b", 3])
        return {"type": "join", "payload": payload}

    def frame(self) -> tuple[str, Any]:
        """(kind, data): kind is 'text', 'binary', 'fragments' or 'oversized'."""
        r = self.r
        k = r.random()
        if k < 0.08:
            return "binary", r.choice([bytes(r.randrange(256) for _ in range(r.randrange(40))),
                                       b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b'{"type":"ping"}'])
        if k < 0.10:  # invalid UTF-8, as a binary frame (as a text frame: see the test after this one)
            return "binary", r.choice(BAD_UTF8)
        if k < 0.11:
            return "oversized", "x" * 70_000
        value = r.choice([
            self.join,
            lambda: {"type": "msg", "payload": {"text": r.choice(["hi", " ", "x" * 2001, self.text(30), 12, None])}},
            lambda: {"type": "msg", "payload": {"text": f"fuzz {r.randrange(10 ** 6)}"}},
            lambda: {"type": "ping", **({"payload": self.json_value()} if r.random() < 0.3 else {})},
            lambda: {"type": r.choice(FRAME_TYPES + [self.text(5), 3, None]), "payload": self.json_value()},
            self.json_value,
        ])()
        text = json.dumps(value, ensure_ascii=r.random() < 0.5)
        if r.random() < 0.1:
            text = text[:r.randrange(len(text) + 1)]
        if r.random() < 0.05:
            text = self.text(40)
        if r.random() < 0.08:
            cut = r.randrange(len(text) + 1)
            return "fragments", [text[:cut], text[cut:]]
        return "text", text


BAD_UTF8 = [b'{"type":"ping"}\xff', b"\xc0\xaf", b"\xf8\x88\x80\x80\x80",
            b'{"type":"msg","payload":{"text":"\xed\xa0\x80"}}']  # the last: a UTF-16 surrogate, UTF-8 encoded


def expected_reply(text: str) -> Expect:
    """The docs' answer to a text frame, under the default `max_text`."""
    return doc_answer(text, DOC_MAX_TEXT)


FUZZ_FRAMES = int(os.environ.get("FUZZ_FRAMES", "600"))


def test_real_server_survives_random_frames_while_others_chat(tmp_path):
    seed = int(os.environ.get("FUZZ_SEED") or random.randrange(2 ** 32))
    print(f"FUZZ_SEED={seed}")
    srv = ServerProcess(["--db", str(tmp_path / "c.db")], log_path=tmp_path / "server.log")
    gen = RandomFrames(seed)
    stats: dict = {"closes": {}, "errors": {}, "frames": 0}

    async def normal_chat(client: Client, stop: asyncio.Event) -> list:
        """Chats in its own room until told to stop; returns what it said."""
        said = []
        while not stop.is_set() or len(said) < 5:
            said.append(f"calm {len(said)}")
            await client.say(said[-1])
            await asyncio.sleep(0.005)
        return said

    async def fuzz(stop: asyncio.Event) -> None:
        client = await Client.open(srv.ws_url, max_size=None)
        try:
            for _ in range(FUZZ_FRAMES):
                kind, data = gen.frame()
                stats["frames"] += 1
                if kind == "text":
                    expect = expected_reply(data)
                elif kind == "fragments":
                    expect = expected_reply("".join(data))
                elif kind == "binary":
                    expect = "binary_not_supported"
                else:
                    expect = 1009  # oversized
                got: list = []
                try:
                    if kind == "fragments":
                        await client.conn.send(iter(data))
                    else:
                        await client.conn.send(data, text=kind != "binary")
                    if isinstance(expect, int):  # a close is coming: send nothing more (it would meet a reset)
                        while True:
                            got.append(await client.recv(timeout=10))
                    await client.send({"type": "ping"})
                    while not any(f["type"] == "pong" for f in got):
                        got.append(await client.recv(timeout=10))
                    if isinstance(expect, Expect) and expect.kind == "ping" and not expect.must \
                            and not any(f["type"] == "error" for f in got):  # that pong answered the frame
                        got.append(await client.recv(timeout=10))
                        while got[-1]["type"] != "pong":
                            got.append(await client.recv(timeout=10))
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd else None
                    stats["closes"][code] = stats["closes"].get(code, 0) + 1
                    assert code == expect, (f"seed {seed}: {kind} {str(data)[:80]!r} closed with {code}, "
                                            f"expected {expect}")
                    client = await Client.open(srv.ws_url, max_size=None)
                    continue
                assert not isinstance(expect, int), f"seed {seed}: {kind} {str(data)[:80]!r} not closed with {expect}"
                errors = [f for f in got if f["type"] == "error"]
                for f in got:
                    assert f["type"] in ("msg", "welcome", "join", "leave", "pong", "error"), f
                    if f["type"] in ("msg", "join", "leave"):
                        assert f["payload"]["room"] != "calm-Q7" and f["payload"].get("user") != "normal"
                for f in got:
                    if f["type"] in ("welcome", "msg"):
                        stats[f["type"]] = stats.get(f["type"], 0) + 1
                codes = [f["code"] for f in errors]
                for c in codes:
                    stats["errors"][c] = stats["errors"].get(c, 0) + 1
                where = f"seed {seed}: {kind} {str(data)[:120]!r}"
                if isinstance(expect, str):
                    assert codes == [expect], f"{where}: got {codes}, expected [{expect!r}]"
                elif expect.must:
                    assert len(codes) == 1 and codes[0] in expect.refusals, \
                        f"{where}: got {codes}, docs say one of {sorted(expect.refusals)}"
                elif codes and codes[0] in expect.may:
                    assert len(codes) == 1, f"{where}: {codes}"
                elif expect.kind == "join":
                    assert codes in ([], ["name_taken"], ["bad_token"]), f"{where}: {codes}"
                    assert codes or [f for f in got if f["type"] == "welcome"], where
                elif expect.kind == "msg":
                    assert codes in ([], ["not_joined"]), f"{where}: {codes}"
                else:
                    assert codes == [], f"{where}: {codes}"
        finally:
            stop.set()
            await client.close()

    async def go() -> None:
        normal = await Client.open(srv.ws_url)
        _, welcome = await normal.join("normal", room="calm-Q7")
        assert welcome["payload"]["users"] == ["normal"]
        await normal.recv_notice("join", "normal")
        stop = asyncio.Event()
        talk = asyncio.ensure_future(normal_chat(normal, stop))
        await fuzz(stop)
        said = await talk
        seen: list = []
        while sum(f["type"] == "msg" for f in seen) < len(said):
            seen.append(await normal.recv(timeout=10))
        await normal.send({"type": "ping"})  # nothing else may be on its way
        while (frame := await normal.recv(timeout=10))["type"] != "pong":
            seen.append(frame)
        assert [f["type"] for f in seen] == ["msg"] * len(said), seen[:5]
        assert [(f["payload"]["user"], f["payload"]["text"]) for f in seen] == [("normal", t) for t in said]
        assert [f["payload"]["id"] for f in seen] == list(range(1, len(said) + 1))
        await normal.close()
        deadline = time.monotonic() + 10
        while (health := get_json(srv.url + "/healthz"))["connections"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert health["status"] == "ok" and health["connections"] == 0, health

    with srv:
        t0 = time.monotonic()
        asyncio.run(asyncio.wait_for(go(), 120))
        print(f"{stats['frames']} random frames in {time.monotonic() - t0:.1f}s: {stats.get('welcome', 0)} welcomes, "
              f"{stats.get('msg', 0)} msgs, closes {stats['closes']}, errors {stats['errors']}")
        assert get_json(srv.url + "/healthz")["status"] == "ok"
    log = srv.log_text()
    assert "Traceback" not in log, f"seed {seed}:\n{log[-3000:]}"
    assert " ERROR" not in log and "ERROR:" not in log, f"seed {seed}:\n{log[-3000:]}"


def test_invalid_utf8_text_frames_close_1007_without_a_traceback(tmp_path):
    """Not possible from a browser, easy from a script: a text frame that is not UTF-8. uvicorn
    closes it with 1007 but logs an ERROR with a traceback unless chat_core.logs quiets it."""
    srv = ServerProcess(["--db", str(tmp_path / "c.db")], log_path=tmp_path / "server.log")

    async def go() -> None:
        for raw in BAD_UTF8:
            client = await Client.open(srv.ws_url)
            await client.join("sender")
            await client.conn.send(raw, text=True)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await client.recv(timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1007  # invalid frame payload data
        assert get_json(srv.url + "/healthz")["status"] == "ok"

    with srv:
        asyncio.run(asyncio.wait_for(go(), 60))
    log = srv.log_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
