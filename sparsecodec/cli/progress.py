"""Progress bars for long work: a generic bar, a per-layer bar driven by ``compress_``'s ``progress``
callback, and an executor that drives a bar while ``compress_`` encodes weight matrices.

Bars are transient: they show while work runs on a terminal and leave only the results behind; on a
pipe or in CI they are off, so logs stay clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from ..compress import LayerProgress


def _progress(console: Console, *extra: ProgressColumn) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *extra,
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def progress_bar(console: Console) -> Progress:
    """A bar with a description, done / total, and the elapsed time; use as a context manager."""
    return _progress(console)


@contextmanager
def layer_progress(console: Console, description: str) -> Iterator[Callable[[LayerProgress], None]]:
    """A bar over the layers ``compress_`` converts, with the time remaining and the last layer done.

    Yields the callback to pass as ``compress_(..., progress=...)``: it takes each
    :class:`sparsecodec.compress.LayerProgress` and moves the bar to its ``index`` of ``total``.
    """
    with _progress(
        console,
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[layer]}"),
    ) as bar:
        task = bar.add_task(description, total=None, layer="")

        def update(step: LayerProgress) -> None:
            bar.update(task, completed=step.index, total=step.total, layer=step.name)

        yield update


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
