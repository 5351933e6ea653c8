"""Where the commands write: a rich console for results on stdout, plain one-line errors on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Width used when stdout is not a terminal (a pipe, a log, a test): wide enough for the layer tables.
PIPE_WIDTH = 140


def make_console() -> Console:
    """A console for stdout; on a pipe it is wide and plain (no colour codes in logs). A pipe's width
    ignores COLUMNS, which parent processes (pytest, for one) often leave at 80."""
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(width=width, highlight=False, soft_wrap=False)


def print_error(prog: str, message: str) -> None:
    """``<prog>: error: <message>`` on stderr: the argparse convention, one line, no traceback."""
    print(f"{prog}: error: {message}", file=sys.stderr)
