"""The checkpoint registry: TOML files listing sources by name.

A registry file is TOML with one table per checkpoint under ``[checkpoints.NAME]``::

    [checkpoints.ffhq-256]
    description = "StyleGAN2-ADA trained on FFHQ at 256x256 (paper256 config)"
    format = "nvlabs-pkl"            # nvlabs-pkl | nvlabs-state | rosinality-pt | advisor
    resolution = 256
    source_dataset = "FFHQ (70k faces, x-flips)"
    licence = "NVIDIA Source Code License-NC"
    trust = "official"               # official | third-party | local
    url = "https://..."              # exactly one of: url, hf = {repo, file, revision}, path
    sha256 = ""                      # "" = unknown: recorded on first download, shown unverified

``path`` is relative to the registry file's folder (``~`` expands). ``hf`` entries must pin a
``revision``. For ``format = "advisor"`` the location names the ``.safetensors`` file and the
``.json`` beside it is fetched with it.

``load_registry`` reads advisor's default registry (shipped in the package as
``advisor/data/registry.toml``), then each file in ``$ADVISOR_REGISTRY`` (``os.pathsep``
separated), then the files passed in; a name defined again replaces the earlier record with a
warning.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = ("nvlabs-pkl", "nvlabs-state", "rosinality-pt", "advisor")
TRUST_LEVELS = ("official", "third-party", "local")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class HubFile:
    """A file on the Hugging Face Hub at a pinned revision."""

    repo: str
    file: str
    revision: str


@dataclass(frozen=True, kw_only=True)
class CheckpointRecord:
    """One registry entry: what the checkpoint is and where to get it (cf. timm's PretrainedCfg).

    Exactly one of ``url``, ``hf`` and ``path`` is set. ``sha256`` is lowercase hex or ``None``
    (unknown: recorded on first download and shown as unverified). ``registry`` is the file the
    record came from.
    """

    name: str
    format: str
    resolution: int
    source_dataset: str
    licence: str
    trust: str
    description: str = ""
    url: str | None = None
    hf: HubFile | None = None
    path: Path | None = None
    sha256: str | None = None
    registry: str = ""

    @property
    def location_kind(self) -> str:
        """``'url'``, ``'hf'`` or ``'path'``."""
        return "url" if self.url else "hf" if self.hf else "path"

    @property
    def location(self) -> str:
        """The location as one string: the URL, ``hf://repo/file@revision`` or the path."""
        if self.url:
            return self.url
        if self.hf:
            return f"hf://{self.hf.repo}/{self.hf.file}@{self.hf.revision}"
        return str(self.path)

    @property
    def filename(self) -> str:
        """The file's base name."""
        if self.url:
            return self.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if self.hf:
            return self.hf.file.rsplit("/", 1)[-1]
        return Path(self.path or "").name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``hf`` as a dict, ``path`` as a string)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["hf"] = None if self.hf is None else vars(self.hf).copy()
        out["path"] = None if self.path is None else str(self.path)
        out["location"] = self.location
        return out


class Registry:
    """Records by name, in definition order; unknown names are an error listing the known ones."""

    def __init__(self, records: dict[str, CheckpointRecord]) -> None:
        self._records = dict(records)

    def __iter__(self) -> Iterator[CheckpointRecord]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def names(self) -> list[str]:
        """Record names in definition order."""
        return list(self._records)

    def get(self, name: str) -> CheckpointRecord:
        """The record called ``name``; :class:`AdvisorError` listing the names if unknown."""
        try:
            return self._records[name]
        except KeyError:
            raise AdvisorError(
                f"unknown checkpoint {name!r}; known: {', '.join(self.names()) or '(none)'}"
            ) from None


def default_registry_path() -> Path:
    """The registry shipped inside the package (found in editable and regular installs)."""
    return Path(str(importlib.resources.files("advisor") / "data" / "registry.toml"))


