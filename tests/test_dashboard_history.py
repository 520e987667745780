"""The History tab in a real browser on `python gradio_app.py`: a search finds a message
(and not a deleted one, nor markup run as HTML), and the download parses back."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator

import pytest

from browsers import People, expect
from servers import ServerProcess
from test_gradio_app import start_server
from wsclient import Client

HOSTILE = "<img src=x onerror=alert(1)> pancakes"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("history-app"))

    async def fill() -> None:
        c = await Client.open(srv.ws_url)
        await c.join("alice", room="kitchen")
        for text in ["Pancakes on Sunday?", HOSTILE, "secret pancakes recipe", "=1+1 pancakes"]:
            await c.say(text)
        ids = [(await c.recv_type("msg"))["payload"]["id"] for _ in range(4)]
        await c.send({"type": "delete", "payload": {"id": ids[2]}})
        await c.recv_type("delete")
        await c.close()

    asyncio.run(asyncio.wait_for(fill(), 30))
    yield srv
    srv.stop()


def history(people: People, url: str, **kwargs):
    page = people.open(url, **kwargs)
    page.get_by_role("tab", name="History").click()
    room = page.locator("#history-room input")
    room.fill("kitchen")
    room.press("Enter")
    return page


def test_a_search_finds_the_messages_shown_as_text_and_never_a_deleted_one(app: ServerProcess, people: People) -> None:
    page = history(people, app.url)
    page.locator("#history-query textarea, #history-query input").first.fill("pancake")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("3 messages found")).to_be_visible()
    results = page.locator("#history-results")
    expect(results.get_by_role("gridcell", name="Pancakes on Sunday?")).to_be_visible()
    expect(results.get_by_role("gridcell", name=HOSTILE)).to_be_visible()  # as text
    expect(results.get_by_text("secret pancakes recipe")).to_have_count(0)
    assert page.locator("img[src='x']").count() == 0 and not people.dialogs
    people.shot(page, "search")


def test_the_download_is_the_room_without_its_deleted_message(app: ServerProcess, people: People) -> None:
    page = history(people, app.url)
    page.get_by_label("CSV").check()
    page.get_by_role("button", name="Export").click()
    button = page.locator("#history-download")
    expect(button).to_be_visible()
    expect(page.get_by_text("deleted messages left out")).to_be_visible()
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "chat-kitchen.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [r["text"] for r in rows] == ["Pancakes on Sunday?", HOSTILE, "'=1+1 pancakes"]
    assert all(r["user"] == "alice" for r in rows)
    page.get_by_label("JSON Lines").check()
    expect(button).to_be_hidden()  # another format: export again
    page.get_by_role("button", name="Export").click()
    with page.expect_download() as info:
        button.click()
    lines = open(info.value.path(), encoding="utf-8").read().splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["Pancakes on Sunday?", HOSTILE, "=1+1 pancakes"]


def test_the_tab_at_phone_width_in_dark_mode(app: ServerProcess, people: People) -> None:
    page = history(people, app.url, scheme="dark", width=390, height=844)
    page.locator("#history-query textarea, #history-query input").first.fill("sunday")
    page.locator("#history-query textarea, #history-query input").first.press("Enter")
    expect(page.get_by_text("1 message found")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1
    people.shot(page, "phone-dark")
