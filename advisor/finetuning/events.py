"""What a fine-tune reports while it trains: typed events for the caller's callback.

The CLI prints them, a service turns them into a job's progress field (``event.progress`` is
the generic :class:`~advisor.progress.ProgressEvent`), a benchmark logs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from advisor.progress import ProgressEvent


@dataclass(frozen=True, kw_only=True)
class TrainingEvent:
    """One report from a training run, sent to the caller's callback on rank 0.

    ``kind``: ``"tick"`` (every ``tick_kimg``: the stats line also written to ``stats.jsonl``:
    ``s_per_kimg``, ``loss_g``, ``loss_d``, ``r1``, ``pl``, ``ada_p``, ...) or ``"metrics"``
    (an evaluation: the tracked metrics, ``fid``, ``kid``, ``recall``, ...). ``values`` holds
    the line's numbers (None-valued entries left out); ``kimg`` of ``total_kimg`` is done.
    """

    kind: Literal["tick", "metrics"]
    kimg: float
    total_kimg: float
    values: Mapping[str, float]

    @property
    def progress(self) -> ProgressEvent:
        """The event as generic progress: task ``finetune``, in images."""
        return ProgressEvent(
            task="finetune",
            done=int(round(self.kimg * 1000)),
            total=int(round(self.total_kimg * 1000)),
        )


#: The fine-tune's callback: called on rank 0 from the training thread; quick, must not raise.
TrainingProgress = Callable[[TrainingEvent], None]


def training_event(
    kind: Literal["tick", "metrics"], kimg: float, total: int, line: Mapping[str, Any]
) -> TrainingEvent:
    """The event for a stats or metrics ``line`` (its numbers, ``kimg`` left out) at ``kimg``
    of ``total`` images."""
    values = {
        k: float(v)
        for k, v in line.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "kimg"
    }
    return TrainingEvent(kind=kind, kimg=kimg, total_kimg=total / 1000, values=values)
