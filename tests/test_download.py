import hashlib

import pytest

from advisor.download import download_url, is_offline, sha256_file
from advisor.errors import AdvisorError
from tests.httpserver import serve

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_does_not_refetch(tmp_path):
    dest = tmp_path / "w.bin"
    with serve({"/w.bin": PAYLOAD}) as srv:
        got = download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
        assert got == dest and dest.read_bytes() == PAYLOAD
        download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
        assert len(srv.requests) == 1
    assert not (tmp_path / "w.bin.part").exists()


def test_download_resumes_partial_file_with_range(tmp_path):
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.part").write_bytes(PAYLOAD[:1000])
    with serve({"/w.bin": PAYLOAD}) as srv:
        download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
        assert srv.requests == [("/w.bin", "bytes=1000-")]
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_download_keeps_part_then_resumes(tmp_path):
    dest = tmp_path / "w.bin"
    with serve({"/w.bin": PAYLOAD}, truncate_at=5000) as srv:
        with pytest.raises(AdvisorError, match="resume from the partial file"):
            download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
        assert not dest.exists()
        assert (tmp_path / "w.bin.part").stat().st_size == 5000
        download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
        assert srv.requests[-1] == ("/w.bin", "bytes=5000-")
    assert sha256_file(dest) == SHA


def test_hash_mismatch_deletes_file(tmp_path):
    dest = tmp_path / "w.bin"
    with serve({"/w.bin": PAYLOAD[:-1] + b"x"}) as srv:
        with pytest.raises(AdvisorError, match="sha256"):
            download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
    assert not dest.exists() and not (tmp_path / "w.bin.part").exists()


def test_existing_file_with_wrong_hash_is_replaced(tmp_path):
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"stale")
    with serve({"/w.bin": PAYLOAD}) as srv:
        download_url(f"{srv.base_url}/w.bin", dest, sha256=SHA, progress=False, offline=False)
    assert dest.read_bytes() == PAYLOAD


def test_offline_and_http_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(AdvisorError, match="offline"):
        download_url("http://127.0.0.1:9/x", tmp_path / "x", sha256=None, offline=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline() is True
    assert is_offline(False) is False
    with serve({}) as srv:
        with pytest.raises(AdvisorError) as info:
            download_url(f"{srv.base_url}/missing", tmp_path / "m", sha256=None, offline=False)
    assert "\n" not in str(info.value) and "404" in str(info.value)
