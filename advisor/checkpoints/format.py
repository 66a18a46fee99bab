"""advisor's checkpoint format: ``NAME.safetensors`` + ``NAME.json``, never a pickle.

A checkpoint is a pair of files side by side:

- ``NAME.safetensors``: the tensors of the networks, named ``<network>.<NVlabs state_dict key>``
  with ``<network>`` one of ``G_ema`` (always), ``G`` and ``D`` (optional), e.g.
  ``G_ema.mapping.fc0.weight``, ``D.b4.out.bias``. float32 as stored by the source.
- ``NAME.json``: the metadata (:class:`CheckpointMetadata`): ``format``/``format_version``, name,
  resolution, generator and discriminator configs, which networks are present, source dataset,
  training kimg, licence, description, provenance (source file, its sha256, importer, date) and
  the sha256 of the ``.safetensors`` file, so a mismatched pair is detected.

``save_checkpoint`` writes the tensors first and the JSON last, each atomically, so a
checkpoint is either complete or absent. ``load_checkpoint`` reads JSON and safetensors only;
it never unpickles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from advisor import __version__
from advisor.cache import atomic_path, atomic_write_bytes
from advisor.download import sha256_file
from advisor.errors import AdvisorError
from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

FORMAT = "advisor-checkpoint"
FORMAT_VERSION = 1
#: Network names, in the order they are written.
NETWORKS = ("G_ema", "G", "D")


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a checkpoint came from: the source file, its sha256, the importer and the date."""

    source_file: str
    source_sha256: str
    importer: str
    imported_at: str
    advisor_version: str = __version__


