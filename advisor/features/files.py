"""Feature files: ``.npz`` (``features`` + JSON ``meta``) and plain ``.npy``, checked on read.

A feature file comes from outside (a colleague, an old run, the cache after a disk error), so
nothing in it is trusted; every problem is one :class:`AdvisorError` line:

- the suffix names the format and the bytes must be that format (an archive named ``.npy`` is
  refused with a line saying so, not read as something else);
- arrays are read from their header, never unpickled (object arrays are refused); the header is
  bounded (numpy's 10,000 characters) and its shape x item size is checked against the bytes the
  file holds before anything is allocated, so a header that claims exabytes is one line, not a
  ``MemoryError``; ``.npz`` members must be stored or deflated, and may not inflate more than
  :data:`MAX_INFLATION` times;
- ``features`` must be 2-D ``[N, D]``, a float dtype, every value finite within float32;
- ``meta`` must be a JSON object of the shape :func:`save_features` writes: ``protocol`` either
  empty (unknown) or complete with the right types and ``dim == D`` (read back as a
  :class:`FeatureProtocol`); ``names`` one string per row (or none); ``skipped`` objects of
  strings; ``source`` a string.

Files are written with :func:`advisor.cache.atomic_open`: complete or absent.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from advisor.cache import atomic_open, check_destination, os_reason
from advisor.errors import AdvisorError
from advisor.features.base import FeatureProtocol
from advisor.images import Skipped

#: Suffixes read as feature files rather than image sources.
FEATURE_SUFFIXES = (".npz", ".npy")
#: The ``meta["format"]`` this version writes and reads.
FORMAT = "advisor-features/1"
#: Longest ``.npy`` header read (numpy's own limit for untrusted files).
MAX_HEADER_CHARS = 10_000
#: Largest inflation accepted for a deflated ``.npz`` member. float features deflate ~1.1x and
#: the UTF-32 JSON ``meta`` of real file names ~35x; advisor itself writes uncompressed files.
#: A member claiming more is a decompression bomb, not features.
MAX_INFLATION = 256

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_READ_CHUNK = 1 << 24
#: What can go wrong inside numpy, zipfile and zlib while reading a damaged file.
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    OverflowError,
    RecursionError,
    NotImplementedError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
)
_JSON_TYPES = {"str": str, "int": int, "bool": bool}


@dataclass(frozen=True, kw_only=True)
class FeatureSet:
    """Features of one image set.

    features: float32 ``[N, D]``, every value finite; row i belongs to ``names[i]``.
    protocol: the extractor protocol the features were made under; None when unknown (a plain
        ``.npy`` file, or a ``.npz`` whose meta records none).
    names: display paths of the images the rows came from (empty when unknown).
    skipped: files of the source that were skipped, with reasons.
    source: what the user pointed at.
    from_cache: True when the features came from advisor's cache.
    """

    features: np.ndarray
    protocol: FeatureProtocol | None
    names: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    source: str = ""
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.features.shape[0])


def is_feature_file(source: str | os.PathLike[str]) -> bool:
    """True when ``source`` names a feature file (.npz or .npy) rather than images."""
    return Path(source).suffix.lower() in FEATURE_SUFFIXES


def load_features(path: str | os.PathLike[str]) -> FeatureSet:
    """Read a feature file: ``.npz`` as written by :func:`save_features`, or a plain ``.npy``.

    A ``.npz`` needs a ``features`` array; its ``meta`` (protocol, names) is optional. A ``.npy``
    holds a 2-D float array. Memory use is bounded by the file's size (see the module docstring
    for every check). Raises :class:`AdvisorError` with one line for any unusable file.
    """
    path = Path(path)
    where = str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AdvisorError(f"feature file not found: {path}") from None
    except OSError as err:
        raise AdvisorError(f"{path}: cannot read ({os_reason(err)})") from None
    if not stat.S_ISREG(mode):
        raise AdvisorError(f"{path}: not a regular file")
    named_npy = path.suffix.lower() == ".npy"
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            f.seek(0)
            if magic.startswith(_NPY_MAGIC):
                if not named_npy:
                    raise AdvisorError(f"{path} is a .npy array, not a .npz; rename it to .npy")
                features = _read_array(f, os.fstat(f.fileno()).st_size, where)
                meta_text = None
            elif magic[:4] in _ZIP_MAGICS:
                if named_npy:
                    raise AdvisorError(f"{path} is a .npz archive, not a .npy; rename it to .npz")
                features, meta_text = _read_npz(f, where)
            else:
                raise AdvisorError(
                    f"{path}: not a readable feature file (neither a .npy array nor a .npz)"
                )
    except AdvisorError:
        raise
    except _READ_ERRORS as err:
        raise AdvisorError(f"{path}: not a readable feature file ({_one_line(err)})") from None
    features = _checked_features(features, where)
    return _parse_meta(meta_text, where, features)


def save_features(
    path: str | os.PathLike[str],
    feature_set: FeatureSet,
    *,
    overwrite: bool = False,
    half: bool = False,
) -> Path:
    """Write ``feature_set`` to ``path`` (.npz); returns the path.

    ``half``: store the values as float16 (half the bytes; each value rounded to 11 significant
    bits, relative error <= 2**-11; :func:`load_features` returns float32 either way). For
    shipping feature files where size matters; the cache always stores float32.

    The file is complete or absent: written beside ``path`` and moved into place. Raises
    :class:`AdvisorError` when ``path`` is not ``.npz``, exists and ``overwrite`` is False,
    the feature set is one :func:`load_features` would refuse, or the file cannot be written
    (a folder in the way, permissions, a full disk).
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise AdvisorError(f"feature files are written as .npz; got {path.name}")
    check_destination(path, overwrite=overwrite)
    # Never write what load_features would refuse.
    features = _checked_features(feature_set.features, str(path))
    if feature_set.protocol is not None:
        _protocol(feature_set.protocol.to_dict(), str(path), features.shape[1])
    if half and np.abs(features).max(initial=0.0) > np.finfo(np.float16).max:
        raise AdvisorError(f"{path}: features exceed float16's range; save them without half")
    try:
        write_npz(path, feature_set, dtype=np.float16 if half else np.float32)
    except OSError as err:
        raise AdvisorError(f"cannot write {path} ({os_reason(err)})") from None
    return path


