"""Every tunable of the chat server in one object.

Values come, in rising priority, from the defaults below, ``CHAT_*`` environment
variables and command-line flags. Each field's metadata carries its help text, so
the flags, the environment names and the README's options table cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


def _opt(default: Any, help: str, flag: Optional[str] = None) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass
class Settings:
    """Chat server settings. A limit of 0 turns that limit off."""

    db: str = _opt("chat.db", "History store: a SQLite path or sqlite:///path, or :memory: to keep nothing.")
    history_limit: int = _opt(100, "Messages sent to a client that joins without `since` (0: none).")
    replay_limit: int = _opt(1000, "Most messages replayed to a client that joins with `since` (0: all that are kept).")
    history_keep: int = _opt(10000, "Messages kept per room in the store (0 keeps all).")
    max_text: int = _opt(2000, "Longest message text, in characters.")
    max_frame: int = _opt(65536, "Largest incoming WebSocket frame in bytes; larger closes with 1009.")
    outbox: int = _opt(1000, "Frames queued for one slow client before it is closed with 1013.")
    stall_timeout: float = _opt(10.0, "Seconds a client may leave frames waiting without taking any before it is closed with 1013.")
    send_buffer: int = _opt(65536, "Kernel send buffer per WebSocket in bytes (SO_SNDBUF; 0: the OS default, up to MiBs per stalled client).")
    notice_limit: int = _opt(200, "Room size above which join/leave notices are coalesced into `presence` frames.")
    users_shown: int = _opt(200, "Most names listed in a `welcome` frame.")
    presence_interval: float = _opt(1.0, "Seconds between coalesced `presence` frames in big rooms.")
    ping_interval: float = _opt(20.0, "Seconds between protocol pings to each client (0 turns pings off).")
    ping_timeout: float = _opt(20.0, "Seconds to wait for a pong before a peer is taken for dead.")
    commit_delay: float = _opt(0.0, "Extra seconds the history writer waits to gather a bigger batch.")
    secret: str = _opt("", "Secret for resume tokens; empty: generated once and kept in <db>.secret.")
    rate: float = _opt(5.0, "Messages per second per connection (token bucket rate).")
    burst: int = _opt(10, "Messages a connection may send in a burst.")
    flood_limit: int = _opt(20, "Refused (rate-limited) messages, net of `rate` forgiven per second, before close 1008.")
    join_rate: float = _opt(1.0, "Joins per second per connection.")
    join_burst: int = _opt(5, "Joins a connection may make in a burst.")
    max_conn_per_ip: int = _opt(20, "Open WebSocket connections per client address.")
    trust_proxy: str = _opt("", "Trust X-Forwarded-For/-Host: '' no, N: N proxies in front, 'first': leftmost entry (default on a Space).")
    allowed_origins: str = _opt("", "Other origins allowed to open /ws, comma-separated; '*' in a host matches one label (https://*.hf.space).")
    require_origin: bool = _opt(False, "Refuse WebSocket connections that send no Origin header (scripts, bots).")
    auth: str = _opt("", "Logins 'user:password', comma-separated: protects the UI, /ws and the API; chat name = login name.")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Settings":
        """Defaults, then ``CHAT_<NAME>`` variables, then keyword overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if environ.get("SPACE_ID"):  # a Hugging Face Space: every connection comes through its proxy
            values.setdefault("trust_proxy", "first")
            if environ.get("SPACE_HOST"):  # the page's origin, https://<owner>-<name>.hf.space
                listed = values.get("allowed_origins", "")
                values["allowed_origins"] = ",".join(filter(None, [listed, "https://" + environ["SPACE_HOST"]]))
        return cls(**values).validated()

    def logins(self) -> dict[str, str]:
        """``auth`` as {user: password}."""
        pairs = {}
        for item in self.auth.split(","):
            if item.strip():
                user, sep, password = item.strip().partition(":")
                if not sep or not user or not password:
                    raise ValueError("auth entries are user:password, comma-separated")
                pairs[user] = password
        return pairs

    @classmethod
    def from_args(cls, namespace: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Settings from parsed flags (see :func:`add_arguments`) over the environment."""
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in vars(namespace).items() if k in names and v is not None}
        return cls.from_env(environ, **given)

    def validated(self) -> "Settings":
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"setting {f.name} must not be negative (got {value})")
        return self


def env_name(name: str) -> str:
    return "CHAT_" + name.upper()


def flag_name(f: "dataclasses.Field[Any]") -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _convert(f: "dataclasses.Field[Any]", raw: str) -> Any:
    kind = type(f.default)
    try:
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError:
        raise ValueError(f"{env_name(f.name)}={raw!r} is not a valid {kind.__name__}") from None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one flag per setting. Unset flags stay None so the environment wins over defaults."""
    group = parser.add_argument_group("chat settings (each also read from CHAT_<NAME>)")
    for f in dataclasses.fields(Settings):
        kind = type(f.default)
        help_text = f"{f.metadata['help']} Env {env_name(f.name)}; default {f.default!r}."
        if kind is bool:
            group.add_argument(flag_name(f), dest=f.name, action="store_const", const=True, default=None, help=help_text)
        else:
            group.add_argument(flag_name(f), dest=f.name, type=kind, default=None, help=help_text)
    return parser


def options_table() -> str:
    """The README's options table, generated from the fields above."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        rows.append(f"| `{flag_name(f)}` | `{env_name(f.name)}` | `{f.default!r}` | {f.metadata['help']} |")
    return "\n".join(rows)
