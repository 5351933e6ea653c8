"""The ``sparsecodec`` command line (also ``python -m sparsecodec``): demo, compress, inspect, bench
and info. Each command lives in its own ``cmd_*`` module; :mod:`.app` wires them together."""

from __future__ import annotations

from .app import build_parser, console_script, main

__all__ = ["build_parser", "console_script", "main"]
