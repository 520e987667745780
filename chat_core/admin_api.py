"""The admin HTTP API, ``/api/admin/...``: every moderation action, for moderators only
(:mod:`chat_core.moderators`): a Bearer admin token, or a moderator's login session.

401 without credentials or with a wrong token, 403 for a login that is not a
moderator, 404 while moderation is off, 429 after too many wrong tokens from one
address. A login session counts only for requests whose Origin (when sent) is this
server's own or an allowed one, so another site cannot act with a moderator's cookie.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Annotated, Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from . import protocol
from .admission import origin_allowed
from .moderation import AUDIT_SHOWN, MAX_BAN, MAX_REASON, MAX_SLOW, MAX_TOPIC, BanKind, RoomRules
from .moderators import ADMIN, OFF
from .names import name_key
from .protocol import ProtocolError

if TYPE_CHECKING:
    from .hub import Hub
    from .web import ChatServer

bearer = HTTPBearer(auto_error=False, description="The admin token (--admin-token)")
Room = Path(..., description="The room's name")


class BanRequest(BaseModel):
    user: Optional[str] = Field(None, max_length=64, description="A name to ban (look-alike names are the same name)")
    address: Optional[str] = Field(None, max_length=64, description="A client address to ban")
    seconds: float = Field(..., gt=0, le=MAX_BAN, description="How long")
    reason: str = Field("", max_length=MAX_REASON)


class KickRequest(BaseModel):
    user: str = Field(..., min_length=1, max_length=64)


class RulesRequest(BaseModel):
    topic: Optional[str] = Field(None, max_length=MAX_TOPIC)
    slow: Optional[float] = Field(None, ge=0, le=MAX_SLOW, description="Seconds between two messages of a user; 0 off")
    locked: Optional[bool] = Field(None, description="Read-only except for moderators")


def clean_topic(topic: str) -> str:
    """One line of printable text (control characters become spaces)."""
    return "".join(" " if (ord(c) < 32 or 0x7F <= ord(c) < 0xA0) else c for c in topic).strip()


def cannot_change(hub: Hub) -> tuple[type[BaseException], ...]:
    """What a moderator's delete raises when the history cannot be changed now (the store
    away, or the writer not done within its time)."""
    return (*hub.writer.sequencer.expected, asyncio.TimeoutError)


def normal_address(text: str) -> str:
    """An IP address as the server writes client addresses (``::ffff:1.2.3.4`` is 1.2.3.4);
    ValueError if it is not one."""
    ip = ipaddress.ip_address(text.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def admin_router(server: ChatServer) -> APIRouter:
    moderators = server.moderators
    router = APIRouter(prefix="/api/admin", tags=["admin"])

    def actor(request: Request, credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer)]) -> str:
        """The moderator making this request, as the audit log names them."""
        if not moderators.enabled:
            raise HTTPException(404, OFF)
        if credentials is not None:
            address = server.address(request)
            if moderators.blocked(address):
                raise HTTPException(429, "Too many wrong tokens from this address; wait a minute.")
            if moderators.token_ok(credentials.credentials):
                return ADMIN
            moderators.wrong(address)
            raise HTTPException(401, "Wrong admin token.", headers={"WWW-Authenticate": "Bearer"})
        login = server.authenticate(request) if server.authenticate is not None else None
        if login is None:
            raise HTTPException(401, "Moderators only: send the admin token as a Bearer token, or log in.",
                                headers={"WWW-Authenticate": "Bearer"})
        origin = request.headers.get("origin")
        if origin and not origin_allowed(origin, request.headers.get("host"), server.settings,
                                         request.headers.get("x-forwarded-host"), server.gate.share_origins):
            raise HTTPException(403, "A login session counts only from this site's own pages.")
        if not moderators.is_moderator(login.user):
            raise HTTPException(403, f"{login.user} is not a moderator.")
        return login.user

    def room_name(room: str) -> str:
        try:
            return protocol.check_room(room)
        except ProtocolError as exc:
            raise HTTPException(422, exc.message) from None

    @router.get("/rooms", summary="Rooms, who is online in each (as far as this process sees) and their rules")
    async def rooms(by: str = Depends(actor)) -> dict[str, Any]:
        return {"rooms": await server._hub().rooms_moderated()}

    @router.delete("/rooms/{room}/messages/{msg_id}", summary="Delete any message")
    async def delete(room: str = Room, msg_id: int = Path(..., ge=1, le=2**63 - 1),
                     by: str = Depends(actor)) -> dict[str, Any]:
        hub = server._hub()
        try:
            refused = await hub.remove(room_name(room), msg_id, by)
        except cannot_change(hub):
            raise HTTPException(503, "The chat history cannot be changed right now.") from None
        if refused is not None:
            status = {"no_such_message": 404, "message_deleted": 409}.get(refused.code, 503)
            raise HTTPException(status, refused.message)
        return {"room": room, "deleted": msg_id}

    @router.post("/rooms/{room}/kick", summary="Close a user's connections in a room (close code 4003; may rejoin)")
    async def kick(body: KickRequest, room: str = Room, by: str = Depends(actor)) -> dict[str, Any]:
        await server._hub().moderation.kick(by, room_name(room), name_key(body.user), body.user)
        return {"room": room, "kicked": body.user}

    @router.get("/bans", summary="Bans in force")
    async def bans(by: str = Depends(actor)) -> dict[str, Any]:
        return {"bans": [b.to_json() for b in server._hub().moderation.active_bans()]}

    @router.post("/bans", summary="Ban a name or a client address for a while (closes their connections)")
    async def ban(body: BanRequest, by: str = Depends(actor)) -> dict[str, Any]:
        if (body.user is None) == (body.address is None):
            raise HTTPException(422, "Give either user or address.")
        kind = BanKind.NAME if body.user is not None else BanKind.ADDRESS
        try:
            value = name_key(body.user.strip()) if body.user is not None else normal_address(body.address or "")
        except ValueError:
            raise HTTPException(422, f"Not an IP address: {body.address!r}.") from None
        if not value:
            raise HTTPException(422, "An empty name or address cannot be banned.")
        made = await server._hub().moderation.ban(by, kind, value, body.seconds, body.reason,
                                                  body.user or body.address or "")
        return made.to_json()

    @router.delete("/bans/{kind}/{value}", summary="Lift a ban (value: the ban's value as GET /bans lists it)")
    async def unban(kind: BanKind, value: str = Path(..., max_length=200), by: str = Depends(actor)) -> dict[str, Any]:
        if not await server._hub().moderation.unban(by, kind, value):
            raise HTTPException(404, "No such ban.")
        return {"unbanned": value}

    @router.patch("/rooms/{room}", summary="Set a room's topic, slow mode or lock (what is not given stays)")
    async def rules(body: RulesRequest, room: str = Room, by: str = Depends(actor)) -> dict[str, Any]:
        topic = clean_topic(body.topic) if body.topic is not None else None
        new: RoomRules = await server._hub().moderation.set_rules(by, room_name(room), topic, body.slow, body.locked)
        return {"room": room, **new.to_json()}

    @router.get("/audit", summary="The audit log, newest first")
    async def audit(limit: int = Query(AUDIT_SHOWN, ge=1, le=AUDIT_SHOWN), by: str = Depends(actor)) -> dict[str, Any]:
        return {"audit": [e.to_json() for e in await server._hub().moderation.audit_log(limit)]}

    return router
