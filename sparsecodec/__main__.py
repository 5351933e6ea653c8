"""``python -m sparsecodec COMMAND``: the same command line as the ``sparsecodec`` console script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m sparsecodec"))
