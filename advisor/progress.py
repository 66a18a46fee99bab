"""Progress reporting: a callback the caller chooses, and the tqdm adapter the CLI uses.

Long library calls (feature extraction, ranking) report progress by calling a
:data:`Progress` callback with a :class:`ProgressEvent`; they never decide how it is shown. The
CLI passes a :class:`TqdmProgress` (one bar per task on stderr); a service passes a function
that stores ``event.fraction`` in a job's progress field; None reports nothing.

A task's events are: one with ``done == 0`` when it starts, one after each step, and one with
``finished=True`` when it ends, also when it fails (:func:`progress_task` emits them).

Functions that only ever drew a bar or not take a :data:`Reporting`: ``True`` (tqdm bars),
``False`` (nothing) or a :data:`Progress` callback. Downloads report in bytes (unit ``"B"``)
under the task ``download NAME``; a fine-tune reports its own richer events
(:class:`advisor.finetuning.events.TrainingEvent`), each of which converts to a
:class:`ProgressEvent`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

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
#: How a caller asks for progress: True (tqdm bars on stderr), False (none) or a callback.
Reporting = bool | Progress


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
                           unit_scale=event.unit == "B", file=self._file)  # fmt: skip
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


def tqdm_class(reporting: Reporting, task: str) -> type[tqdm]:
    """A tqdm class for code that makes its own bars (``hf_hub_download(tqdm_class=...)``, the
    HTTP download loop): plain tqdm (True), one that never draws (False), or one that draws
    nothing and sends each bar's progress to the callback as ``task`` (its ``unit`` kept)."""
    if reporting is True:
        return tqdm
    if reporting is False:
        return _QuietTqdm
    callback = reporting

    class _Reporting(_QuietTqdm):
        # A disabled tqdm keeps almost none of its arguments: keep what the events need here.
        # ``total`` is a property because callers grow it after the start (huggingface_hub's
        # Xet downloads learn the size late). ``update_transfer`` makes huggingface_hub feed
        # one bar (bytes written; network bytes are dropped) instead of making two bars under
        # this one task name.
        _total: int | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.total = kwargs.get("total")
            self._unit = str(kwargs.get("unit") or "it")
            self._done = int(kwargs.get("initial") or 0)
            self._closed = False
            callback(self._event())

        @property  # type: ignore[override]
        def total(self) -> int | None:
            return self._total

        @total.setter
        def total(self, value: object) -> None:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            self._total = int(value) if ok else None  # type: ignore[arg-type]

        def update_transfer(self, n: float | None = 1) -> None:
            del n  # network bytes: progress counts the bytes written

        def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            del args, kwargs

        def _event(self, *, finished: bool = False) -> ProgressEvent:
            return ProgressEvent(task=task, done=self._done, total=self._total,
                                 unit=self._unit, finished=finished)  # fmt: skip

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            callback(self._event())
            return None

        def close(self) -> None:
            if not getattr(self, "_closed", True):
                self._closed = True
                callback(self._event(finished=True))
            super().close()

    return _Reporting


class _QuietTqdm(tqdm):
    """A tqdm that never draws (``progress=False`` without touching global settings)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
