"""The chat app: the chat widget in a Gradio page, on the same port as the chat server.

    python gradio_app.py                    # http://127.0.0.1:7860
    python gradio_app.py --share            # and a public share link to the same port
    uvicorn gradio_app:app --port 7860      # the same app, served by uvicorn (see the README's flags)

One port serves the Gradio UI at /, the chat WebSocket at /ws, the HTTP API
(/api/rooms, /healthz, /openapi.json, /docs) and the plain page /chat. This file
is the UI; what joins it to the chat server is chat_core.gradio_support.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import pandas as pd

from chat_core import protocol
from chat_core.admin_api import cannot_change, clean_topic, normal_address
from chat_core.export import Format, filename
from chat_core.gradio_support import (  # noqa: F401
    ASSETS,
    ChatRoutes,
    bind_host,
    chat_app,
    chat_server,
    gradio_login,
    launch,
    mount,
    parse_args,
    server_options,
    settings_from,
)
from chat_core.history_access import HistoryAccess
from chat_core.moderation import MAX_SLOW, MAX_TOPIC, BanKind
from chat_core.moderators import ADMIN, OFF
from chat_core.names import name_key
from chat_core.protocol import ProtocolError
from chat_core.refusal import Refusal
from chat_core.search import MAX_QUERY

# --- the widget: the markup of assets/page.html, with chat.js and chat.css ---

PAGE = (ASSETS / "page.html").read_text(encoding="utf-8")
WIDGET_HTML = PAGE[PAGE.index("<section", PAGE.index("<!-- chat-widget:start")):PAGE.index("<!-- chat-widget:end")]


def asset_url(name: str, *also: str) -> str:
    """A relative URL (so it works under a path prefix) that changes when the file does,
    or any file under assets/ that the `also` globs match."""
    digest = hashlib.sha256()
    for path in [ASSETS / name, *sorted(p for pattern in also for p in ASSETS.glob(pattern))]:
        digest.update(path.relative_to(ASSETS).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"assets/{name}?v={digest.hexdigest()[:12]}"


# gr.HTML does not run <script> tags in its content, and `head` re-creates each script
# with its src alone (type="module" would be lost): so `head` loads assets/chat.js, a
# classic loader, which loads the widget's modules (assets/chat/main.js and the rest)
# with its own ?v=, a hash over all of them. Gradio runs `js_on_load` once chat.js has
# run, perhaps before the modules have: the element then waits in window.__chatPending,
# which main.js mounts when it starts.
WIDGET_HEAD = (
    f'<link rel="stylesheet" href="{asset_url("chat.css")}">'
    f'<script src="{asset_url("chat.js", "chat/*.js", "rules.json")}"></script>'
)
WIDGET_JS = """
if (window.ChatWidget) {
  window.ChatWidget.mount(element);
} else {
  window.__chatPending = (window.__chatPending || []).concat(element);
}
"""

# --- Activity: the last hour's numbers (chat_core.activity), while the tab is open -----------

ACTIVITY_EVERY = 5  # seconds between refreshes; one snapshot serves every page (Activity.snapshot)


@contextlib.contextmanager
def history_read() -> Iterator[None]:
    """Around a read of the history: the store away (Redis down) is said on the page."""
    try:
        yield
    except chat_server().store_errors:
        raise gr.Error("The chat history cannot be read right now.") from None


def frame(rows: list[dict[str, Any]], columns: list[str], time_column: str) -> pd.DataFrame:
    """Rows as a DataFrame for a plot, ``time_column`` (unix seconds) as UTC datetimes."""
    df = pd.DataFrame(rows, columns=columns)
    df[time_column] = pd.to_datetime(df[time_column], unit="s", utc=True)
    return df


async def activity_view() -> tuple[gr.LinePlot, gr.LinePlot, list[list[Any]], str]:
    """Messages per minute, people online, the busiest rooms and the totals, for the tab."""
    server = chat_server()
    if server.activity is None or server.hub is None:
        raise gr.Error("The chat server is not running.")
    with history_read():
        snap = await server.activity.snapshot()
    t = snap.totals
    totals = (f"**{t['rooms']}** rooms listed · **{t['online']}** people online · "
              f"**{t['last_hour']}** messages in the last hour · **{t['stored']}** messages stored")
    # Gradio's plot keeps its colour legend from the first value and only swaps the data after:
    # naming the series (a prop) makes it draw the plot anew, so a room that starts talking shows up.
    return (plot(snap.per_minute, ["minute", "room", "messages"], "minute"),
            plot(snap.online, ["ts", "room", "online"], "ts"),
            [[r["room"], r["online"], r["messages"]] for r in snap.busiest], totals)


def plot(rows: list[dict[str, Any]], columns: list[str], time_column: str) -> gr.LinePlot:
    series = list(dict.fromkeys(r["room"] for r in rows))
    return gr.LinePlot(value=frame(rows, columns, time_column), colors_in_legend=series)


def activity_timer(evt: gr.SelectData) -> gr.Timer:
    """Refresh only while the Activity tab is the one shown (a Timer runs per open page)."""
    return gr.Timer(active=evt.value == "Activity")


# --- History: search a room and export it, with the HTTP API's rules (chat_core.history_access) ---

EXPORT_KEPT = 120  # seconds an export file is kept for Gradio to copy (Gradio keeps its copy: delete_cache below)
EXPORT_MAX = 200_000_000  # bytes an export from the tab may have (the HTTP export streams any size)
EXPORTS_MAX = 1_000_000_000  # bytes of exports kept here at once
FORMATS = {f.label: f for f in Format}
exports: list[Path] = []  # this process's folder for them, made (private, mkdtemp) at the first export


def visitor(request: gr.Request) -> tuple[HistoryAccess, str, Optional[str]]:
    """The rules, and who asks: the address as the chat counts it (behind a share link too) and the login."""
    server = chat_server()
    http = request.request
    if server.history is None or http is None:
        raise gr.Error("The chat server is not running.")
    return server.history, server.address(http), request.username


async def history_rooms(room: str) -> gr.Dropdown:
    """The rooms to pick from: those with recent messages, and the one picked."""
    hub = chat_server().hub
    listed = [r["room"] for r in await hub.rooms_summary()] if hub is not None else []
    return gr.Dropdown(choices=sorted({*listed, room or "lobby"}))


async def search_history(room: str, text: str, request: gr.Request) -> tuple[list[list[Any]], str]:
    history, address, login = visitor(request)
    if not text.strip():
        return [], "Type words to look for: each must begin a word of the message."
    try:
        with history_read():
            found = await history.search(room or "lobby", text, address, login)
    except Refusal as exc:
        raise gr.Error(exc.message) from None
    shown = f"**{len(found)}** message{'s' if len(found) != 1 else ''} found" if found else "Nothing found"
    rows = [[time.strftime("%Y-%m-%d %H:%M", time.gmtime(m.ts)), m.user, m.text] for m in found]
    return rows, f"{shown}, newest first (searched {history.scope()})."


def export_path(name: str) -> Optional[Path]:
    """A new file for an export, in a folder of its own; None while the exports kept are too many bytes."""
    if not exports:
        exports.append(Path(tempfile.mkdtemp(prefix="chat-exports-")))
    if sum(f.stat().st_size for f in exports[0].glob("*/*")) > EXPORTS_MAX:
        return None
    return Path(tempfile.mkdtemp(dir=exports[0])) / name


def forget_export(path: Path) -> None:
    """Gradio has long since copied it into its cache."""
    with contextlib.suppress(OSError):
        path.unlink()
        path.parent.rmdir()


async def export_room(room: str, label: str, request: gr.Request) -> tuple[gr.DownloadButton, str]:
    """The room as a file, written page by page, for the download button to hand over."""
    history, address, login = visitor(request)
    fmt = FORMATS.get(label, Format.JSONL)
    try:
        room = history.check_export(room or "lobby", address, login)
    except Refusal as exc:
        raise gr.Error(exc.message) from None
    path = await asyncio.to_thread(export_path, filename(room, fmt))
    if path is None:
        raise gr.Error("Too many exports are waiting to be downloaded; try again in a few minutes.")
    loop = asyncio.get_running_loop()
    loop.call_later(EXPORT_KEPT, loop.run_in_executor, None, forget_export, path)
    size = 0
    try:
        with history_read(), path.open("w", encoding="utf-8", newline="") as file:  # (written on a thread)
            async for part in history.export(room, fmt, address):
                size += await asyncio.to_thread(file.write, part)
                if size > EXPORT_MAX:
                    raise gr.Error(f"#{room} is too big to export here: api/rooms/{room}/export?format={fmt.value} "
                                   "streams it whatever its size.")
    except Refusal as exc:
        raise gr.Error(exc.message) from None
    size = path.stat().st_size
    shown = f"{size:,} bytes" if size < 10_000 else f"{size / 1e3:,.0f} KB" if size < 10**7 else f"{size / 1e6:,.0f} MB"
    return (gr.DownloadButton(f"Download {path.name} ({shown})", value=str(path), visible=True),
            f"#{room} as {fmt.label}, deleted messages left out. The same file: "
            f"[api/rooms/{room}/export?format={fmt.value}](api/rooms/{room}/export?format={fmt.value}).")


# --- Moderation: for moderators only (chat_core.moderators says who); every handler checks
# again, on the server, who is asking: `moderator` is per-page state that never leaves it.

BAN_FOR = {"10 minutes": 600, "1 hour": 3600, "1 day": 86400, "7 days": 7 * 86400, "30 days": 30 * 86400}


def acting(moderator: Optional[str], request: gr.Request) -> str:
    """Who performs a moderation action from this page; refused unless signed in."""
    mods = chat_server().moderators
    if moderator == ADMIN and mods.token_enabled:
        return ADMIN
    if moderator is not None and mods.is_moderator(moderator) and request.username == moderator:
        return moderator
    raise gr.Error("Moderators only.")


def show_moderation(request: gr.Request) -> tuple[Any, ...]:
    """On load: the tab for moderators (and, with ?admin, the sign-in with the admin token)."""
    mods = chat_server().moderators
    if mods.is_moderator(request.username):
        return (gr.Tab(visible=True), request.username, gr.Column(visible=False), gr.Column(visible=True), "",
                gr.Timer(active=True))
    if "admin" in request.query_params:
        note = "" if mods.token_enabled else OFF
        return (gr.Tab(visible=True), None, gr.Column(visible=mods.token_enabled), gr.Column(visible=False), note,
                gr.Timer(active=False))
    return gr.Tab(visible=False), None, gr.Column(visible=False), gr.Column(visible=False), "", gr.Timer(active=False)


def sign_in(token: str, request: gr.Request) -> tuple[Any, ...]:
    server = chat_server()
    mods = server.moderators
    http = request.request  # (the address as the chat counts it, behind a share link or a proxy too)
    address = server.address(http) if http is not None else ""
    if mods.blocked(address):
        raise gr.Error("Too many wrong tokens from this address: wait a minute.")
    if mods.token_ok(token):
        return ADMIN, gr.Column(visible=False), gr.Column(visible=True), "", gr.Timer(active=True)
    mods.wrong(address)
    raise gr.Error("Wrong token.")


async def refresh(room: str, moderator: Optional[str], request: gr.Request) -> tuple[Any, ...]:
    """Rooms and who is online, the room's recent messages, the audit log and the bans."""
    acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    rows = [[r["room"], r["online"], ", ".join(r["users"]), r["topic"], r["slow"], "yes" if r["locked"] else ""]
            for r in await hub.rooms_moderated()]
    log = [[when(e.ts), e.actor, e.action.value, e.room, e.target, e.detail] for e in await hub.moderation.audit_log()]
    bans = [[b.kind.value, b.shown, when(b.until), b.by, b.reason] for b in hub.moderation.active_bans()]
    choices = sorted({r[0] for r in rows} | {room or "lobby"})
    return rows, gr.Dropdown(choices=choices), await recent_messages(room), log, bans


