"""Fan-out: one frame to every member of a room, encoded once for all of them.

A broadcast never waits: each member's outbox takes the same bytes or refuses
(closed, or full and now closing for reading too slowly); those are handed to
``on_dropped`` so they leave the room at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Optional

from . import protocol
from .protocol import CloseCode
from .rooms import Member, Room

log = logging.getLogger("chat_core.fanout")


class FanOut:
    def __init__(self, on_dropped: Callable[[Member], None]) -> None:
        self.on_dropped = on_dropped
        self.overflow_closes = 0  # clients closed for reading too slowly (1013)

    def broadcast(self, room: Room, frame: str, skip: Optional[Member] = None) -> None:
        """``frame`` to every member of ``room`` (but ``skip``)."""
        encoded = protocol.wire(frame)  # once for the whole room
        dropped = [m for m in room.members.values() if m is not skip and not m.outbox.put(frame, encoded)]
        for member in dropped:  # closed (for reading too slowly, or on its way out): out of the room now
            if member.outbox.close_code == CloseCode.TRY_AGAIN_LATER:
                self.overflow_closes += 1
                log.info("closed a slow client in %s (outbox full)", room.name)
            self.on_dropped(member)
