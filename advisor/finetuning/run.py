"""A fine-tune as a run folder: start, train, track, snapshot, resume.

The run folder is the record (see the README's "Fine-tuning" section)::

    RUN/config.json        every option resolved, the source checkpoint, versions, load report
    RUN/metrics.jsonl      one line per evaluation of G_ema (kimg 0 first)
    RUN/stats.jsonl        one line per tick: losses, R1, path length, ADA p, lr, s/kimg, memory,
                           and the loss-only signal (ada_rt, d_real, d_fake, d_gap, d_gap_ema)
    RUN/summary.json       best value and kimg, plateau, convergence rate, wall time, s/kimg,
                           and loss_signal: where d_gap settles, in kimg from the plateau
    RUN/snapshots/snapshot-NNNNNNNNN.{safetensors,json}   advisor checkpoints (NNN = images seen)
    RUN/snapshots/best.{safetensors,json}                 the best evaluation's networks
    RUN/snapshots/state-NNNNNNNNN.{safetensors,json}      optimiser moments and counters
    RUN/snapshots/latest.json   names the last complete snapshot; written last, atomically
    RUN/samples/grid-NNNNNNNNN.png, RUN/curves.png, RUN/tensorboard/ (when installed)

Every file is written atomically (temporary file, then rename); the JSONL files are appended a
whole line at a time. After a kill at any moment, ``latest.json`` still names a complete
snapshot, and resuming truncates the JSONL files to it, so the curves continue without a jump.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from advisor import __version__
from advisor.checkpoints.format import (
    Checkpoint,
    CheckpointMetadata,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)
from advisor.devices import fp32_math, resolve_device
from advisor.errors import AdvisorError
from advisor.finetuning import convergence
from advisor.finetuning.folder import (
    RunFolder,
    append_jsonl,
    checkpoint_of,
    now,
    read_jsonl,
    rewrite_jsonl,
    write_grid,
    write_json,
    write_snapshot,
)
from advisor.finetuning.inputs import (
    METRIC_SEED_BASE,
    Evaluator,
    TargetData,
    build_networks,
    check_trainable,
    load_target,
)
from advisor.finetuning.options import FinetuneOptions, resolve
from advisor.finetuning.training import Distributed, Trainer


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What :func:`run_finetune` leaves: the folder, the summary, and the best snapshot."""

    run_dir: Path
    summary: dict[str, Any]
    best_snapshot: Path | None
    stopped_by: str
    trainer: Trainer | None = field(default=None, repr=False, compare=False)


