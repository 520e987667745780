"""A room's history as a file: JSON Lines, CSV or Markdown, written page by page.

:func:`export` reads the store :data:`PAGE` messages at a time and yields each page as text,
so a room of any size goes out in bounded memory, and the store (SQLite's one thread, Redis)
serves the chat between two pages. It stops at the room's newest message when it began, so a busy
room's export ends. Deleted messages are left out entirely: not even that they were.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from .store import Message, Store

PAGE = 500  # messages read from the store at a time


class Format(enum.Enum):
    """The file formats, by the name used in ``?format=``."""

    JSONL = "jsonl"
    CSV = "csv"
    MD = "md"

    @property
    def media_type(self) -> str:
        return {Format.JSONL: "application/x-ndjson", Format.CSV: "text/csv",
                Format.MD: "text/markdown"}[self] + "; charset=utf-8"

    @property
    def label(self) -> str:
        return {Format.JSONL: "JSON Lines", Format.CSV: "CSV", Format.MD: "Markdown"}[self]


def filename(room: str, fmt: Format) -> str:
    return f"chat-{room}.{fmt.value}"  # room names are [A-Za-z0-9_-] (protocol.check_room)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def shown(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def record(m: Message) -> dict[str, Any]:
    """What a file keeps of a message: who, when and what, the edit time and reactions."""
    r: dict[str, Any] = {"id": m.id, "time": iso(m.ts), "ts": m.ts, "user": m.user, "text": m.text}
    if m.edited is not None:
        r["edited"] = iso(m.edited)
    if m.reactions:
        r["reactions"] = {emoji: list(names) for emoji, names in m.reactions}
    if m.bot:
        r["bot"] = True
    return r


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # (and full-width)


def cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


CSV_COLUMNS = ["id", "time", "user", "text", "edited", "bot"]


def csv_rows(page: list[Message]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for m in page:
        writer.writerow([m.id, iso(m.ts), cell(m.user), cell(m.text), iso(m.edited) if m.edited is not None else "",
                         "bot" if m.bot else ""])
    return out.getvalue()


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~=])")


def markdown_text(text: str) -> str:
    """Shown as typed when the file is rendered: no markup, links or HTML from a message."""
    lines = [MARKDOWN_SPECIAL.sub(r"\\\1", line.lstrip()) for line in text.replace("\r", "").split("\n")]
    return "  \n  ".join(lines)  # a hard line break, still inside the list item


def markdown_rows(page: list[Message]) -> str:
    out = []
    for m in page:
        edited = " (edited)" if m.edited is not None else ""
        bot = " (bot)" if m.bot else ""
        out.append(f"- **{markdown_text(m.user)}**{bot} · {shown(m.ts)}{edited}: {markdown_text(m.text)}\n")
    return "".join(out)


def head(room: str, fmt: Format) -> str:
    if fmt is Format.CSV:
        return ",".join(CSV_COLUMNS) + "\r\n"
    if fmt is Format.MD:
        return f"# Chat room {room}\n\nExported {shown(time.time())}; times are UTC.\n\n"
    return ""


def body(page: list[Message], fmt: Format) -> str:
    if fmt is Format.CSV:
        return csv_rows(page)
    if fmt is Format.MD:
        return markdown_rows(page)
    return "".join(json.dumps(record(m), ensure_ascii=False) + "\n" for m in page)


async def export(store: Store, room: str, fmt: Format) -> AsyncIterator[str]:
    """The file, a page at a time (the head first, even for an empty room), up to the newest
    message when it began (by id: the ids, not the clocks of several processes, say what came after)."""
    yield head(room, fmt)
    newest = await store.after(room, 0, 1)
    upto = newest[-1].id if newest else 0
    since = 0
    while since < upto:
        page = await store.after(room, since, PAGE, first=True)
        if not page:
            return
        kept = [m for m in page if not m.deleted and m.id <= upto]
        if kept:
            yield body(kept, fmt)
        since = page[-1].id
