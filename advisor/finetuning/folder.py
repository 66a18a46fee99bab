"""The run folder's files: atomic JSON, whole-line JSONL, snapshots, state and sample grids.

See :mod:`advisor.finetuning.run` for the layout. Every file is written atomically (temporary
file, then rename); ``latest.json`` is written last and names the last complete snapshot.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from advisor.cache import atomic_path, atomic_write_bytes
from advisor.checkpoints.format import (
    Checkpoint,
    CheckpointMetadata,
    Provenance,
    checkpoint_paths,
    save_checkpoint,
)
from advisor.errors import AdvisorError
from advisor.finetuning.training import Trainer
from advisor.networks import Generator

SNAPSHOTS = "snapshots"
LATEST = "latest.json"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, doc: Any) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a last line cut by a kill is dropped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def rewrite_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    atomic_write_bytes(path, text.encode())


# --------------------------------------------------------------------------- snapshots
def _snapshot_name(nimg: int) -> str:
    return f"snapshot-{nimg:09d}"


def _state_name(nimg: int) -> str:
    return f"state-{nimg:09d}"


class RunFolder:
    """Paths and atomic writers of one run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.snapshots = self.path / SNAPSHOTS
        self.samples = self.path / "samples"
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.stats = self.path / "stats.jsonl"
        self.summary = self.path / "summary.json"
        self.latest = self.snapshots / LATEST

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.snapshots.mkdir(exist_ok=True)
            self.samples.mkdir(exist_ok=True)
        except OSError as err:
            raise AdvisorError(f"cannot create run folder {self.path} ({err.strerror})") from None


def checkpoint_of(trainer: Trainer, meta: CheckpointMetadata, run: dict[str, Any]) -> Checkpoint:
    kimg = trainer.nimg / 1000
    metadata = CheckpointMetadata(
        name=f"{run['name']}-kimg{kimg:g}",
        generator=meta.generator,
        discriminator=meta.discriminator,
        source_dataset=run["target"],
        training_kimg=kimg,
        licence=meta.licence,
        description=f"advisor finetune of {meta.name} on {run['target']}",
        provenance=Provenance(
            source_file=str(run["checkpoint"]["path"]),
            source_sha256=run["checkpoint"]["sha256"] or "",
            importer="advisor finetune",
            imported_at=now(),
        ),
        extra={"finetune": {"parent": meta.name, "kimg": kimg, "run": run["name"]}},
    )
    return Checkpoint(metadata=metadata, G_ema=trainer.G_ema, G=trainer.G, D=trainer.D)


def write_snapshot(
    folder: RunFolder,
    trainer: Trainer,
    meta: CheckpointMetadata,
    run: dict[str, Any],
    *,
    keep: int,
    extra_state: dict[str, Any],
) -> Path:
    """Networks, then state, then ``latest.json`` (the commit point); prune old snapshots."""
    name = _snapshot_name(trainer.nimg)
    save_checkpoint(folder.snapshots / name, checkpoint_of(trainer, meta, run))
    state = _state_name(trainer.nimg)
    with atomic_path(folder.snapshots / f"{state}.safetensors") as tmp:
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in trainer.state_tensors().items()}, str(tmp)
        )
    write_json(
        folder.snapshots / f"{state}.json", {"scalars": trainer.state_scalars(), **extra_state}
    )
    write_json(folder.latest, {"nimg": trainer.nimg, "snapshot": name, "state": state})
    _prune(folder, keep)
    return folder.snapshots / f"{name}.safetensors"


def _prune(folder: RunFolder, keep: int) -> None:
    snaps = sorted(folder.snapshots.glob("snapshot-*.json"))
    for old in snaps[:-keep]:
        nimg = old.stem.split("-")[1]
        for path in (
            *checkpoint_paths(old),
            *(folder.snapshots / f"state-{nimg}{s}" for s in (".safetensors", ".json")),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def write_grid(path: Path, G_ema: Generator, seeds: Sequence[int], device: torch.device) -> None:  # noqa: N803
    """A PNG grid of G_ema's images for ``seeds`` (const noise), up to 8 per row."""
    from PIL import Image

    from advisor.sampling import sample

    images = torch.cat(list(sample(G_ema, list(seeds), batch_size=32, device=device)))
    n, c, h, w = images.shape
    cols = min(8, n)
    rows = math.ceil(n / cols)
    grid = torch.full((c, rows * h, cols * w), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(f, format="PNG")
