"""Downloads with resume, progress and sha256 verification.

``download_url`` fetches a plain HTTP(S) URL into a destination path. A partial download is
kept as ``<dest>.part`` and resumed with a ``Range`` request on the next try. The finished
file is hashed; a hash mismatch deletes it and raises. Only when the hash checks out (or no
hash was given) is the file moved into place, atomically.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from advisor.errors import AdvisorError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def is_offline(offline: bool | None = None) -> bool:
    """True when asked for, or when ``HF_HUB_OFFLINE`` or ``ADVISOR_OFFLINE`` is set."""
    if offline is not None:
        return offline
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(var, "").strip().lower() in truthy
        for var in ("HF_HUB_OFFLINE", "ADVISOR_OFFLINE")
    )


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None,
    progress: bool = True,
    offline: bool | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``; verify ``sha256``.

    Returns ``dest``. If ``dest`` already exists it is returned without network access
    (its hash is checked when ``sha256`` is given). Raises :class:`AdvisorError` on network
    failure, offline mode, or a hash mismatch (the bad file is deleted).
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is not None and sha256_file(dest) != sha256.lower():
            dest.unlink()
        else:
            return dest
    if is_offline(offline):
        raise AdvisorError(f"offline: cannot download {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "advisor"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    received = start
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = start > 0 and response.status == 206
            if not resumed:
                start = received = 0
            length = response.headers.get("Content-Length")
            total = int(length) + start if length is not None else None
            with (
                open(part, "ab" if resumed else "wb") as out,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise AdvisorError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or type(err).__name__
        raise AdvisorError(
            f"download of {url} was interrupted ({reason}); run again to resume from the "
            "partial file that was kept"
        ) from None
    if total is not None and received < total:
        raise AdvisorError(
            f"download of {url} was interrupted after {received} of {total} bytes; run again "
            "to resume from the partial file that was kept"
        )
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256.lower():
            part.unlink()
            raise AdvisorError(
                f"download of {url} failed its sha256 check (expected {sha256.lower()}, "
                f"got {got}); the file was deleted"
            )
    os.replace(part, dest)
    return dest