async def room_rules(room: str, moderator: Optional[str], request: gr.Request) -> tuple[Any, ...]:
    """The room's recent messages and its rules, to change them (nothing for others: it also runs on load)."""
    if moderator is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    rules = hub.moderation.room_rules(room_of(room))
    return await recent_messages(room), rules.topic, rules.slow, rules.locked


async def recent_messages(room: str) -> list[list[Any]]:
    """The newest 50 messages of ``room``, newest first, with the ids a delete needs."""
    hub = chat_server().hub
    assert hub is not None
    with history_read():
        found = await hub.store.after(room_of(room), 0, 50)
    return [[m.id, when(m.ts), m.user, "(deleted)" if m.deleted else m.text] for m in reversed(found)]


async def delete_message(room: str, msg_id: Optional[float], moderator: Optional[str], request: gr.Request) -> str:
    by = acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    if not msg_id or msg_id < 1:
        return "Give the id of a message (the first column)."
    try:
        refused = await hub.remove(room_of(room), int(msg_id), by)
    except cannot_change(hub):
        raise gr.Error("The chat history cannot be changed right now.") from None
    return refused.message if refused is not None else f"Message {int(msg_id)} deleted."


async def kick_user(room: str, user: str, moderator: Optional[str], request: gr.Request) -> str:
    by = acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    if not user.strip():
        return "Give the name to kick."
    await hub.moderation.kick(by, room_of(room), name_key(user.strip()), user.strip())
    return f"{user.strip()} was removed from #{room_of(room)}."


