"""Search and export of a room's history against real servers on both engines: what is
found (and what is not: deleted messages, the old text of an edited one), what a file holds
in each format, and the limits a public link needs (bad queries, bans, floods of exports);
then a room of 100,000 messages exported in bounded memory, and the matching rules alone."""

import asyncio
import csv
import io
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from chat_core.export import Format, cell, markdown_text
from chat_core.search import BadQuery, Query
from chat_core.store import Message, SQLiteStore
from servers import ADMIN, ServerProcess
from test_moderation import run
from wsclient import Client


def search(srv, room, q, **params):
    r = httpx.get(f"{srv.url}/api/rooms/{room}/search", params={"q": q, **params}, timeout=10)
    assert r.status_code == 200, r.text
    return [m["text"] for m in r.json()["messages"]]


def export(srv, room, fmt):
    r = httpx.get(f"{srv.url}/api/rooms/{room}/export", params={"format": fmt}, timeout=30)
    assert r.status_code == 200, r.text
    return r


async def post(url, room, *texts, user="alice"):
    """Send ``texts`` to ``room``; the ids they got, in order."""
    c = await Client.open(url)
    await c.join(user, room=room)
    ids = []
    for text in texts:
        await c.say(text)
        ids.append((await c.recv_type("msg"))["payload"]["id"])
    return c, ids


def test_search_finds_what_a_room_says_now_and_never_a_deleted_message(mod):
    srv = mod

    async def go():
        c, (hello, creme, gone, edited) = await post(
            srv.ws_url, "kitchen", "Hello world", "Crème brûlée tonight?", "delete me please", "first draft"
        )
        await c.send({"type": "delete", "payload": {"id": gone}})
        await c.recv_type("delete")
        await c.send({"type": "edit", "payload": {"id": edited, "text": "final wording"}})
        await c.recv_type("edit")
        other, _ = await post(srv.ws_url, "garden", "hello from the garden", user="bob")
        await c.close()
        await other.close()

    run(go())
    assert search(srv, "kitchen", "hello") == ["Hello world"]  # one room only
    assert search(srv, "kitchen", "CREME brul") == ["Crème brûlée tonight?"]  # case, accents, word starts
    assert search(srv, "kitchen", "delete") == []  # deleted: gone from the search too
    assert search(srv, "kitchen", "draft") == [] and search(srv, "kitchen", "final") == ["final wording"]
    assert search(srv, "kitchen", "hello tonight") == []  # every word must be there
    assert search(srv, "kitchen", '"world*) (') == ["Hello world"]  # no query syntax gets through:
    assert search(srv, "kitchen", "world OR tonight") == []  # OR is one more word to find
    assert search(srv, "kitchen", "orld") == []  # the start of a word, not its middle
    body = httpx.get(f"{srv.url}/api/rooms/kitchen/search", params={"q": "hello"}).json()
    assert body["searched"] == ("all" if "--db" in srv.args else 10_000)


def test_bad_searches_and_exports_get_a_code_not_a_crash(mod):
    srv = mod
    base = f"{srv.url}/api/rooms"
    for url, params, status, code in [
        (f"{base}/kitchen/search", {"q": "?!*"}, 422, "bad_query"),
        (f"{base}/kitchen/search", {"q": " ".join(f"w{i}" for i in range(11))}, 422, "bad_query"),
        (f"{base}/bad%20room/search", {"q": "x"}, 422, "bad_room"),
        (f"{base}/bad%20room/export", {}, 422, "bad_room"),
    ]:
        r = httpx.get(url, params=params)
        assert r.status_code == status and r.json()["detail"]["code"] == code, r.text
    assert httpx.get(f"{base}/kitchen/search", params={"q": "x" * 201}).status_code == 422
    assert httpx.get(f"{base}/kitchen/export", params={"format": "exe"}).status_code == 422
    flood = [httpx.get(f"{base}/kitchen/search", params={"q": "x"}).status_code for _ in range(15)]
    assert flood[:10] == [200] * 10 and 429 in flood[10:]
    assert httpx.get(f"{srv.url}/healthz").status_code == 200
    empty = export(srv, "nobody-here", "csv")
    assert empty.text == "id,time,user,text,edited,bot\r\n"  # an empty room: the head alone


