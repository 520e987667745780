"""``GET /api/rooms/{room}/search`` and ``GET /api/rooms/{room}/export``: the History tab's two
actions over HTTP, with the rules of :class:`chat_core.history_access.HistoryAccess`.

Refusals map to statuses: ``bad_room`` / ``bad_query`` 422, ``banned`` 403, ``rate_limited`` /
``busy`` 429 (with Retry-After), the store away 503. The export streams: its response starts
at once and each page of the room follows as it is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from .export import Format, filename
from .history_access import HistoryAccess
from .refusal import Refusal
from .search import MAX_QUERY, MAX_RESULTS

if TYPE_CHECKING:
    from .web import ChatServer

STATUS = {"bad_room": 422, "bad_query": 422, "banned": 403, "rate_limited": 429, "busy": 429}


def refused(exc: Refusal) -> HTTPException:
    status = STATUS.get(exc.code, 403)
    return HTTPException(status, {"code": exc.code, "message": exc.message},
                         headers={"Retry-After": "10"} if status == 429 else None)


def history_router(server: ChatServer) -> APIRouter:
    router = APIRouter(prefix="/api/rooms", tags=["chat"], dependencies=[Depends(server._require_login)])

    def who(request: Request) -> tuple[HistoryAccess, str, Optional[str]]:
        if server.history is None:
            raise HTTPException(503, "chat server is not running")
        login = server.authenticate(request) if server.authenticate is not None else None
        return server.history, server.address(request), login.user if login is not None else None

    @router.get("/{room}/search", summary="Messages of a room that contain these words, newest first")
    async def search(
        request: Request, room: str,
        q: str = Query(..., max_length=MAX_QUERY, description=(
            "Words; each must begin a word of the message (case and accents do not count)")),
        limit: int = Query(50, ge=1, le=MAX_RESULTS),
    ) -> dict[str, Any]:
        history, address, login = who(request)
        try:
            with server.history_read():
                found = await history.search(room, q, address, login, limit)
        except Refusal as exc:
            raise refused(exc) from None
        return {"room": room, "q": q, "searched": history.store.search_scope or "all",
                "messages": [m.payload() for m in found]}

    @router.get("/{room}/export", summary="A room's history as a file (deleted messages left out), streamed",
                response_class=StreamingResponse,
                responses={200: {"content": {f.media_type.split(";")[0]: {} for f in Format}}})
    async def export(request: Request, room: str,
                     format: Annotated[Format, Query(description="jsonl, csv or md")] = Format.JSONL,
                     ) -> StreamingResponse:
        history, address, login = who(request)
        try:
            room = history.check_export(room, address, login)
        except Refusal as exc:
            raise refused(exc) from None
        return StreamingResponse(
            history.export(room, format, address), media_type=format.media_type,
            headers={"Content-Disposition": f'attachment; filename="{filename(room, format)}"',
                     "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    return router