@dataclass(frozen=True, kw_only=True)
class CheckpointMetadata:
    """Everything in ``NAME.json`` except the tensor file's hash (computed when saving)."""

    name: str
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig | None = None
    source_dataset: str | None = None
    training_kimg: float | None = None
    licence: str | None = None
    description: str | None = None
    provenance: Provenance | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        """Image side length in pixels (the generator's ``img_resolution``)."""
        return self.generator.img_resolution

    def to_json(self, *, networks: tuple[str, ...], tensors_sha256: str | None) -> dict[str, Any]:
        """The JSON document written beside the tensors."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "resolution": self.resolution,
            "networks": list(networks),
            "generator": self.generator.to_dict(),
            "discriminator": self.discriminator.to_dict() if self.discriminator else None,
            "source_dataset": self.source_dataset,
            "training_kimg": self.training_kimg,
            "licence": self.licence,
            "description": self.description,
            "provenance": None if self.provenance is None else vars(self.provenance).copy(),
            "extra": dict(self.extra),
            "tensors_sha256": tensors_sha256,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CheckpointMetadata:
        """Parse ``to_json`` output; raises ``ValueError`` on unknown configs or fields."""
        prov = doc.get("provenance")
        disc = doc.get("discriminator")
        return cls(
            name=str(doc["name"]),
            generator=GeneratorConfig.from_dict(doc["generator"]),
            discriminator=None if disc is None else DiscriminatorConfig.from_dict(disc),
            source_dataset=doc.get("source_dataset"),
            training_kimg=doc.get("training_kimg"),
            licence=doc.get("licence"),
            description=doc.get("description"),
            provenance=None if prov is None else Provenance(**prov),
            extra=dict(doc.get("extra") or {}),
        )


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Networks built from their configs with their weights loaded, plus the metadata.

    ``G_ema`` is the generator to sample from; ``G`` and ``D`` are present when the source had
    them (fine-tuning needs both). Networks are in eval mode with ``requires_grad`` off.
    """

    metadata: CheckpointMetadata
    G_ema: Generator  # noqa: N815 - NVlabs' names for the three networks
    G: Generator | None = None  # noqa: N815
    D: Discriminator | None = None  # noqa: N815

    @property
    def networks(self) -> tuple[str, ...]:
        """Names of the networks present, in ``NETWORKS`` order."""
        return tuple(n for n in NETWORKS if getattr(self, n) is not None)


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` for ``NAME``, ``NAME.json`` or ``NAME.safetensors``."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def is_advisor_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names an existing advisor checkpoint pair (cheap: no hashing)."""
    tensors, meta = checkpoint_paths(path)
    return tensors.is_file() and meta.is_file()


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` as ``NAME.safetensors`` + ``NAME.json``; returns the JSON path.

    ``path`` is ``NAME`` (with or without either suffix). Existing files are replaced atomically.
    """
    tensors_path, json_path = checkpoint_paths(path)
    tensors: dict[str, torch.Tensor] = {}
    for net in checkpoint.networks:
        for key, value in getattr(checkpoint, net).state_dict().items():
            tensors[f"{net}.{key}"] = value.detach().to("cpu").contiguous()
    with atomic_path(tensors_path) as tmp:
        safetensors.torch.save_file(
            tensors, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)}
        )
    doc = checkpoint.metadata.to_json(
        networks=checkpoint.networks, tensors_sha256=sha256_file(tensors_path)
    )
    atomic_write_bytes(json_path, (json.dumps(doc, indent=2) + "\n").encode())
    return json_path


def read_metadata(path: str | os.PathLike[str]) -> tuple[CheckpointMetadata, dict[str, Any]]:
    """Read and validate ``NAME.json``: ``(metadata, raw JSON document)``; no tensors touched."""
    _, json_path = checkpoint_paths(path)
    try:
        doc = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise AdvisorError(f"no advisor checkpoint at {json_path}") from None
    except (OSError, ValueError) as err:
        raise AdvisorError(f"{json_path} is not readable JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AdvisorError(f"{json_path} is not an advisor checkpoint (no format: {FORMAT})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise AdvisorError(
            f"{json_path} has format_version {doc.get('format_version')!r}; this advisor reads "
            f"version {FORMAT_VERSION}: upgrade advisor"
        )
    try:
        return CheckpointMetadata.from_json(doc), doc
    except (KeyError, TypeError, ValueError) as err:
        raise AdvisorError(f"{json_path} has invalid metadata ({err})") from None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    networks: tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> Checkpoint:
    """Load an advisor checkpoint (``NAME``, ``NAME.json`` or ``NAME.safetensors``).

    ``networks`` picks which of ``G_ema``, ``G``, ``D`` to build (default: all present;
    ``G_ema`` is always loaded). ``verify`` checks the tensor file against the sha256 in the
    JSON. Every tensor must match its network's state_dict exactly (names and shapes).
    """
    tensors_path, json_path = checkpoint_paths(path)
    metadata, doc = read_metadata(json_path)
    present = tuple(doc.get("networks") or ())
    wanted = present if networks is None else tuple(dict.fromkeys(("G_ema", *networks)))
    absent = [n for n in wanted if n not in present]
    if absent:
        raise AdvisorError(f"{json_path.name} has no {', '.join(absent)} (it has {present})")
    if not tensors_path.is_file():
        raise AdvisorError(f"{tensors_path} is missing; the checkpoint is incomplete")
    if verify and doc.get("tensors_sha256") and sha256_file(tensors_path) != doc["tensors_sha256"]:
        raise AdvisorError(f"{tensors_path.name} does not match the sha256 in {json_path.name}")
    try:
        flat = safetensors.torch.load_file(str(tensors_path), device=str(device))
    except (OSError, safetensors.SafetensorError) as err:
        raise AdvisorError(f"{tensors_path} is not a readable safetensors file ({err})") from None
    built: dict[str, torch.nn.Module] = {}
    for net in wanted:
        config = metadata.discriminator if net == "D" else metadata.generator
        if config is None:
            raise AdvisorError(f"{json_path.name} lists D but has no discriminator config")
        module = (Discriminator if net == "D" else Generator)(config)
        prefix = net + "."
        state = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise AdvisorError(
                f"{tensors_path.name}: {net} tensors do not fit its config "
                f"({' '.join(str(err).split())[:300]})"
            ) from None
        built[net] = module.to(device).eval().requires_grad_(False)
    return Checkpoint(metadata=metadata, **built)