def test_an_export_holds_every_message_but_the_deleted_in_each_format(mod):
    srv = mod
    hostile = ['=HYPERLINK("http://evil.example")', "two\nlines, a <script>x</script> and *stars*", "plain"]

    async def go():
        c, ids = await post(srv.ws_url, "lobby", *hostile, "secret typo")
        await c.send({"type": "delete", "payload": {"id": ids[-1]}})
        await c.recv_type("delete")
        await c.close()
        return ids

    ids = run(go())
    lines = export(srv, "lobby", "jsonl")
    assert lines.headers["content-disposition"] == 'attachment; filename="chat-lobby.jsonl"'
    records = [json.loads(line) for line in lines.text.splitlines()]
    assert [r["text"] for r in records] == hostile and [r["id"] for r in records] == ids[:3]
    assert all(r["user"] == "alice" and r["time"].endswith("Z") for r in records)

    rows = list(csv.DictReader(io.StringIO(export(srv, "lobby", "csv").text)))
    assert [r["text"] for r in rows] == ["'" + hostile[0], *hostile[1:]]  # no formula for a spreadsheet to run
    md = export(srv, "lobby", "md")
    assert md.headers["content-type"].startswith("text/markdown")
    assert "secret typo" not in md.text + lines.text and "<script>" not in md.text
    assert "\\<script\\>" in md.text and "\\*stars\\*" in md.text
    r = httpx.get(f"{srv.url}/api/rooms/lobby/export")
    # Three exports at once from one address, then one per 10 s:
    assert r.status_code == 429 and r.json()["detail"]["code"] == "rate_limited" and r.headers["retry-after"]


def test_a_banned_address_can_neither_search_nor_export(mod):
    srv = mod
    r = httpx.post(f"{srv.url}/api/admin/bans", headers=ADMIN, json={"address": "127.0.0.1", "seconds": 600})
    assert r.status_code == 200, r.text
    for path in ("/api/rooms/lobby/search?q=hi", "/api/rooms/lobby/export"):
        r = httpx.get(srv.url + path)
        assert r.status_code == 403 and r.json()["detail"]["code"] == "banned", r.text


