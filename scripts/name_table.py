"""Print a Markdown table of how chat_core.names treats look-alike, invisible and ordinary names.

    python scripts/name_table.py

For reviews and docs: each row is an input (spelled out by code point, since
several are invisible), whether it is accepted, how it is shown, and whether it
counts as the same name as ``alice``.
"""

from __future__ import annotations

import io
import sys

from chat_core.names import BadName, check

CASES = [
    # look-alikes of alice
    "alice",
    "Alice",
    "ALICE",
    "\u0430lice",  # Cyrillic а
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
    "alice\u0301",
    "AIice",  # capital i
    "a1ice",
    # invisible, oversized, hostile
    "\u3164",
    "\u2800",
    "a" + "\u0301" * 31,
    "\ufdfd" * 32,
    "a\u202eb",
    "a\x00b",
    "b\u200dob",
    # real emoji, once refused
    "\U0001f469\u200d\U0001f4bb",
    "\u2764\ufe0f",
    # ordinary names
    "Bob Smith",
    "Jos\u00e9",
    "\u674e\u5c0f\u9f8d",
    "\U0001f44d\U0001f3fd",
]


def describe(raw: str) -> str:
    """``alice + U+0301``: printable ASCII runs as code, everything else as U+XXXX, repeats as ``N ×``."""
    tokens: list[str] = []
    run = ""
    for char in raw:
        if " " <= char <= "~":
            run += char
            continue
        if run:
            tokens.append(f"`{run}`")
            run = ""
        tokens.append(f"U+{ord(char):04X}")
    if run:
        tokens.append(f"`{run}`")
    if not tokens:
        return "(empty)"
    grouped: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and tokens[j] == tokens[i]:
            j += 1
        grouped.append(tokens[i] if j - i == 1 else f"{j - i} × {tokens[i]}")
        i = j
    return " + ".join(grouped)


def cell(text: str) -> str:
    """Escape what would break a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def table() -> str:
    """The whole table, one row per :data:`CASES` entry."""
    alice_key = check("alice")[1]
    rows = ["| input | accepted? | shown as | same as `alice`? |", "|---|---|---|---|"]
    for raw in CASES:
        try:
            shown, key = check(raw)
        except BadName as exc:
            rows.append(f"| {cell(describe(raw))} | refused: {cell(str(exc))} | — | — |")
            continue
        same = "yes" if key == alice_key else "no"
        rows.append(f"| {cell(describe(raw))} | accepted | `{cell(shown)}` | {same} |")
    return "\n".join(rows)


def main() -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):  # emoji even where the locale is ASCII
        sys.stdout.reconfigure(encoding="utf-8")
    print(table())


if __name__ == "__main__":
    main()