def load_registry(paths: Sequence[str | os.PathLike[str]] | None = None) -> Registry:
    """Merge the default registry, ``$ADVISOR_REGISTRY`` files and ``paths``, in that order.

    A later definition of a name replaces the earlier one with a ``UserWarning``. Reads local
    files only (no network).
    """
    sources = [default_registry_path()]
    env = os.environ.get("ADVISOR_REGISTRY", "")
    sources += [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    sources += [Path(p).expanduser() for p in paths or ()]
    records: dict[str, CheckpointRecord] = {}
    for source in sources:
        for record in read_registry_file(source):
            if record.name in records:
                warnings.warn(
                    f"checkpoint {record.name!r} from {source} replaces the one from "
                    f"{records[record.name].registry}",
                    stacklevel=2,
                )
            records[record.name] = record
    return Registry(records)


def read_registry_file(path: str | os.PathLike[str]) -> list[CheckpointRecord]:
    """Parse and validate one registry file; errors name the file and the record."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdvisorError(f"registry file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise AdvisorError(f"registry {path} is not valid TOML ({err})") from None
    unknown = set(doc) - {"checkpoints", "format_version"}
    if unknown:
        raise AdvisorError(f"registry {path}: unknown top-level keys {sorted(unknown)}")
    if doc.get("format_version", 1) != 1:
        raise AdvisorError(f"registry {path}: format_version {doc['format_version']} unsupported")
    table = doc.get("checkpoints", {})
    if not isinstance(table, dict):
        raise AdvisorError(f"registry {path}: [checkpoints] must be a table of tables")
    return [_record(name, entry, path) for name, entry in table.items()]


def _record(name: str, entry: Any, path: Path) -> CheckpointRecord:
    where = f"registry {path}, checkpoint {name!r}"
    if not isinstance(entry, dict):
        raise AdvisorError(f"{where}: must be a table")
    allowed = {f.name for f in fields(CheckpointRecord)} - {"name", "registry"}
    unknown = set(entry) - allowed
    if unknown:
        raise AdvisorError(f"{where}: unknown keys {sorted(unknown)}")
    if not _NAME.match(name):
        raise AdvisorError(f"{where}: names use letters, digits, '.', '_' and '-'")
    required = ("format", "resolution", "source_dataset", "licence", "trust")
    absent = [k for k in required if k not in entry]
    if absent:
        raise AdvisorError(f"{where}: missing {', '.join(absent)}")
    if entry["format"] not in FORMATS:
        raise AdvisorError(f"{where}: format must be one of {', '.join(FORMATS)}")
    if entry["trust"] not in TRUST_LEVELS:
        raise AdvisorError(f"{where}: trust must be one of {', '.join(TRUST_LEVELS)}")
    resolution = entry["resolution"]
    if not isinstance(resolution, int) or resolution < 8 or resolution & (resolution - 1):
        raise AdvisorError(f"{where}: resolution must be a power of two >= 8")
    locations = [k for k in ("url", "hf", "path") if entry.get(k)]
    if len(locations) != 1:
        raise AdvisorError(f"{where}: give exactly one of url, hf, path")
    sha = str(entry.get("sha256") or "").strip().lower() or None
    if sha is not None and not _SHA256.match(sha):
        raise AdvisorError(f"{where}: sha256 must be 64 hex digits or empty")
    hf = None
    if "hf" in locations:
        spec = entry["hf"]
        if not isinstance(spec, dict) or set(spec) != {"repo", "file", "revision"}:
            raise AdvisorError(f"{where}: hf must be {{repo, file, revision}} (pinned revision)")
        if not all(isinstance(v, str) and v for v in spec.values()):
            raise AdvisorError(f"{where}: hf repo, file and revision must be non-empty strings")
        hf = HubFile(**spec)
    local = None
    if "path" in locations:
        local = Path(str(entry["path"])).expanduser()
        local = local if local.is_absolute() else (path.parent / local).resolve()
    url = entry.get("url")
    if url is not None and not re.match(r"^https?://", str(url)):
        raise AdvisorError(f"{where}: url must be http(s)")
    return CheckpointRecord(
        name=name,
        format=entry["format"],
        resolution=resolution,
        source_dataset=str(entry["source_dataset"]),
        licence=str(entry["licence"]),
        trust=entry["trust"],
        description=str(entry.get("description", "")),
        url=url,
        hf=hf,
        path=local,
        sha256=sha,
        registry=str(path),
    )
