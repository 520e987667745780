"""chat_core: a realtime chat server core, independent of any UI toolkit.

The pieces, each in its own module:

- :mod:`chat_core.settings`  every tunable, from flags and ``CHAT_*`` variables
- :mod:`chat_core.protocol`  parsing and validating frames, encoding events (no I/O)
- :mod:`chat_core.store`     message history backends (SQLite, memory), chosen by URL
- :mod:`chat_core.outbox`    a bounded per-connection send queue
- :mod:`chat_core.hub`       rooms, presence and fan-out (knows nothing of FastAPI)
- :mod:`chat_core.web`       the FastAPI adapter: ``/ws``, the HTTP API, ``/chat``
"""

__version__ = "0.1.0"
