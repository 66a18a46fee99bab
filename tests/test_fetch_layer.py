"""The fetch layer's memo, the converted-checkpoint cache, G_ema-only loading, and the
"unverified" label for records without a pinned hash."""

import hashlib
import json
import os
import time

import pytest
import safetensors
import torch

import advisor.checkpoints.importers as importers
import advisor.download as download
from advisor.cache import cache_dir
from advisor.checkpoints import CheckpointRecord, load_checkpoint, read_checkpoint, status
from advisor.checkpoints.converted import converted_path
from advisor.download import forget_hashes, sha256_file
from advisor.features.samples import checkpoint_sha256
from advisor.networks import z_from_seeds
from tests.test_checkpoints_fixtures import tiny_networks
from tests.test_checkpoints_format import _checkpoint


@pytest.fixture
def hash_calls(monkeypatch):
    """Counts the memo's real reads of file bytes, by file name."""
    forget_hashes()
    calls: list[str] = []
    real = download._hash_bytes

    def counted(path):
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(download, "_hash_bytes", counted)
    yield calls
    forget_hashes()


def _aged(path, seconds=60.0):
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def test_a_file_is_hashed_once_per_process(tmp_path, hash_calls):
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 1000)
    _aged(path)
    digests = {sha256_file(path), sha256_file(path), sha256_file(str(path))}
    assert digests == {hashlib.sha256(b"x" * 1000).hexdigest()}
    assert hash_calls == ["w.bin"]


def test_a_changed_size_or_mtime_is_hashed_again(tmp_path, hash_calls):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    _aged(path, 60)
    assert sha256_file(path) == hashlib.sha256(b"a" * 100).hexdigest()
    path.write_bytes(b"b" * 101)  # new size
    _aged(path, 60)
    assert sha256_file(path) == hashlib.sha256(b"b" * 101).hexdigest()
    path.write_bytes(b"c" * 101)  # same size, new mtime
    _aged(path, 50)
    assert sha256_file(path) == hashlib.sha256(b"c" * 101).hexdigest()
    assert sha256_file(path, fresh=True) == hashlib.sha256(b"c" * 101).hexdigest()
    assert len(hash_calls) == 4  # three versions, plus the explicit fresh re-read


def test_a_file_written_just_now_is_not_memoised(tmp_path, hash_calls):
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"new")
    sha256_file(path)
    sha256_file(path)
    assert len(hash_calls) == 2  # a same-tick rewrite would keep the stamp: no memo yet


def test_loading_and_ranking_key_hash_a_checkpoint_once(tmp_path, hash_calls):
    from advisor.checkpoints import save_checkpoint

    json_path = save_checkpoint(tmp_path / "tiny", _checkpoint())
    tensors = _aged(json_path.with_suffix(".safetensors"))
    forget_hashes()
    hash_calls.clear()
    load_checkpoint(json_path, networks=())
    checkpoint_sha256(json_path)
    load_checkpoint(json_path)
    assert hash_calls == [tensors.name]


def _state_dict_source(tmp_path, name="source.pt"):
    g, g_ema, d = tiny_networks(seed=4)
    path = tmp_path / name
    torch.save({"G": g.state_dict(), "D": d.state_dict(), "G_ema": g_ema.state_dict()}, path)
    return _aged(path), g_ema


def test_a_converted_source_is_cached_by_its_sha256(tmp_path, monkeypatch):
    path, g_ema = _state_dict_source(tmp_path)
    first, report = read_checkpoint(path, name="one", networks=())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (converted_path(sha).parent / f"{sha}.safetensors").is_file()

    def must_not_convert(*args, **kwargs):
        raise AssertionError("the importer ran on a cached source")

    monkeypatch.setattr(importers, "_convert", must_not_convert)
    monkeypatch.setattr(importers, "_detect", must_not_convert)
    copy = tmp_path / "network-snapshot-000120.pt"
    copy.write_bytes(path.read_bytes())
    _aged(copy)
    again, report2 = read_checkpoint(copy, networks=())
    assert again.metadata.name == copy.stem and first.metadata.name == "one"
    assert again.metadata.provenance.source_file == copy.name
    assert again.metadata.extra == first.metadata.extra == {}
    assert (report2.format, report2.source_sha256, report2.notes) == (
        report.format,
        report.source_sha256,
        report.notes,
    )
    assert [r.to_dict() for r in report2.networks] == [r.to_dict() for r in report.networks]
    assert again.G is None and again.D is None
    z = z_from_seeds([0, 1], 8)
    with torch.no_grad():
        assert torch.equal(again.G_ema(z), g_ema(z))


def test_a_partial_conversion_is_completed_when_more_networks_are_asked(tmp_path):
    path, _ = _state_dict_source(tmp_path)
    read_checkpoint(path, networks=())
    full, report = read_checkpoint(path)
    assert full.networks == ("G_ema", "G", "D") and report.complete
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_checkpoint(converted_path(sha)).networks == ("G_ema", "G", "D")


def test_a_damaged_cached_conversion_is_replaced(tmp_path):
    path, g_ema = _state_dict_source(tmp_path)
    read_checkpoint(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    tensors = converted_path(sha).with_name(sha + ".safetensors")
    tensors.write_bytes(b"damaged")
    again, _ = read_checkpoint(path)
    z = z_from_seeds([3], 8)
    with torch.no_grad():
        assert torch.equal(again.G_ema(z), g_ema(z))
    assert load_checkpoint(converted_path(sha)).networks == ("G_ema", "G", "D")


def test_sampling_reads_only_g_ema_tensors(tmp_path, monkeypatch):
    from advisor.checkpoints import save_checkpoint

    json_path = save_checkpoint(tmp_path / "tiny", _checkpoint())
    read: list[str] = []
    real_open = safetensors.safe_open

    class Spy:
        def __init__(self, *args, **kwargs):
            self._inner = real_open(*args, **kwargs)

        def __enter__(self):
            self._file = self._inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

        def keys(self):
            return self._file.keys()

        def get_tensor(self, key):
            read.append(key)
            return self._file.get_tensor(key)

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    ckpt = load_checkpoint(json_path, networks=())
    assert ckpt.networks == ("G_ema",)
    assert read and all(k.startswith("G_ema.") for k in read)
    read.clear()
    load_checkpoint(json_path)
    assert {k.split(".")[0] for k in read} == {"G_ema", "G", "D"}


def _record(**fields):
    base = dict(name="demo", format="nvlabs-pkl", resolution=64, source_dataset="d",
                licence="l", trust="official", url="https://example.invalid/demo.pkl")  # fmt: skip
    return CheckpointRecord(**(base | fields))


def test_official_records_without_a_pinned_hash_are_unverified():
    unpinned = _record()
    assert unpinned.verification == "unverified"
    assert unpinned.to_dict()["verification"] == "unverified"
    assert status(unpinned).verification == "unverified"
    pinned = _record(sha256="a" * 64)
    assert pinned.verification == "verified" and status(pinned).verification == "verified"


def test_a_recorded_hash_is_still_unverified():
    record = _record()
    folder = cache_dir("checkpoints")
    entry = {record.location: {"name": "demo", "sha256": "b" * 64}}
    (folder / "recorded-sha256.json").write_text(json.dumps(entry))
    st = status(record)
    assert st.hash_status == "recorded" and st.verification == "unverified"
