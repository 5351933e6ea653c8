"""The one exception type commands raise for problems the user can fix (a missing or damaged file, a
bad argument): the entry point prints its message as one line and exits with its code."""

from __future__ import annotations


class CLIError(Exception):
    """A user-facing failure: ``message`` is printed as ``sparsecodec <command>: error: <message>``.

    ``code`` is the exit status: 1 for a failed operation, 2 for a usage error (as argparse uses).
    """

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run over several lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__
