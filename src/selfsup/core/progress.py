"""Progress bars for long work (rich), as plain ``progress(step, total)`` callbacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def step_bar(label: str, enabled: bool = True, transient: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A bar with elapsed time and ETA; yields ``update(step, total)``. A ``transient`` bar is erased when it
    ends; any bar is erased when an error stops the work it counts (the error is then the only line left)."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=transient,
    ) as p:
        task = p.add_task(label, total=None)
        try:
            yield lambda step, total: p.update(task, completed=step, total=total)
        except BaseException:  # stopped half-way by an error: erase the bar, the error is the one line left
            p.live.transient = True
            raise
