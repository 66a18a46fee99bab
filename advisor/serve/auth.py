"""The server's bearer token: made at first start, kept owner-only, compared in constant time.

Every endpoint but ``GET /health`` needs ``Authorization: Bearer TOKEN``. The token is
``DATA/token`` (created at first start with mode 0600, 43 URL-safe characters from
:func:`secrets.token_urlsafe`) or the file given by ``--token-file``. A token file readable by
group or others is refused. ``--no-auth`` turns the check off, and is refused on any address
that is not loopback: a server reachable from the network always needs the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from pathlib import Path

from advisor.errors import AdvisorError

TOKEN_FILE = "token"
#: Shortest token accepted from a ``--token-file``.
MIN_TOKEN_CHARS = 16
_MAX_TOKEN_BYTES = 4096


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, auth: bool) -> None:
    """Refuse to serve a non-loopback ``host`` without the token check."""
    if not auth and not is_loopback(host):
        raise AdvisorError(
            f"refusing to serve {host} without a token: --no-auth is for loopback addresses "
            "(127.0.0.1, ::1) only"
        )


def load_token(data: Path, token_file: str | os.PathLike[str] | None = None) -> str:
    """The token from ``token_file``, else ``data/token`` (created, mode 0600, when missing)."""
    if token_file is not None:
        return _read_token(Path(token_file))
    path = data / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    except OSError as err:
        raise AdvisorError(f"cannot create the token file {path} ({err.strerror})") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token


def _read_token(path: Path) -> str:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise AdvisorError(f"the token file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise AdvisorError(
                f"the token file {path} is readable by others; run: chmod 600 {path}"
            )
        with open(path, "rb") as f:
            raw = f.read(_MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise AdvisorError(f"no such token file: {path}") from None
    except OSError as err:
        raise AdvisorError(f"cannot read the token file {path} ({err.strerror})") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if len(raw) > _MAX_TOKEN_BYTES or len(token) < MIN_TOKEN_CHARS or not token.isprintable():
        raise AdvisorError(
            f"the token file {path} must hold one line of at least {MIN_TOKEN_CHARS} printable "
            "ASCII characters"
        )
    return token


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
