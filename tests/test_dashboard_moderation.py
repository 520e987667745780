"""The Moderation tab in a real browser on `python gradio_app.py --admin-token …`: not
there for others, a sign-in that takes the token, and actions that reach open chat
pages (a delete removes the message, a topic shows, a kick closes the page's chat)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from browsers import MESSAGES, People, expect, expect_message, expect_state, join, say
from servers import ServerProcess
from test_gradio_app import start_server
from test_gradio_security import log_in

TOKEN = "dashboard-token-0123456789"
HOSTILE = "<img src=x onerror=alert(1)> **bold**"


@pytest.fixture(scope="module")
def mod_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("mod-app"), args=("--admin-token", TOKEN))
    yield srv
    srv.stop()


def moderation_tab(page):
    return page.get_by_role("tab", name="Moderation")


def sign_in(people: People, url: str):
    page = people.open(url + "/?admin")
    moderation_tab(page).click()
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in as moderator").click()
    expect(page.get_by_text("Signed in.")).to_be_visible()  # (once the views are filled in)
    return page


def test_the_tab_is_not_there_for_others_and_a_wrong_token_opens_nothing(
    mod_app: ServerProcess, people: People
) -> None:
    visitor = people.open(mod_app.url)
    expect(visitor.get_by_role("tab", name="Chat")).to_be_visible()
    expect(moderation_tab(visitor)).to_have_count(0)
    expect(visitor.get_by_role("button", name="Delete message")).to_have_count(0)
    expect(visitor.get_by_label("Admin token")).to_have_count(0)
    page = people.open(mod_app.url + "/?admin")
    moderation_tab(page).click()
    page.get_by_label("Admin token").fill("not the token at all")
    page.get_by_role("button", name="Sign in as moderator").click()
    expect(page.get_by_text("Wrong token.").first).to_be_visible()
    expect(page.get_by_role("button", name="Delete message")).to_be_hidden()
    assert TOKEN not in page.content()


def test_deleting_from_the_dashboard_removes_the_message_from_an_open_chat(
    mod_app: ServerProcess, people: People
) -> None:
    chat = people.open(mod_app.url)
    join(chat, "alice")
    say(chat, "buy cheap watches")
    expect_message(chat, "buy cheap watches")
    msg_id = chat.locator(f"{MESSAGES} li[data-id]").last.get_attribute("data-id")
    say(chat, HOSTILE)
    expect_message(chat, HOSTILE)
    admin = sign_in(people, mod_app.url)
    expect(admin.get_by_role("gridcell", name="buy cheap watches")).to_be_visible()  # the recent messages, with ids
    expect(admin.get_by_role("gridcell", name=HOSTILE)).to_be_visible()  # shown as text
    assert admin.locator("img[src='x']").count() == 0 and not people.dialogs
    admin.get_by_label("Message id").fill(str(msg_id))
    admin.get_by_role("button", name="Delete message").click()
    expect(admin.get_by_text(f"Message {msg_id} deleted.")).to_be_visible()
    expect_message(chat, "buy cheap watches", count=0)
    expect(admin.get_by_role("gridcell", name="delete", exact=True).first).to_be_visible()  # in the audit log
    people.shot(admin, "moderation")


def test_topic_and_kick_from_the_dashboard_reach_the_chat_page(mod_app: ServerProcess, people: People) -> None:
    chat = people.open(mod_app.url)
    join(chat, "bob")
    admin = sign_in(people, mod_app.url)
    admin.get_by_label("Topic").fill("Release day: be nice")
    admin.get_by_role("button", name="Apply to room").click()
    expect(chat.get_by_test_id("chat-topic")).to_have_text("Release day: be nice")
    admin.get_by_role("textbox", name="Name", exact=True).fill("bob")
    admin.get_by_role("button", name="Kick from room").click()
    expect_state(chat, "replaced")
    expect(chat.get_by_test_id("chat-status")).to_contain_text("A moderator removed you")
    late = people.open(mod_app.url)
    join(late, "carol")
    expect(late.get_by_test_id("chat-topic")).to_have_text("Release day: be nice")
    people.shot(late, "topic")


def test_moderator_logins_see_the_tab_and_others_do_not(tmp_path, people: People) -> None:
    srv = start_server(tmp_path, args=("--auth", "mod:pw-mod,bob:pw-bob", "--moderators", "mod"))
    try:
        bob = log_in(people, srv.url, "bob", "pw-bob")
        expect(bob.get_by_role("tab", name="Chat")).to_be_visible()
        expect(moderation_tab(bob)).to_have_count(0)
        bob.goto(srv.url + "/?admin")  # asking does not help a login that is not a moderator
        expect(bob.get_by_role("tab", name="Chat")).to_be_visible()
        expect(bob.get_by_label("Admin token")).to_have_count(0)
        expect(bob.get_by_role("button", name="Delete message")).to_have_count(0)
        mod = log_in(people, srv.url, "mod", "pw-mod")
        moderation_tab(mod).click()
        mod.get_by_role("checkbox", name="Locked (read-only)").check()
        mod.get_by_role("button", name="Apply to room").click()
        expect(mod.get_by_role("gridcell", name="lock", exact=True)).to_be_visible()  # audited, by "mod"
        expect(mod.get_by_role("gridcell", name="mod", exact=True)).to_be_visible()
    finally:
        srv.stop()


@pytest.mark.parametrize("scheme", ["dark"])
def test_the_tab_at_phone_width_in_dark_mode(mod_app: ServerProcess, people: People, scheme: str) -> None:
    page = people.open(mod_app.url + "/?admin", scheme=scheme, width=390, height=844)
    moderation_tab(page).click()
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in as moderator").click()
    delete = page.get_by_role("button", name="Delete message")
    expect(delete).to_be_visible()
    box = delete.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390  # nothing off the screen
    people.shot(page, "phone-dark")
