"""User names: what a name may be, how it is shown, and when two names are "the same".

Two questions, two functions:

* :func:`enforce` decides whether a name is acceptable and returns the form that
  is shown and stored. It is the PRECIS Nickname profile (RFC 8266) plus a few
  extensions (emoji ZWJ sequences and U+FE0F survive) and refusals (invisible
  names, "Zalgo" stacks of marks, names too wide to display).
* :func:`name_key` maps an enforced name to the key used for uniqueness, so
  that look-alikes (``alice``, ``ALICE``, Cyrillic ``аlice``, ``a1ice``,
  ``alicé``) cannot be taken side by side.

Everything here is a pure function of its input, so it can be tested and fuzzed
without a server. The only I/O is reading confusable_homoglyphs' bundled
``confusables.json`` once, on the first :func:`name_key` call.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib import resources

import precis_i18n

from . import rules

__all__ = ["MAX_NAME", "MAX_MARKS", "MAX_WIDTH", "BadName", "enforce", "name_key", "check"]

MAX_NAME = rules.MAX_NAME
"""Most code points an enforced name may hold."""

MAX_MARKS = 2
"""Most combining marks (Mn/Me) on one base character; Vietnamese needs 2, Zalgo needs many."""

MAX_WIDTH = 32
"""Display-width budget in terminal-style columns (see :func:`_width`)."""

# Anything longer than this is refused before the (comparatively slow) PRECIS
# pass, so a huge frame cannot cost much CPU. Generous, because NFKC can shrink
# a name (decomposed Hangul, decomposed accents, runs of spaces).
_RAW_LIMIT = 8 * MAX_NAME

_PROFILE = precis_i18n.get_profile("NicknameCasePreserved")

_ZWJ = "\u200d"  # ZERO WIDTH JOINER
_VS16 = "\ufe0f"  # VARIATION SELECTOR-16, "show as emoji"
_KEYCAP = "\u20e3"  # COMBINING ENCLOSING KEYCAP, as in 1️⃣
_KEYCAP_BASES = frozenset("#*0123456789")
_SPLIT = re.compile(f"([{_ZWJ}{_VS16}])")

# Characters that render as nothing (or as a blank cell) but are letters or
# symbols, so PRECIS lets some of them through (U+2800, U+1D159) and refuses the
# others only after NFKC has turned them into another code point (U+3164 and
# U+FFA0 become U+1160). Checked on the raw input for a clear message.
_BLANKS = frozenset(
    "\u2800"  # BRAILLE PATTERN BLANK
    "\u3164"  # HANGUL FILLER
    "\u115f"  # HANGUL CHOSEONG FILLER
    "\u1160"  # HANGUL JUNGSEONG FILLER
    "\uffa0"  # HALFWIDTH HANGUL FILLER
    "\U0001d159"  # MUSICAL SYMBOL NULL NOTEHEAD
)

# Single code points that draw far wider than a CJK ideograph. East Asian Width
# does not know about them, so they are listed. (U+FDFA and U+FDFB are expanded
# by NFKC into whole Arabic phrases and then caught by the length limit; they are
# listed anyway in case the normalization ever changes.)
_VERY_WIDE = frozenset(
    "\ufdfd"  # ARABIC LIGATURE BISMILLAH AR-RAHMAN AR-RAHEEM
    "\ufdfa"  # ARABIC LIGATURE SALLALLAHOU ALAYHE WASALLAM
    "\ufdfb"  # ARABIC LIGATURE JALLAJALALOUHOU
    "\u2e3a"  # TWO-EM DASH
    "\u2e3b"  # THREE-EM DASH
    "\U00012219"  # CUNEIFORM SIGN LUGAL OPPOSING LUGAL
    "\U0001242b"  # CUNEIFORM NUMERIC SIGN NINE SHAR2
)
_VERY_WIDE_COLUMNS = 8

_MARKS = ("Mn", "Me")

# PRECIS failure reasons ("DISALLOWED/<reason>") grouped by the message we give.
_INVISIBLE_REASONS = frozenset({"precis_ignorable_properties", "zero_width_joiner", "zero_width_nonjoiner",
                                "join_control"})
_CONTEXT_REASONS = frozenset({"middle_dot", "greek_keraia", "hebrew_punctuation", "katakana_middle_dot",
                              "arabic_indic", "extended_arabic_indic", "exceptions"})


class BadName(ValueError):
    """A name the chat refuses; ``str(exc)`` is one sentence the user can act on."""


def _describe(char: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE)``: code points, because the character itself may be invisible."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def _is_space(char: str) -> bool:
    """What PRECIS Nickname maps to an ASCII space (and then trims or collapses)."""
    return unicodedata.category(char) == "Zs"


def _is_modifier(char: str) -> bool:
    """Fitzpatrick skin-tone modifier, which belongs to the emoji before it."""
    return 0x1F3FB <= ord(char) <= 0x1F3FF


def _is_emoji(char: str) -> bool:
    """Approximates Extended_Pictographic (not in :mod:`unicodedata`): other symbols, plus skin tones.

    Regional indicators (flags) are So already; the Fitzpatrick modifiers
    U+1F3FB..U+1F3FF are Sk, and may end the emoji before a ZWJ (👩🏽‍💻).
    """
    return unicodedata.category(char) == "So" or _is_modifier(char)


def _precis(piece: str) -> str:
    """PRECIS NicknameCasePreserved on one piece, with its refusal turned into a :class:`BadName`."""
    try:
        return _PROFILE.enforce(piece)
    except UnicodeEncodeError as exc:
        reason = exc.reason.rpartition("/")[2]
        bad = exc.object[exc.start : exc.end] if exc.end - exc.start == 1 else ""
        if reason == "empty":
            raise BadName("Choose a name with at least one visible character.") from None
        if reason == "controls":
            raise BadName("Names cannot contain control characters such as tabs, line breaks or NUL.") from None
        if reason in _INVISIBLE_REASONS and bad:
            raise BadName(f"Names cannot contain the invisible formatting character {_describe(bad)}.") from None
        if reason in _CONTEXT_REASONS and bad:
            raise BadName(f"The character {_describe(bad)} is not allowed in that position in a name.") from None
        if bad:
            raise BadName(f"Names cannot contain the character {_describe(bad)}.") from None
        raise BadName("That name cannot be used; try plain letters, digits and symbols.") from None


def _enforce_pieces(raw: str) -> str:
    """PRECIS on the text between ZWJ/U+FE0F, which PRECIS itself refuses, so that they survive.

    PRECIS trims each piece; the space rule is re-applied across the whole name
    here: one space is kept where a piece had spaces at an inner edge, and
    the ends of the whole name are trimmed. Cutting at ZWJ/U+FE0F does not change
    NFKC: both are starters that compose with nothing.
    """
    parts = _SPLIT.split(raw)
    out: list[str] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if i % 2:  # a ZWJ or U+FE0F; its context is checked on the result
            out.append(part)
            continue
        if not part:
            continue
        lead = i > 0 and _is_space(part[0])
        trail = i < last and _is_space(part[-1])
        if all(_is_space(c) for c in part):
            core = ""
        else:
            core = _precis(part)
        if not core:
            if 0 < i < last:  # only spaces, between two joiners: keep one
                out.append(" ")
            continue
        out.append((" " if lead else "") + core + (" " if trail else ""))
    return "".join(out)


def _check_joiners(name: str) -> None:
    """ZWJ only between two emoji, U+FE0F only right after a symbol (or a keycap base before U+20E3).

    These are the only uses that make a single emoji; anywhere else they are
    invisible and would let ``bob`` and ``b<ZWJ>ob`` be two different names.
    """
    for i, char in enumerate(name):
        if char == _ZWJ:
            before = name[i - 1] if i >= 1 else ""
            if before == _VS16 and i >= 2:
                before = name[i - 2]
            after = name[i + 1] if i + 1 < len(name) else ""
            if not (before and after and _is_emoji(before) and _is_emoji(after) and not _is_modifier(after)):
                raise BadName("A zero width joiner (U+200D) is only allowed between two emoji.")
        elif char == _VS16:
            before = name[i - 1] if i >= 1 else ""
            after = name[i + 1] if i + 1 < len(name) else ""
            symbol = bool(before) and unicodedata.category(before).startswith("S")
            keycap = before in _KEYCAP_BASES and after == _KEYCAP
            if not (symbol or keycap):
                raise BadName("The emoji selector U+FE0F is only allowed right after a symbol.")


def _check_marks(name: str) -> None:
    """Refuse a name that starts with a combining mark or stacks more than :data:`MAX_MARKS` on one base.

    Counted after NFD so ``é`` + two accents counts three, however it was typed.
    U+FE0F is Mn but draws nothing, so it is not counted.
    """
    if unicodedata.category(name[0]).startswith("M"):
        raise BadName("A name cannot start with a combining mark; put a letter before it.")
    run = 0
    for char in unicodedata.normalize("NFD", name):
        if unicodedata.category(char) in _MARKS:
            if char != _VS16:
                run += 1
                if run > MAX_MARKS:
                    raise BadName(f"A letter may carry at most {MAX_MARKS} accents or marks; remove the extra ones.")
        else:
            run = 0


def _width(name: str) -> int:
    """Columns the name takes: wide/fullwidth count 2, :data:`_VERY_WIDE` count 8, marks and ZWJ 0, others 1."""
    total = 0
    for char in name:
        if char in _VERY_WIDE:
            total += _VERY_WIDE_COLUMNS
        elif char == _ZWJ or unicodedata.category(char) in _MARKS:
            continue
        elif unicodedata.east_asian_width(char) in ("W", "F"):
            total += 2
        else:
            total += 1
    return total


def enforce(raw: str) -> str:
    """Return the name as it will be shown and stored, or raise :class:`BadName`.

    PRECIS NicknameCasePreserved (RFC 8266: trim, collapse spaces, NFKC, refuse
    controls, bidi overrides and other invisible formatting), except that ZWJ
    inside emoji sequences and U+FE0F after symbols are kept, so ``👩‍💻`` and
    ``❤️`` work. On top of PRECIS it refuses blank look-alikes (U+2800, Hangul
    fillers), names that start with a mark or stack more than two marks on a
    letter, names over :data:`MAX_NAME` code points and names wider than
    :data:`MAX_WIDTH` columns. ``enforce(enforce(x)) == enforce(x)``.
    """
    if not isinstance(raw, str):
        raise BadName("A name must be text.")
    if len(raw) > _RAW_LIMIT:
        raise BadName(f"Names are at most {MAX_NAME} characters; choose a shorter one.")
    for char in raw:
        if char in _BLANKS:
            raise BadName(f"Names cannot contain the blank character {_describe(char)}; use visible letters, digits or"
                           " symbols.")
    name = _enforce_pieces(raw)
    if not name:
        raise BadName("Choose a name with at least one visible character.")
    if len(name) > MAX_NAME:
        raise BadName(f"Names are at most {MAX_NAME} characters; choose a shorter one.")
    for char in name:  # NFKC could in principle produce one
        if char in _BLANKS:
            raise BadName(f"Names cannot contain the blank character {_describe(char)}; use visible letters, digits or"
                           " symbols.")
    _check_joiners(name)
    _check_marks(name)
    if not any(not _is_space(c) and c != _ZWJ and not unicodedata.category(c).startswith("M") for c in name):
        raise BadName("Choose a name with at least one visible character.")
    if _width(name) > MAX_WIDTH:
        raise BadName(f"That name is too wide to display; keep it within {MAX_WIDTH} columns (wide characters count "
                       "double).")
    return name


# --- uniqueness keys -------------------------------------------------------

# After the skeleton and case folding, these all look like a vertical stroke in
# common fonts; TR39 keeps "i" apart from "l", we do not (see name_key).
_STROKES = {ord(c): "l" for c in "iIl1|"}


@functools.cache
def _skeleton_table() -> dict[int, str]:
    """TR39 confusable map {code point: prototype} built from confusable_homoglyphs' ``confusables.json``.

    In that file a source character maps to a one-element list holding its
    prototype, and a prototype maps to the list of all its sources; RTL
    characters are wrapped in U+200E marks for display, which are removed here.
    When two single characters list only each other, the direction is unknown;
    both map to the one NFKC leaves alone (the form an enforced name holds, so
    ``李小龍`` keeps 小 rather than KANGXI RADICAL SMALL), else to the smaller
    code point: any consistent choice gives one key.
    Loaded once, on first use, so importing this module stays cheap.
    """
    ref = resources.files("confusable_homoglyphs").joinpath("confusables.json")
    data: dict[str, list[dict[str, str]]] = json.loads(ref.read_text(encoding="utf-8"))

    def clean(text: str) -> str:
        return text.replace("\u200e", "") if len(text) > 1 else text

    entries: dict[str, list[str]] = {}
    for key, items in data.items():
        entries.setdefault(clean(key), []).extend(clean(item["c"]) for item in items)
    table: dict[int, str] = {}
    for key, targets in entries.items():
        if len(key) != 1 or len(targets) != 1:
            continue  # a prototype (many sources) or a multi-character display form
        target = targets[0]
        if len(target) == 1 and entries.get(target) == [key]:
            target = min(key, target, key=lambda c: (unicodedata.normalize("NFKC", c) != c, c))
            if target == key:
                continue
        table[ord(key)] = target
    return table


def _skeleton(text: str, table: dict[int, str]) -> str:
    """TR39 skeleton: NFD, map each character to its prototype, NFD again."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(table))


