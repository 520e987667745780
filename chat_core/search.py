"""What a history search asks for, and how a message is matched, the same way on every engine.

A query is words, not a query language: each word a visitor types must begin a word of the
message (case, accents and punctuation do not count; a one-letter word must be a whole word),
all of them. So nothing typed can reach
SQLite's FTS5 syntax (:meth:`Query.fts` quotes every word itself), and the SQLite, Redis and
memory engines find the same messages. SQLite searches the whole room through its full-text
index; Redis and the memory store read the newest :data:`SCAN` messages of the room and match
them here (Redis has no full-text index without a module this project does not assume).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_QUERY = 200  # characters a query may have
MAX_WORDS = 10  # words a query may have
MAX_RESULTS = 100  # messages one search returns at most
SCAN = 10_000  # messages of a room the engines without an index read, newest first
BUDGET = 1.0  # seconds a search may take; past it, SQLite's stops (BadQuery: too broad), the others stop reading

WORD = re.compile(r"[^\W_]+")  # letters and digits, as FTS5's unicode61 tokenizer cuts words


class BadQuery(ValueError):
    """A query that cannot be searched for; the message says why, for the person who typed it."""


MATCHED_CHARS = 4_000  # characters of a message matched at most (the engines without an index)


def fold(text: str) -> str:
    """Lower case without accents: "Éte" and "ete" are the same word (FTS5's remove_diacritics).
    Canonical decomposition only, as FTS5's unicode61: "ﬁ" is not "fi" there either, and no
    character grows into many (a compatibility decomposition turns U+FDFA into 18)."""
    decomposed = unicodedata.normalize("NFD", text[:MATCHED_CHARS])
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def words(text: str) -> list[str]:
    return WORD.findall(fold(text))


@dataclass(frozen=True)
class Query:
    """The words to look for, folded."""

    words: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Query:
        if len(text) > MAX_QUERY:
            raise BadQuery(f"A search is at most {MAX_QUERY} characters.")
        found = tuple(dict.fromkeys(words(text)))
        if not found:
            raise BadQuery("Type a word to search for.")
        if len(found) > MAX_WORDS:
            raise BadQuery(f"A search is at most {MAX_WORDS} words.")
        return cls(found)

    def fts(self) -> str:
        """The FTS5 MATCH expression: every word quoted (words hold no quotes), as a prefix
        but for one letter, which must be a whole word (a one-letter prefix reads half the index)."""
        return " ".join(f'"{w}"*' if len(w) > 1 else f'"{w}"' for w in self.words)

    def matches(self, text: str) -> bool:
        have = words(text)
        return all(any(h.startswith(w) if len(w) > 1 else h == w for h in have) for w in self.words)

    def __str__(self) -> str:
        return " ".join(self.words)
