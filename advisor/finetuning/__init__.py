"""Fine-tuning: transfer a StyleGAN2 checkpoint to a target, tracked and resumable.

The Python API::

    import advisor
    run = advisor.finetune("source.safetensors", "target/", run_dir="runs/a",
                           options=advisor.FinetuneOptions(kimg=50, d_init="random"))
    print(run.summary.convergence.best, run.best_snapshot)
    run = advisor.load_run("runs/a")

Modules: ``options`` (the typed options and NVlabs' auto rules), ``augment`` (the ADA pipeline),
``training`` (losses, lazy regularisation, EMA, FreezeD, DDP gradients), ``distributed`` (the
torchrun group: joining it, each process's device, the collectives that keep the processes in
step), ``run`` (start and resume), ``loop`` (train, track, stop, snapshot), ``events`` (what a
run reports to the caller's callback), ``folder`` (its files: atomic JSON, JSONL, snapshots,
grids), ``inputs`` (networks per init, target data, the G_ema evaluator), ``convergence`` (best,
plateau, rate) and ``loss_signal`` (where the loss-only signal settles).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from advisor.finetuning.events import TrainingEvent
from advisor.finetuning.options import FinetuneOptions

if TYPE_CHECKING:
    from advisor.finetuning.events import TrainingProgress
    from advisor.runs import Run

__all__ = ["FinetuneOptions", "TrainingEvent", "finetune", "load_run", "resume", "resume_finetune"]


def finetune(
    checkpoint: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    run_dir: str | os.PathLike[str],
    options: FinetuneOptions = FinetuneOptions(),  # noqa: B008 - frozen
    device: str = "auto",
    registry_files: Sequence[str | os.PathLike[str]] = (),
    offline: bool | None = None,
    progress: TrainingProgress | None = None,
) -> Run:
    """Fine-tune ``checkpoint`` (a registry name or an advisor/NVlabs/rosinality file) on
    ``target`` (an image folder or .zip) into the new folder ``run_dir``; returns the run as
    :func:`load_run` reads it. Under torchrun, every process calls this and joins the group.
    """
    from advisor.finetuning.run import run_finetune
    from advisor.runs import load_run

    result = run_finetune(
        checkpoint,
        target,
        run_dir=run_dir,
        options=options,
        device=device,
        registry_files=registry_files,
        offline=offline,
        progress=progress,
    )
    return load_run(result.run_dir)


def resume(
    run_dir: str | os.PathLike[str],
    *,
    kimg: float | None = None,
    device: str = "auto",
    progress: TrainingProgress | None = None,
) -> Run:
    """Continue ``run_dir`` from its last complete snapshot (``kimg``: a new total length)."""
    from advisor.finetuning.run import resume_finetune
    from advisor.runs import load_run

    result = resume_finetune(run_dir, kimg=kimg, device=device, progress=progress)
    return load_run(result.run_dir)


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Read a run folder: config, metric curves, stats, summary, snapshots, best snapshot."""
    from advisor.runs import load_run as _load

    return _load(run_dir)


resume_finetune = resume
