"""The chat widget in a real browser: Debian's Chromium driven by Playwright.

Every test talks to one real server, `python gradio_app.py` in a subprocess on a free
loopback port with its own SQLite file, shared by the module; the tests that start,
stop or cut their own servers are in test_browser_servers.py. Each person is a
separate browser context (own localStorage), the way two people on two machines are.
Screenshots go to tests/artifacts/ (gitignored); look at them.

Without Playwright or Chromium these tests skip, except on CI, where they fail.
The `browser` and `people` fixtures are in conftest.py, made of tests/browsers.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from browsers import (
    MESSAGES,
    Page,
    People,
    expect,
    expect_message,
    expect_state,
    expect_users,
    join,
    messages,
    say,
    users,
)
from servers import ServerProcess
from test_gradio_app import start_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


# --- fixtures: one server for the tests that do not stop it -------------------


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("gradio-app"))
    yield srv
    srv.stop()


# --- the tests ---------------------------------------------------------------


def test_two_pages_chat_both_ways_and_a_late_page_sees_history(app_server: ServerProcess, people: People) -> None:
    room = "two-pages"
    alice = people.open(app_server.url)
    join(alice, "alice", room)
    bob = people.open(app_server.url)
    join(bob, "bob", room)
    expect_users(alice, ["alice", "bob"])
    expect_users(bob, ["alice", "bob"])
    expect(alice.locator(f"{MESSAGES} li.chat-system", has_text="bob joined")).to_have_count(1)

    say(alice, "Hello Bob, this is Alice.")
    expect_message(bob, "Hello Bob, this is Alice.")
    say(bob, "Hi Alice!\nTwo lines from Bob.")
    expect_message(alice, "Two lines from Bob.")
    # own messages are set apart, with author and local time
    own = alice.locator(f"{MESSAGES} li.chat-own")
    expect(own).to_have_count(1)
    expect(own.locator(".chat-author")).to_have_text("alice")
    expect(own.locator("time.chat-time")).to_have_text(re.compile(r"\d"))
    assert alice.locator(f"{MESSAGES} li[data-id]").last.get_attribute("class") == "chat-msg"
    assert messages(alice)[-1][2] == "Hi Alice!\nTwo lines from Bob."
    people.shot(alice, "alice")

    carol = people.open(app_server.url)
    join(carol, "carol", room)
    assert [(m[1], m[2]) for m in messages(carol)] == [
        ("alice", "Hello Bob, this is Alice."),
        ("bob", "Hi Alice!\nTwo lines from Bob."),
    ]
    expect_users(carol, ["alice", "bob", "carol"])
    expect_users(alice, ["alice", "bob", "carol"])

    bob.context.close()  # bob closes his tab
    expect_users(alice, ["alice", "carol"])
    expect_users(carol, ["alice", "carol"])
    expect(alice.locator(f"{MESSAGES} li.chat-system", has_text="bob left")).to_have_count(1)
    expect(alice.get_by_test_id("chat-online")).to_have_text("2")
    people.shot(carol, "carol-after-bob-left")


XSS_TEXT = (
    '<img src=x onerror="window.__pwned=1;alert(1)"> <script>window.__pwned=2;alert(2)</script> '
    '<a href="javascript:window.__pwned=3;alert(3)">click me</a> javascript:alert(4) '
    "<b onmouseover=alert(5)>bold?</b> see https://example.com/page?q=1&r=2."
)
XSS_NAME = "<img src=y onerror=alert(6)>"


def test_message_html_is_shown_as_text_and_runs_nothing(app_server: ServerProcess, people: People) -> None:
    room = "xss"
    mallory = people.open(app_server.url)
    join(mallory, XSS_NAME, room)
    victim = people.open(app_server.url)
    join(victim, "victim", room)
    say(mallory, XSS_TEXT)
    expect_message(victim, "click me")

    for page in (victim, mallory):
        text = page.locator(f"{MESSAGES} li[data-id] .chat-text").last
        assert text.text_content() == XSS_TEXT
        expect(page.locator(f"{MESSAGES} img, {MESSAGES} script, {MESSAGES} b, {MESSAGES} [onerror]")).to_have_count(0)
        expect(page.locator('[data-testid="chat-users"] img')).to_have_count(0)
        assert XSS_NAME in users(page)
        links = page.locator(f"{MESSAGES} a")
        expect(links).to_have_count(1)
        assert links.get_attribute("href") == "https://example.com/page?q=1&r=2"
        assert links.text_content() == "https://example.com/page?q=1&r=2"  # the full stop stays text
        assert links.get_attribute("rel") == "noopener noreferrer"
        assert links.get_attribute("target") == "_blank"
        # hover and click the would-be payloads: they are plain text
        text.hover()
        text.click(position={"x": 5, "y": 5})
        page.wait_for_timeout(300)
        assert page.evaluate("window.__pwned") is None
    people.shot(victim, "victim")
    # `people` asserts at teardown that no dialog opened and no page error happened


def test_plain_page_works_the_same_and_talks_with_the_gradio_page(app_server: ServerProcess, people: People) -> None:
    room = "plain"
    dora = people.open(app_server.url + "/chat")
    assert dora.title() == "Realtime chat"
    join(dora, "dora", room)
    erin = people.open(app_server.url + "/chat")
    join(erin, "erin", room)
    gus = people.open(app_server.url)  # the Gradio page, same room
    join(gus, "gus", room)
    expect_users(dora, ["dora", "erin", "gus"])
    say(dora, "from the plain page")
    expect_message(erin, "from the plain page")
    expect_message(gus, "from the plain page")
    say(gus, "from the gradio page")
    expect_message(dora, "from the gradio page")
    erin.context.close()
    expect_users(dora, ["dora", "gus"])
    people.shot(dora, "plain")


def contrast_script() -> str:
    """JS: the WCAG contrast ratio of an element's text against what is painted behind it."""
    return """el => {
      const rgb = s => {  // "rgb(r, g, b)", "rgba(r, g, b, a)" or "color(srgb r g b / a)"
        const m = s.match(/[\\d.]+/g).map(Number);
        const k = s.startsWith('color(') ? 255 : 1;
        return {r: m[0] * k, g: m[1] * k, b: m[2] * k, a: m.length > 3 ? m[3] : 1};
      };
      const lum = c => {
        const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
      };
      const over = (top, under) => ({r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
                                     b: top.b * top.a + under.b * (1 - top.a), a: 1});
      const layers = [];
      for (let n = el; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.a > 0) layers.push(c);
        if (c.a >= 1) break;
      }
      let bg = {r: 255, g: 255, b: 255, a: 1};
      if (!layers.length || layers[layers.length - 1].a < 1)
        bg = rgb(getComputedStyle(document.documentElement).backgroundColor || 'rgb(255,255,255)');
      if (bg.a < 1) bg = rgb(getComputedStyle(document.body).backgroundColor);
      if (bg.a < 1) bg = {r: 255, g: 255, b: 255, a: 1};
      for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
      const fg = over(rgb(getComputedStyle(el).color), bg);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      return {ratio: (hi + 0.05) / (lo + 0.05), fg: getComputedStyle(el).color, bg: `rgb(${bg.r},${bg.g},${bg.b})`};
    }"""


