"""Downloads into the cache: a local HTTP server and a local Hub-like server, never the internet.

The Hub server (``tests.httpserver.hub``) is reached through ``HF_ENDPOINT``.
"""

import hashlib
import json

import pytest

from advisor.cache import cache_dir
from advisor.checkpoints import CheckpointRecord, HubFile, pull, status, verify
from advisor.errors import AdvisorError
from tests.httpserver import COMMIT, hub, serve

PAYLOAD = b"not really a checkpoint, but bytes to verify " * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _record(**fields):
    base = dict(name="demo", format="nvlabs-pkl", resolution=64, source_dataset="d",
                licence="l", trust="official")  # fmt: skip
    return CheckpointRecord(**(base | fields))


def test_url_download_with_pinned_hash(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serve({"/x/demo.pkl": PAYLOAD}) as served:
        record = _record(url=served.base_url + "/x/demo.pkl", sha256=SHA)
        assert not status(record).cached
        path = pull(record, progress=False)
        assert path.read_bytes() == PAYLOAD
        assert path.is_relative_to(cache_dir("checkpoints"))
        st = status(record)
        assert st.cached and st.hash_status == "pinned"
        pull(record, progress=False)  # cached: no second request
        assert len(served.requests) == 1
    assert verify(record).outcome == "ok"


def test_url_download_failing_its_hash_is_deleted(tmp_path):
    with serve({"/x/demo.pkl": PAYLOAD}) as served:
        record = _record(url=served.base_url + "/x/demo.pkl", sha256="0" * 64)
        with pytest.raises(AdvisorError, match="failed its sha256 check.*deleted"):
            pull(record, progress=False)
    assert not status(record).cached
    assert not list(status(record).path.parent.iterdir())


def test_unknown_hash_is_recorded_on_first_download_and_enforced_after():
    with serve({"/x/demo.pkl": PAYLOAD}) as served:
        record = _record(url=served.base_url + "/x/demo.pkl")
        assert status(record).hash_status == "unknown"
        path = pull(record, progress=False)
        st = status(record)
        assert st.hash_status == "recorded" and st.sha256 == SHA
        recorded = json.loads((cache_dir("checkpoints") / "recorded-sha256.json").read_text())
        assert recorded[record.location]["sha256"] == SHA
        # The publisher's file changes: the re-download no longer matches what was recorded.
        path.unlink()
        served.files["/x/demo.pkl"] = PAYLOAD + b"!"
        with pytest.raises(AdvisorError, match="failed its sha256 check"):
            pull(record, progress=False)


def test_offline_uses_the_cache_and_refuses_downloads(monkeypatch):
    with serve({"/x/demo.pkl": PAYLOAD}) as served:
        record = _record(url=served.base_url + "/x/demo.pkl", sha256=SHA)
        absent = _record(name="absent", url=served.base_url + "/x/other.pkl")
        pull(record, progress=False)
        monkeypatch.setenv("ADVISOR_OFFLINE", "1")
        assert pull(record, progress=False).read_bytes() == PAYLOAD
        with pytest.raises(AdvisorError, match="offline"):
            pull(absent, progress=False)
        monkeypatch.delenv("ADVISOR_OFFLINE")
        with pytest.raises(AdvisorError, match="offline"):
            pull(absent, offline=True, progress=False)
        assert len(served.requests) == 1


def test_verify_detects_and_deletes_a_corrupted_cache_file():
    with serve({"/x/demo.pkl": PAYLOAD}) as served:
        record = _record(url=served.base_url + "/x/demo.pkl", sha256=SHA)
        path = pull(record, progress=False)
    path.write_bytes(b"bit rot")
    result = verify(record)
    assert result.outcome == "mismatch" and result.expected == SHA
    assert not path.exists()
    assert verify(record).outcome == "not-cached"


def test_local_path_records_are_checked_but_never_deleted(tmp_path):
    local = tmp_path / "mine.pkl"
    local.write_bytes(PAYLOAD)
    record = _record(path=local, trust="local", sha256=SHA)
    assert pull(record) == local and status(record).cached
    local.write_bytes(b"edited")
    assert verify(record).outcome == "mismatch" and local.exists()
    with pytest.raises(AdvisorError, match="does not match"):
        pull(record)
    with pytest.raises(AdvisorError, match="does not exist"):
        pull(_record(path=tmp_path / "nope.pkl", trust="local"))


def test_hub_download_at_pinned_revision(monkeypatch):
    with hub({("org/models", "nets/demo.pkl"): PAYLOAD}) as log:
        monkeypatch.setenv("HF_ENDPOINT", log[0])
        record = _record(hf=HubFile(repo="org/models", file="nets/demo.pkl", revision=COMMIT),
                         sha256=SHA)  # fmt: skip
        path = pull(record, progress=False)
        assert path.read_bytes() == PAYLOAD
        assert path == status(record).path and status(record).cached
        assert any(f"/org/models/resolve/{COMMIT}/nets/demo.pkl" in line for line in log)
        requests = len(log)
        assert pull(record, offline=True, progress=False) == path
        assert len(log) == requests  # offline: no request at all
        assert verify(record).outcome == "ok"


def test_hub_file_failing_its_hash_is_deleted(monkeypatch):
    with hub({("org/models", "demo.pkl"): PAYLOAD}) as log:
        monkeypatch.setenv("HF_ENDPOINT", log[0])
        record = _record(hf=HubFile(repo="org/models", file="demo.pkl", revision=COMMIT),
                         sha256="1" * 64)  # fmt: skip
        with pytest.raises(AdvisorError, match="failed its sha256 check.*deleted"):
            pull(record, progress=False)
        assert not status(record).path.exists()


def test_hub_offline_and_not_cached_is_a_clear_error(monkeypatch):
    with hub({}) as log:
        monkeypatch.setenv("HF_ENDPOINT", log[0])
        record = _record(hf=HubFile(repo="org/models", file="demo.pkl", revision=COMMIT))
        with pytest.raises(AdvisorError, match="not cached and offline"):
            pull(record, offline=True, progress=False)
        assert len(log) == 1  # only the URL entry: no request was made
        with pytest.raises(AdvisorError, match="Hub download .* failed|not cached"):
            pull(record, progress=False)


def test_advisor_format_records_fetch_the_json_too():
    files = {"/m/tiny.safetensors": PAYLOAD, "/m/tiny.json": b"{}"}
    with serve(files) as served:
        record = _record(format="advisor", url=served.base_url + "/m/tiny.safetensors")
        path = pull(record, progress=False)
        assert path.with_suffix(".json").read_bytes() == b"{}"
        assert status(record).cached
