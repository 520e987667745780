"""Make the README's dashboard screenshot from the running app.

    python scripts/dashboard_screenshot.py            # writes docs/dashboard.png

Starts `python gradio_app.py --admin-token …` on a free loopback port with a
throwaway history, has a few people talk in three rooms over /ws, has a moderator
set a topic and ban a spammer through the admin API, then photographs the
Activity tab and the Moderation tab (signed in with the token) side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from screenshot import CHROMIUM_ARGS, ROOT, free_port, side_by_side, wait_healthy

from chat_core.settings import limits_off

TALK = {
    "lobby": [("alice", "Morning all!"), ("bob", "Morning. Release is at noon."), ("carol", "I'll write the notes.")],
    "python": [("dan", "gather or a task group?"), ("erin", "A task group: it cancels the rest on an error.")],
    "support": [("frank", "The page says reconnecting…"), ("grace", "Fixed now: Redis was restarting.")],
}


async def talk(ws_url: str, talked: threading.Event, done: threading.Event) -> None:
    """People chat in three rooms, then stay online until the pictures are taken."""
    import websockets

    people = {}
    for room, lines in TALK.items():
        for name, _ in lines:
            if (name, room) not in people:
                ws = await websockets.connect(ws_url, open_timeout=10)
                await ws.send(json.dumps({"type": "join", "payload": {"user": name, "room": room}}))
                while (frame := json.loads(await ws.recv()))["type"] != "welcome":
                    if frame["type"] == "error":
                        raise RuntimeError(f"{name} could not join {room}: {frame}")
                people[(name, room)] = ws
    for _ in range(3):  # a few rounds, so the plot has something to show
        for room, lines in TALK.items():
            for name, text in lines:
                await people[(name, room)].send(json.dumps({"type": "msg", "payload": {"text": text}}))
                await asyncio.sleep(0.05)
    spam = await websockets.connect(ws_url, open_timeout=10)
    await spam.send(json.dumps({"type": "join", "payload": {"user": "spammer"}}))
    await asyncio.sleep(0.5)
    talked.set()
    while not done.is_set():
        await asyncio.sleep(0.2)


def admin(url: str, token: str, method: str, path: str, body: dict) -> None:
    request = urllib.request.Request(
        url + "/api/admin" + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()

    from PIL import Image  # Pillow comes with Gradio
    from playwright.sync_api import expect, sync_playwright

    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        # (the abuse limits off: seven people from one address join in a second here)
        env = {**os.environ, **limits_off(), "GRADIO_ANALYTICS_ENABLED": "False", "CHAT_ADMIN_TOKEN": token}
        command = [sys.executable, "gradio_app.py", "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            [*command, "--db", str(Path(tmp) / "chat.db")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        shots = []
        talked, done = threading.Event(), threading.Event()
        people = None
        try:
            wait_healthy(url, proc)
            people = threading.Thread(target=lambda: asyncio.run(talk(f"ws://127.0.0.1:{port}/ws", talked, done)))
            people.start()
            if not talked.wait(60):
                raise SystemExit("the people could not chat")
            admin(url, token, "PATCH", "/rooms/lobby", {"topic": "Release day: be nice", "slow": 5})
            admin(url, token, "POST", "/bans", {"user": "spammer", "seconds": 86400, "reason": "links to spam"})
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                for tab in ("Activity", "Moderation"):
                    page = browser.new_context(viewport={"width": args.width, "height": args.height}).new_page()
                    page.goto(url + "/?admin")
                    page.get_by_role("tab", name=tab).click()
                    if tab == "Moderation":
                        page.get_by_label("Admin token").fill(token)
                        page.get_by_role("button", name="Sign in as moderator").click()
                        expect(page.get_by_role("gridcell", name="ban", exact=True)).to_be_visible(timeout=20_000)
                    else:
                        page.wait_for_timeout(22_000)  # two more samples of who is online (one every 10 s)
                    path = Path(tmp) / f"{tab}.png"
                    page.screenshot(path=str(path))
                    shots.append(Image.open(path).convert("RGB"))
                browser.close()
        finally:
            done.set()
            if people is not None:
                people.join(10)
            proc.terminate()
            proc.wait(timeout=20)
        side_by_side(shots, args.out)


if __name__ == "__main__":
    main()
