"""Finding the FID Inception weights: local file, env var, cache, download (local HTTP server),
resume, hash checks, Hub mirror fallback, offline errors, and the sha256 memo.

The real 95 MB file cannot be fetched here, so the pinned hash is monkeypatched to that of a
small fake file; nothing in these tests touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest
import torch

import advisor.features.inception as inception
from advisor.download import HubFile
from advisor.errors import AdvisorError
from advisor.features import extractor_protocol, get_extractor
from advisor.features.base import weights_sha256
from advisor.features.inception import INCEPTION_FILENAME, InceptionV3Features
from tests.httpserver import COMMIT, hub

FAKE = bytes(range(256)) * 4096  # 1 MiB of "weights"
FAKE_SHA = hashlib.sha256(FAKE).hexdigest()


class Server:
    """A local HTTP server for one file, honouring Range, counting requests."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if self.path != f"/{INCEPTION_FILENAME}":
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes=") :].split("-")[0])
                    self.send_response(206)
                    total = len(outer.body)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                else:
                    self.send_response(200)
                payload = outer.body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{INCEPTION_FILENAME}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ADVISOR_CACHE", str(root))
    for var in (
        "ADVISOR_INCEPTION_WEIGHTS",
        "ADVISOR_INCEPTION_HUB",
        "ADVISOR_OFFLINE",
        "HF_HUB_OFFLINE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(inception, "INCEPTION_SHA256", FAKE_SHA)
    monkeypatch.setattr(inception, "INCEPTION_HUB_MIRRORS", ())
    return root / "weights"


@pytest.fixture
def server(cache, monkeypatch):
    srv = Server(FAKE)
    monkeypatch.setattr(inception, "INCEPTION_URLS", (srv.url,))
    yield srv
    srv.close()


def test_downloads_once_into_the_cache(cache, server):
    proto = extractor_protocol("inception", progress=False)
    assert (proto.weights_sha256, proto.comparable) == (FAKE_SHA, True)
    assert (cache / INCEPTION_FILENAME).read_bytes() == FAKE
    assert len(server.requests) == 1
    again = extractor_protocol("inception", progress=False)
    assert again == proto and len(server.requests) == 1  # served from the cache


def test_resumes_a_partial_download(cache, server):
    cache.mkdir(parents=True)
    (cache / (INCEPTION_FILENAME + ".part")).write_bytes(FAKE[:300_000])
    extractor_protocol("inception", progress=False)
    assert server.requests == [{"path": f"/{INCEPTION_FILENAME}", "range": "bytes=300000-"}]
    assert (cache / INCEPTION_FILENAME).read_bytes() == FAKE
    assert not (cache / (INCEPTION_FILENAME + ".part")).exists()


def test_hash_mismatch_deletes_and_errors(cache, server):
    server.body = FAKE[::-1]
    with pytest.raises(AdvisorError, match="sha256") as info:
        extractor_protocol("inception", progress=False)
    message = str(info.value)
    assert "\n" not in message and "--extractor efficientnet-lite0" in message
    assert not (cache / INCEPTION_FILENAME).exists()
    assert not (cache / (INCEPTION_FILENAME + ".part")).exists()


def test_a_damaged_cached_file_is_downloaded_again(cache, server):
    cache.mkdir(parents=True)
    (cache / INCEPTION_FILENAME).write_bytes(b"truncated")
    proto = extractor_protocol("inception", progress=False)
    assert proto.comparable and (cache / INCEPTION_FILENAME).read_bytes() == FAKE
    assert len(server.requests) == 1


def test_falls_back_to_the_hub_mirror(cache, server, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_hf_hub_download(*, repo_id, filename, revision, local_dir, **kwargs):
        calls.append((repo_id, filename, revision))
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FAKE)
        return str(path)

    mirror = HubFile(repo="someone/mirror", file=INCEPTION_FILENAME, revision=COMMIT)
    monkeypatch.setattr(inception, "INCEPTION_URLS", (server.url + ".missing",))
    monkeypatch.setattr(inception, "INCEPTION_HUB_MIRRORS", (mirror,))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    proto = extractor_protocol("inception", progress=False)
    assert proto.comparable and calls == [("someone/mirror", INCEPTION_FILENAME, COMMIT)]
    assert (cache / INCEPTION_FILENAME).read_bytes() == FAKE
    assert len(server.requests) == 1  # the URL was tried first


def test_a_bad_hub_mirror_is_rejected(cache, server, monkeypatch):
    import huggingface_hub

    def wrong_file(*, local_dir, filename, **kwargs):
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not the weights")
        return str(path)

    mirror = HubFile(repo="someone/mirror", file=INCEPTION_FILENAME, revision=COMMIT)
    monkeypatch.setattr(inception, "INCEPTION_URLS", ())
    monkeypatch.setattr(inception, "INCEPTION_HUB_MIRRORS", (mirror,))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", wrong_file)
    with pytest.raises(AdvisorError, match="someone/mirror.*failed its sha256 check"):
        extractor_protocol("inception", progress=False)
    assert not (cache / INCEPTION_FILENAME).exists()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_offline_without_cached_weights_names_both_ways_out(cache, server, monkeypatch, how):
    offline = True if how == "argument" else None
    if how == "environment":
        monkeypatch.setenv("ADVISOR_OFFLINE", "1")
    with pytest.raises(AdvisorError) as info:
        get_extractor("inception", offline=offline)
    message = str(info.value)
    assert "\n" not in message and "offline" in message
    assert "--extractor-weights" in message and "ADVISOR_INCEPTION_WEIGHTS" in message
    assert "--extractor efficientnet-lite0" in message
    assert server.requests == []


def test_offline_with_cached_weights_needs_no_network(cache, server):
    cache.mkdir(parents=True)
    (cache / INCEPTION_FILENAME).write_bytes(FAKE)
    proto = extractor_protocol("inception", offline=True)
    assert proto.comparable and server.requests == []


def test_env_var_names_a_local_file_and_the_argument_wins(cache, server, tmp_path, monkeypatch):
    pinned = tmp_path / "fid.pth"
    pinned.write_bytes(FAKE)
    monkeypatch.setenv("ADVISOR_INCEPTION_WEIGHTS", str(pinned))
    proto = extractor_protocol("inception", offline=True)
    assert (proto.weights_sha256, proto.comparable) == (FAKE_SHA, True)

    other = tmp_path / "other.pth"
    other.write_bytes(b"other weights")
    with pytest.warns(UserWarning, match="FIDs not comparable with published ones"):
        proto = extractor_protocol("inception", weights=other, offline=True)
    assert proto.weights_sha256 == hashlib.sha256(b"other weights").hexdigest()
    assert not proto.comparable and server.requests == []


def test_missing_local_file_is_a_one_line_error(cache, tmp_path):
    with pytest.raises(AdvisorError, match="not found") as info:
        extractor_protocol("inception", weights=tmp_path / "nope.pth")
    assert "\n" not in str(info.value)


def test_a_local_state_dict_with_another_hash_loads_strictly_and_warns(cache, tmp_path):
    path = tmp_path / "my-inception.pth"
    torch.save(InceptionV3Features().state_dict(), path)
    with pytest.warns(UserWarning, match="FIDs not comparable with published ones"):
        extractor = get_extractor("inception", weights=path)
    assert extractor.protocol.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not extractor.protocol.comparable

    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, wrong)
    with (
        pytest.warns(UserWarning),
        pytest.raises(AdvisorError, match="does not fit the inception network"),
    ):
        get_extractor("inception", weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning), pytest.raises(AdvisorError, match="cannot read"):
        get_extractor("inception", weights=garbage)