async def ban_user(user: str, address: str, duration: str, reason: str, moderator: Optional[str],
                   request: gr.Request) -> str:
    by = acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    user, address, seconds = user.strip(), address.strip(), BAN_FOR.get(duration, 3600)
    if bool(user) == bool(address):
        return "Give a name or an address (one of them)."
    try:
        kind, value = (BanKind.NAME, name_key(user)) if user else (BanKind.ADDRESS, normal_address(address))
    except ValueError:
        return f"Not an IP address: {address!r}."
    ban = await hub.moderation.ban(by, kind, value, seconds, reason.strip(), user or address)
    return f"{ban.shown} is banned until {when(ban.until)}."


async def unban_user(user: str, address: str, moderator: Optional[str], request: gr.Request) -> str:
    by = acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    user, address = user.strip(), address.strip()
    kind, value = (BanKind.NAME, name_key(user)) if user else (BanKind.ADDRESS, address)
    done = await hub.moderation.unban(by, kind, value) if value else False
    return f"{user or address} may join again." if done else "No such ban."


async def set_rules(room: str, topic: str, slow: Optional[float], locked: bool, moderator: Optional[str],
                    request: gr.Request) -> str:
    by = acting(moderator, request)
    hub = chat_server().hub
    assert hub is not None
    seconds = min(max(float(slow or 0), 0.0), MAX_SLOW)
    room = room_of(room)
    rules = await hub.moderation.set_rules(by, room, clean_topic(topic)[:MAX_TOPIC], seconds, locked)
    state = "locked" if rules.locked else "open"
    return f"#{room}: topic {rules.topic!r}, slow mode {rules.slow:g} s, {state}."


