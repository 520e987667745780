"""Edits, deletes and reactions: what a change may do to a message, apart from any store.

Both engines call :func:`apply` on the message as it stands and store what it returns
in the same atomic step as the change itself (SQLite: one transaction, written by the
one writer; Redis: a script that stores it only if the message did not change since it
was read, else it is read and checked again). So the rules live here once:

- only the message's **author** may edit or delete it (and a moderator delete it): the holder of the token the
  name was held with when it was sent (:func:`chat_core.identity.author_of`), never
  merely the same name (docs/security.md, *Who wrote a message*);
- a deleted message keeps who and when, and nothing else: no text, no reactions;
  it cannot be changed again;
- anyone in the room may give or take back a reaction; a message holds at most
  ``MAX_EMOJI`` different ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .refusal import Refusal
from .store import Change, Message, Reactions

MAX_EMOJI = 20  # different reactions on one message
def apply(message: Optional[Message], kind: Change, author: str, user: str, ts: float, text: str = "",
          emoji: str = "", moderator: bool = False) -> tuple[Message, bool]:
    """The message after the change, and for a reaction whether it is now given;
    :class:`Refusal` if the change may not be made. A ``moderator`` may delete any message."""
    if message is None:
        raise Refusal("no_such_message", "That message is not in the history (any more).")
    if message.deleted:
        raise Refusal("message_deleted", "That message was deleted.")
    if kind is Change.REACT:
        return _react(message, user, emoji)
    if moderator and kind is Change.DELETE:
        return replace(message, text="", edited=None, deleted=True, reactions=()), False
    if not author or message.author != author:
        raise Refusal("not_author", "Only the person who wrote a message can change it.")
    if kind is Change.EDIT:
        return replace(message, text=text, edited=ts), False
    return replace(message, text="", edited=None, deleted=True, reactions=()), False


def _react(message: Message, user: str, emoji: str) -> tuple[Message, bool]:
    reactions: list[tuple[str, tuple[str, ...]]] = list(message.reactions)
    for i, (given, names) in enumerate(reactions):
        if given == emoji:
            if user in names:
                rest = tuple(n for n in names if n != user)
                if rest:
                    reactions[i] = (given, rest)
                else:
                    del reactions[i]
                return replace(message, reactions=tuple(reactions)), False
            reactions[i] = (given, (*names, user))
            return replace(message, reactions=tuple(reactions)), True
    if len(reactions) >= MAX_EMOJI:
        raise Refusal("too_many_reactions", f"A message holds at most {MAX_EMOJI} different reactions.")
    reactions.append((emoji, (user,)))
    new: Reactions = tuple(reactions)
    return replace(message, reactions=new), True