def test_sha256_memo_notices_a_changed_file(cache, tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"a" * 100)
    old = time.time() - 60
    os.utime(path, (old, old))
    assert weights_sha256(path) == hashlib.sha256(b"a" * 100).hexdigest()
    assert (cache / "sha256-memo.json").exists()
    path.write_bytes(b"b" * 100)  # same size; new mtime
    assert weights_sha256(path) == hashlib.sha256(b"b" * 100).hexdigest()
    os.utime(path, (old, old))  # same size and stamp as memoised: the memo answers, unhashed
    assert weights_sha256(path) == hashlib.sha256(b"a" * 100).hexdigest()


def test_a_hub_mirror_on_a_branch_is_refused(cache, server, monkeypatch):
    import huggingface_hub

    def must_not_run(**kwargs):
        raise AssertionError("a branch revision reached the Hub")

    mirror = HubFile(repo="someone/mirror", file=INCEPTION_FILENAME, revision="main")
    monkeypatch.setattr(inception, "INCEPTION_URLS", ())
    monkeypatch.setattr(inception, "INCEPTION_HUB_MIRRORS", (mirror,))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", must_not_run)
    with pytest.raises(AdvisorError, match="40-hex commit"):
        extractor_protocol("inception", progress=False)


def test_a_labs_own_hub_mirror_from_the_environment_is_downloaded_and_verified(
    cache, server, monkeypatch
):
    monkeypatch.setattr(inception, "INCEPTION_URLS", (server.url + ".missing",))
    with hub({("lab/fid-weights", INCEPTION_FILENAME): FAKE}) as log:
        monkeypatch.setenv("HF_ENDPOINT", log[0])
        monkeypatch.setenv("ADVISOR_INCEPTION_HUB", f"lab/fid-weights@{COMMIT.upper()}")
        proto = extractor_protocol("inception", progress=False)
    assert proto.comparable and (cache / INCEPTION_FILENAME).read_bytes() == FAKE
    assert any(f"/lab/fid-weights/resolve/{COMMIT}/{INCEPTION_FILENAME}" in line for line in log)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lab/fid-weights", "ADVISOR_INCEPTION_HUB must be owner/name@COMMIT"),
        ("lab/fid-weights@main", "ADVISOR_INCEPTION_HUB: 'main' is not a 40-hex commit"),
        (f"../up@{COMMIT}", "ADVISOR_INCEPTION_HUB: hf repo must look like"),
    ],
)
def test_a_hub_mirror_in_the_environment_must_name_a_commit(
    cache, server, monkeypatch, value, message
):
    monkeypatch.setattr(inception, "INCEPTION_URLS", ())
    monkeypatch.setenv("ADVISOR_INCEPTION_HUB", value)
    with pytest.raises(AdvisorError, match=message):
        extractor_protocol("inception", progress=False)


def test_a_bad_hub_mirror_in_the_environment_does_not_stop_the_official_download(
    cache, server, monkeypatch
):
    monkeypatch.setenv("ADVISOR_INCEPTION_HUB", "not a mirror")
    assert extractor_protocol("inception", progress=False).comparable  # the URL served it
    assert len(server.requests) == 1
