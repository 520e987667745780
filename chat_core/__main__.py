"""``python -m chat_core``: the chat server alone (FastAPI + the plain /chat page), no Gradio."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from .settings import Settings, add_arguments
from .web import create_app

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def main(argv: "list[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chat_core", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_arguments(parser)
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    app = create_app(settings, assets_dir=ASSETS if ASSETS.is_dir() else None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                ws_max_size=settings.max_frame or 16 * 1024 * 1024,
                ws_ping_interval=settings.ping_interval or None, ws_ping_timeout=settings.ping_timeout or None)


if __name__ == "__main__":
    main()
