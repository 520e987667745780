"""``python -m chat_core``: the chat server alone (FastAPI + the plain /chat page), no Gradio."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .engine import check_engine
from .serve import serve
from .settings import SettingError, Settings, add_arguments
from .store import StoreInUse, StoreUnusable
from .web import create_app

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chat_core", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=8000, help="Port to listen on.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)
        check_engine(settings)
    except (SettingError, StoreInUse, StoreUnusable) as exc:
        sys.exit(f"error: {exc}")
    app = create_app(settings, assets_dir=ASSETS if (ASSETS / "page.html").is_file() else None)
    serve(app, args.host, args.port, settings, log_level="info")


if __name__ == "__main__":
    main()
