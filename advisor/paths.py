"""Names that become paths: one rule that keeps them inside their root.

Any path advisor derives from outside data (a registry's Hub file name, a URL's last segment, a
job parameter) goes through :func:`confined`. A name is a relative POSIX path of plain
components: not empty, not absolute, no ``.``/``..`` components, no backslashes, NUL or control
characters, no drive letters. After joining, the result is resolved (symlinks followed) and must
still lie inside the resolved root. advisor deletes only files it reached through this rule.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from advisor.errors import AdvisorError

MAX_NAME_CHARS = 1024
"""Longest name accepted: far beyond any real Hub file path, short of every filesystem limit."""


def check_relative_name(name: object, *, what: str) -> PurePosixPath:
    """Return ``name`` as a :class:`PurePosixPath` of plain components, or raise AdvisorError.

    ``what`` names the field in the one-line error (e.g. ``"registry hf.file"``).
    """
    if not isinstance(name, str) or not name:
        raise AdvisorError(f"{what} must be a non-empty relative path, got {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise AdvisorError(f"{what} is longer than {MAX_NAME_CHARS} characters")
    if any(ord(c) < 32 or c == "\x7f" for c in name) or "\\" in name:
        raise AdvisorError(f"{what} {name!r} contains control characters or backslashes")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise AdvisorError(f"{what} {name!r} must be relative (no leading '/' or drive)")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise AdvisorError(f"{what} {name!r} must not contain empty, '.' or '..' components")
    return PurePosixPath(name)


def confined(root: str | os.PathLike[str], name: str, *, what: str) -> Path:
    """``root / name`` after :func:`check_relative_name`, verified to resolve inside ``root``.

    Symlinks are followed on both sides, so a link inside ``root`` that points out of it is
    refused too. The returned path is the unresolved join (what the caller shows the user).
    """
    relative = check_relative_name(name, what=what)
    base = Path(root)
    joined = base.joinpath(*relative.parts)
    real_root = base.resolve()
    real = joined.resolve()
    if real != real_root and real_root not in real.parents:
        raise AdvisorError(f"{what} {name!r} leads outside {base}")
    return joined


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when ``path`` resolves to ``root`` itself or somewhere below it."""
    real, real_root = Path(path).resolve(), Path(root).resolve()
    return real == real_root or real_root in real.parents
