"""Progress reporting: a callback the caller chooses, and the tqdm adapter the CLI uses.

Long library calls (feature extraction, ranking) report progress by calling a
:data:`Progress` callback with a :class:`ProgressEvent`; they never decide how it is shown. The
CLI passes a :class:`TqdmProgress` (one bar per task on stderr); a service passes a function
that stores ``event.fraction`` in a job's progress field; None reports nothing.

A task's events are: one with ``done == 0`` when it starts, one after each step, and one with
``finished=True`` when it ends, also when it fails (:func:`progress_task` emits them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from tqdm.auto import tqdm


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    """Where one task stands: ``done`` of ``total`` (None: unknown) ``unit``s.

    ``task`` names it ("features target", "ffhq-256 sample+features"); tasks running at the same
    time (ranking on several devices) have distinct names.
    """

    task: str
    done: int
    total: int | None
    unit: str = "img"
    finished: bool = False

    @property
    def fraction(self) -> float | None:
        """``done / total`` in 0..1, or None when the total is unknown."""
        if not self.total:
            return 1.0 if self.finished else None
        return min(self.done / self.total, 1.0)


#: The callback type: called from the worker's thread; it must be quick and must not raise.
Progress = Callable[[ProgressEvent], None]


@contextmanager
def progress_task(
    progress: Progress | None, task: str, *, total: int | None, unit: str = "img"
) -> Iterator[Callable[[int], None]]:
    """Report one task to ``progress`` (None: nothing); yields ``advance(n)`` to call after
    each step of ``n`` units. The finishing event is sent however the block ends."""
    if progress is None:
        yield _ignore
        return
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(ProgressEvent(task=task, done=done, total=total, unit=unit))

    progress(ProgressEvent(task=task, done=0, total=total, unit=unit))
    try:
        yield advance
    finally:
        progress(ProgressEvent(task=task, done=done, total=total, unit=unit, finished=True))


def _ignore(n: int) -> None:
    del n


class TqdmProgress:
    """A :data:`Progress` that draws one tqdm bar per running task, removed when it finishes.

    ``enabled=False`` draws nothing (the CLI's ``--quiet``, or stderr not a terminal). Safe to
    call from several threads at once.
    """

    def __init__(self, *, enabled: bool = True, file: TextIO | None = None) -> None:
        self.enabled = enabled
        self._file = file
        self._bars: dict[str, tqdm] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        with self._lock:
            bar = self._bars.get(event.task)
            if bar is None:
                if event.finished:
                    return
                bar = tqdm(total=event.total, unit=event.unit, desc=event.task, leave=False,
                           file=self._file)  # fmt: skip
                self._bars[event.task] = bar
            if event.done > bar.n:
                bar.update(event.done - bar.n)
            if event.finished:
                bar.close()
                del self._bars[event.task]

    def close(self) -> None:
        """Close every bar still open (a task that never sent its finishing event)."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()


def default_progress(enabled: bool) -> Progress | None:
    """The Python API's default when no callback is given: tqdm bars if ``enabled``."""
    return TqdmProgress() if enabled else None
