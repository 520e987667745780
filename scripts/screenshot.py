"""Make the README's screenshot from the running app.

    python scripts/screenshot.py                 # writes docs/screenshot.png
    python scripts/screenshot.py --out x.png --chromium /usr/bin/chromium

Starts `python gradio_app.py` on a free loopback port with a throwaway history,
opens two pages (two people, each in their own browser context), lets them chat
(a mention, a reaction, one of them typing), and puts the two pages side by side
in one PNG.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
CONVERSATION = [
    ("alice", "Hi Bob! This chat runs on the same port as the Gradio page."),
    ("bob", "Hello Alice. The plain page at /chat shows this room too."),
    ("alice", "Links work, HTML does not: <b>not bold</b>, see https://www.gradio.app"),
    ("bob", "Shift+Enter adds a line,\nEnter sends."),
    ("alice", "@bob react to a message, or edit and delete your own."),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the app did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--width", type=int, default=820, help="width of each page")
    parser.add_argument("--height", type=int, default=760)
    args = parser.parse_args()

    from PIL import Image  # Pillow comes with Gradio
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "gradio_app.py",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                str(Path(tmp) / "chat.db"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(url, proc)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                pages = {}
                for name in ("alice", "bob"):
                    context = browser.new_context(
                        viewport={"width": args.width, "height": args.height}, device_scale_factor=1
                    )
                    page = context.new_page()
                    page.goto(url)
                    page.get_by_test_id("chat-name").fill(name)
                    page.get_by_test_id("chat-join").click()
                    expect(page.get_by_test_id("chat-status")).to_have_attribute(
                        "data-state", "connected", timeout=30_000
                    )
                    pages[name] = page
                for name, text in CONVERSATION:
                    box = pages[name].get_by_test_id("chat-input")
                    box.fill(text)
                    box.press("Enter")
                    for page in pages.values():
                        expect(page.locator('[data-testid="chat-messages"] li[data-id]').last).to_contain_text(
                            text.split("\n")[-1], timeout=10_000
                        )
                messages = '[data-testid="chat-messages"] li[data-id]'
                first = pages["bob"].locator(messages).first  # bob likes alice's first message
                first.hover()
                first.locator('[data-action="react"][data-emoji="👍"]').click()
                expect(pages["alice"].get_by_test_id("chat-reaction")).to_have_text("👍 1", timeout=10_000)
                pages["bob"].wait_for_timeout(2100)  # (one typing relay per 2 s; bob's last went with his message)
                pages["bob"].get_by_test_id("chat-input").press_sequentially("typing…", delay=20)
                expect(pages["alice"].get_by_test_id("chat-typing")).to_have_text("bob is typing…", timeout=10_000)
                pages["bob"].mouse.move(0, 0)  # (no hover bar in the picture)
                shots = []
                for name, page in pages.items():
                    path = Path(tmp) / f"{name}.png"
                    page.screenshot(path=str(path))
                    shots.append(Image.open(path).convert("RGB"))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        side_by_side(shots, args.out)


def side_by_side(shots: list, out: Path, gap: int = 16) -> None:
    """The screenshots left to right on a grey sheet, written to ``out`` as a PNG."""
    from PIL import Image

    sheet = Image.new(
        "RGB", (sum(s.width for s in shots) + gap * (len(shots) - 1), max(s.height for s in shots)), (200, 200, 200)
    )
    x = 0
    for shot in shots:
        sheet.paste(shot, (x, 0))
        x += shot.width + gap
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(f"wrote {out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