@pytest.mark.parametrize("path", ["/", "/chat"], ids=["gradio", "plain"])
def test_dark_mode_keeps_text_readable(app_server: ServerProcess, people: People, path: str) -> None:
    room = "dark-" + ("gradio" if path == "/" else "plain")
    light = people.open(app_server.url + path, scheme="light")
    dark = people.open(app_server.url + path, scheme="dark")
    join(light, "sun", room)
    join(dark, "moon", room)
    join(people.open(app_server.url + "/chat"), "star", room)  # a "star joined" line on both
    say(light, "light side, with a link https://example.com/")
    say(dark, "dark side")
    expect_message(dark, "light side")
    expect_message(light, "dark side")
    dark.get_by_test_id("chat-input").fill("a draft")
    checks = {
        "others' message": f"{MESSAGES} li.chat-msg:not(.chat-own) .chat-text",
        "own message": f"{MESSAGES} li.chat-own .chat-text",
        "author": f"{MESSAGES} li.chat-msg .chat-author",
        "time": f"{MESSAGES} li.chat-msg .chat-time",
        "link": f"{MESSAGES} a",
        "system line": f"{MESSAGES} li.chat-system span",
        "user": '[data-testid="chat-users"] li',
        "status": '[data-testid="chat-status"]',
        "name field": '[data-testid="chat-name"]',
        "message box": '[data-testid="chat-input"]',
        "send button": '[data-testid="chat-send"]',
    }
    backgrounds = {}
    for label, page in (("light", light), ("dark", dark)):
        for what, selector in checks.items():
            found = page.locator(selector).first.evaluate(contrast_script())
            assert found["ratio"] >= 4.5, f"{label} mode, {what}: {found}"
        backgrounds[label] = page.locator(MESSAGES).evaluate("el => getComputedStyle(el).backgroundColor")
        people.shot(page, label)
    assert backgrounds["light"] != backgrounds["dark"], "dark mode did not change the widget"


