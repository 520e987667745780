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
- :mod:`chat_core.__main__`    ``python -m chat_core``: the server alone, no Gradio
- :mod:`chat_core.rules`       the validation rules shared with the widget and the tests (assets/rules.json)
- :mod:`chat_core.resend`      sending that neither loses nor doubles a message (client ids)
- :mod:`chat_core.changes`     edits, deletes and reactions: what a change may do to a message
- :mod:`chat_core.search`      what a history search asks for and how a message matches
- :mod:`chat_core.export`      a room's history as JSON Lines, CSV or Markdown, page by page
- :mod:`chat_core.history_access` who may search and export a room's history, and how often
- :mod:`chat_core.history_api` ``/api/rooms/{room}/search`` and ``/export``
- :mod:`chat_core.activity`    the dashboard's Activity numbers
- :mod:`chat_core.moderation`  bans, room rules and the audit log, apart from any store
- :mod:`chat_core.moderation_store` the embedded engine's moderation store (SQLite)
- :mod:`chat_core.moderators`  who is a moderator
- :mod:`chat_core.admin_api`   ``/api/admin/...``: every moderation action, for moderators only
- :mod:`chat_core.bot_names`   names kept for bots (``--bot-keys``)
- :mod:`chat_core.gradio_support` what puts a Gradio app and the chat on one server

The engines (``--redis-url`` picks Redis; the embedded one needs no service):

- :mod:`chat_core.engine`      where history lives and how a stored message reaches every process
- :mod:`chat_core.redis_sequencer` the Redis commit path: ids, storage and publication in one Lua script
- :mod:`chat_core.redis_history` history in Redis streams
- :mod:`chat_core.shared_presence` names and presence over several processes
- :mod:`chat_core.redis_roster` who holds which name in which room, across processes
- :mod:`chat_core.redis_limits` the per-address limits and caps for all processes at once
- :mod:`chat_core.redis_moderation` the Redis engine's moderation store

Clients:

- :mod:`chat_core.client`      a Python client for the chat (docs/protocol.md)
- :mod:`chat_core.client_cli`  ``python -m chat_core.client``: the chat in a terminal
- :mod:`chat_core.bot`         bots on top of the client: commands, messages, joins
"""

__version__ = "0.1.0"
