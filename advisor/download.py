"""The one fetch layer: verified downloads (HTTP with resume, or the Hugging Face Hub), one
progress adapter (:func:`advisor.progress.tqdm_class`: bars, nothing, or the caller's
callback), and file hashes memoised per process.

- :func:`fetch` gets a :class:`HubFile` or an HTTP(S) URL into a destination path and returns
  the file's sha256; Inception weights and registry checkpoints both come through it. A file is
  moved into place only after its hash checks out (when one is expected), so the destination
  holds a verified file or nothing.
- HTTP: a partial download is kept as ``<dest>.part`` and resumed with a ``Range`` request on
  the next try (:func:`download_url`).
- Hub: ``huggingface_hub.hf_hub_download`` into ``<dest>.hub/`` (it resumes its own partial
  files there), honouring ``HF_ENDPOINT``; the verified file is then moved onto ``dest``.
- :func:`sha256_file` memoises digests by (path, device, inode, size, mtime_ns) for the life
  of the process, so a checkpoint hashed by ``pull`` is not hashed again by the loader and the
  ranking cache key. A file modified within the last :data:`RACY_SECONDS` is never memoised: a
  second write in the same timestamp tick would otherwise go unnoticed (git's "racily clean"
  rule).
- Offline (``offline=True``, ``HF_HUB_OFFLINE`` or ``ADVISOR_OFFLINE``): no network at all;
  only files already in place are used.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.paths import check_relative_name, confined
from advisor.progress import Reporting, tqdm_class

_CHUNK = 1 << 20
MAX_DOWNLOAD_BYTES = 64 << 30
"""Largest download accepted: 64 GiB, 30x the largest public StyleGAN checkpoints (StyleGAN-XL
and StyleGAN3 pickles are under 2 GiB); an endless stream stops here, not at a full disk."""
STALL_BYTES, STALL_SECONDS = 16 << 10, 120.0
"""A download that receives less than 16 KiB in 120 s is abandoned (as curl's --speed-limit):
the per-read timeout alone lets a server that drips one byte every 29 s hang it forever."""
#: A file modified less than this long ago may still change within the same mtime tick (2 s on
#: FAT), so its hash is not memoised.
RACY_SECONDS = 2.0
#: Digests kept in the per-process memo (a zoo of checkpoints, weights, feature files).
_MEMO_LIMIT = 4096
_HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_HUB_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


# --- Hub files -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HubFile:
    """A file on the Hugging Face Hub: ``repo`` (``owner/name``), ``file`` (a relative path in
    the repo) and ``revision`` (a commit hash, or a branch/tag where a registry allows it)."""

    repo: str
    file: str
    revision: str

    def __post_init__(self) -> None:
        # These become a URL and a path under advisor's cache: refuse anything that could climb
        # out of it (``..``, absolute paths) before any download or delete can use them.
        if not isinstance(self.repo, str) or not _HUB_REPO.match(self.repo) or ".." in self.repo:
            raise AdvisorError(f"hf repo must look like 'owner/name', got {self.repo!r}")
        check_relative_name(self.file, what="hf file")
        if (
            not isinstance(self.revision, str)
            or not _HUB_REVISION.match(self.revision)
            or ".." in self.revision
        ):
            raise AdvisorError(f"hf revision {self.revision!r} is not a valid git revision")

    @property
    def pinned(self) -> bool:
        """True when ``revision`` is a full 40-hex commit hash (a branch or tag can move)."""
        return bool(_COMMIT.match(self.revision))

    @property
    def location(self) -> str:
        """``hf://repo/file@revision``."""
        return f"hf://{self.repo}/{self.file}@{self.revision}"


# --- hashing ---------------------------------------------------------------------------------


def _hash_bytes(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (the one place that reads them)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _HashMemo:
    """sha256 by path, valid while the file's (device, inode, size, mtime_ns) stay the same.

    Thread-safe (ranking hashes from worker threads); bounded, least recently used first out.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[tuple[int, int, int, int], str]] = OrderedDict()

    def digest(self, path: Path, *, fresh: bool) -> str:
        key = str(path.resolve())
        before = path.stat()
        with self._lock:
            entry = self._entries.get(key)
            if not fresh and entry is not None and entry[0] == _stamp(before):
                self._entries.move_to_end(key)
                return entry[1]
        started = time.time()
        digest = _hash_bytes(path)
        after = path.stat()
        with self._lock:
            if _stamp(after) != _stamp(before) or started - after.st_mtime_ns / 1e9 < RACY_SECONDS:
                self._entries.pop(key, None)  # changing, or too fresh to trust its stamp
            else:
                self._entries[key] = (_stamp(after), digest)
                self._entries.move_to_end(key)
                while len(self._entries) > self._limit:
                    self._entries.popitem(last=False)
        return digest

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_MEMO = _HashMemo(_MEMO_LIMIT)


def sha256_file(path: str | os.PathLike[str], *, fresh: bool = False) -> str:
    """Hex sha256 of a file's bytes, memoised for this process by (path, device, inode, size,
    mtime_ns); ``fresh=True`` re-reads the bytes (``checkpoints verify`` looks for damage that
    leaves the stamp alone) and refreshes the memo."""
    return _MEMO.digest(Path(path), fresh=fresh)


def forget_hashes() -> None:
    """Empty the per-process hash memo."""
    _MEMO.clear()


# --- fetching --------------------------------------------------------------------------------


def is_offline(offline: bool | None = None) -> bool:
    """True when asked for, or when ``HF_HUB_OFFLINE`` or ``ADVISOR_OFFLINE`` is set."""
    if offline is not None:
        return offline
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(var, "").strip().lower() in truthy
        for var in ("HF_HUB_OFFLINE", "ADVISOR_OFFLINE")
    )


def fetch(
    source: str | HubFile,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None,
    progress: Reporting = True,
    offline: bool | None = None,
    require_commit: bool = False,
    timeout: float = 30.0,
    task: str | None = None,
) -> str:
    """Make ``dest`` a verified copy of ``source`` (an HTTP(S) URL or a :class:`HubFile`);
    return its sha256.

    An existing ``dest`` is used without network access when it matches ``sha256`` (or no hash
    is expected); one that does not match is deleted and fetched again. ``require_commit``
    refuses a Hub revision that is not a 40-hex commit. Raises a one-line
    :class:`AdvisorError` when offline and nothing is in place, on network failures (a partial
    download is kept for the next try) and on a hash mismatch (the bad file is deleted).
    ``progress``: True draws a bar, False nothing, and a callback receives the transfer in
    bytes as ``task`` (default ``download DEST-NAME``; see :mod:`advisor.progress`).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 is not None else None
    where = source.location if isinstance(source, HubFile) else source
    if isinstance(source, HubFile) and require_commit and not source.pinned:
        raise AdvisorError(f"{where}: the Hub revision must be a 40-hex commit, not a branch")
    if dest.is_file():
        actual = sha256_file(dest)
        if expected is None or actual == expected:
            return actual
        dest.unlink()  # only verified files are put here; this one was changed since
    if is_offline(offline):
        raise AdvisorError(f"offline: cannot download {where} (not cached)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    task = task or f"download {dest.name}"
    staging = dest.with_name(dest.name + ".hub")  # the Hub's partial files and metadata
    if isinstance(source, HubFile):
        staged = _hub_download(source, staging, progress=progress, task=task)
    else:
        staged = _http_download(source, dest, progress=progress, timeout=timeout, task=task)
    actual = sha256_file(staged)
    if expected is not None and actual != expected:
        staged.unlink()
        raise AdvisorError(
            f"download of {where} failed its sha256 check (expected {expected}, got {actual}); "
            "the file was deleted"
        )
    os.replace(staged, dest)
    if isinstance(source, HubFile):  # the staging folder only held this file's Hub metadata
        shutil.rmtree(staging, ignore_errors=True)
    return actual


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None,
    progress: Reporting = True,
    offline: bool | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``; verify ``sha256``.

    Returns ``dest``; see :func:`fetch`.
    """
    fetch(url, dest, sha256=sha256, progress=progress, offline=offline, timeout=timeout)
    return Path(dest)


def _content_length(value: str | None, url: str) -> int | None:
    """The announced size, or None when absent; a malformed header is one line."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise AdvisorError(f"download of {url}: the server sent a malformed Content-Length")
    return int(text)


def _http_download(url: str, dest: Path, *, progress: Reporting, timeout: float, task: str) -> Path:
    """Download ``url`` into ``dest.part`` (resuming it); return the complete ``.part``."""
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
            total = _content_length(response.headers.get("Content-Length"), url)
            total = None if total is None else total + start
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise AdvisorError(
                    f"download of {url} is {total} bytes, over advisor's limit of "
                    f"{MAX_DOWNLOAD_BYTES >> 30} GiB"
                )
            bar = tqdm_class(progress, task)(
                total=total, initial=start, unit="B", unit_scale=True, desc=dest.name
            )
            window_start, window_bytes = time.monotonic(), 0
            with open(part, "ab" if resumed else "wb") as out, bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if received > (total if total is not None else MAX_DOWNLOAD_BYTES):
                        raise AdvisorError(
                            f"download of {url} sent more than it announced (or over "
                            f"{MAX_DOWNLOAD_BYTES >> 30} GiB); stopped"
                        )
                    window_bytes += len(chunk)
                    now = time.monotonic()
                    if now - window_start >= STALL_SECONDS:
                        if window_bytes < STALL_BYTES:
                            raise OSError(errno.ETIMEDOUT, "stalled")
                        window_start, window_bytes = now, 0
    except AdvisorError:
        part.unlink(missing_ok=True)  # oversized or malformed: nothing worth resuming
        raise
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
    return part


def _hub_download(file: HubFile, staging: Path, *, progress: Reporting, task: str) -> Path:
    """``hf_hub_download`` of ``file`` into ``staging`` (where it keeps its partial files and
    metadata); returns the downloaded file, still unverified."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        got = huggingface_hub.hf_hub_download(
            repo_id=file.repo,
            filename=file.file,
            revision=file.revision,
            local_dir=staging,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            tqdm_class=tqdm_class(progress, task),
        )
    except LocalEntryNotFoundError:
        raise AdvisorError(
            f"Hub download of {file.location} failed: not cached and the Hub is unreachable"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise AdvisorError(f"Hub download of {file.location} failed ({text})") from None
    # hf_hub_download places the file at staging/<file>; never trust a path from elsewhere.
    expected = confined(staging, file.file, what=f"hf file {file.file!r}")
    if Path(got).resolve() != expected.resolve() or not expected.is_file():
        raise AdvisorError(f"Hub download of {file.location} did not land in {staging}")
    return expected
