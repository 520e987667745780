"""Drive Debian's Chromium through Playwright for the browser tests: what the `browser`
and `people` fixtures of conftest.py are made of.

Each person is a separate browser context (own localStorage), the way two people on
two machines are. Screenshots go to tests/artifacts/ (gitignored); look at them.
Without Playwright or Chromium the browser tests skip, except on CI, where they
fail (tests/ci.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from ci import missing
from servers import ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
GRADIO_CDN = "https://gradio.s3-us-west-2.amazonaws.com/"
WAIT = 20_000  # ms: a page waiting on the server
MESSAGES = '[data-testid="chat-messages"]'  # the widget's message list


try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError as exc:  # pragma: no cover - depends on the machine
    IMPORT_ERROR: Optional[ImportError] = exc
    # Importable all the same: the `browser` fixture skips (fails on CI) before any of these is used.
    Browser = BrowserContext = Page = expect = sync_playwright = None
else:
    IMPORT_ERROR = None

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "GRADIO_CDN",
    "IMPORT_ERROR",
    "MESSAGES",
    "WAIT",
    "Browser",
    "BrowserContext",
    "Page",
    "People",
    "expect",
    "expect_message",
    "expect_state",
    "expect_users",
    "gradio_dir",
    "join",
    "messages",
    "missing",
    "say",
    "serve_gradio_cdn_locally",
    "sync_playwright",
    "users",
]


class People:
    """Pages, one browser context each; records dialogs and uncaught page errors."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.test_name = test_name
        self.contexts: list[BrowserContext] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    def open(
        self,
        url: str,
        *,
        scheme: str = "light",
        width: int = 1200,
        height: int = 860,
        route_cdn: bool = False,
        init_script: str = "",
    ) -> Page:
        """A new context's page at ``url`` (``init_script``: run in every page before its own scripts)."""
        context = self.browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
        self.contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        if route_cdn:
            serve_gradio_cdn_locally(context)
        page = context.new_page()
        page.set_default_timeout(WAIT)

        def on_dialog(dialog) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("requestfailed", lambda req: console.append(f"failed: {req.url} {req.failure}"))
        page.goto(url)
        try:
            page.get_by_test_id("chat-name").wait_for(state="visible", timeout=60_000)
        except Exception as exc:
            raise AssertionError(f"the chat widget did not show up at {url}; console: {console}") from exc
        return page

    def shot(self, page: Page, label: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.test_name}-{label}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def gradio_dir() -> Path:
    """Where the installed Gradio package is, found without the seconds of importing it."""
    spec = importlib.util.find_spec("gradio")
    assert spec is not None and spec.origin is not None, "gradio is not installed"
    return Path(spec.origin).parent


def serve_gradio_cdn_locally(context: BrowserContext) -> None:
    """Share pages load Gradio's frontend from its CDN; there is no internet here,
    so answer those requests from the installed package's copy of the same files."""
    frontend = gradio_dir() / "templates" / "frontend"

    def handle(route) -> None:
        rel = re.sub(r"^\d+\.\d+\.\d+/", "", route.request.url.split("?", 1)[0][len(GRADIO_CDN) :])
        path = (frontend / rel).resolve()
        if frontend in path.parents and path.is_file():
            route.fulfill(path=str(path))
        else:
            route.fulfill(status=404, body="not in the local copy")

    context.route(GRADIO_CDN + "**", handle)


class StaticSite:
    """Another origin, http://127.0.0.1:<its own port>, serving the pages written into
    ``root``: it stands in for somebody else's site or share link in the attack tests."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

        def handler(*args: object, **kwargs: object) -> SimpleHTTPRequestHandler:
            return SimpleHTTPRequestHandler(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name: str, html: str) -> str:
        """Serve ``html`` as ``name``; its URL."""
        (self.root / name).write_text(html, encoding="utf-8")
        return f"{self.origin}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()


# --- acting like a person on the chat widget ----------------------------------


def join(page: Page, name: str, room: str = "lobby") -> None:
    page.get_by_test_id("chat-name").fill(name)
    if room != "lobby":
        page.locator('[data-role="new-room"] > summary').click()
        page.get_by_test_id("chat-new-room").fill(room)
        page.get_by_test_id("chat-create-room").click()
    page.get_by_test_id("chat-join").click()
    expect_state(page, "connected")
    expect(page.get_by_test_id("chat-status")).to_contain_text(f"#{room}")


def say(page: Page, text: str) -> None:
    box = page.get_by_test_id("chat-input")
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def expect_state(page: Page, state: str, timeout: int = WAIT) -> None:
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-state", state, timeout=timeout)


def expect_message(page: Page, text: str, count: int = 1, timeout: int = WAIT) -> None:
    items = page.locator(f"{MESSAGES} li[data-id] .chat-text").filter(has_text=re.compile(re.escape(text)))
    expect(items).to_have_count(count, timeout=timeout)


def messages(page: Page) -> list[tuple[int, str, str]]:
    """(id, author, text) of every message in the list, top to bottom."""
    return [
        tuple(row)
        for row in page.eval_on_selector_all(
            f"{MESSAGES} li[data-id]",
            "els => els.map(e => [Number(e.dataset.id), e.querySelector('.chat-author').textContent,"
            " e.querySelector('.chat-text').textContent])",
        )
    ]


def users(page: Page) -> list[str]:
    return page.eval_on_selector_all('[data-testid="chat-users"] li[data-user]', "els => els.map(e => e.dataset.user)")


def expect_users(page: Page, names: list[str], timeout: int = WAIT) -> None:
    expect(page.locator('[data-testid="chat-users"] li[data-user]')).to_have_count(len(names), timeout=timeout)
    assert users(page) == names
