"""The validation rules the server, the widget and the tests share, from one file:
``assets/rules.json`` (the widget reads it too, see assets/chat/rules.js): the room
pattern and default room, the longest name, the longest text by default, and the
characters a name may never hold (the server's full name rules, PRECIS and look-alikes,
are in :mod:`chat_core.names`; they refuse every one of those)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RULES_FILE = Path(__file__).resolve().parent.parent / "assets" / "rules.json"
RULES: dict[str, Any] = json.loads(RULES_FILE.read_text(encoding="utf-8"))

ROOM_RE = re.compile(RULES["room"]["pattern"])
DEFAULT_ROOM: str = RULES["room"]["default"]
MAX_NAME: int = RULES["name"]["max_length"]
MAX_TEXT: int = RULES["text"]["max_length"]
CID_RE = re.compile(RULES["cid"]["pattern"])
CID_WINDOW: float = float(RULES["cid"]["window"])  # seconds a msg's cid is remembered
TYPING_EVERY: float = float(RULES["typing"]["every"])  # seconds between two typing relays of a connection


def forbidden_in_names() -> list[tuple[int, int]]:
    """The code point ranges (inclusive) no name may hold."""
    return [(int(r["from"][2:], 16), int(r["to"][2:], 16)) for r in RULES["name"]["forbidden"]]
