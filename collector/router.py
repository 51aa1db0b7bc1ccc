"""`python -m collector.router train`: the command-line door to `collector.routers.train`."""

from __future__ import annotations

import sys

from collector.routers.train import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
