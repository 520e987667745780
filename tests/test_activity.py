"""The Activity numbers (chat_core.activity): messages per minute counted from the store, people
online sampled from presence, on both engines against a real server (GET /api/activity), and the
Gradio Activity tab in a real browser."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from browsers import ARTIFACTS, People, expect
from chat_core.activity import OTHER, per_minute_rows
from chat_core.store import MemoryStore, Message, SQLiteStore
from test_gradio_app import start_server
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def activity(srv) -> dict:
    with urllib.request.urlopen(f"{srv.url}/api/activity", timeout=5) as r:
        return json.loads(r.read())


def per_room(snap: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in snap["per_minute"]:
        out[row["room"]] = out.get(row["room"], 0) + row["messages"]
    return {room: n for room, n in out.items() if n}


async def said(client: Client, text: str) -> dict:
    await client.say(text)
    return (await client.recv_type("msg"))["payload"]


def test_messages_per_minute_are_what_was_posted_per_room_and_changes_do_not_count(server):
    async def go():
        alice, bob = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await alice.join("alice", "lobby")
        await bob.join("bob", "games")
        posted = [await said(alice, f"lobby {i}") for i in range(4)]
        for i in range(2):
            await said(bob, f"games {i}")
        await alice.send({"type": "edit", "payload": {"id": posted[0]["id"], "text": "edited"}})
        await alice.recv_type("edit")
        await alice.send({"type": "react", "payload": {"id": posted[1]["id"], "emoji": "👍"}})
        await alice.recv_type("react")
        await alice.send({"type": "delete", "payload": {"id": posted[3]["id"]}})  # a deleted one no longer counts
        await alice.recv_type("delete")
        for c in (alice, bob):
            await c.close()

    run(go())
    snap = activity(server)
    assert per_room(snap) == {"lobby": 3, "games": 2}
    assert snap["totals"]["last_hour"] == 5
    assert {r["room"]: r["messages"] for r in snap["busiest"]} == {"lobby": 3, "games": 2}
    assert len({row["minute"] for row in snap["per_minute"]}) == 60  # every minute of the hour, zeros too


def test_people_online_come_from_presence(server):
    async def go():
        one, two = await Client.open(server.ws_url), await Client.open(server.ws_url)
        await one.join("one", "den")
        await two.join("two", "den")
        deadline = time.monotonic() + 40  # the sampler runs every 10 s: wait for its next sample
        snap = activity(server)
        while not [s for s in snap["online"] if s["room"] == "den" and s["online"] == 2]:
            assert time.monotonic() < deadline, f"no sample with 2 online in den: {snap['online']}"
            await asyncio.sleep(0.5)
            snap = await asyncio.to_thread(activity, server)
        latest = max(s["ts"] for s in snap["online"])
        assert {s["room"]: s["online"] for s in snap["online"] if s["ts"] == latest} == {"all rooms": 2, "den": 2}
        assert snap["totals"]["online"] == 2
        assert {"room": "den", "online": 2, "messages": 0} in snap["busiest"]
        for c in (one, two):
            await c.close()

    run(go())


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_minute_counts_leave_out_older_and_deleted_messages(kind, tmp_path):
    async def go():
        store = MemoryStore() if kind == "memory" else SQLiteStore(str(tmp_path / "c.db"))
        await store.open()
        now = 1_699_999_980.0  # a minute's start
        await store.append(
            [
                Message("a", 1, "u", "old", now - 3600),
                Message("a", 2, "u", "x", now + 1),
                Message("a", 3, "u", "y", now + 59),
                Message("a", 4, "u", "z", now + 61),
                Message("b", 1, "u", "gone", now + 5, deleted=True),
                Message("b", 2, "u", "w", now + 70),
            ]
        )
        got = await store.minute_counts(now - 60)
        await store.close()
        return got

    assert run(go()) == [("a", 1_699_999_980, 2), ("a", 1_700_000_040, 1), ("b", 1_700_000_040, 1)]


def test_rooms_past_the_plotted_ones_are_summed_as_other():
    counts = [("r1", 0, 5), ("r2", 0, 3), ("r3", 60, 1)]
    rows = per_minute_rows(counts, since=0, now=61, rooms=1)
    assert rows == [
        {"minute": 0, "room": OTHER, "messages": 3},
        {"minute": 0, "room": "r1", "messages": 5},
        {"minute": 60, "room": OTHER, "messages": 1},
        {"minute": 60, "room": "r1", "messages": 0},
    ]


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_the_activity_tab_plots_the_messages_posted(tmp_path, people: People):
    """The observable: the plot is Vega-Lite drawn as SVG (Gradio's native plots), so its legend's
    room names are text in the page; a room that posted shows up in the per-minute plot's legend."""
    srv = start_server(tmp_path)
    try:

        async def post(room: str, n: int) -> None:
            c = await Client.open(srv.ws_url)
            await c.join("plotter", room)
            for i in range(n):
                await said(c, f"point {i}")
            await c.close()

        def posted(room: str, n: int) -> None:
            # Playwright's sync API holds this thread's event loop: the client runs on a thread of its own.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, post(room, n)).result(60)

        posted("plotroom", 3)
        page = people.open(srv.url)
        page.get_by_role("tab", name="Activity").click()
        plot = page.locator("#activity-per-minute")
        expect(plot.locator("svg.marks")).to_contain_text("plotroom", timeout=30_000)
        expect(page.locator("#activity-totals")).to_contain_text("messages in the last hour")
        expect(page.locator("#activity-busiest")).to_contain_text("plotroom")
        expect(page.locator("#activity-online svg.marks")).to_contain_text("all rooms", timeout=30_000)
        posted("lateroom", 1)  # the timer refreshes the open tab
        expect(page.locator("#activity-busiest")).to_contain_text("lateroom", timeout=30_000)
        expect(page.locator("#activity-totals")).to_contain_text("4 messages in the last hour")
        expect(plot.locator("svg.marks")).to_contain_text("lateroom")  # a new series shows up in the legend
        path = people.shot(page, "light")
        shutil.copy(path, "/tmp/activity.png")

        phone = people.open(srv.url, scheme="dark", width=390, height=844)
        phone.get_by_role("tab", name="Activity").click()
        expect(phone.locator("#activity-per-minute svg.marks")).to_contain_text("plotroom", timeout=30_000)
        box = phone.locator("#activity-per-minute").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390  # fits a phone's width
        people.shot(phone, "phone-dark")
    finally:
        srv.stop()
    assert ARTIFACTS.exists()
