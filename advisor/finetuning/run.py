"""A fine-tune as a run folder: start it, or resume it from its last snapshot, and train it
(the loop that trains, tracks and snapshots is :mod:`advisor.finetuning.loop`).

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
import os
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from advisor import __version__
from advisor.checkpoints.format import Checkpoint, checkpoint_paths, load_checkpoint
from advisor.devices import resolve_device
from advisor.errors import AdvisorError
from advisor.finetuning.distributed import Distributed, barrier, joined, rank_device
from advisor.finetuning.events import TrainingProgress
from advisor.finetuning.folder import RunFolder, now, read_jsonl, rewrite_jsonl, write_json
from advisor.finetuning.inputs import (
    METRIC_SEED_BASE,
    Evaluator,
    TargetData,
    build_networks,
    check_trainable,
    load_target,
)
from advisor.finetuning.loop import RunResult, train
from advisor.finetuning.options import FinetuneOptions, resolve
from advisor.finetuning.training import Trainer


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
    progress: TrainingProgress | None = None,
    dist: Distributed | None = None,
) -> RunResult:
    """Start a fine-tune of ``checkpoint`` (registry name or file) on ``target`` in ``run_dir``.

    ``run_dir`` must not hold a run already (resume it with :func:`resume_finetune`). Every
    check (options, checkpoint, architecture, target images, device) runs before training.
    Under torchrun the processes join the group (and leave it at the end, see
    :func:`~advisor.finetuning.distributed.joined`) unless ``dist`` is given.
    """
    from advisor.checkpoints.resolve import open_checkpoint
    from advisor.checkpoints.resolve import resolve as resolve_spec
    from advisor.download import sha256_file

    with joined(dist) as dist:
        folder = RunFolder(run_dir)
        if folder.config.exists():
            raise AdvisorError(f"{folder.path} already holds a run; resume it with --resume")
        dev = rank_device(resolve_device(device), dist)
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
        barrier(dist)
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
    progress: TrainingProgress | None = None,
    dist: Distributed | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last complete snapshot (``kimg``: a new total);
    the torchrun group as for :func:`run_finetune`."""
    import dataclasses

    with joined(dist) as dist:
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
        dev = rank_device(resolve_device(device), dist)
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
        trainer = Trainer(
            G=ckpt.G, D=ckpt.D, G_ema=ckpt.G_ema, options=options, device=dev, dist=dist
        )
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
        barrier(dist)
        source_meta = ckpt.metadata
        meta = dataclasses.replace(source_meta, name=config["checkpoint"]["name"])
        run = {
            "name": config["name"],
            "target": config["target"]["path"],
            "checkpoint": config["checkpoint"],
        }
        images, _ = load_target(config["target"]["path"], source_meta.resolution)
        evaluator = (
            Evaluator(config["target"]["path"], options, dev, dist)
            if options.metric_every
            else None
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


def iter_metrics(run_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The complete lines of ``RUN/metrics.jsonl``."""
    yield from read_jsonl(RunFolder(run_dir).metrics)
