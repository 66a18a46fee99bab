"""Get registry checkpoints into the cache, verified, and say what is cached without network.

Files live in ``<cache>/checkpoints/<key>/<file>``, ``key`` a hash of the location (URL, or Hub
repo/file/revision), so two records can never share a stale file. URL and Hub entries alike come
through :func:`advisor.download.fetch` (HTTP with resume, or ``hf_hub_download`` at the record's
revision with ``HF_ENDPOINT`` honoured). ``--offline``, ``HF_HUB_OFFLINE`` or
``ADVISOR_OFFLINE`` stop all network access: only cached files are used.

Hashes: a record's ``sha256`` is checked on every download. A record without one is trusted on
first use: the hash of the first download is recorded in ``<cache>/checkpoints/
recorded-sha256.json`` and later downloads and ``verify`` must match it; such entries are shown
as unverified (as is every record without a pinned hash, whatever its ``trust``). A file that
fails its hash is deleted and reported. Hashes are memoised per process
(:func:`advisor.download.sha256_file`), so pulling, loading and ranking hash a file once;
:func:`verify` alone re-reads the bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from advisor.cache import atomic_write_bytes, cache_dir, read_small_file
from advisor.checkpoints.registry import CheckpointRecord, Verification
from advisor.download import HubFile, fetch, is_offline, sha256_file
from advisor.errors import AdvisorError
from advisor.paths import confined, is_inside
from advisor.progress import Reporting

RECORDED_HASHES = "recorded-sha256.json"

HashStatus = Literal["pinned", "recorded", "unknown"]
VerifyOutcome = Literal["ok", "mismatch", "not-cached", "unhashed"]


@dataclass(frozen=True, kw_only=True)
class CacheStatus:
    """What is known locally about a record, without network access.

    ``hash_status``: ``'pinned'`` (the registry gives the sha256), ``'recorded'`` (recorded at
    first download), or ``'unknown'`` (never downloaded, no hash published). Only ``pinned`` is
    ``verified``; see :attr:`verification`.
    """

    name: str
    cached: bool
    path: Path
    hash_status: HashStatus
    sha256: str | None

    @property
    def verification(self) -> Verification:
        """``'verified'`` only for a pinned hash: a recorded one proves sameness, not origin."""
        return "verified" if self.hash_status == "pinned" else "unverified"


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """Outcome of re-hashing one cached file: ``ok``, ``mismatch`` (deleted unless local),
    ``not-cached`` or ``unhashed`` (cached, but no pinned or recorded hash to compare with)."""

    name: str
    path: Path
    outcome: VerifyOutcome
    expected: str | None = None
    actual: str | None = None


def local_path(record: CheckpointRecord) -> Path:
    """Where the record's main file is (``path`` records) or will be cached."""
    if record.path is not None:
        return record.path
    name = record.hf.file if record.hf else record.filename
    return confined(_cache_folder(record), name, what=f"{record.name}: file name {name!r}")


def status(record: CheckpointRecord) -> CacheStatus:
    """Cache status of ``record``; reads the local disk only."""
    path = local_path(record)
    recorded = _recorded().get(record.location, {}).get("sha256")
    kind: HashStatus
    if record.sha256:
        kind, sha = "pinned", record.sha256
    elif recorded:
        kind, sha = "recorded", recorded
    else:
        kind, sha = "unknown", None
    cached = path.is_file() and (record.format != "advisor" or _json_sibling(path).is_file())
    return CacheStatus(name=record.name, cached=cached, path=path, hash_status=kind, sha256=sha)


