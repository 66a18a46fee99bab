"""Where advisor keeps what it downloads and computes, and how it writes files.

Everything lives under one user cache directory: ``$ADVISOR_CACHE`` when set, else the
platform's user cache directory (``~/.cache/advisor`` on Linux). Nothing is ever written
inside the installed package or the user's image folders.

Every file advisor writes is complete or absent: it is written to a temporary file in the same
directory, then moved into place with ``os.replace``; on any failure (a full disk included) the
temporary file is removed and the destination is left as it was. Writers get
an open file (:func:`atomic_open`), never a name, so a writer that picks its own file name
(``np.savez`` appends ``.npz`` unless the name ends in lower-case ``.npz``) cannot write beside
the temporary file; :func:`atomic_path` is only for writers that accept nothing but a name.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import platformdirs

from advisor.errors import AdvisorError

#: Characters of the destination's name kept in its temporary file's name (the rest of the
#: temporary name is ~16 characters), so a destination name near the 255-byte limit still works.
_TEMP_NAME_CHARS = 100


def os_reason(err: OSError) -> str:
    """A short reason for an OS error: ``"No space left on device"``, ``"Permission denied"``."""
    return err.strerror or type(err).__name__


def cache_root() -> Path:
    """``$ADVISOR_CACHE`` when set (and not empty), else the platform's user cache directory."""
    root = os.environ.get("ADVISOR_CACHE")
    return Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("advisor"))


def cache_dir(*parts: str) -> Path:
    """Return (and create) ``<cache root>/<parts...>``.

    Raises :class:`AdvisorError` (one line) when it cannot be created: the cache root or a
    parent of it is a file, or permission is denied.
    """
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AdvisorError(
            f"advisor's cache folder {path} cannot be used ({os_reason(err)}); "
            "set ADVISOR_CACHE to a writable folder"
        ) from None
    return path


def check_destination(dest: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Cheap checks, before the work that produces it, that ``dest`` can be written; creates
    nothing.

    Raises :class:`AdvisorError` when ``dest`` exists and ``overwrite`` is False, exists and is
    not a regular file (a folder, a FIFO, a device: never replaced), or when its nearest
    existing parent is not a folder or not writable.
    """
    dest = Path(dest)
    try:
        if os.path.lexists(dest):
            if dest.is_symlink() or not dest.is_file():
                raise AdvisorError(f"{dest} exists and is not a regular file; choose another name")
            if not overwrite:
                raise AdvisorError(f"{dest} exists; pass --overwrite to replace it")
        folder = dest.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise AdvisorError(f"cannot write {dest}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise AdvisorError(f"cannot write {dest}: {folder} is not writable")
    except OSError as err:
        raise AdvisorError(f"cannot write {dest} ({os_reason(err)})") from None
    return dest


def create_temporary(dest: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file beside ``dest``: an open descriptor and its name.

    Created with mode 0o666 less the umask, as any new file (``tempfile.mkstemp``'s 0o600
    would leave every output readable by its owner only); ``O_EXCL`` makes the name ours.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = f".{dest.name[:_TEMP_NAME_CHARS]}.{secrets.token_hex(4)}.tmp{dest.suffix[:16]}"
        tmp = dest.parent / name
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {dest}")


@contextlib.contextmanager
def _temporary_beside(dest: Path) -> Iterator[tuple[int, Path]]:
    """An open descriptor and the name of a new temporary file in ``dest``'s folder (created
    with its parents); the file is removed on exit unless it was moved away."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = create_temporary(dest)
    try:
        yield fd, tmp_path
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):  # never hide the error that got us here
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file to write ``dest``'s content into; on success it becomes ``dest``.

    The file is a temporary one beside ``dest``, flushed and fsynced, then moved over ``dest``
    atomically. On an exception (``OSError`` from a full disk included) the temporary file is
    removed, ``dest`` is left as it was, and the exception propagates.
    """
    dest = Path(dest)
    with _temporary_beside(dest) as (fd, tmp_path):
        with os.fdopen(os.dup(fd), "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically.

    Only for writers that accept nothing but a file name (``safetensors.save_file``); the
    writer must write exactly that name and close its file (so its write errors reach us).
    Unlike :func:`atomic_open` it does not fsync: it also serves one PNG per generated image,
    where an fsync each would dominate on slow disks. Prefer :func:`atomic_open`. On an
    exception the temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    with _temporary_beside(dest) as (_, tmp_path):
        yield tmp_path
        os.replace(tmp_path, dest)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_open(dest) as f:
        f.write(data)


MAX_CACHE_JSON_BYTES = 64 << 20
"""Largest small cache file (hash memos, recorded hashes) read: far beyond their real size."""


def read_small_file(path: str | os.PathLike[str], max_bytes: int = MAX_CACHE_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read without blocking.

    Cache files can be replaced by anything (a FIFO would block a plain read forever, a link to
    ``/dev/zero`` would never end): raises ``FileNotFoundError`` when absent and ``OSError``
    when the path is not a regular file or is larger than ``max_bytes``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"{path} is larger than {max_bytes} bytes")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise OSError(errno.EFBIG, f"{path} is larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def json_safe(value: Any) -> Any:
    """``value`` ready for strict JSON: non-finite floats become None, mappings dicts with
    string keys, tuples lists, paths strings (``json.dumps(..., allow_nan=False)`` then holds)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