def test_phone_width_is_usable(app_server: ServerProcess, people: People) -> None:
    """At 375 px, on the Gradio page and on /chat: nothing off screen, the composer on the
    first screen, the online list below the messages (not pushing them down)."""
    for url, name in ((app_server.url, "phone"), (app_server.url + "/chat", "phone2")):
        phone = people.open(url, width=375, height=667)
        join(phone, name, name)
        say(phone, "typed on a phone, with a rather long line that has to wrap nicely inside the bubble")
        expect_message(phone, "typed on a phone")
        overflow = phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
        for testid in ("chat-name", "chat-room", "chat-join", "chat-input", "chat-send", "chat-messages", "chat-users"):
            box = phone.get_by_test_id(testid).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375 + 1, f"{testid} is off screen: {box}"
        phone.evaluate("window.scrollTo(0, 0)")
        for testid in ("chat-input", "chat-send"):
            box = phone.get_by_test_id(testid).bounding_box()
            assert box and box["y"] + box["height"] <= 667, f"{testid} is below the first screen: {box}"
        log, people_list = (phone.get_by_test_id(t).bounding_box() for t in ("chat-messages", "chat-users"))
        assert log and people_list and people_list["y"] > log["y"], "the online list pushes the messages down"
        people.shot(phone, name, full_page=False)


def test_typing_is_shown_to_the_other_page_and_cleared(app_server: ServerProcess, people: People) -> None:
    room = "typing"
    alice = people.open(app_server.url)
    join(alice, "alice", room)
    bob = people.open(app_server.url + "/chat")
    join(bob, "bob", room)
    expect_users(alice, ["alice", "bob"])
    line = bob.get_by_test_id("chat-typing")
    alice.get_by_test_id("chat-input").press_sequentially("I am writing", delay=30)
    expect(line).to_have_text("alice is typing…")
    expect(alice.get_by_test_id("chat-typing")).to_have_text("")  # not to oneself
    people.shot(bob, "typing")
    alice.get_by_test_id("chat-input").press("Enter")
    expect_message(bob, "I am writing")
    expect(line).to_have_text("")  # their message came: cleared at once
    alice.wait_for_timeout(2100)  # (one typing relay per 2 s: the server would drop one sooner)
    alice.get_by_test_id("chat-input").press_sequentially("more", delay=30)
    expect(line).to_have_text("alice is typing…")
    expect(line).to_have_text("", timeout=10_000)  # and by itself, a few seconds after the last keystroke