def write_npz(path: Path, feature_set: FeatureSet, *, dtype: type = np.float32) -> None:
    """Write ``feature_set`` atomically (raises ``OSError``); the cache writes through this."""
    with atomic_open(path) as f:
        np.savez(
            f,
            features=feature_set.features.astype(dtype, copy=False),
            meta=np.array(json.dumps(_meta(feature_set))),
        )


def _meta(feature_set: FeatureSet) -> dict[str, object]:
    return {
        "format": FORMAT,
        "protocol": {} if feature_set.protocol is None else feature_set.protocol.to_dict(),
        "names": list(feature_set.names),
        "skipped": [dataclasses.asdict(s) for s in feature_set.skipped],
        "source": feature_set.source,
    }


# --- arrays ----------------------------------------------------------------------------------


def _read_array(f: IO[bytes], size: int, where: str, *, member: str = "") -> np.ndarray:
    """The array in the ``.npy`` stream ``f`` of ``size`` bytes, allocating only what it holds.

    Refuses object dtypes (pickles) and headers whose shape x item size exceeds the stream.
    """
    label = f"{where} ({member})" if member else where
    magic = f.read(8)
    if len(magic) < 8 or not magic.startswith(_NPY_MAGIC):
        raise AdvisorError(f"{label}: not a .npy array")
    major, minor = magic[6], magic[7]
    if (major, minor) not in ((1, 0), (2, 0)):
        raise AdvisorError(f"{label}: unsupported .npy format version {major}.{minor}")
    length_bytes = f.read(2 if major == 1 else 4)
    header_chars = int.from_bytes(length_bytes, "little")
    if header_chars > MAX_HEADER_CHARS:
        raise AdvisorError(f"{label}: .npy header of {header_chars} bytes; refused as unsafe")
    header = io.BytesIO(length_bytes + f.read(header_chars))
    reader = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = reader(header, max_header_size=MAX_HEADER_CHARS)
    if dtype.hasobject:
        raise AdvisorError(
            f"{label}: not a readable feature file (it holds Python objects, which advisor "
            "never unpickles)"
        )
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise AdvisorError(f"{label}: .npy header has an invalid shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    held = size - (len(magic) + header.getbuffer().nbytes)
    if nbytes > held:
        raise AdvisorError(
            f"{label}: the header claims {dtype.str} {tuple(shape)} ({nbytes} bytes) but the "
            f"file holds {max(held, 0)} bytes of data"
        )
    if dtype.itemsize == 0:
        raise AdvisorError(f"{label}: dtype {dtype.str} has no bytes per value")
    raw = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(raw)
    done = 0
    while done < nbytes:
        got = f.readinto(view[done : done + _READ_CHUNK])
        if not got:
            raise AdvisorError(f"{label}: truncated ({done} of {nbytes} bytes of data)")
        done += got
    return raw.view(dtype).reshape(shape, order="F" if fortran else "C")


def _read_npz(f: IO[bytes], where: str) -> tuple[np.ndarray, str | None]:
    with zipfile.ZipFile(f) as archive:
        features = _read_member(archive, "features.npy", where)
        if features is None:
            raise AdvisorError(f"{where}: no 'features' array in this .npz")
        meta = _read_member(archive, "meta.npy", where)
    if meta is None:
        return features, None
    if meta.shape != () or meta.dtype.kind != "U":
        raise AdvisorError(
            f"{where}: 'meta' must be a single JSON string, got {meta.dtype.str} {meta.shape}"
        )
    return features, str(meta[()])


def _read_member(archive: zipfile.ZipFile, name: str, where: str) -> np.ndarray | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    label = f"{where} ({name})"
    if info.flag_bits & 0x1:
        raise AdvisorError(f"{label}: encrypted; advisor reads only plain .npz files")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise AdvisorError(
            f"{label}: compression method {info.compress_type} is not supported "
            "(np.savez and np.savez_compressed write stored or deflated members)"
        )
    if info.file_size > MAX_INFLATION * max(info.compress_size, 1):
        raise AdvisorError(
            f"{label}: claims to inflate {info.compress_size} bytes to {info.file_size}, "
            f"beyond the {MAX_INFLATION}x any feature file compresses by; refused"
        )
    with archive.open(info) as member:
        return _read_array(member, info.file_size, where, member=name)


def _checked_features(features: np.ndarray, where: str) -> np.ndarray:
    """``features`` as float32 [N, D], refusing other shapes, non-float dtypes, NaN and inf
    (and values beyond float32's range, which would become inf)."""
    if features.ndim != 2 or features.dtype.kind != "f":
        raise AdvisorError(
            f"{where}: expected a 2-D float array [N, D], got {features.dtype} {features.shape}"
        )
    if features.shape[1] == 0:
        raise AdvisorError(f"{where}: the features have no columns (shape {features.shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(features, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise AdvisorError(
            f"{where}: features contain NaN, inf or values beyond float32's range "
            f"(first at row {row})"
        )
    return out


# --- meta ------------------------------------------------------------------------------------


def _parse_meta(text: str | None, where: str, features: np.ndarray) -> FeatureSet:
    """The feature set of ``features`` with the ``meta`` JSON text (None: no meta, nothing
    known), validated."""
    if text is None:
        return FeatureSet(features=features, protocol=None, source=where)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise AdvisorError(f"{where}: 'meta' is not valid JSON ({_one_line(err)})") from None
    if not isinstance(meta, dict):
        raise AdvisorError(f"{where}: 'meta' must be a JSON object, got {_json_kind(meta)}")
    fmt = meta.get("format", FORMAT)
    if fmt != FORMAT:
        raise AdvisorError(f"{where}: unknown feature file format {_short(fmt)} (reads {FORMAT})")
    rows, dim = features.shape
    names = _string_list(meta.get("names", []), where, "names")
    if names and len(names) != rows:
        raise AdvisorError(
            f"{where}: 'meta' names {len(names)} images but the file holds {rows} rows"
        )
    source = meta.get("source", where)
    if not isinstance(source, str):
        raise AdvisorError(f"{where}: meta 'source' must be a string, got {_json_kind(source)}")
    return FeatureSet(
        features=features,
        protocol=_protocol(meta.get("protocol", {}), where, dim),
        names=tuple(names),
        skipped=_skipped(meta.get("skipped", []), where),
        source=source,
    )


def _protocol(value: object, where: str, dim: int) -> FeatureProtocol | None:
    """None for an empty protocol (unknown), else a complete one: every field of
    :class:`FeatureProtocol` with its type, and ``dim`` equal to the feature columns."""
    if not isinstance(value, dict):
        raise AdvisorError(f"{where}: meta 'protocol' must be an object, got {_json_kind(value)}")
    if not value:
        return None
    fields = {f.name: _JSON_TYPES[str(f.type)] for f in dataclasses.fields(FeatureProtocol)}
    missing = [name for name in fields if name not in value]
    unknown = [name for name in value if name not in fields]
    if missing:
        raise AdvisorError(f"{where}: meta 'protocol' lacks {', '.join(missing)}")
    if unknown:
        shown = ", ".join(_short(name) for name in unknown[:3])
        raise AdvisorError(f"{where}: meta 'protocol' has unknown field(s) {shown}")
    for name, kind in fields.items():
        field = value[name]
        if not isinstance(field, kind) or (kind is int and isinstance(field, bool)):
            raise AdvisorError(
                f"{where}: meta protocol '{name}' must be {kind.__name__}, got {_json_kind(field)}"
            )
    if value["dim"] != dim:
        raise AdvisorError(
            f"{where}: meta protocol says dim {value['dim']} but the features have {dim} columns"
        )
    return FeatureProtocol(
        extractor=value["extractor"],
        weights_sha256=value["weights_sha256"],
        comparable=value["comparable"],
        input_size=value["input_size"],
        resize=value["resize"],
        precision=value["precision"],
        dim=value["dim"],
    )


def _string_list(value: object, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdvisorError(f"{where}: meta '{key}' must be a list of strings")
    return value


def _skipped(value: object, where: str) -> tuple[Skipped, ...]:
    keys = {f.name for f in dataclasses.fields(Skipped)}
    if not isinstance(value, list):
        raise AdvisorError(f"{where}: meta 'skipped' must be a list, got {_json_kind(value)}")
    out = []
    for entry in value:
        if (
            not isinstance(entry, dict)
            or set(entry) != keys
            or not all(isinstance(v, str) for v in entry.values())
        ):
            raise AdvisorError(
                f"{where}: meta 'skipped' entries must be objects of {', '.join(sorted(keys))} "
                "strings"
            )
        out.append(Skipped(**entry))
    return tuple(out)


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def _short(value: object) -> str:
    text = ascii(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
