"""Get registry checkpoints into the cache, verified, and say what is cached without network.

Files live in ``<cache>/checkpoints/<key>/<file>``, ``key`` a hash of the location (URL, or Hub
repo/file/revision), so two records can never share a stale file. URL entries download through
:func:`advisor.download.download_url` (resumable); Hub entries through
``huggingface_hub.hf_hub_download`` at the record's pinned revision into the same folder
(``HF_ENDPOINT`` is honoured). ``--offline``, ``HF_HUB_OFFLINE`` or ``ADVISOR_OFFLINE`` stop all
network access: only cached files are used.

Hashes: a record's ``sha256`` is checked on every download. A record without one is trusted on
first use: the hash of the first download is recorded in ``<cache>/checkpoints/
recorded-sha256.json`` and later downloads and ``verify`` must match it; such entries are shown
as unverified. A file that fails its hash is deleted and reported.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from advisor.cache import atomic_write_bytes, cache_dir
from advisor.checkpoints.registry import CheckpointRecord
from advisor.download import download_url, is_offline, sha256_file
from advisor.errors import AdvisorError
from advisor.paths import confined, is_inside

RECORDED_HASHES = "recorded-sha256.json"


@dataclass(frozen=True)
class CacheStatus:
    """What is known locally about a record, without network access.

    ``hash_status``: ``'pinned'`` (the registry gives the sha256), ``'recorded'`` (unverified:
    recorded at first download), or ``'unknown'`` (never downloaded, no hash published).
    """

    name: str
    cached: bool
    path: Path
    hash_status: str
    sha256: str | None


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of re-hashing one cached file: ``ok``, ``mismatch`` (deleted unless local),
    ``not-cached`` or ``unhashed`` (cached, but no pinned or recorded hash to compare with)."""

    name: str
    path: Path
    outcome: str
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
    if record.sha256:
        kind, sha = "pinned", record.sha256
    elif recorded:
        kind, sha = "recorded", recorded
    else:
        kind, sha = "unknown", None
    cached = path.is_file() and (record.format != "advisor" or _json_sibling(path).is_file())
    return CacheStatus(record.name, cached, path, kind, sha)


def pull(record: CheckpointRecord, *, offline: bool | None = None, progress: bool = True) -> Path:
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
    if record.hf is not None:
        path = _pull_hub(record, offline=offline, progress=progress)
    else:
        dest = local_path(record)
        path = download_url(record.url, dest, sha256=expected, progress=progress, offline=offline)
        if record.format == "advisor":
            json_url = record.url.split("?")[0].removesuffix(".safetensors") + ".json"
            json_dest = _json_sibling(dest)
            download_url(json_url, json_dest, sha256=None, progress=False, offline=offline)
    actual = sha256_file(path)
    if expected and actual != expected:
        _delete(path, record)
        raise AdvisorError(
            f"{record.name}: {path.name} failed its sha256 check (expected {expected}, got "
            f"{actual}); the file was deleted"
        )
    if not expected:
        _record_hash(record, actual)
    return path


def verify(record: CheckpointRecord) -> VerifyResult:
    """Re-hash the cached (or local) file of ``record`` against its pinned or recorded sha256.

    A mismatching cache file is deleted; a mismatching local (``path``) file is only reported.
    """
    st = status(record)
    if not st.cached:
        return VerifyResult(record.name, st.path, "not-cached", st.sha256)
    actual = sha256_file(st.path)
    if st.sha256 is None:
        return VerifyResult(record.name, st.path, "unhashed", None, actual)
    if actual == st.sha256:
        return VerifyResult(record.name, st.path, "ok", st.sha256, actual)
    if record.path is None:
        _delete(st.path, record)
    return VerifyResult(record.name, st.path, "mismatch", st.sha256, actual)


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


class _QuietTqdm(tqdm):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _pull_hub(record: CheckpointRecord, *, offline: bool, progress: bool) -> Path:
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    assert record.hf is not None
    files = [record.hf.file]
    if record.format == "advisor":
        files.append(str(Path(record.hf.file).with_suffix(".json")))
    paths = []
    for name in files:
        try:
            paths.append(
                huggingface_hub.hf_hub_download(
                    record.hf.repo,
                    name,
                    revision=record.hf.revision,
                    local_dir=_cache_folder(record),
                    local_files_only=offline,
                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                    tqdm_class=None if progress else _QuietTqdm,
                )
            )
        except LocalEntryNotFoundError:
            raise AdvisorError(
                f"{record.name}: not cached and offline (or the Hub is unreachable); "
                f"run `advisor checkpoints pull {record.name}` online"
            ) from None
        except (HfHubHTTPError, OSError, ValueError) as err:
            text = " ".join(str(err).split())[:200]
            raise AdvisorError(
                f"{record.name}: Hub download of {record.location} failed ({text})"
            ) from None
    return Path(paths[0])


def _recorded() -> dict[str, dict[str, str]]:
    path = cache_dir("checkpoints") / RECORDED_HASHES
    try:
        data = json.loads(path.read_text())
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