def pull(
    record: CheckpointRecord, *, offline: bool | None = None, progress: Reporting = True
) -> Path:
    """Make sure ``record``'s file is local and verified; return its path.

    Downloads when needed (unless offline). For ``advisor``-format records the ``.json`` beside
    the ``.safetensors`` comes along. Raises :class:`AdvisorError` when offline and not cached,
    on network errors, and on hash mismatches (the bad file is deleted).
    """
    expected = record.sha256 or _recorded().get(record.location, {}).get("sha256")
    if record.path is not None:
        if not record.path.is_file():
            raise AdvisorError(f"{record.name}: local file {record.path} does not exist")
        if record.format == "advisor" and not _json_sibling(record.path).is_file():
            raise AdvisorError(f"{record.name}: {_json_sibling(record.path)} is missing")
        if record.sha256 and sha256_file(record.path) != record.sha256:
            raise AdvisorError(f"{record.name}: {record.path} does not match its registry sha256")
        return record.path
    offline = is_offline(offline)
    dest = local_path(record)
    if record.hf is not None and offline and not dest.is_file():
        raise AdvisorError(
            f"{record.name}: not cached and offline; run `advisor checkpoints pull "
            f"{record.name}` online"
        )
    actual = _fetch(record, _source(record), dest, expected, offline=offline, progress=progress)
    if record.format == "advisor":
        json_source = _source(record, suffix=".json")
        _fetch(record, json_source, _json_sibling(dest), None, offline=offline, progress=False)
    if not expected:
        _record_hash(record, actual)
    return dest


def verify(record: CheckpointRecord) -> VerifyResult:
    """Re-hash the cached (or local) file of ``record`` against its pinned or recorded sha256.

    A mismatching cache file is deleted; a mismatching local (``path``) file is only reported.
    """
    st = status(record)
    result = {"name": record.name, "path": st.path, "expected": st.sha256}
    if not st.cached:
        return VerifyResult(outcome="not-cached", **result)
    actual = sha256_file(st.path, fresh=True)  # damage need not change the file's stamp
    if st.sha256 is None:
        return VerifyResult(outcome="unhashed", actual=actual, **result)
    if actual == st.sha256:
        return VerifyResult(outcome="ok", actual=actual, **result)
    if record.path is None:
        _delete(st.path, record)
    return VerifyResult(outcome="mismatch", actual=actual, **result)


def _cache_folder(record: CheckpointRecord) -> Path:
    key = hashlib.sha256(record.location.encode()).hexdigest()[:16]
    return cache_dir("checkpoints", key)


def _json_sibling(path: Path) -> Path:
    return path.with_suffix(".json")


def _delete(path: Path, record: CheckpointRecord) -> None:
    """Delete a cached download (and its ``.json``), never anything outside the record's folder.

    Only files of URL and Hub records, which advisor itself downloaded into
    ``<cache>/checkpoints/<key>/``, are ever deleted; a user's ``path`` file is never touched.
    """
    if record.path is not None:
        return
    folder = _cache_folder(record)
    siblings = [path, _json_sibling(path)] if record.format == "advisor" else [path]
    for p in siblings:
        # Unlinking removes the name, never what a symlink points to; so what must be inside
        # the folder is the directory holding the name.
        if not is_inside(p.parent, folder) or p.is_dir():
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _source(record: CheckpointRecord, *, suffix: str = "") -> str | HubFile:
    """The record's URL or Hub file; ``suffix`` swaps the file's (the advisor ``.json``)."""
    if record.hf is not None:
        if not suffix:
            return record.hf
        file = str(Path(record.hf.file).with_suffix(suffix))
        return HubFile(repo=record.hf.repo, file=file, revision=record.hf.revision)
    assert record.url is not None
    if not suffix:
        return record.url
    return record.url.split("?")[0].removesuffix(".safetensors") + suffix


def _fetch(
    record: CheckpointRecord,
    source: str | HubFile,
    dest: Path,
    expected: str | None,
    *,
    offline: bool,
    progress: Reporting,
) -> str:
    """:func:`advisor.download.fetch` with Hub errors named after the record."""
    try:
        return fetch(source, dest, sha256=expected, offline=offline, progress=progress,
                     task=f"download {record.name}")  # fmt: skip
    except AdvisorError as err:
        if isinstance(source, HubFile):
            raise AdvisorError(f"{record.name}: {err}") from None
        raise


def _recorded() -> dict[str, dict[str, str]]:
    path = cache_dir("checkpoints") / RECORDED_HASHES
    try:
        data = json.loads(read_small_file(path))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise AdvisorError(f"{path} is corrupt; delete it to forget recorded hashes") from None
    return data if isinstance(data, dict) else {}


def _record_hash(record: CheckpointRecord, sha: str) -> None:
    data = _recorded()
    data[record.location] = {
        "name": record.name,
        "sha256": sha,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = cache_dir("checkpoints") / RECORDED_HASHES
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
