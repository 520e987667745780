#!/usr/bin/env python3
"""`python -m chat_core` with one of its fast parts taken out, to measure what
each one buys (issue 5: "use what makes Python servers fast ... and measure it").

    python bench/app_variant.py --variant asgi    ... the usual python -m chat_core flags

Variants (each differs from the app in one thing only):
  asgi      uvicorn's own WebSocket protocol: every frame goes through ASGI `send`
            (what `uvicorn gradio_app:app` without `--ws` does)
  asyncio   the stdlib asyncio event loop and the h11 HTTP parser instead of uvloop
            and httptools (what uvicorn picks without `uvicorn[standard]`)
  json      the stdlib json module instead of orjson, for parsing and encoding frames
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

VARIANTS = {  # variant: what differs from the app (the --ablation table says it too)
    "asgi": "frames sent through ASGI `send`, not written once per broadcast",
    "asyncio": "stdlib asyncio loop and h11 instead of uvloop and httptools",
    "json": "stdlib json instead of orjson",
}


class StdlibJson:
    """The two orjson calls chat_core.protocol makes, done by the stdlib."""

    JSONDecodeError = json.JSONDecodeError

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    @staticmethod
    def loads(raw: Any) -> Any:
        return json.loads(raw)


def main() -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--variant", choices=list(VARIANTS), required=True)
    known, rest = ap.parse_known_args()
    # chat_core: from PYTHONPATH, which bench/harness.py sets to this checkout or to --app-path
    # (or, run by hand, from the editable install of requirements-dev.txt)
    from chat_core import __main__ as entry, protocol, serve

    if known.variant == "json":
        protocol.orjson = StdlibJson  # type: ignore[assignment]
    real_serve = serve.serve

    def variant_serve(app: Any, host: str, port: int, settings: Any, **extra: Any) -> None:
        if known.variant == "asgi":
            extra["ws"] = "websockets-sansio"
        elif known.variant == "asyncio":
            extra.update(loop="asyncio", http="h11")
        real_serve(app, host, port, settings, **extra)

    entry.serve = variant_serve  # type: ignore[assignment]
    entry.main(rest)


if __name__ == "__main__":
    sys.exit(main())