# Headless Chromium has neither tabs to switch away from nor a notification daemon: the page
# is told it is hidden as a real tab switch would (document.hidden, visibilitychange), and the
# browser's Notification is a stand-in that records what would have been shown.
NOTIFICATIONS = """
window.__shown = [];
window.Notification = class {
  constructor(title, options) { window.__shown.push([title, (options || {}).body]); }
  close() {}
  static requestPermission() { window.Notification.permission = "granted"; return Promise.resolve("granted"); }
};
window.Notification.permission = "default";
"""
SET_HIDDEN = """hidden => {
  Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
  Object.defineProperty(document, "visibilityState", { value: hidden ? "hidden" : "visible", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_mention_is_highlighted_counted_in_the_title_and_notified(app_server: ServerProcess, people: People) -> None:
    room = "mentions"
    alice = people.open(app_server.url)
    join(alice, "alice", room)
    bob = people.open(app_server.url + "/chat", init_script=NOTIFICATIONS)
    join(bob, "bob", room)
    expect_users(alice, ["alice", "bob"])
    say(alice, "before bob left the tab")
    expect_message(bob, "before bob left the tab")
    notify = bob.get_by_test_id("chat-notify")
    expect(notify).to_have_text("Notify me of mentions")
    notify.click()  # the opt-in: the browser asks, the person allows
    expect(notify).to_have_text("Stop mention alerts")
    title = bob.title()

    bob.evaluate(SET_HIDDEN, True)  # bob switches to another tab
    say(alice, "something for everyone")
    say(alice, "hey @Bob, look at this")
    expect(bob).to_have_title(f"(2 · @1) {title}")
    mention = bob.locator(f"{MESSAGES} li.chat-mention")
    expect(mention).to_have_count(1)
    expect(mention.locator("mark.chat-at")).to_have_text("@Bob")
    assert bob.evaluate("window.__shown") == [["alice mentioned you in #mentions", "hey @Bob, look at this"]]
    line = bob.get_by_test_id("chat-new-line")  # where bob left off: before the first he has not seen
    expect(line).to_have_count(1)
    assert line.evaluate("li => li.nextElementSibling.querySelector('.chat-text').textContent") == (
        "something for everyone"
    )
    expect(alice.locator(f"{MESSAGES} li.chat-mention")).to_have_count(0)  # alice's own text

    bob.evaluate(SET_HIDDEN, False)  # back to the tab
    expect(bob).to_have_title(title)
    people.shot(bob, "mention-and-new-line")


def test_edit_delete_and_reactions_are_seen_on_the_other_page_and_after_a_reload(
    app_server: ServerProcess, people: People
) -> None:
    room = "changes"
    alice = people.open(app_server.url)
    join(alice, "alice", room)
    bob = people.open(app_server.url + "/chat")
    join(bob, "bob", room)
    say(alice, "I wrote this with a tpyo")
    say(alice, "and this one goes away")
    expect_message(bob, "and this one goes away")

    def item(page: Page, text: str):
        return page.locator(f"{MESSAGES} li[data-id]", has_text=text)

    mine = item(alice, "tpyo")
    mine.hover()
    mine.get_by_test_id("chat-edit").click()  # the composer takes the text, Enter saves
    box = alice.get_by_test_id("chat-input")
    expect(box).to_have_value("I wrote this with a tpyo")
    expect(alice.get_by_test_id("chat-editing")).to_be_visible()
    box.fill("I wrote this with a typo, fixed")
    box.press("Enter")
    for page in (alice, bob):
        edited = item(page, "typo, fixed")
        expect(edited).to_have_count(1)
        expect(edited.get_by_test_id("chat-edited")).to_have_text("(edited)")
    expect(item(bob, "tpyo")).to_have_count(0)
    assert not item(bob, "typo, fixed").get_by_test_id("chat-edit").count()  # bob cannot edit alice's

    theirs = item(bob, "typo, fixed")
    theirs.hover()
    theirs.locator('[data-action="react"][data-emoji="👍"]').click()
    for page, pressed in ((alice, "false"), (bob, "true")):
        chip = item(page, "typo, fixed").get_by_test_id("chat-reaction")
        expect(chip).to_have_text("👍 1")
        expect(chip).to_have_attribute("aria-pressed", pressed)
    people.shot(bob, "reacted")
    item(bob, "typo, fixed").get_by_test_id("chat-reaction").click()  # again: taken back
    expect(item(alice, "typo, fixed").get_by_test_id("chat-reaction")).to_have_count(0)
    item(alice, "typo, fixed").hover()
    item(alice, "typo, fixed").locator('[data-action="react"][data-emoji="🎉"]').click()
    expect(item(bob, "typo, fixed").get_by_test_id("chat-reaction")).to_have_text("🎉 1")

    gone = item(alice, "goes away")
    gone.hover()
    gone.get_by_test_id("chat-delete").click()
    for page in (alice, bob):
        expect(item(page, "goes away")).to_have_count(0)
        expect(page.locator(f"{MESSAGES} li.chat-deleted .chat-text")).to_have_text("message deleted")
    people.shot(alice, "edited-reacted-deleted")

    bob.reload()  # the same view from the history
    expect_state(bob, "connected")
    expect(item(bob, "typo, fixed").get_by_test_id("chat-edited")).to_have_count(1)
    expect(item(bob, "typo, fixed").get_by_test_id("chat-reaction")).to_have_text("🎉 1")
    expect(bob.locator(f"{MESSAGES} li.chat-deleted .chat-text")).to_have_text("message deleted")
    expect(item(bob, "goes away")).to_have_count(0)


def test_near_the_limit_the_composer_counts_what_is_left(app_server: ServerProcess, people: People) -> None:
    page = people.open(app_server.url + "/chat")
    join(page, "counter", "counting")
    box, count, send = (page.get_by_test_id(t) for t in ("chat-input", "chat-count", "chat-send"))
    box.fill("short")
    expect(count).to_be_hidden()
    box.fill("x" * 1990)
    expect(count).to_have_text("10 characters left")
    box.fill("é" * 2001)  # characters, as the server counts them
    expect(count).to_have_text("1 character too many: shorten it to send")
    expect(send).to_be_disabled()
    box.press("Enter")
    expect(box).to_have_value("é" * 2001)  # not sent, not lost
    people.shot(page, "over-the-limit", full_page=False)
    box.press("Backspace")
    expect(count).to_have_text("0 characters left")
    expect(send).to_be_enabled()
    box.press("Enter")
    expect_message(page, "é" * 20)


def test_enter_sends_shift_enter_breaks_and_unread_count_while_scrolled_up(
    app_server: ServerProcess, people: People
) -> None:
    room = "scrolling"
    writer = people.open(app_server.url + "/chat")
    join(writer, "writer", room)
    reader = people.open(app_server.url + "/chat", height=700)
    join(reader, "reader", room)

    box = writer.get_by_test_id("chat-input")
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "first line\nsecond line"
    box.press("Enter")
    expect_message(reader, "second line")
    assert messages(reader)[-1][2] == "first line\nsecond line"

    for i in range(25):
        say(writer, f"filler {i}")
    expect_message(reader, "filler 24")
    log = reader.get_by_test_id("chat-messages")
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight <= 40"
    assert log.evaluate(at_bottom), "new messages did not scroll into view"
    unread = reader.get_by_test_id("chat-unread")
    expect(unread).to_be_hidden()

    log.evaluate("el => { el.scrollTop = 0; }")
    reader.wait_for_timeout(200)
    for i in range(3):
        say(writer, f"while scrolled up {i}")
    expect_message(reader, "while scrolled up 2")
    expect(unread).to_be_visible()
    expect(unread).to_have_text(re.compile(r"^3 new messages"))
    assert log.evaluate("el => el.scrollTop") == 0, "the list jumped while the reader was scrolled up"
    people.shot(reader, "unread")
    unread.click()
    expect(unread).to_be_hidden()
    assert log.evaluate(at_bottom)


def test_name_is_remembered_and_rooms_can_be_made_and_picked(app_server: ServerProcess, people: People) -> None:
    hana = people.open(app_server.url)
    join(hana, "hana", "garden")
    say(hana, "in the garden")
    hana.reload()
    hana.get_by_test_id("chat-name").wait_for(state="visible", timeout=60_000)
    expect_state(hana, "connected")  # no asking again: the name and room were remembered
    expect(hana.get_by_test_id("chat-name")).to_have_value("hana")
    expect(hana.get_by_test_id("chat-status")).to_contain_text("#garden")
    expect_message(hana, "in the garden")

    ivan = people.open(app_server.url)
    room_picker = ivan.get_by_test_id("chat-room")
    ivan.get_by_test_id("chat-name").fill("ivan")
    ivan.get_by_test_id("chat-join").click()
    expect_state(ivan, "connected")
    room_picker.focus()
    expect(room_picker.locator('option[value="garden"]')).to_have_count(1)
    room_picker.select_option("garden")
    expect(ivan.get_by_test_id("chat-status")).to_contain_text("#garden")
    expect_message(ivan, "in the garden")
    expect_users(hana, ["hana", "ivan"])

    # a bad room name is refused in the page, without a dialog
    ivan.locator('[data-role="new-room"] > summary').click()
    ivan.get_by_test_id("chat-new-room").fill("no spaces allowed")
    ivan.get_by_test_id("chat-create-room").click()
    expect(ivan.get_by_test_id("chat-error")).to_be_visible()
    expect(ivan.get_by_test_id("chat-status")).to_contain_text("#garden")

    # a name someone in the room holds is refused, and the field says so
    taken = people.open(app_server.url + "/chat")
    taken.get_by_test_id("chat-name").fill("HANA")
    taken.get_by_test_id("chat-room").select_option("garden")
    taken.get_by_test_id("chat-join").click()
    expect(taken.get_by_test_id("chat-error")).to_contain_text("already")
    expect_state(taken, "idle")
    people.shot(taken, "name-taken")


def test_a_name_given_by_the_server_is_not_asked_for(app_server: ServerProcess, people: People) -> None:
    """Logins (next issue) give the widget its name: a data-user attribute, or JSON
    {"user": ...} at the URL in data-user-url. Stood in here by a script that sets the
    attribute as the page is parsed (a rewritten page would no longer come from
    loopback, and Chromium would then refuse its WebSocket to loopback)."""

    def page_with(attribute: str, value: str, routes: tuple = ()) -> Page:
        context = people.browser.new_context()
        people.contexts.append(context)
        context.add_init_script(
            "localStorage.setItem('chat:room', 'given-names');"
            "new MutationObserver((_, seen) => {"
            "  const el = document.querySelector('[data-chat-widget]');"
            f"  if (el) {{ el.setAttribute({attribute!r}, {value!r}); seen.disconnect(); }}"
            "}).observe(document, {childList: true, subtree: true});"
        )
        for pattern, handler in routes:
            context.route(pattern, handler)
        page = context.new_page()
        page.on("dialog", lambda d: (people.dialogs.append(d.message), d.dismiss()))
        page.goto(app_server.url + "/chat")
        return page

    zoe = page_with("data-user", "zoe")
    expect_state(zoe, "connected")
    expect(zoe.get_by_test_id("chat-name")).to_have_value("zoe")
    assert zoe.get_by_test_id("chat-name").get_attribute("readonly") is not None

    yan = page_with(
        "data-user-url",
        "api/me",
        routes=((app_server.url + "/api/me", lambda route: route.fulfill(json={"user": "yan"})),),
    )
    expect_state(yan, "connected")
    expect(yan.get_by_test_id("chat-status")).to_contain_text("Connected as yan in #given-names")
    expect_users(yan, ["yan", "zoe"])


def test_a_second_tab_takes_the_name_over_without_a_tug_of_war(app_server: ServerProcess, people: People) -> None:
    """Two tabs of one browser share the remembered name and its resume token: the newer
    tab takes the name (the older one is closed with 4001) and the older one waits."""
    first = people.open(app_server.url + "/chat")
    join(first, "twin", "tabs")
    second = first.context.new_page()
    second.on("dialog", lambda d: (people.dialogs.append(d.message), d.dismiss()))
    second.goto(app_server.url + "/chat")
    expect_state(second, "connected")  # remembered name and room: joined without asking
    expect(second.get_by_test_id("chat-status")).to_contain_text("#tabs")
    expect_state(first, "replaced")
    first.wait_for_timeout(3000)  # and it stays that way: no reconnecting back and forth
    expect_state(first, "replaced")
    expect_state(second, "connected")
    people.shot(first, "replaced")
    first.get_by_test_id("chat-join").click()  # "chat here instead"
    expect_state(first, "connected")
    expect_state(second, "replaced")
    say(first, "back in the first tab")
    expect_message(first, "back in the first tab")
