"""The training loop of a fine-tune: step, tick stats, evaluate, snapshot, stop, summarise.

:func:`train` takes what :mod:`advisor.finetuning.run` prepared (a new run or a resumed one)
and trains until ``kimg``, a stop rule or Ctrl-C, writing the run folder's records as it goes
(see :mod:`advisor.finetuning.run` for the layout).
"""

from __future__ import annotations

import math
import resource
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advisor.checkpoints.format import CheckpointMetadata, save_checkpoint
from advisor.devices import fp32_math
from advisor.finetuning import convergence, loss_signal
from advisor.finetuning.distributed import any_rank, barrier, broadcast_choice
from advisor.finetuning.events import TrainingProgress, training_event
from advisor.finetuning.folder import (
    RunFolder,
    append_jsonl,
    checkpoint_of,
    write_grid,
    write_json,
    write_snapshot,
)
from advisor.finetuning.inputs import Evaluator, TargetData
from advisor.finetuning.options import FinetuneOptions
from advisor.finetuning.training import Trainer


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a run leaves (:func:`train`, and so :func:`~advisor.finetuning.run.run_finetune`
    and ``resume_finetune``): the folder, the summary, and the best snapshot."""

    run_dir: Path
    summary: dict[str, Any]
    best_snapshot: Path | None
    stopped_by: str
    trainer: Trainer | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- the loop
class _StopFlag:
    """Ctrl-C sets a flag; the loop finishes its step, snapshots and stops. A second one
    interrupts at once. Installed only in the main thread (a signal handler cannot be elsewhere).
    """

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(
    metrics: list[dict[str, Any]],
    options: FinetuneOptions,
    *,
    wall_s: float,
    nimg: int,
    train_s: float,
    finished: bool,
    stopped_by: str,
    best: str | None,
    stats: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    kimg = [r["kimg"] for r in metrics]
    values = [r["metrics"].get(options.metric, math.nan) for r in metrics]
    conv = convergence.summarize(
        kimg,
        values,
        metric=options.metric,
        mode=options.metric_mode,
        delta=options.plateau_delta,
        window=options.plateau_window,
    )
    signal = loss_signal.signal_convergence(
        stats, plateau_kimg=conv.plateau_kimg, metric=options.metric
    )
    return {
        **conv.to_dict(),
        "wall_s": round(wall_s, 3),
        "s_per_kimg": round(train_s / max(nimg / 1000, 1e-9), 3),
        "kimg": nimg / 1000,
        "finished": finished,
        "stopped_by": stopped_by,
        "best_snapshot": best,
        "loss_signal": signal.to_dict(),
    }


def train(
    *,
    folder: RunFolder,
    trainer: Trainer,
    data: TargetData,
    evaluator: Evaluator | None,
    meta: CheckpointMetadata,
    run: dict[str, Any],
    metrics: list[dict[str, Any]],
    stats: Sequence[dict[str, Any]] = (),
    wall_offset: float = 0.0,
    train_offset: float = 0.0,
    progress: TrainingProgress | None = None,
) -> RunResult:
    """Train until ``kimg``, a stop rule or Ctrl-C; returns the result (see module docstring).

    ``metrics`` and ``stats`` are the run's records so far (empty for a new run); the loss-only
    signal's EMA continues from the last stats line, so a resumed run writes what the
    uninterrupted one would have.
    """
    o = trainer.options
    device = trainer.device
    rank0 = trainer.dist.rank == 0
    total = int(round(o.kimg * 1000))
    start = time.perf_counter()
    train_s = train_offset
    writer = _tensorboard(folder) if rank0 else None
    stats = list(stats)
    last_ema = stats[-1].get(f"{loss_signal.SIGNAL}_ema") if stats else None
    signal_ema = float(last_ema) if isinstance(last_ema, (int, float)) else None

    def boundary(every: float | None) -> int | None:
        if every is None:
            return None
        step = int(round(every * 1000))
        return (trainer.nimg // step + 1) * step

    def evaluate() -> str | None:
        if evaluator is None:
            return None
        values = evaluator(trainer.G_ema)
        if not rank0:
            return None
        best_before = _best(metrics, o)
        record = {
            "kimg": trainer.nimg / 1000,
            "nimg": trainer.nimg,
            "wall_s": round(wall_offset + time.perf_counter() - start, 3),
            "metrics": values,
            "protocol": evaluator.protocol.to_dict(),
            "snapshot": None,
        }
        metrics.append(record)
        append_jsonl(folder.metrics, record)
        value = values[o.metric]
        improved = best_before is None or (
            value < best_before if o.metric_mode == "min" else value > best_before
        )
        if improved:
            save_checkpoint(folder.snapshots / "best", checkpoint_of(trainer, meta, run))
        _plot(folder, metrics, o.metric, stats)
        if writer is not None:
            for key, v in values.items():
                writer.add_scalar(f"metrics/{key}", v, trainer.nimg)
        if progress:
            progress(training_event("metrics", trainer.nimg / 1000, total, values))
        return _stop_reason(metrics, o)

    last_eval = metrics[-1]["nimg"] if metrics else None
    if evaluator is not None and last_eval is None:
        evaluate()  # kimg 0, before any step; no stop rule can fire on one evaluation
        last_eval = trainer.nimg
    last_snap = trainer.nimg if folder.latest.is_file() else None
    next_tick, next_metric, next_snap = (
        boundary(o.tick_kimg),
        boundary(o.metric_every),
        boundary(o.snapshot_every),
    )
    tick = trainer.nimg // int(round(o.tick_kimg * 1000))
    tick_start, tick_nimg = time.perf_counter(), trainer.nimg
    stopped_by = "kimg"
    per_rank = trainer.per_rank_batch

    def snapshot() -> None:
        if rank0:
            _snapshot(
                folder,
                trainer,
                meta,
                run,
                wall_offset + time.perf_counter() - start,
                train_s,
                o.keep_snapshots,
            )
            write_grid(
                folder.samples / f"grid-{trainer.nimg:09d}.png",
                trainer.G_ema,
                range(o.grid_seeds),
                device,
            )
        barrier(trainer.dist)

    # fp32 means fp32 (no TF32 on GPUs), as NVlabs trains by default; bf16 is --precision bf16.
    with _StopFlag() as stop, fp32_math():
        while trainer.nimg < total:
            t0 = time.perf_counter()
            reals = data.batch(trainer.nimg + trainer.dist.rank * per_rank, per_rank)
            losses = trainer.step(reals)
            train_s += time.perf_counter() - t0
            if next_tick is not None and trainer.nimg >= next_tick:
                tick += 1
                elapsed = time.perf_counter() - tick_start
                signal = {k: _rounded(v) for k, v in trainer.take_tick_signal().items()}
                gap = signal[loss_signal.SIGNAL]
                if gap is not None:
                    signal_ema = round(
                        loss_signal.ema_step(
                            signal_ema, gap, halflife=loss_signal.DEFAULT_SIGNAL_HALFLIFE
                        ),
                        6,
                    )
                line = {
                    "kimg": trainer.nimg / 1000,
                    "tick": tick,
                    "nimg": trainer.nimg,
                    "s_per_kimg": round(elapsed / ((trainer.nimg - tick_nimg) / 1000), 3),
                    **{k: round(v, 6) for k, v in losses.items()},
                    "ada_p": round(trainer.ada_p, 6),
                    **signal,
                    f"{loss_signal.SIGNAL}_ema": signal_ema,
                    "lr": o.lr,
                    "memory_mb": round(_memory_mb(device), 1),
                    "wall_s": round(wall_offset + time.perf_counter() - start, 3),
                }
                stats.append(line)
                if rank0:
                    append_jsonl(folder.stats, line)
                    if writer is not None:
                        for key in ("loss_g", "loss_d", "r1", "pl", "ada_p", "ada_rt", "d_gap"):
                            if line.get(key) is not None:
                                writer.add_scalar(f"train/{key}", line[key], trainer.nimg)
                    if progress:
                        progress(training_event("tick", trainer.nimg / 1000, total, line))
                tick_start, tick_nimg = time.perf_counter(), trainer.nimg
                next_tick = boundary(o.tick_kimg)
            reason = None
            if next_metric is not None and trainer.nimg >= next_metric:
                reason = broadcast_choice(evaluate(), _REASONS, trainer.dist)
                last_eval = trainer.nimg
                next_metric = boundary(o.metric_every)
            interrupted = any_rank(stop.raised, trainer.dist)
            if interrupted or reason is not None:
                stopped_by = "interrupt" if interrupted else str(reason)
                break
            if trainer.nimg >= next_snap and trainer.nimg < total:
                snapshot()
                last_snap = trainer.nimg
                next_snap = boundary(o.snapshot_every)
    if stopped_by == "kimg" and evaluator is not None and last_eval != trainer.nimg:
        evaluate()
    if last_snap != trainer.nimg:
        snapshot()
    wall = wall_offset + time.perf_counter() - start
    finished = trainer.nimg >= total or stopped_by in ("plateau", "worse")
    best = folder.snapshots / "best.safetensors"
    summary = _summary(
        metrics,
        o,
        wall_s=wall,
        nimg=trainer.nimg,
        train_s=train_s,
        finished=finished,
        stopped_by=stopped_by,
        best=str(best.relative_to(folder.path)) if best.is_file() else None,
        stats=stats,
    )
    if rank0:
        write_json(folder.summary, summary)
        if writer is not None:
            writer.close()
    return RunResult(
        run_dir=folder.path,
        summary=summary,
        trainer=trainer,
        best_snapshot=best if best.is_file() else None,
        stopped_by=stopped_by,
    )


def _snapshot(
    folder: RunFolder,
    trainer: Trainer,
    meta: CheckpointMetadata,
    run: dict[str, Any],
    wall_s: float,
    train_s: float,
    keep: int,
) -> None:
    write_snapshot(
        folder, trainer, meta, run, keep=keep, extra_state={"wall_s": wall_s, "train_s": train_s}
    )


def _best(metrics: list[dict[str, Any]], o: FinetuneOptions) -> float | None:
    kimg = [r["kimg"] for r in metrics]
    top = convergence.best(kimg, [r["metrics"][o.metric] for r in metrics], mode=o.metric_mode)
    return None if top is None else top[0]


def _stop_reason(metrics: list[dict[str, Any]], o: FinetuneOptions) -> str | None:
    kimg = [r["kimg"] for r in metrics]
    values = [r["metrics"][o.metric] for r in metrics]
    return convergence.stop_reason(
        kimg,
        values,
        mode=o.metric_mode,
        delta=o.plateau_delta,
        window=o.plateau_window,
        stop_at_plateau=o.stop_at_plateau,
        stop_if_worse=o.stop_if_worse,
    )


#: What :func:`_stop_reason` can return besides None (rank 0 decides; the group follows).
_REASONS = (convergence.STOP_PLATEAU, convergence.STOP_WORSE)


def _rounded(value: float) -> float | None:
    """A stats value to 6 decimals; ``None`` for NaN (JSON has no NaN)."""
    return round(value, 6) if math.isfinite(value) else None


def _plot(
    folder: RunFolder, metrics: list[dict[str, Any]], metric: str, stats: list[dict[str, Any]]
) -> None:
    try:
        from advisor.runs import plot_metric_curves
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return
    name = folder.path.name
    plot_metric_curves({name: metrics}, metric, folder.path / "curves.png", signals={name: stats})


def _tensorboard(folder: RunFolder) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder.path / "tensorboard"))
