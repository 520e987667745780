"""The one exception type for what the chat's rules refuse (a name in use, a bad
token, not joined, too many rooms...), as opposed to a frame that is malformed
(:class:`chat_core.protocol.ProtocolError`). Both reach the client as an ``error``
frame with the ``code``; the codes are defined in docs/protocol.md."""

from __future__ import annotations

from typing import Optional


class Refusal(Exception):
    """Refused by the chat's rules; ``code`` is the protocol's error code, ``until`` (a
    ban's end, unix time) goes into the error frame when given."""

    def __init__(self, code: str, message: str, until: Optional[float] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.until = until
