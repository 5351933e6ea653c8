"""Progress bars for long work, and an executor that drives one while ``compress_`` encodes layers.

Bars are transient: they show while work runs on a terminal and leave only the results behind; on a
pipe or in CI they are off, so logs stay clean.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def progress_bar(console: Console) -> Progress:
    """A bar with a description, done / total, and the elapsed time; use as a context manager."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


class ProgressExecutor(Executor):
    """Runs each submitted task at once in the calling thread, then calls ``advance``.

    ``sparsecodec.compress_`` accepts any executor and submits one task per weight matrix, so this
    reports encoding progress through its public interface. The native encoder already uses every
    core, so running tasks one at a time loses nothing.
    """

    def __init__(self, advance: Callable[[], None]):
        self._advance = advance

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        self._advance()
        return future
