"""advisor's checkpoint format: ``NAME.safetensors`` + ``NAME.json``, never a pickle.

A checkpoint is a pair of files side by side:

- ``NAME.safetensors``: the tensors of the networks, named ``<network>.<NVlabs state_dict key>``
  with ``<network>`` one of ``G_ema`` (always), ``G`` and ``D`` (optional), e.g.
  ``G_ema.mapping.fc0.weight``, ``D.b4.out.bias``. float32 as stored by the source.
- ``NAME.json``: the metadata (:class:`CheckpointMetadata`): ``format``/``format_version``, name,
  resolution, generator and discriminator configs, which networks are present, source dataset,
  training kimg, licence, description, provenance (source file, its sha256, importer, date) and
  the sha256 of the ``.safetensors`` file, so a mismatched pair is detected.

``save_checkpoint`` writes both files to temporary files beside them first, then moves them in
(and an old pair out of the way) so that a reader finds the old pair, no pair, or the new pair,
never a mix; a failure (a full disk) leaves the old pair as it was and no stray file.
``load_checkpoint`` reads JSON and safetensors only; it never unpickles.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from advisor import __version__
from advisor.cache import create_temporary, os_reason
from advisor.download import sha256_file
from advisor.errors import AdvisorError
from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from advisor.networks.config import short_repr

FORMAT = "advisor-checkpoint"
FORMAT_VERSION = 1
#: Network names, in the order they are written.
NETWORKS = ("G_ema", "G", "D")
#: Largest ``NAME.json`` read: the metadata is a few KB; a description or ``extra`` field might
#: grow it, but not by a thousand times.
MAX_METADATA_BYTES = 16 * 2**20


class OutputExists(AdvisorError):
    """An output exists and replacing it was not allowed; ``path`` is the first one found.

    The message names the library's keyword (``overwrite=True``); the CLI names its flag.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already exists; pass overwrite=True to replace it")
        self.path = path


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

    def __post_init__(self) -> None:
        kimg = self.training_kimg
        if kimg is not None and (
            isinstance(kimg, bool)
            or not isinstance(kimg, (int, float))
            or not math.isfinite(kimg)
            or kimg < 0
        ):
            raise AdvisorError(f"training kimg must be a finite number >= 0, got {kimg!r}")

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

    ``path`` is ``NAME`` (with or without either suffix). An existing pair is replaced. Both
    files are written and flushed to disk as temporary files first; only then are they moved
    in, with any old pair moved aside meanwhile and deleted afterwards, so at every moment the
    folder holds the old pair, no pair, or the new pair. On a failure (a full disk, no
    permission) everything is undone and :class:`AdvisorError` says why in one line.
    """
    tensors_path, json_path = checkpoint_paths(path)
    tensors: dict[str, torch.Tensor] = {}
    for net in checkpoint.networks:
        for key, value in getattr(checkpoint, net).state_dict().items():
            tensors[f"{net}.{key}"] = value.detach().to("cpu").contiguous()
    created = [p for p in (json_path.parent, *json_path.parent.parents) if not p.exists()]
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with _staged(tensors_path) as tmp_tensors, _staged(json_path) as tmp_json:
            safetensors.torch.save_file(
                tensors,
                str(tmp_tensors),
                metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)},
            )
            # safetensors recreates the file owner-only: give it the mode of a new file.
            os.chmod(tmp_tensors, os.stat(tmp_json).st_mode & 0o777)
            _fsync(tmp_tensors)
            doc = checkpoint.metadata.to_json(
                networks=checkpoint.networks, tensors_sha256=sha256_file(tmp_tensors)
            )
            with open(tmp_json, "wb") as f:
                f.write((json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
            _replace_pair((tmp_tensors, tmp_json), (tensors_path, json_path))
    except (OSError, safetensors.SafetensorError) as err:
        for folder in created:  # folders made for this checkpoint, innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        reason = os_reason(err) if isinstance(err, OSError) else _safetensors_reason(err)
        raise AdvisorError(f"cannot write checkpoint {json_path}: {reason}") from None
    return json_path


def _safetensors_reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    if "No space left" in text:
        return "no space left on the device"
    return text[:200]


@contextlib.contextmanager
def _staged(dest: Path) -> Iterator[Path]:
    """A new temporary file beside ``dest`` (same folder, so moving it in is a rename); removed
    on exit unless it was moved."""
    fd, path = create_temporary(dest)  # mode 0o666 less the umask, as any new file
    os.close(fd)
    name = str(path)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _replace_pair(new: tuple[Path, Path], dest: tuple[Path, Path]) -> None:
    """Rename ``new`` onto ``dest`` as a unit: JSON out first, JSON in last.

    Readers need both files (:func:`is_advisor_checkpoint`), so moving the old JSON aside first
    and the new JSON in last means no reader ever sees tensors and metadata of different
    imports. An old pair is kept aside until the new one is in place, and moved back if a rename
    fails, so a failure leaves the folder as it was.
    """
    aside: list[tuple[Path, Path]] = []  # (moved-aside copy, original name)
    placed: list[Path] = []
    try:
        for original in reversed(dest):  # the JSON first
            if os.path.lexists(original):
                fd, name = tempfile.mkstemp(
                    prefix=f".{original.name[:100]}.", suffix=".old", dir=original.parent
                )
                os.close(fd)
                os.replace(original, name)
                aside.append((Path(name), original))
        for source, target in zip(new, dest, strict=True):  # the JSON last
            os.replace(source, target)
            placed.append(target)
    except OSError:
        for target in placed:
            with contextlib.suppress(OSError):
                target.unlink()
        for copy, original in reversed(aside):
            with contextlib.suppress(OSError):
                os.replace(copy, original)
        raise
    for copy, _ in aside:
        with contextlib.suppress(OSError):
            copy.unlink()


def read_metadata(path: str | os.PathLike[str]) -> tuple[CheckpointMetadata, dict[str, Any]]:
    """Read and validate ``NAME.json``: ``(metadata, raw JSON document)``; no tensors touched."""
    _, json_path = checkpoint_paths(path)
    try:
        with open(json_path, "rb") as f:
            raw = f.read(MAX_METADATA_BYTES + 1)
        if len(raw) > MAX_METADATA_BYTES:
            raise AdvisorError(
                f"{json_path} is larger than {MAX_METADATA_BYTES // 2**20} MiB; advisor "
                "metadata is a few KB"
            )
        doc = json.loads(raw)
    except FileNotFoundError:
        raise AdvisorError(f"no advisor checkpoint at {json_path}") from None
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: absurd nesting
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise AdvisorError(f"{json_path} is not readable JSON ({text})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AdvisorError(f"{json_path} is not an advisor checkpoint (no format: {FORMAT})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise AdvisorError(
            f"{json_path} has format_version {short_repr(doc.get('format_version'))}; this "
            f"advisor reads version {FORMAT_VERSION}: upgrade advisor"
        )
    networks = doc.get("networks")
    if not (
        isinstance(networks, list)
        and "G_ema" in networks
        and all(isinstance(n, str) and n in NETWORKS for n in networks)
    ):
        raise AdvisorError(f"{json_path} has invalid metadata (networks must list {NETWORKS})")
    try:
        return CheckpointMetadata.from_json(doc), doc
    except (KeyError, TypeError, ValueError) as err:
        text = " ".join(str(err).split())[:300]
        raise AdvisorError(f"{json_path} has invalid metadata ({text})") from None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    networks: tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> Checkpoint:
    """Load an advisor checkpoint (``NAME``, ``NAME.json`` or ``NAME.safetensors``).

    ``networks`` picks which of ``G_ema``, ``G``, ``D`` to build (default: all present;
    ``G_ema`` is always loaded); only their tensors are read (sampling reads ``G_ema.*`` and
    leaves ``G`` and ``D`` on disk). ``verify`` checks the tensor file against the sha256 in the
    JSON. Every tensor must match its network's state_dict exactly (names and shapes).
    """
    tensors_path, json_path = checkpoint_paths(path)
    metadata, doc = read_metadata(json_path)
    present = tuple(doc["networks"])
    wanted = present if networks is None else tuple(dict.fromkeys(("G_ema", *networks)))
    absent = [n for n in wanted if n not in present]
    if absent:
        raise AdvisorError(f"{json_path.name} has no {', '.join(absent)} (it has {present})")
    if not tensors_path.is_file():
        raise AdvisorError(f"{tensors_path} is missing; the checkpoint is incomplete")
    if verify and doc.get("tensors_sha256") and sha256_file(tensors_path) != doc["tensors_sha256"]:
        raise AdvisorError(f"{tensors_path.name} does not match the sha256 in {json_path.name}")
    flat = _read_tensors(tensors_path, tuple(n + "." for n in wanted), device=device)
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


def _read_tensors(
    path: Path, prefixes: tuple[str, ...], *, device: str | torch.device
) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` whose names start with one of ``prefixes``; the others are never
    read (safetensors indexes tensors by name in its header)."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefixes)}
    except (OSError, safetensors.SafetensorError) as err:
        raise AdvisorError(f"{path} is not a readable safetensors file ({err})") from None
