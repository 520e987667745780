"""Frame parsing and validation, no sockets (docs/protocol.md, client -> server)."""

import json

import pytest

from chat_core import protocol
from chat_core.protocol import Join, Msg, Ping, ProtocolError, parse


def code_of(raw, max_text=2000):
    with pytest.raises(ProtocolError) as info:
        parse(raw, max_text)
    assert info.value.message and info.value.message[0].isupper()
    return info.value.code


def test_seed_frames_parse():
    assert parse('{"type":"join","payload":{"user":"alice"}}', 2000) == Join("alice", "lobby", None, None)
    assert parse('{"type":"msg","payload":{"text":"Hello everyone"}}', 2000) == Msg("Hello everyone")
    assert parse('{"type":"ping"}', 2000) == Ping()


def test_join_additions():
    j = parse(
        json.dumps({"type": "join", "payload": {"user": "  bob ", "room": "py-3.10", "since": 7, "token": "t"}}), 10
    )
    assert j == Join("bob", "py-3.10", 7, "t")


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "bad_json"),
        ("", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('"msg"', "bad_frame"),
        ("{}", "bad_frame"),
        ('{"type": 3}', "bad_frame"),
        ('{"type":"msg","payload":[]}', "bad_frame"),
        ('{"type":"shout"}', "unknown_type"),
        ('{"type":"msg"}', "bad_field"),
        ('{"type":"msg","payload":{"text":5}}', "bad_field"),
        ('{"type":"msg","payload":{"text":""}}', "empty_text"),
        ('{"type":"msg","payload":{"text":" \\n\\t "}}', "empty_text"),
        ('{"type":"join","payload":{}}', "bad_field"),
        ('{"type":"join","payload":{"user":null}}', "bad_field"),
        ('{"type":"join","payload":{"user":"   "}}', "bad_name"),
        ('{"type":"join","payload":{"user":"' + "x" * 33 + '"}}', "bad_name"),
        ('{"type":"join","payload":{"user":"a\\u0000b"}}', "bad_name"),
        ('{"type":"join","payload":{"user":"a\\nb"}}', "bad_name"),
        ('{"type":"join","payload":{"user":"a\\u202eb"}}', "bad_name"),
        ('{"type":"join","payload":{"user":"a","room":""}}', "bad_room"),
        ('{"type":"join","payload":{"user":"a","room":"../etc"}}', "bad_room"),
        ('{"type":"join","payload":{"user":"a","room":7}}', "bad_field"),
        ('{"type":"join","payload":{"user":"a","since":-1}}', "bad_field"),
        ('{"type":"join","payload":{"user":"a","since":"3"}}', "bad_field"),
        ('{"type":"join","payload":{"user":"a","since":true}}', "bad_field"),
        ('{"type":"join","payload":{"user":"a","token":1}}', "bad_field"),
    ],
)
def test_bad_frames(raw, code):
    assert code_of(raw) == code


def test_text_limit_counts_characters():
    assert parse(json.dumps({"type": "msg", "payload": {"text": "é" * 10}}), 10) == Msg("é" * 10)
    assert code_of(json.dumps({"type": "msg", "payload": {"text": "é" * 11}}), 10) == "text_too_long"
    assert parse(json.dumps({"type": "msg", "payload": {"text": "x" * 5000}}), 0).text == "x" * 5000


def test_name_of_32_characters_is_fine():
    assert parse(json.dumps({"type": "join", "payload": {"user": "n" * 32}}), 10).user == "n" * 32


def test_outgoing_frames_match_the_seed_shapes():
    assert json.loads(protocol.pong()).keys() == {"type", "ts"}
    err = json.loads(protocol.error("bad_json", "Nope."))
    assert err == {"type": "error", "code": "bad_json", "message": "Nope."}
    note = json.loads(protocol.notice("join", "alice", "lobby"))
    assert note["type"] == "join" and note["payload"]["user"] == "alice" and isinstance(note["payload"]["ts"], float)


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\ud83d"])
def test_a_lone_surrogate_escape_is_refused_at_the_edge(escape):
    """Such a string cannot be stored (SQLite encodes UTF-8): accepting it would fail
    the whole history batch it was written with, other people's messages included."""
    with pytest.raises(ProtocolError) as e:
        parse('{"type": "msg", "payload": {"text": "' + escape + '"}}', 2000)
    assert e.value.code == "bad_json"
    assert parse('{"type": "msg", "payload": {"text": "\\ud83d\\ude00"}}', 2000) == Msg("\U0001f600")  # a pair is fine


def test_new_frames_parse():
    assert protocol.parse('{"type":"typing"}', 2000) == protocol.Typing()
    assert protocol.parse('{"type":"msg","payload":{"text":"hi","cid":"a-1.b:c_D"}}', 2000) == protocol.Msg(
        "hi", "a-1.b:c_D"
    )
    assert protocol.parse('{"type":"edit","payload":{"id":4,"text":"new"}}', 2000) == protocol.Edit(4, "new")
    assert protocol.parse('{"type":"delete","payload":{"id":4}}', 2000) == protocol.Delete(4)
    for emoji in [
        "👍",
        "👍🏽",
        "👩\u200d💻",
        "🇫🇷",
        "1️⃣",
        "❤️",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ]:
        assert protocol.parse(json.dumps({"type": "react", "payload": {"id": 1, "emoji": emoji}}), 2000).emoji == emoji


@pytest.mark.parametrize(
    "raw,code",
    [
        ('{"type":"msg","payload":{"text":"hi","cid":""}}', "bad_field"),
        ('{"type":"msg","payload":{"text":"hi","cid":"has space"}}', "bad_field"),
        ('{"type":"msg","payload":{"text":"hi","cid":"' + "x" * 65 + '"}}', "bad_field"),
        ('{"type":"msg","payload":{"text":"hi","cid":7}}', "bad_field"),
        ('{"type":"edit","payload":{"text":"no id"}}', "bad_field"),
        ('{"type":"edit","payload":{"id":0,"text":"x"}}', "bad_field"),
        ('{"type":"edit","payload":{"id":"4","text":"x"}}', "bad_field"),
        ('{"type":"edit","payload":{"id":4,"text":"  "}}', "empty_text"),
        ('{"type":"edit","payload":{"id":4}}', "bad_field"),
        ('{"type":"delete","payload":{"id":true}}', "bad_field"),
        ('{"type":"react","payload":{"id":4,"emoji":"a"}}', "bad_emoji"),
        ('{"type":"react","payload":{"id":4,"emoji":"👍👍👍👍👍👍👍👍👍👍👍"}}', "bad_emoji"),
        ('{"type":"react","payload":{"id":4,"emoji":"<b>"}}', "bad_emoji"),
        ('{"type":"react","payload":{"id":4,"emoji":""}}', "bad_emoji"),
        ('{"type":"react","payload":{"id":4}}', "bad_field"),
    ],
)
def test_bad_new_frames(raw, code):
    with pytest.raises(ProtocolError) as exc:
        protocol.parse(raw, 2000)
    assert exc.value.code == code


def test_a_refused_msg_carries_its_cid():
    with pytest.raises(ProtocolError) as exc:
        protocol.parse('{"type":"msg","payload":{"text":"   ","cid":"c9"}}', 2000)
    assert (exc.value.code, exc.value.cid) == ("empty_text", "c9")
    assert json.loads(protocol.error("rate_limited", "Slow down.", "c9"))["cid"] == "c9"
    assert "cid" not in json.loads(protocol.error("rate_limited", "Slow down."))
