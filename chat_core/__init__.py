"""chat_core: a realtime chat server core, independent of any UI toolkit.

The pieces, each in its own module (docs/architecture.md draws how they meet):

- :mod:`chat_core.settings`    every tunable, from flags and ``CHAT_*`` variables, checked strictly
- :mod:`chat_core.protocol`    parsing and validating frames, building every outgoing frame, close codes (no I/O)
- :mod:`chat_core.names`       what a user name may be, and when two names are the same (PRECIS, TR39)
- :mod:`chat_core.refusal`     the exception for what the chat's rules refuse
- :mod:`chat_core.store`       message history and name claims (SQLite, memory), chosen by URL
- :mod:`chat_core.identity`    resume tokens, name reservations, /ws tickets
- :mod:`chat_core.rooms`       members, rooms and their cached history
- :mod:`chat_core.presence`    who holds which name where; join/leave notices and `presence` frames
- :mod:`chat_core.fanout`      one frame to every member of a room, encoded once
- :mod:`chat_core.writer`      the commit path: ids, batches, the store, health
- :mod:`chat_core.hub`         the facade: a message's journey (knows nothing of FastAPI)
- :mod:`chat_core.outbox`      what waits for one connection (direct writes or a sender task)
- :mod:`chat_core.limits`      token buckets per connection, address and name; connection counts
- :mod:`chat_core.admission`   who may open the socket: hosts, origins, logins, client addresses
- :mod:`chat_core.session`     one client's frame at the edge: its limits, then the hub
- :mod:`chat_core.web`         the FastAPI adapter: ``/ws``, the HTTP API, ``/chat``
- :mod:`chat_core.transport`   uvicorn's WebSocket protocol, writing ready-made frames
- :mod:`chat_core.http_guard`  uvicorn's HTTP protocol with a header deadline (Slowloris)
- :mod:`chat_core.serve`       running it under uvicorn, with a graceful stop
- :mod:`chat_core.logs`        quieter logs for what a client got wrong
"""

__version__ = "0.1.0"