Progress = Callable[[dict[str, Any]], None]


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
    signal = convergence.signal_convergence(
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
    progress: Progress | None = None,
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
    last_ema = stats[-1].get(f"{convergence.SIGNAL}_ema") if stats else None
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
            progress({"event": "metrics", "kimg": trainer.nimg / 1000, **values})
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
        _barrier(trainer.dist)

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
                gap = signal[convergence.SIGNAL]
                if gap is not None:
                    signal_ema = round(
                        convergence.ema_step(
                            signal_ema, gap, halflife=convergence.DEFAULT_SIGNAL_HALFLIFE
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
                    f"{convergence.SIGNAL}_ema": signal_ema,
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
                        progress({"event": "tick", **line})
                tick_start, tick_nimg = time.perf_counter(), trainer.nimg
                next_tick = boundary(o.tick_kimg)
            reason = None
            if next_metric is not None and trainer.nimg >= next_metric:
                reason = _broadcast_reason(evaluate(), trainer.dist)
                last_eval = trainer.nimg
                next_metric = boundary(o.metric_every)
            interrupted = _any_rank(stop.raised, trainer.dist)
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


_REASONS = ("plateau", "worse")


def _broadcast_reason(reason: str | None, dist: Distributed) -> str | None:
    if not dist.active:
        return reason
    code = torch.tensor([_REASONS.index(reason) + 1 if reason else 0])
    torch.distributed.broadcast(code, src=0)
    return _REASONS[int(code.item()) - 1] if int(code.item()) else None


def _any_rank(flag: bool, dist: Distributed) -> bool:
    """``flag`` of this process, or whether any process of the group set it.

    Every process calls it after every step, so a Ctrl-C that reaches the processes of a group
    at different steps (or only one of them) stops them all after the same step: a process
    that left the loop alone would wait forever in its snapshot's barrier while the others
    wait in their next step's all-reduce. One all-reduce of one number per step.
    """
    if not dist.active:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _barrier(dist: Distributed) -> None:
    if dist.active:
        torch.distributed.barrier()


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


# --------------------------------------------------------------------------- start / resume
def run_finetune(
    checkpoint: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    run_dir: str | os.PathLike[str],
    options: FinetuneOptions = FinetuneOptions(),  # noqa: B008 - frozen
    device: str = "auto",
    registry_files: Sequence[str | os.PathLike[str]] = (),
    offline: bool | None = None,
    progress: Progress | None = None,
    dist: Distributed | None = None,
) -> RunResult:
    """Start a fine-tune of ``checkpoint`` (registry name or file) on ``target`` in ``run_dir``.

    ``run_dir`` must not hold a run already (resume it with :func:`resume_finetune`). Every
    check (options, checkpoint, architecture, target images, device) runs before training.
    """
    from advisor.checkpoints.resolve import open_checkpoint
    from advisor.checkpoints.resolve import resolve as resolve_spec
    from advisor.download import sha256_file

    dist = dist or _distributed()
    folder = RunFolder(run_dir)
    if folder.config.exists():
        raise AdvisorError(f"{folder.path} already holds a run; resume it with --resume")
    dev = _rank_device(resolve_device(device), dist)
    path, record = resolve_spec(checkpoint, registry_files=registry_files, offline=offline)
    ckpt = open_checkpoint(checkpoint, registry_files=registry_files, offline=offline)
    check_trainable(ckpt, options)
    resolution = ckpt.metadata.resolution
    options = resolve(options, resolution=resolution, world_size=dist.world_size)
    _check_batch(ckpt, options, dist)
    images, target_note = load_target(target, resolution)
    G, D, G_ema, load_report = build_networks(ckpt, options)
    tensors = checkpoint_paths(path)[0] if path.suffix in (".json", "") else path
    sha = sha256_file(tensors) if tensors.is_file() else None
    run = {
        "name": folder.path.resolve().name,
        "target": str(target),
        "checkpoint": {
            "spec": str(checkpoint),
            "path": str(path),
            "sha256": sha,
            "name": ckpt.metadata.name,
            "registry": record.name if record else None,
        },
    }
    config = {
        "advisor_version": __version__,
        "created": now(),
        "options": options.to_dict(),
        "checkpoint": run["checkpoint"],
        "target": {"path": str(target), **target_note},
        "load_report": load_report,
        "frozen_d_layers": [],
        "device": str(dev),
        "world_size": dist.world_size,
        "metric_seeds": [METRIC_SEED_BASE, METRIC_SEED_BASE + options.metric_samples - 1],
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "name": run["name"],
    }
    evaluator = Evaluator(target, options, dev, dist) if options.metric_every else None
    trainer = Trainer(G=G, D=D, G_ema=G_ema, options=options, device=dev, dist=dist)
    config["frozen_d_layers"] = trainer.frozen
    if dist.rank == 0:
        folder.create()
        write_json(folder.config, config)
    _barrier(dist)
    data = TargetData(images, mirror=options.mirror, seed=options.seed)
    return train(
        folder=folder,
        trainer=trainer,
        data=data,
        evaluator=evaluator,
        meta=ckpt.metadata,
        run=run,
        metrics=[],
        progress=progress,
    )


def resume_finetune(
    run_dir: str | os.PathLike[str],
    *,
    kimg: float | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    dist: Distributed | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last complete snapshot (``kimg``: a new total)."""
    import dataclasses

    dist = dist or _distributed()
    folder = RunFolder(run_dir)
    try:
        config = json.loads(folder.config.read_text())
        latest = json.loads(folder.latest.read_text())
    except FileNotFoundError as err:
        raise AdvisorError(
            f"{folder.path} has no resumable run ({Path(err.filename).name} is missing)"
        ) from None
    except (OSError, ValueError) as err:
        raise AdvisorError(f"{folder.path}: run files are damaged ({err})") from None
    options = FinetuneOptions.from_dict(config["options"])
    if kimg is not None:
        options = dataclasses.replace(options, kimg=kimg)
    dev = _rank_device(resolve_device(device), dist)
    snap = folder.snapshots / latest["snapshot"]
    state_base = folder.snapshots / latest["state"]
    try:
        ckpt = load_checkpoint(snap, device="cpu")
        state_tensors = safetensors.torch.load_file(str(state_base) + ".safetensors")
        state_doc = json.loads(Path(str(state_base) + ".json").read_text())
    except (OSError, ValueError, safetensors.SafetensorError) as err:
        raise AdvisorError(f"{folder.path}: the last snapshot is damaged ({err})") from None
    if ckpt.G is None or ckpt.D is None:
        raise AdvisorError(f"{snap}: a run snapshot must hold G, D and G_ema")
    trainer = Trainer(G=ckpt.G, D=ckpt.D, G_ema=ckpt.G_ema, options=options, device=dev, dist=dist)
    try:
        trainer.load_state(state_tensors, state_doc["scalars"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise AdvisorError(
            f"{folder.path}: the saved training state does not fit the run "
            f"({' '.join(str(err).split())[:200]})"
        ) from None
    nimg = trainer.nimg
    metrics = [r for r in read_jsonl(folder.metrics) if r.get("nimg", 0) <= nimg]
    stats = [r for r in read_jsonl(folder.stats) if r.get("nimg", 0) <= nimg]
    if dist.rank == 0:
        rewrite_jsonl(folder.metrics, metrics)
        rewrite_jsonl(folder.stats, stats)
    _barrier(dist)
    source_meta = ckpt.metadata
    meta = dataclasses.replace(source_meta, name=config["checkpoint"]["name"])
    run = {
        "name": config["name"],
        "target": config["target"]["path"],
        "checkpoint": config["checkpoint"],
    }
    images, _ = load_target(config["target"]["path"], source_meta.resolution)
    evaluator = (
        Evaluator(config["target"]["path"], options, dev, dist) if options.metric_every else None
    )
    data = TargetData(images, mirror=options.mirror, seed=options.seed)
    return train(
        folder=folder,
        trainer=trainer,
        data=data,
        evaluator=evaluator,
        meta=meta,
        run=run,
        metrics=metrics,
        stats=stats,
        wall_offset=float(state_doc.get("wall_s", 0.0)),
        train_offset=float(state_doc.get("train_s", 0.0)),
        progress=progress,
    )


def _check_batch(ckpt: Checkpoint, options: FinetuneOptions, dist: Distributed) -> None:
    assert options.batch is not None and ckpt.metadata.discriminator is not None
    per_rank = options.batch // dist.world_size
    group = ckpt.metadata.discriminator.mbstd_group_size or 1
    if per_rank % min(group, per_rank):
        raise AdvisorError(
            f"batch {per_rank} per process is not a multiple of D's minibatch-std "
            f"group size {group}"
        )


def _distributed() -> Distributed:
    """torchrun's environment (WORLD_SIZE, RANK): join the process group; else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not torch.distributed.is_initialized():
        # Gradients are CUDA tensors on GPUs, but the small collectives (ADA's signs, the tick
        # signal, stop decisions) are CPU tensors: NCCL alone cannot carry those.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return Distributed(rank=torch.distributed.get_rank(), world_size=world)


def _rank_device(device: torch.device, dist: Distributed) -> torch.device:
    """This process's device: in a group on GPUs, ``cuda`` without an index (``auto``) means
    the process's own GPU, ``cuda:LOCAL_RANK``, and the process's current CUDA device is set to
    it (NCCL's collectives and barriers run on the current device; it is process state that
    joining the group already implies)."""
    if not dist.active or device.type != "cuda":
        return device
    if device.index is None:
        device = resolve_device(f"cuda:{int(os.environ.get('LOCAL_RANK', dist.rank))}")
    torch.cuda.set_device(device)
    return device


def iter_metrics(run_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The complete lines of ``RUN/metrics.jsonl``."""
    yield from read_jsonl(RunFolder(run_dir).metrics)
