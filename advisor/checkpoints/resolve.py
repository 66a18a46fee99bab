"""CHECKPOINT arguments: a file path or a registry name -> a local file -> advisor networks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from advisor.checkpoints.fetch import pull
from advisor.checkpoints.format import Checkpoint, is_advisor_checkpoint
from advisor.checkpoints.importers import read_checkpoint
from advisor.checkpoints.registry import CheckpointRecord, Registry, load_registry
from advisor.errors import AdvisorError
from advisor.progress import Reporting


def resolve(
    spec: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    registry_files: Sequence[str | os.PathLike[str]] = (),
    offline: bool | None = None,
    progress: Reporting = True,
) -> tuple[Path, CheckpointRecord | None]:
    """``(local file, registry record or None)`` for a path or a registry name.

    An existing path wins over a registry name. Registry files are pulled (downloaded and
    verified) when not cached; offline, only cached files resolve.
    """
    path = Path(spec).expanduser()
    if path.is_file() or is_advisor_checkpoint(path):
        return path, None
    registry = registry if registry is not None else load_registry(registry_files)
    if str(spec) not in registry:
        raise AdvisorError(
            f"{str(spec)!r} is neither a checkpoint file nor a registry name; "
            f"known names: {', '.join(registry.names()) or '(none)'}"
        )
    record = registry.get(str(spec))
    return pull(record, offline=offline, progress=progress), record


def open_checkpoint(
    spec: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    registry_files: Sequence[str | os.PathLike[str]] = (),
    offline: bool | None = None,
    networks: tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    progress: Reporting = True,
) -> Checkpoint:
    """Resolve ``spec`` (see :func:`resolve`) and read it into advisor networks (strictly).

    Registry metadata (name, dataset, licence, description) fills what the file does not say.
    """
    path, record = resolve(
        spec, registry=registry, registry_files=registry_files, offline=offline, progress=progress
    )
    ckpt, _ = read_checkpoint(
        path,
        name=record.name if record else None,
        source_dataset=record.source_dataset if record else None,
        licence=record.licence if record else None,
        description=record.description if record else None,
        networks=networks,
        device=device,
    )
    return ckpt
