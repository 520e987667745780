"""Logging policy: bad input from a client is the client's problem, not the server's.

uvicorn logs a text frame that is not UTF-8 as an ERROR with a traceback, although
it handles it correctly (close 1007). This filter turns that record into one INFO
line, so a stranger cannot fill the server's log with tracebacks.
"""

from __future__ import annotations

import logging

CLIENT_FAULTS = ("Invalid UTF-8 sequence received from client",)


class ClientFaultFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(CLIENT_FAULTS):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Add the filter to uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientFaultFilter) for f in logger.filters):
        logger.addFilter(ClientFaultFilter())