def test_a_room_of_100_000_messages_streams_in_bounded_memory_and_parses_back(tmp_path):
    db, n, text = tmp_path / "big.db", 100_000, "x" * 1000  # about 110 MB of JSON Lines

    async def fill():
        store = SQLiteStore(str(db))
        await store.open()
        t0 = time.time() - n
        for start in range(0, n, 5000):
            await store.append([Message("big", i, "filler", text, t0 + i) for i in range(start + 1, start + 5001)])
        await store.close()

    asyncio.run(fill())
    with ServerProcess(["--db", str(db)], log_path=tmp_path / "server.log") as srv:
        rss = [resident(srv.proc.pid)]
        seen, last, size = 0, 0, 0
        with httpx.stream("GET", f"{srv.url}/api/rooms/big/export", params={"format": "jsonl"}, timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                record = json.loads(line)
                assert record["id"] == last + 1 and record["text"] == text
                last, seen, size = record["id"], seen + 1, size + len(line)
                if seen % 10_000 == 0:
                    rss.append(resident(srv.proc.pid))
        assert seen == n and size > 100_000_000
        grew = max(rss) - rss[0]
        print(f"export of {size / 1e6:.0f} MB: the server's memory grew {grew / 1e6:.1f} MB at most")
        assert grew < 40_000_000, rss  # the server never held more than a few pages


def resident(pid):
    """The process's resident memory in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_an_older_database_is_indexed_when_opened(tmp_path):
    """A database from before search (no full-text table, no row numbers) is indexed on open."""
    path = str(tmp_path / "old.db")

    async def go():
        store = SQLiteStore(path)
        await store.open()
        await store.append([Message("lobby", i, "ann", f"note {i} about tea", float(i)) for i in range(1, 4)])
        await store.close()
        old = sqlite3.connect(path)
        old.execute("DROP TABLE message_words")
        old.execute("UPDATE messages SET n = NULL")
        old.commit()
        old.close()
        store = SQLiteStore(path)
        await store.open()
        found = await store.search("lobby", Query.parse("tea"), 10)
        await store.append([Message("lobby", 4, "ann", "more tea", 4.0)])
        after = await store.search("lobby", Query.parse("tea"), 10)
        await store.close()
        return [m.id for m in found], [m.id for m in after]

    assert asyncio.run(go()) == ([3, 2, 1], [4, 3, 2, 1])


@pytest.mark.parametrize(
    ("query", "text", "found"),
    [
        ("tea", "Tea time", True),
        ("ti", "Tea time", True),
        ("ime", "Tea time", False),  # the start of a word, not the middle
        ("cafe", "Café au lait", True),
        ("ÉTÉ", "un été chaud", True),
        ("don t", "don't", True),
        ("tea coffee", "tea only", False),
        ("a", "a cup", True),
        ("a", "another cup", False),  # one letter: a whole word
        ("file", "\ufb01le", False),  # no compatibility folding: as SQLite's index sees it
    ],
)
def test_the_matching_rules_every_engine_shares(query, text, found):
    assert Query.parse(query).matches(text) is found


def test_queries_are_words_and_nothing_else():
    assert Query.parse('a" OR b*').fts() == '"a" "or"* "b"'  # one letter: a whole word
    for bad in ("", "  ", "*?!", "x" * 201, " ".join(f"w{i}" for i in range(11))):
        with pytest.raises(BadQuery):
            Query.parse(bad)


def test_what_goes_into_a_csv_cell_and_a_markdown_line():
    assert [cell(t) for t in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "ok", "1-2")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "ok",
        "1-2",
    ]
    assert markdown_text("[link](http://x) <b>") == "\\[link\\]\\(http://x\\) \\<b\\>"
    assert {f.value for f in Format} == {"jsonl", "csv", "md"}


def test_a_search_past_its_time_is_stopped_not_left_running(tmp_path, monkeypatch):
    import chat_core.store

    async def go():
        store = SQLiteStore(str(tmp_path / "broad.db"))
        await store.open()
        await store.append([Message("big", i, "u", "the same words again", float(i)) for i in range(1, 20_001)])
        assert len(await store.search("big", Query.parse("same"), 5)) == 5
        monkeypatch.setattr(chat_core.store, "BUDGET", 0.0)
        try:
            with pytest.raises(BadQuery, match="too broad"):
                await store.search("other", Query.parse("same words"), 5)  # every message read, none kept
        finally:
            await store.close()

    asyncio.run(go())


def test_an_export_whose_reader_stalls_frees_its_place(monkeypatch):
    import chat_core.history_access as access
    from chat_core.moderation import Moderation, ModerationStore
    from chat_core.refusal import Refusal
    from chat_core.store import MemoryStore

    async def go():
        store = MemoryStore()
        await store.append([Message("lobby", i, "u", f"m{i}", float(i)) for i in range(1, 2000)])
        history = access.HistoryAccess(store, Moderation(ModerationStore()))
        stalled = history.export(history.check_export("lobby", "1.2.3.4"), Format.JSONL, "1.2.3.4")
        await stalled.__anext__()  # the head went out; the reader reads no more
        with pytest.raises(Refusal) as info:
            history.check_export("lobby", "1.2.3.4")
        assert info.value.code == "busy"
        monkeypatch.setattr(access, "EXPORT_HOLD", 0.0)
        history.check_export("lobby", "1.2.3.4")  # no longer counted
        await stalled.aclose()
        assert history.running == {}

    asyncio.run(go())
