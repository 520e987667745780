"""Every tunable of the chat server in one object.

Values come, in rising priority, from the defaults below, ``CHAT_*`` environment
variables and command-line flags. Each field's metadata carries its help text, so
the flags, the environment names and the README's options table cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import rules


def _opt(default: Any, help: str, flag: Optional[str] = None, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class Settings:
    """Chat server settings. A limit of 0 turns that limit off."""

    db: str = _opt("chat.db", "History store: a SQLite path or sqlite:///path, or :memory: to keep nothing.")
    redis_url: str = _opt("", "Redis (redis://, rediss://, unix://) holding history, ids and fan-out for several "
                              "server processes; empty: one process with the --db store.")
    presence_ttl: float = _opt(15.0, "Redis engine: seconds after which the users of a server process that stopped "
                                     "answering (killed) are taken out of the rooms.")
    history_limit: int = _opt(100, "Messages sent to a client that joins without `since` (0: none).")
    replay_limit: int = _opt(1000, "Most messages replayed to a client that joins with `since` (0: all that are kept).")
    history_keep: int = _opt(10000, "Entries (messages and changes to them) kept per room (0 keeps all).")
    max_text: int = _opt(rules.MAX_TEXT, "Longest message text, in characters.")
    max_frame: int = _opt(65536, "Largest incoming WebSocket frame in bytes; larger closes with 1009.")
    outbox: int = _opt(1000, "Frames queued for one slow client before it is closed with 1013.")
    stall_timeout: float = _opt(10.0, "Seconds a client may leave frames waiting without taking any before it is "
                                      "closed with 1013.")
    send_buffer: int = _opt(65536, "Kernel send buffer per WebSocket in bytes (SO_SNDBUF; 0: the OS default, up to "
                                   "MiBs per stalled client).")
    notice_limit: int = _opt(200, "Room size above which join/leave notices are coalesced into `presence` frames.")
    users_shown: int = _opt(200, "Most names listed in a `welcome` frame.")
    presence_interval: float = _opt(1.0, "Seconds between coalesced `presence` frames in big rooms.")
    ping_interval: float = _opt(20.0, "Seconds between protocol pings to each client (0 turns pings off).")
    ping_timeout: float = _opt(20.0, "Seconds to wait for a pong before a peer is taken for dead.")
    durable: bool = _opt(False, "Wait for the disk at every history commit (SQLite synchronous=FULL): the last batches"
                                " survive a power cut too, at a cost per batch.")
    commit_delay: float = _opt(0.0, "Extra seconds the history writer waits to gather a bigger batch.")
    secret: str = _opt("", "Secret for login tokens and /ws tickets; empty: generated once and kept in <db>.secret.",
                       secret=True)
    rate: float = _opt(5.0, "Messages per second per connection (token bucket rate).")
    burst: int = _opt(10, "Messages a connection may send in a burst.")
    flood_limit: int = _opt(20, "Refused (rate-limited) messages, net of `rate` forgiven per second, before close "
                                "1008.")
    join_rate: float = _opt(1.0, "Joins per second per connection.")
    join_burst: int = _opt(5, "Joins a connection may make in a burst.")
    frame_rate: float = _opt(20.0, "Frames of any type per second per connection (bursts of 3x); beyond: refused and "
                                   "counted towards the flood close.")
    ip_rate: float = _opt(10.0, "Messages per second per client address, over all its connections (bursts of 2x).")
    ip_join_rate: float = _opt(2.0, "Joins per second per client address, over all its connections (bursts of 5x).")
    conn_rate: float = _opt(2.0, "New connections per second per client address (bursts of 10x); beyond, closed "
                                 "at once.")
    room_rate: float = _opt(0.1, "New rooms per second per client address (bursts of 5).")
    name_rate: float = _opt(0.2, "Names taken for the first time per second per client address (bursts of 10).")
    max_rooms: int = _opt(500, "Rooms listed at once (in use, or with a message within `room_idle`); a new room beyond"
                               " is refused.")
    room_idle: float = _opt(7 * 86400.0, "Seconds after its last message that a room nobody is in drops out of the "
                                         "rooms list.")
    max_conn_per_ip: int = _opt(20, "Open WebSocket connections per client address.")
    max_half_open_per_ip: int = _opt(8, "HTTP connections per client address still sending their request headers.")
    header_timeout: float = _opt(10.0, "Seconds a client may take to send a request's headers before the connection is"
                                       " closed.")
    token_ttl: float = _opt(30 * 86400.0, "Seconds a resume token stays valid after it was issued.")
    name_reserve: float = _opt(86400.0, "Seconds a name stays reserved for its token after its holder was last seen "
                                        "(0: no reservation).")
    trust_proxy: str = _opt("", "Trust X-Forwarded-For/-Host: '' no, N: N proxies in front, 'first': leftmost entry "
                                "(default on a Space).")
    allowed_origins: str = _opt("", "Other origins allowed to open /ws and read the API, comma-separated; '*' in a "
                                    "host matches one label (https://*.hf.space).")
    allowed_hosts: str = _opt("", "Host names served besides the loopback names when the server is reached on a "
                                  "loopback address (DNS-rebinding guard), comma-separated; '*' turns the check off.")
    require_origin: bool = _opt(False, "Refuse WebSocket connections that send no Origin header (scripts, bots).")
    auth: str = _opt("", "Logins 'user:password', comma-separated: protects the UI, /ws and the API; chat name = login"
                         " name.")
    moderators: str = _opt("", "Logins of --auth that are moderators, comma-separated: the Moderation tab and the admin"
                               " API for them; they may write in locked rooms and skip slow mode.")
    admin_token: str = _opt("", "Token (16+ bytes) that makes whoever presents it a moderator: Bearer token of the "
                                "admin API, sign-in of the Moderation tab; empty: only --moderators.", secret=True)
    bot_keys: str = _opt("", "Bots: 'name=key' pairs, comma-separated (keys of 16+ bytes). A bot joins with its key "
                             "(join's bot_key): its messages are marked as a bot's, and nobody else may take its name "
                             "or a look-alike.", secret=True)
    bot_rate: float = _opt(10.0, "Messages per second of each bot (bursts of 5x), in place of a person's limits "
                                 "(a bot answers many people); 0: no limit.")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> Settings:
        """Defaults, then ``CHAT_<NAME>`` variables, then keyword overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if environ.get("SPACE_ID"):
            space_defaults(values, environ)
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
    def from_args(cls, namespace: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> Settings:
        """Settings from parsed flags (see :func:`add_arguments`) over the environment."""
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in vars(namespace).items() if k in names and v is not None}
        return cls.from_env(environ, **given)

    def validated(self) -> Settings:
        """Refuse a bad value with one line naming the setting, the value and what is accepted."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise SettingError(f"{describe(f)}: {value!r} must not be negative")
        tp = self.trust_proxy
        if tp not in ("", "first") and not (tp.isdigit() and int(tp) > 0):
            raise SettingError(f"{describe(_field('trust_proxy'))}: {tp!r} is not '' (trust none), "
                               "a number of proxies (1, 2, ...) or 'first'")
        for origin in split_list(self.allowed_origins):
            if not ORIGIN_RE.fullmatch(origin):
                raise SettingError(f"{describe(_field('allowed_origins'))}: {origin!r} is not an origin "
                                   "such as https://example.org or https://*.hf.space")
        for host in split_list(self.allowed_hosts):
            if host != "*" and not HOST_RE.fullmatch(host):
                raise SettingError(f"{describe(_field('allowed_hosts'))}: {host!r} is not a host name "
                                   "such as chat.example.org, *.example.org or '*'")
        if self.presence_ttl < 3:
            raise SettingError(f"{describe(_field('presence_ttl'))}: {self.presence_ttl!r} is under 3 seconds")
        if self.secret and len(self.secret.encode()) < 16:
            raise SettingError(f"{describe(_field('secret'))}: too short ({len(self.secret.encode())} bytes); "
                               "give at least 16 bytes, e.g. python -c \"import secrets; print(secrets.token_hex())\"")
        if self.redis_url and not REDIS_URL_RE.match(self.redis_url):
            raise SettingError(f"{describe(_field('redis_url'))}: {self.redis_url!r} is not a Redis URL "
                               "such as redis://localhost:6379/0, rediss://host:6380 or unix:///run/redis.sock")
        try:
            logins = self.logins()
        except ValueError as exc:
            raise SettingError(f"{describe(_field('auth'))}: {exc}") from None
        for name in self.moderator_names():
            if name not in logins:
                raise SettingError(f"{describe(_field('moderators'))}: {name!r} is not a login of --auth "
                                   f"({', '.join(sorted(logins)) or 'none given'})")
        try:
            self.bot_key_map()
        except ValueError as exc:
            raise SettingError(f"{describe(_field('bot_keys'))}: {exc}") from None
        if self.admin_token and len(self.admin_token.encode()) < 16:
            raise SettingError(f"{describe(_field('admin_token'))}: too short ({len(self.admin_token.encode())} "
                               "bytes); give at least 16, e.g. python -c "
                               "\"import secrets; print(secrets.token_hex())\"")
        return self

    def bot_key_map(self) -> dict[str, tuple[str, str]]:
        """``bot_keys`` as {name key (chat_core.names.name_key): (the name, its key)}; ValueError
        for an entry that is not ``name=key``, a name the chat refuses, a short key or a name twice."""
        from .names import BadName, enforce, name_key

        found: dict[str, tuple[str, str]] = {}
        for item in split_list(self.bot_keys):
            name, sep, key = item.partition("=")
            if not sep or not name.strip() or not key.strip():
                raise ValueError("entries are name=key, comma-separated")
            try:
                shown = enforce(name.strip())
            except BadName as exc:
                raise ValueError(f"{name.strip()!r} is not a chat name: {exc}") from None
            if len(key.strip().encode()) < 16:
                raise ValueError(f"the key of {shown!r} is too short; give at least 16 bytes, e.g. python -c "
                                 "\"import secrets; print(secrets.token_hex())\"")
            if name_key(shown) in found:
                raise ValueError(f"{shown!r} is given twice (or looks like another bot's name)")
            found[name_key(shown)] = (shown, key.strip())
        return found

    def moderator_names(self) -> frozenset[str]:
        """``moderators`` as a set of login names."""
        return frozenset(split_list(self.moderators))


SPACE_DATA = Path("/data")  # a Space's persistent storage, when it has some


def space_defaults(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    """On a Hugging Face Space (the one place its defaults are kept; the share link's
    own origin is allowed once made, see chat_core.admission.Gate): every connection
    comes through its proxy, so the first X-Forwarded-For entry is the client; the
    page's origin is https://$SPACE_HOST; with persistent storage the history is kept
    in /data. Settings given explicitly win."""
    values.setdefault("trust_proxy", "first")
    if environ.get("SPACE_HOST"):
        listed = values.get("allowed_origins", "")
        values["allowed_origins"] = ",".join(filter(None, [listed, "https://" + environ["SPACE_HOST"]]))
    if SPACE_DATA.is_dir() and os.access(SPACE_DATA, os.W_OK):
        values.setdefault("db", str(SPACE_DATA / "chat.db"))


class SettingError(ValueError):
    """A setting with a value it cannot take; the message is one line naming it."""


ORIGIN_RE = re.compile(r"https?://(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")
HOST_RE = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
REDIS_URL_RE = re.compile(r"(redis|rediss)://[^\s/]*(/[0-9]*)?(\?\S*)?$|unix:///\S+$")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def split_list(value: str) -> list[str]:
    """A comma-separated setting as its entries (a trailing '/' of an origin dropped)."""
    return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(Settings) if f.name == name)


def describe(f: dataclasses.Field[Any]) -> str:
    return f"setting {flag_name(f)} ({env_name(f.name)})"


# The abuse limits (0 turns each off), for limits_off().
ABUSE_LIMITS = ("rate", "bot_rate", "join_rate", "max_conn_per_ip", "frame_rate", "ip_rate", "ip_join_rate",
                "conn_rate", "room_rate", "name_rate", "max_rooms", "max_half_open_per_ip")


def limits_off() -> dict[str, str]:
    """``CHAT_*`` variables that turn every abuse limit off and reserve no name after its
    holder leaves: for tests and benchmarks, which send in bursts and reconnect on purpose."""
    return {env_name(name): "0" for name in (*ABUSE_LIMITS, "name_reserve")}


def env_name(name: str) -> str:
    return "CHAT_" + name.upper()


def flag_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind: Any = type(f.default)
    if kind is bool:
        word = raw.strip().lower()
        if word in TRUE or word in FALSE:
            return word in TRUE
        raise SettingError(f"{describe(f)}: {raw!r} is not a boolean; use one of {', '.join(TRUE + FALSE)}")
    try:
        value = kind(raw)
    except ValueError:
        raise SettingError(f"{describe(f)}: {raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise SettingError(f"{describe(f)}: {raw!r} is not a finite number")
    return value


def _parser_for(f: dataclasses.Field[Any]) -> Any:
    def parse(raw: str) -> Any:
        try:
            return _convert(f, raw)
        except SettingError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = type(f.default).__name__
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one flag per setting. Unset flags stay None so the environment wins over defaults."""
    group = parser.add_argument_group("chat settings (each also read from CHAT_<NAME>)")
    for f in dataclasses.fields(Settings):
        kind = type(f.default)
        help_text = f"{f.metadata['help']} Env {env_name(f.name)}; default {f.default!r}."
        if kind is bool:
            group.add_argument(flag_name(f), dest=f.name, action="store_const", const=True, default=None,
                               help=help_text)
        else:
            group.add_argument(flag_name(f), dest=f.name, type=_parser_for(f), default=None, help=help_text)
    return parser


def options_table() -> str:
    """The README's options table, generated from the fields above."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        rows.append(f"| `{flag_name(f)}` | `{env_name(f.name)}` | `{f.default!r}` | {f.metadata['help']} |")
    return "\n".join(rows)