def name_key(name: str) -> str:
    """The key for "is this name taken?": equal keys mean the names look alike.

    NFKC, then TR39 skeleton, case fold, skeleton again (folding can produce
    new confusables), drop nonspacing marks (accents, U+FE0F) and ZWJ, and merge
    i/I/l/1/| into one letter. So ``Alice``, ``ALICE``, ``аlice`` (Cyrillic а),
    ``AIice``, ``a1ice`` and ``alicé`` all share the key of ``alice``, while
    ``李小龍`` keeps its own.

    This is deliberately stricter than TR39: on top of TR39's own collisions
    ("rn" and "m"), a few distinct names collide ("Ali" and "All" from the i/l
    merge, "José" and "Jose" from dropping accents). That is the safe direction:
    a false collision costs a user a second choice of name, while a missed one
    lets someone impersonate another user. Meant for enforced names,
    but defined for any string.
    """
    table = _skeleton_table()
    text = _skeleton(unicodedata.normalize("NFKC", name), table)
    text = _skeleton(text.casefold(), table)
    # Only Mn: accents go (and U+FE0F, which is Mn), enclosing marks such as the
    # keycap in 1️⃣ stay, since they change the look a lot.
    text = "".join(c for c in text if c != _ZWJ and unicodedata.category(c) != "Mn")
    return text.translate(_STROKES)


def check(raw: str) -> tuple[str, str]:
    """``(shown, key)`` for a requested name: :func:`enforce`, then :func:`name_key` of the result."""
    shown = enforce(raw)
    return shown, name_key(shown)
