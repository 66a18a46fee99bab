"""Feature pipeline: protocol, feature files, and the content-keyed cache."""

import dataclasses
import os

import numpy as np
import pytest

import advisor.features.extract as extract
import advisor.features.pipeline as pipeline
from advisor.cache import cache_dir
from advisor.errors import AdvisorError
from advisor.features.base import FeatureProtocol
from advisor.features.pipeline import (
    FeatureOptions,
    FeatureSet,
    compute_features,
    features_of,
    load_features,
    save_features,
)
from tests.conftest import write_images

LITE = FeatureOptions(extractor="efficientnet-lite0", device="cpu", workers=0, progress=False)


def _snapshot(folder):
    return sorted((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in folder.rglob("*"))


def test_features_shape_protocol_and_names(tmp_path):
    folder = write_images(tmp_path / "imgs", 5)
    before = _snapshot(folder)
    fs = compute_features(folder, options=LITE)
    assert fs.features.shape == (5, 1280) and fs.features.dtype == np.float32
    assert fs.names == tuple(f"img_{i:03d}.png" for i in range(5))
    assert fs.protocol is not None and fs.protocol.extractor == "efficientnet-lite0"
    assert fs.protocol.precision == "fp32" and fs.protocol.input_size == 224
    assert not fs.from_cache
    assert _snapshot(folder) == before  # nothing written into the user's folder


def test_second_run_decodes_nothing_and_builds_no_network(tmp_path, monkeypatch):
    folder = write_images(tmp_path / "imgs", 4)
    first = compute_features(folder, options=LITE)

    def forbidden(*args, **kwargs):
        raise AssertionError("the cached run must not decode or build a network")

    # Networks are built in the one extraction path (advisor.features.extract).
    monkeypatch.setattr(extract, "get_extractor", forbidden)
    monkeypatch.setattr(pipeline, "iter_batches", forbidden)
    second = compute_features(folder, options=LITE)
    assert second.from_cache
    np.testing.assert_array_equal(first.features, second.features)
    assert second.names == first.names


def test_cache_is_keyed_by_content_and_protocol(tmp_path, monkeypatch):
    folder = write_images(tmp_path / "imgs", 3)
    compute_features(folder, options=LITE)
    # same bytes under another path: still a hit (content, not path)
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert compute_features(moved, options=LITE).from_cache
    # one changed byte: a miss
    write_images(tmp_path / "other", 1, seed=9)
    (moved / "img_001.png").write_bytes((tmp_path / "other" / "img_000.png").read_bytes())
    assert not compute_features(moved, options=LITE).from_cache
    # another precision: a miss
    bf16 = dataclasses.replace(LITE, precision="bf16")
    assert not compute_features(moved, options=bf16).from_cache


def test_no_cache_writes_nothing(tmp_path):
    folder = write_images(tmp_path / "imgs", 2)
    no_cache = dataclasses.replace(LITE, cache=False)
    compute_features(folder, options=no_cache)
    assert list(cache_dir("features").iterdir()) == []


def test_damaged_cache_entry_is_recomputed(tmp_path):
    folder = write_images(tmp_path / "imgs", 2)
    first = compute_features(folder, options=LITE)
    cache_files = list(cache_dir("features").glob("*.npz"))
    assert len(cache_files) == 1
    cache_files[0].write_bytes(b"garbage")
    again = compute_features(folder, options=LITE)
    assert not again.from_cache
    np.testing.assert_allclose(again.features, first.features, rtol=0, atol=0)


def test_skips_are_reported_and_cached(tmp_path):
    folder = write_images(tmp_path / "imgs", 3)
    (folder / "broken.png").write_bytes(b"")
    fs = compute_features(folder, options=LITE)
    assert len(fs) == 3 and [s.path for s in fs.skipped] == ["broken.png"]
    cached = compute_features(folder, options=LITE)
    assert cached.from_cache and [s.path for s in cached.skipped] == ["broken.png"]
    strict = dataclasses.replace(LITE, strict=True)
    with pytest.raises(AdvisorError, match="broken.png"):
        compute_features(folder, options=strict)


def test_feature_file_roundtrip(tmp_path):
    fs = FeatureSet(
        features=np.arange(12, dtype=np.float32).reshape(3, 4),
        protocol=FeatureProtocol(
            extractor="x",
            weights_sha256="0" * 64,
            comparable=False,
            input_size=8,
            resize="r",
            precision="fp32",
            dim=4,
        ),
        names=("a.png", "b.png", "c.png"),
        source="somewhere",
    )
    path = save_features(tmp_path / "f.npz", fs)
    back = load_features(path)
    np.testing.assert_array_equal(back.features, fs.features)
    assert back.protocol == fs.protocol and back.names == fs.names
    assert features_of(path).protocol == fs.protocol
    with pytest.raises(AdvisorError, match=".npz"):
        save_features(tmp_path / "f.txt", fs)
    # what load_features would refuse is never written
    assert fs.protocol is not None
    wrong_dim = dataclasses.replace(fs, protocol=dataclasses.replace(fs.protocol, dim=5))
    with pytest.raises(AdvisorError, match="dim 5"):
        save_features(tmp_path / "g.npz", wrong_dim)
    assert not (tmp_path / "g.npz").exists()


def test_half_feature_file_is_half_the_size_and_rounds_within_float16(tmp_path):
    rng = np.random.default_rng(0)
    fs = FeatureSet(features=rng.gamma(2.0, 1.0, (200, 64)).astype(np.float32), protocol=None)
    full = save_features(tmp_path / "full.npz", fs)
    half = save_features(tmp_path / "half.npz", fs, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = load_features(half).features
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, fs.features, rtol=2**-11, atol=0)
    assert not np.array_equal(back, fs.features)  # it really was rounded
    too_big = FeatureSet(features=np.full((2, 2), 1e6, np.float32), protocol=None)
    with pytest.raises(AdvisorError, match="float16"):
        save_features(tmp_path / "big.npz", too_big, half=True)


def test_plain_npy_and_bad_feature_files(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((4, 3), dtype=np.float64))
    fs = load_features(tmp_path / "ok.npy")
    assert fs.features.dtype == np.float32 and fs.protocol is None
    np.save(tmp_path / "flat.npy", np.ones(4))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "nofeat.npz", other=np.ones(3))
    for name, pattern in [
        ("flat.npy", "2-D float"),
        ("obj.npy", "not a readable feature file"),
        ("junk.npz", "not a readable feature file"),
        ("nofeat.npz", "no 'features'"),
        ("missing.npz", "not found"),
    ]:
        with pytest.raises(AdvisorError, match=pattern) as info:
            load_features(tmp_path / name)
        assert "\n" not in str(info.value)