def room_of(room: str) -> str:
    """The room picked (or typed) in the dashboard, checked as the chat checks it."""
    try:
        return protocol.check_room(room or "lobby")
    except ProtocolError as exc:
        raise gr.Error(exc.message) from None


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


# Gradio's copies of the History tab's exports are deleted after 5 minutes (checked every minute).
with gr.Blocks(title="Realtime chat", delete_cache=(60, 300)) as demo:
    gr.Markdown(
        "## Realtime chat\n"
        "Pick a name, join a room and talk. Open a second tab to see messages arrive. "
        "The same chat without Gradio is at [chat](chat); the HTTP API is described at [docs](docs)."
    )
    with gr.Tabs() as tabs:
        with gr.Tab("Chat", id="chat"):
            gr.HTML(
                WIDGET_HTML,
                head=WIDGET_HEAD,
                js_on_load=WIDGET_JS,
                apply_default_css=False,
                elem_id="chat-widget",
            )

        with gr.Tab("Activity", id="activity") as activity_tab:
            activity_totals = gr.Markdown(elem_id="activity-totals")
            per_minute_plot = gr.LinePlot(x="minute", y="messages", color="room", x_title="minute (your time)",
                                          y_title="messages", title="Messages per minute, last hour",
                                          height=280, y_lim=[0, None], elem_id="activity-per-minute")
            online_plot = gr.LinePlot(x="ts", y="online", color="room", x_title="time (your time)",
                                      y_title="people online", title="People online, last hour",
                                      height=280, y_lim=[0, None], elem_id="activity-online")
            busiest = gr.Dataframe(headers=["room", "online", "messages (last hour)"], interactive=False,
                                   label="Busiest rooms", elem_id="activity-busiest")
            activity_clock = gr.Timer(ACTIVITY_EVERY, active=False)

        with gr.Tab("History", id="history") as history_tab:
            with gr.Row():
                history_room = gr.Dropdown(label="Room", choices=["lobby"], value="lobby", allow_custom_value=True,
                                           scale=1, elem_id="history-room")
                query = gr.Textbox(label="Search", placeholder="words to look for", max_length=MAX_QUERY,
                                   scale=3, elem_id="history-query")
                search = gr.Button("Search", variant="primary", scale=0, elem_id="history-search")
            found_note = gr.Markdown(elem_id="history-found")
            found = gr.Dataframe(headers=["time (UTC)", "user", "text"], interactive=False, wrap=True,
                                 column_widths=["22%", "18%", "60%"], elem_id="history-results")
            gr.Markdown("### Export the room")
            with gr.Row():
                export_format = gr.Radio(list(FORMATS), value=Format.JSONL.label, label="Format", scale=2)
                export = gr.Button("Export", scale=0, elem_id="history-export")
                download = gr.DownloadButton(visible=False, scale=1, elem_id="history-download")
            export_note = gr.Markdown(elem_id="history-export-note")

        with gr.Tab("Moderation", id="moderation", visible=False) as moderation_tab:
            moderator = gr.State(None)  # who signed in on this page (server side only)
            moderation_note = gr.Markdown()
            with gr.Column(visible=False) as signin_box:
                admin_token = gr.Textbox(label="Admin token", type="password", max_length=200)
                signin = gr.Button("Sign in as moderator", variant="primary")
            with gr.Column(visible=False) as moderation_controls:
                gr.Markdown("### Rooms and who is online")
                rooms = gr.Dataframe(headers=["room", "online", "people", "topic", "slow (s)", "locked"],
                                     interactive=False, wrap=True)
                mod_room = gr.Dropdown(label="Room", choices=["lobby"], value="lobby", allow_custom_value=True)
                with gr.Row():
                    topic = gr.Textbox(label="Topic", max_length=200, scale=3)
                    slow = gr.Number(label="Slow mode (s, 0 off)", minimum=0, maximum=3600, value=0, scale=1)
                    locked = gr.Checkbox(label="Locked (read-only)", scale=1)
                apply_rules = gr.Button("Apply to room")
                gr.Markdown("### Recent messages")
                recent = gr.Dataframe(headers=["id", "time", "user", "text"], interactive=False, wrap=True)
                with gr.Row():
                    msg_id = gr.Number(label="Message id", precision=0, minimum=1, value=None)
                    delete = gr.Button("Delete message", variant="stop")
                gr.Markdown("### People")
                with gr.Row():
                    target_user = gr.Textbox(label="Name")
                    target_address = gr.Textbox(label="or address (bans only)")
                    ban_for = gr.Dropdown(label="Ban for", choices=list(BAN_FOR), value="1 hour")
                    ban_reason = gr.Textbox(label="Reason", max_length=200)
                with gr.Row():
                    kick = gr.Button("Kick from room")
                    ban = gr.Button("Ban", variant="stop")
                    unban = gr.Button("Lift ban")
                gr.Markdown("Bans in force")
                bans = gr.Dataframe(headers=["kind", "who", "until", "by", "reason"], interactive=False)
                gr.Markdown("### Audit log")
                audit = gr.Dataframe(headers=["time", "moderator", "action", "room", "target", "detail"],
                                     interactive=False, wrap=True)
                moderation_timer = gr.Timer(5, active=False)

    # Activity's events: filled when the tab is picked, then every ACTIVITY_EVERY s while it stays picked.
    activity_views = [per_minute_plot, online_plot, busiest, activity_totals]
    activity_tab.select(activity_view, None, activity_views)
    tabs.select(activity_timer, None, activity_clock)
    activity_clock.tick(activity_view, None, activity_views)

    # History's events: the rooms to pick when the tab is picked; search on Enter or the button;
    # Export writes the file, then the download button offers it.
    history_tab.select(history_rooms, history_room, history_room)
    gr.on([search.click, query.submit], search_history, [history_room, query], [found, found_note],
          concurrency_limit=4)
    export.click(export_room, [history_room, export_format], [download, export_note], concurrency_limit=2)
    gr.on([history_room.input, export_format.input], lambda: gr.DownloadButton(visible=False), None, download)

    # Moderation's events: sign in; then the views refresh every 5 s (the timer runs only
    # on a moderator's page) and after each action; picking a room shows its rules.
    views = [rooms, mod_room, recent, audit, bans]
    room_form = [recent, topic, slow, locked]
    demo.load(show_moderation, outputs=[moderation_tab, moderator, signin_box, moderation_controls, moderation_note,
                                        moderation_timer]).then(room_rules, [mod_room, moderator], room_form)
    signin.click(sign_in, admin_token, [moderator, signin_box, moderation_controls, admin_token, moderation_timer]
                 ).success(room_rules, [mod_room, moderator], room_form).success(
        refresh, [mod_room, moderator], views).success(lambda: "Signed in.", None, moderation_note)
    moderation_timer.tick(refresh, [mod_room, moderator], views)
    mod_room.change(room_rules, [mod_room, moderator], room_form)
    for button, action, inputs in [
        (apply_rules, set_rules, [mod_room, topic, slow, locked, moderator]),
        (delete, delete_message, [mod_room, msg_id, moderator]),
        (kick, kick_user, [mod_room, target_user, moderator]),
        (ban, ban_user, [target_user, target_address, ban_for, ban_reason, moderator]),
        (unban, unban_user, [target_user, target_address, moderator]),
    ]:
        button.click(action, inputs, moderation_note).then(refresh, [mod_room, moderator], views)


if __name__ == "__main__":
    launch(demo)
else:
    app = mount(demo)
