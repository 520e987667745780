"""chat_core.names: which user names are accepted, how they are shown, and which count as the same."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings, strategies as st

from chat_core.names import MAX_NAME, BadName, check, enforce, name_key

ZWJ = "\u200d"
VS16 = "\ufe0f"

# (input, shown as)
ACCEPTED = [
    ("alice", "alice"),
    ("  Bob   Smith  ", "Bob Smith"),
    ("Bob\u3000Smith", "Bob Smith"),  # ideographic space -> ASCII space
    ("\uff41\uff4c\uff49\uff43\uff45", "alice"),  # fullwidth, width-mapped by NFKC
    ("alice\u0301", "alic\u00e9"),  # accepted, composed; same key as alice (below)
    ("\u0430lice", "\u0430lice"),  # Cyrillic а: accepted, same key as alice (below)
    ("Jos\u00e9", "Jos\u00e9"),
    ("Jose\u0301", "Jos\u00e9"),
    ("\u674e\u5c0f\u9f8d", "\u674e\u5c0f\u9f8d"),  # 李小龍
    ("\u674e" * 16, "\u674e" * 16),  # 16 wide = 32 columns, at the budget
    ("x" * MAX_NAME, "x" * MAX_NAME),
    ("   " + "x" * MAX_NAME + "  ", "x" * MAX_NAME),  # trimmed before counting
    ("e\u0323\u0302", "\u1ec7"),  # ệ: two marks is fine (Vietnamese)
    ("a\u0302\u0301", "\u1ea5"),  # ấ
    ("\ufdfd", "\ufdfd"),  # one bismillah ligature: 8 columns
    ("\ufdfd" * 4, "\ufdfd" * 4),  # 32 columns
    ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # 👩‍💻 woman technologist (ZWJ)
    ("\u2764\ufe0f", "\u2764\ufe0f"),  # ❤️ with emoji presentation selector
    ("\u2764", "\u2764"),
    ("\U0001f44d\U0001f3fd", "\U0001f44d\U0001f3fd"),  # 👍🏽 skin tone
    ("\U0001f469\U0001f3fd\u200d\U0001f4bb", "\U0001f469\U0001f3fd\u200d\U0001f4bb"),  # skin tone before ZWJ
    ("\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f3f3\ufe0f\u200d\U0001f308"),  # 🏳️‍🌈 FE0F before ZWJ
    (
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    ),
    ("\U0001f1fa\U0001f1e6", "\U0001f1fa\U0001f1e6"),  # flag: regional indicators
    ("1\ufe0f\u20e3", "1\ufe0f\u20e3"),  # keycap 1️⃣
    ("\u2764\ufe0f Bob", "\u2764\ufe0f Bob"),  # the space after FE0F survives
    ("Bob  \u2764\ufe0f", "Bob \u2764\ufe0f"),
    ("\u2764\ufe0f   \u2764\ufe0f ", "\u2764\ufe0f \u2764\ufe0f"),
    ("l\u00b7l", "l\u00b7l"),  # Catalan middle dot, allowed by its PRECIS context rule
]

# (input, a word the message must contain)
REFUSED = [
    ("", "visible"),
    ("   ", "visible"),
    ("\u3000\u00a0", "visible"),
    ("\u3164", "U+3164"),  # HANGUL FILLER alone
    ("\u115f", "U+115F"),
    ("\u1160", "U+1160"),
    ("\uffa0", "U+FFA0"),
    ("\u2800", "U+2800"),  # BRAILLE PATTERN BLANK alone
    ("alice\u2800", "U+2800"),  # ... or as invisible padding
    ("\u0301", "combining"),
    (" \u0301x", "combining"),
    ("a" + "\u0301" * 31, "marks"),  # Zalgo
    ("a\u0301\u0302\u0303", "marks"),
    ("e\u0323\u0302\u0301", "marks"),  # three marks once decomposed
    ("\ufdfd" * 32, "wide"),
    ("\ufdfd" * 5, "wide"),
    ("\u674e" * 17, "wide"),
    ("x" * (MAX_NAME + 1), "at most"),
    ("\ufdfa" * 2, "at most"),  # NFKC expands each to 18 characters
    ("x" * 1000, "at most"),
    ("a\u202eb", "U+202E"),  # RIGHT-TO-LEFT OVERRIDE
    ("\u202ealice", "U+202E"),
    ("alice\u2066", "U+2066"),  # LEFT-TO-RIGHT ISOLATE
    ("a\u200eb", "U+200E"),  # LEFT-TO-RIGHT MARK
    ("\ufeffalice", "U+FEFF"),  # BOM
    ("a\u200bb", "U+200B"),  # ZERO WIDTH SPACE
    ("a\u200cb", "U+200C"),  # ZERO WIDTH NON-JOINER
    ("a\u00adb", "U+00AD"),  # SOFT HYPHEN
    ("a\U000e0041", "U+E0041"),  # TAG LATIN CAPITAL LETTER A
    ("a\x00b", "control"),
    ("\x00", "control"),
    ("a\tb", "control"),
    ("a\nb", "control"),
    ("a\u2028b", "U+2028"),  # LINE SEPARATOR
    ("a\x7fb", "control"),
    ("\ud800", "U+D800"),  # lone surrogate
    ("a\u200db", "joiner"),  # ZWJ between letters
    ("b\u200dob", "joiner"),
    ("\u200d", "joiner"),
    ("\U0001f469\u200d", "joiner"),
    ("\u200d\U0001f4bb", "joiner"),
    ("\U0001f469 \u200d\U0001f4bb", "joiner"),
    ("\U0001f469\u200d \U0001f4bb", "joiner"),
    ("\U0001f469\u200d\u200d\U0001f4bb", "joiner"),
    ("\U0001f469\u200d\U0001f3fd", "joiner"),  # a skin tone is not an emoji of its own
    ("\ufe0f", "selector"),
    ("a\ufe0f", "selector"),
    ("\u2764 \ufe0f", "selector"),
    ("\u2764\ufe0f\ufe0f", "selector"),
    ("\u2122\ufe0f", "selector"),  # ™ becomes "TM" under NFKC, so FE0F follows a letter
    ("\u30fb", "U+30FB"),  # katakana middle dot with no kana (PRECIS context rule)
]

# Pairs that must share a key.
SAME = [
    ("alice", "Alice"),
    ("alice", "ALICE"),
    ("alice", "\u0430lice"),  # Cyrillic а
    ("alice", "\u0430\u04cf\u0456\u0441\u0435"),  # all-Cyrillic look-alike
    ("alice", "AIice"),  # capital i
    ("alice", "a1ice"),
    ("alice", "a|ice"),
    ("alice", "alic\u00e9"),
    ("alice", "alice\u0301"),
    ("alice", "\uff41\uff4c\uff49\uff43\uff45"),
    ("alice", "\u0391LICE"),  # Greek capital alpha
    ("Oscar", "0scar"),
    ("paypal", "p\u0430yp\u0430l"),
    ("modern", "rnodern"),  # TR39: m ~ rn
    ("Ali", "All"),  # documented over-match of the i/l merge
    ("Jos\u00e9", "Jose"),
    ("\U0001f469\u200d\U0001f4bb", "\U0001f469\U0001f4bb"),  # with and without ZWJ
    ("\u2764\ufe0f", "\u2764"),
    ("\u674e\u5c0f\u9f8d", "\u674e\u2f29\u9f8d"),  # KANGXI RADICAL SMALL looks like 小
]

# Pairs that must not.
DIFFERENT = [
    ("alice", "bob"),
    ("alice", "alicia"),
    ("alice", "\u674e\u5c0f\u9f8d"),
    ("\u674e\u5c0f\u9f8d", "\u674e\u5c0f\u9f99"),  # traditional 龍 vs simplified 龙
    ("Bob Smith", "BobSmith"),
    ("\U0001f44d", "\U0001f44d\U0001f3fd"),
    ("1\ufe0f\u20e3", "1"),
    ("bob", "bod"),
]


def _id(value: object) -> str:
    return ascii(value)[:40]


@pytest.mark.parametrize(("raw", "shown"), ACCEPTED, ids=[_id(r) for r, _ in ACCEPTED])
def test_accepted(raw: str, shown: str) -> None:
    assert enforce(raw) == shown
    assert enforce(shown) == shown
    assert check(raw) == (shown, name_key(shown))


@pytest.mark.parametrize(("raw", "word"), REFUSED, ids=[_id(r) for r, _ in REFUSED])
def test_refused(raw: str, word: str) -> None:
    with pytest.raises(BadName) as info:
        enforce(raw)
    message = str(info.value)
    assert word.lower() in message.lower()
    # One sentence a user can act on.
    assert message.endswith(".") and "\n" not in message and len(message) < 160
    with pytest.raises(BadName):
        check(raw)


def test_bad_name_is_a_value_error() -> None:
    assert issubclass(BadName, ValueError)
    with pytest.raises(ValueError):
        enforce("\x00")


def test_non_string_is_refused() -> None:
    with pytest.raises(BadName):
        enforce(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(("a", "b"), SAME, ids=[_id(p) for p in SAME])
def test_same_key(a: str, b: str) -> None:
    assert check(a)[1] == check(b)[1]


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=[_id(p) for p in DIFFERENT])
def test_different_key(a: str, b: str) -> None:
    assert check(a)[1] != check(b)[1]


def test_key_of_cjk_is_itself() -> None:
    assert name_key("\u674e\u5c0f\u9f8d") == "\u674e\u5c0f\u9f8d"


_INTERESTING = [
    ZWJ,
    VS16,
    "\u20e3",
    " ",
    "\u3000",
    "\u00a0",
    "\u0301",
    "\u0323",
    "\u0489",
    "\u2800",
    "\u3164",
    "\ufdfd",
    "\ufdfa",
    "\u00a8",
    "\u00b4",
    "\u2122",
    "\u00b7",
    "\u30fb",
    "\u0660",
    "\u06f0",
    "\u0375",
    "\u05f3",
    "\u094d",
    "\u200c",
    "\u202e",
    "\x00",
    "\U0001f469",
    "\U0001f4bb",
    "\U0001f3fd",
    "\u2764",
    "\U0001f1fa",
    "1",
    "#",
    "a",
    "I",
    "l",
    "\u0430",
    "\uff41",
    "\u674e",
    "\u1100",
    "\u1161",
    "\u11a8",
    "\ufb01",
    "\u00df",
    "\u0130",
    "\u03c2",
]


@settings(max_examples=800, deadline=None)
@given(st.text(st.one_of(st.sampled_from(_INTERESTING), st.characters()), max_size=40))
@example("\u2764\ufe0f \u00a8")
@example("\U0001f469\u200d\U0001f4bb\ufe0f")
@example("a\u00a8\ufe0f")
def test_enforce_is_idempotent(raw: str) -> None:
    try:
        shown = enforce(raw)
    except BadName:
        return
    assert isinstance(shown, str) and 0 < len(shown) <= MAX_NAME
    assert enforce(shown) == shown
    assert name_key(enforce(shown)) == name_key(shown)
    assert check(raw) == (shown, name_key(shown))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=64))
def test_name_key_is_total(text: str) -> None:
    assert isinstance(name_key(text), str)
