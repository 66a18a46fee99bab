"""Where advisor keeps what it downloads and computes, and how it writes there.

Everything lives under one user cache directory: ``$ADVISOR_CACHE`` when set, else the
platform's user cache directory (``~/.cache/advisor`` on Linux). Nothing is ever written
inside the installed package or the user's image folders. Every file is written atomically:
to a temporary file in the same directory, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs


def cache_dir(*parts: str) -> Path:
    """Return (and create) ``<cache root>/<parts...>``."""
    root = os.environ.get("ADVISOR_CACHE")
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("advisor"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically.

    On an exception the temporary file is removed and ``dest`` is left as it was.
    The temporary name keeps ``dest``'s suffix so that writers keyed on suffix
    (``np.savez`` adds ``.npz``) write exactly where they are told.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
