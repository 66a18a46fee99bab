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
    tags = ["faces"]                 # optional: select with ``advisor rank --tag faces``
    source_features = "ffhq.npz"     # optional: features of the training data (rank's
                                     # ``--setting source``), a local feature file

``path`` and ``source_features`` are relative to the registry file's folder (``~`` expands).
``hf`` entries must pin a ``revision``. For ``format = "advisor"`` the location names the
``.safetensors`` file and the ``.json`` beside it is fetched with it.

``load_registry`` reads advisor's default registry (shipped in the package as
``advisor/data/registry.toml``), then each file in ``$ADVISOR_REGISTRY`` (``os.pathsep``
separated), then the files passed in; a name defined again replaces the earlier record with a
warning.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import stat
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from advisor.download import HubFile
from advisor.errors import AdvisorError
from advisor.paths import check_relative_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: How a checkpoint file is stored (the registry's ``format``).
Format = Literal["nvlabs-pkl", "nvlabs-state", "rosinality-pt", "advisor"]
#: Who publishes a checkpoint (the registry's ``trust``).
Trust = Literal["official", "third-party", "local"]
FORMATS: tuple[Format, ...] = get_args(Format)
TRUST_LEVELS: tuple[Trust, ...] = get_args(Trust)
#: ``verified``: the registry pins the sha256 every download is checked against;
#: ``unverified``: no hash is pinned, so nothing proves the bytes are what ``trust`` claims.
Verification = Literal["verified", "unverified"]
MAX_RESOLUTION = 16384
"""Largest resolution a record may claim: 16x the largest public StyleGAN (1024 px)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_REGISTRY_BYTES = 16 * 1024 * 1024
"""Largest registry file read: a registry of 10,000 entries is about 5 MB of TOML."""


@dataclass(frozen=True, kw_only=True)
class CheckpointRecord:
    """One registry entry: what the checkpoint is and where to get it (cf. timm's PretrainedCfg).

    Exactly one of ``url``, ``hf`` and ``path`` is set. ``sha256`` is lowercase hex or ``None``
    (unknown: recorded on first download and shown as unverified). ``tags``: labels to select
    by (``advisor rank --tag``). ``source_features``: a local feature file (``.npz``) of the
    checkpoint's training data, used by rank's ``source`` setting. ``registry`` is the file the
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
    tags: tuple[str, ...] = ()
    source_features: Path | None = None
    registry: str = ""

    def __post_init__(self) -> None:
        if self.url is not None:
            if not isinstance(self.url, str) or not re.match(r"^https?://[^/\s]+/", self.url):
                raise AdvisorError(f"url must be http(s)://host/path, got {self.url!r}")
            # The URL's last segment names the cached file: one plain component only.
            check_relative_name(self.filename, what="the file name at the end of the url")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise AdvisorError("sha256 must be 64 lowercase hex digits or None")
        for tag in self.tags:
            if not isinstance(tag, str) or not _NAME.match(tag):
                raise AdvisorError(f"tags use letters, digits, '.', '_' and '-', got {tag!r}")

    @property
    def verification(self) -> Verification:
        """``'verified'`` when a sha256 is pinned, else ``'unverified'`` whatever the ``trust``:
        an ``official`` source with no published hash is only as good as the connection."""
        return "verified" if self.sha256 else "unverified"

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
            return self.hf.location
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
        out["tags"] = list(self.tags)
        out["source_features"] = None if self.source_features is None else str(self.source_features)
        out["location"] = self.location
        out["verification"] = self.verification
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
    doc = _read_toml(path)
    unknown = set(doc) - {"checkpoints", "format_version"}
    if unknown:
        raise AdvisorError(f"registry {path}: unknown top-level keys {sorted(unknown)}")
    if doc.get("format_version", 1) != 1:
        raise AdvisorError(f"registry {path}: format_version {doc['format_version']} unsupported")
    table = doc.get("checkpoints", {})
    if not isinstance(table, dict):
        raise AdvisorError(f"registry {path}: [checkpoints] must be a table of tables")
    return [_record(name, entry, path) for name, entry in table.items()]


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse a registry file; only regular files of bounded size (a FIFO would block forever)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AdvisorError(f"registry file not found: {path}") from None
    except OSError as err:
        raise AdvisorError(f"registry {path} cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise AdvisorError(f"registry {path} is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_REGISTRY_BYTES + 1)
    except OSError as err:
        raise AdvisorError(f"registry {path} cannot be read ({err.strerror or err})") from None
    if len(data) > MAX_REGISTRY_BYTES:
        raise AdvisorError(f"registry {path} is larger than {MAX_REGISTRY_BYTES >> 20} MiB")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AdvisorError(f"registry {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise AdvisorError(f"registry {path} is not valid TOML ({err})") from None
    except RecursionError:
        raise AdvisorError(f"registry {path} is nested too deeply to be a registry") from None


def _string(entry: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise AdvisorError(f"{where}: {key} must be a string")
    return value


def _record(name: str, entry: Any, path: Path) -> CheckpointRecord:
    try:
        return _parse_record(name, entry, path)
    except AdvisorError as err:
        text = str(err)
        where = f"registry {path}, checkpoint {name!r}"
        raise AdvisorError(text if text.startswith("registry ") else f"{where}: {text}") from None


def _parse_record(name: str, entry: Any, path: Path) -> CheckpointRecord:
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
    if not isinstance(entry["format"], str) or entry["format"] not in FORMATS:
        raise AdvisorError(f"{where}: format must be one of {', '.join(FORMATS)}")
    if not isinstance(entry["trust"], str) or entry["trust"] not in TRUST_LEVELS:
        raise AdvisorError(f"{where}: trust must be one of {', '.join(TRUST_LEVELS)}")
    resolution = entry["resolution"]
    if (
        not isinstance(resolution, int)
        or isinstance(resolution, bool)
        or not 8 <= resolution <= MAX_RESOLUTION
        or resolution & (resolution - 1)
    ):
        raise AdvisorError(f"{where}: resolution must be a power of two from 8 to {MAX_RESOLUTION}")
    locations = [k for k in ("url", "hf", "path") if entry.get(k)]
    if len(locations) != 1:
        raise AdvisorError(f"{where}: give exactly one of url, hf, path")
    sha = _string(entry, "sha256", where, "").strip().lower() or None
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
        local = _local_path(_string(entry, "path", where), path)
    url = entry.get("url") or None
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
        raise AdvisorError(f"{where}: url must be http(s)")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AdvisorError(f"{where}: tags must be a list of strings")
    features = None
    if entry.get("source_features"):
        features = _local_path(_string(entry, "source_features", where), path)
    return CheckpointRecord(
        name=name,
        format=entry["format"],
        resolution=resolution,
        source_dataset=_string(entry, "source_dataset", where),
        licence=_string(entry, "licence", where),
        trust=entry["trust"],
        description=_string(entry, "description", where, ""),
        url=url,
        hf=hf,
        path=local,
        sha256=sha,
        tags=tuple(tags),
        source_features=features,
        registry=str(path),
    )


def _local_path(text: str, registry: Path) -> Path:
    """``text`` as a path: ``~`` expanded, relative to the registry file's folder."""
    local = Path(text).expanduser()
    return local if local.is_absolute() else (registry.parent / local).resolve()
