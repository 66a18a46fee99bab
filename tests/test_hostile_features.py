"""Hostile input to `features` and `compare`: option values, outputs, feature files, devices.

Each test drives advisor the way a user (or an attacker's file) would and checks the promise:
one line of error before any work, outputs complete or absent, no stray files, never a
traceback, a hang, unbounded memory or NaN in JSON.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pathlib
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import advisor.cache
import advisor.cli
import advisor.compare
import advisor.features.pipeline as pipeline
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.features.base import FeatureProtocol
from advisor.features.pipeline import FeatureSet, load_features
from tests.bounded import run_bounded
from tests.conftest import write_images

PROTOCOL = {
    "extractor": "efficientnet-lite0",
    "weights_sha256": "0" * 64,
    "comparable": False,
    "input_size": 224,
    "resize": "test",
    "precision": "fp32",
    "dim": 8,
}
LITE = ["--extractor", "efficientnet-lite0", "--device", "cpu", "--workers", "0", "-q"]


def run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def files_in(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def feature_set(rows: int = 12, dim: int = 8) -> FeatureSet:
    rng = np.random.default_rng(rows)
    return FeatureSet(
        features=rng.normal(size=(rows, dim)).astype(np.float32),
        protocol=FeatureProtocol(**dict(PROTOCOL, dim=dim)),
        names=tuple(f"img_{i:03d}.png" for i in range(rows)),
        source="imgs",
    )


@pytest.fixture
def no_work(monkeypatch):
    """Any image decoding or feature extraction fails the test: checks must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(pipeline, "compute_features", forbidden)
    monkeypatch.setattr(pipeline, "open_image_set", forbidden)
    monkeypatch.setattr(advisor.compare, "compute_features", forbidden)


@pytest.fixture
def fake_features(monkeypatch):
    """`features` computes a small fixed feature set instantly."""
    monkeypatch.setattr(
        pipeline, "compute_features", lambda source, options, on_progress=None: feature_set()
    )


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(advisor.cli, "_shown_warnings", set())


def full_disk(monkeypatch, *, after_bytes: int = 100) -> None:
    """Every .npy written into an .npz gets ``after_bytes`` out, then ENOSPC."""

    def write_array(fp, array, *args, **kwargs):
        fp.write(b"\x93NUMPY" + b"x" * after_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", write_array)


def deny_writes_under(monkeypatch, root: pathlib.Path) -> None:
    """What a read-only folder does to a non-root user (chmod is no use when tests run as root):
    creating a folder or opening a file for writing under ``root`` is refused."""
    real_mkdir, real_open = os.mkdir, os.open
    root = root.resolve()
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def inside(path) -> bool:
        path = pathlib.Path(os.fsdecode(path)).resolve()
        return path == root or root in path.parents

    def denied(path) -> PermissionError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def mkdir(path, *args, **kwargs):
        if inside(path):
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & writing and inside(path):
            raise denied(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


# --- 1. option values: bounded, and checked before any work ---------------------------------


@pytest.mark.parametrize(
    "option, value, pattern",
    [
        ("--bootstrap", 10**9, "bootstrap"),
        ("--kid-subsets", 10**9, "kid_subsets"),
        ("--kid-subset-size", 10**30, "kid_subset_size"),
        ("--seed", -1, "seed"),
        ("--seed", 2**32, "seed"),
        ("--seed", 2**63 + 1, "seed"),
    ],
)
def test_out_of_range_compare_options_are_one_line_before_any_image_is_read(
    tmp_path, no_work, option, value, pattern
):
    a, b = write_images(tmp_path / "a", 3), write_images(tmp_path / "b", 3)
    line = one_line_error(run("compare", a, b, option, value, *LITE))
    assert pattern in line


def test_metric_options_bounds_are_enforced_by_the_library_dataclass():
    from advisor.metrics import MetricOptions
    from advisor.metrics.report import MAX_BOOTSTRAP, MAX_KID_SUBSETS, MAX_SEED

    MetricOptions(bootstrap=MAX_BOOTSTRAP, kid_subsets=MAX_KID_SUBSETS, seed=MAX_SEED)
    for bad in (
        {"bootstrap": MAX_BOOTSTRAP + 1},
        {"kid_subsets": MAX_KID_SUBSETS + 1},
        {"seed": MAX_SEED + 1},
        {"seed": -1},
        {"seed": 1.5},
    ):
        with pytest.raises(ValueError):
            MetricOptions(**bad)


def test_compare_request_and_feature_options_validate_on_construction():
    from advisor.compare import CompareRequest
    from advisor.features.pipeline import FeatureOptions

    with pytest.raises(AdvisorError, match="seed"):
        CompareRequest(reference="a", candidate="b", seed=-5)
    with pytest.raises(AdvisorError, match="resnet9000"):
        FeatureOptions(extractor="resnet9000")
    with pytest.raises(AdvisorError, match="available"):
        FeatureOptions(device="meta")


# --- 2. outputs are complete or absent ------------------------------------------------------


def test_features_out_with_an_upper_case_suffix_is_a_complete_file_and_nothing_else(
    tmp_path, fake_features
):
    folder = write_images(tmp_path / "imgs", 2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("features", folder, "--out", out_dir / "F.NPZ", *LITE)
    assert result.exit_code == 0, result.output
    assert files_in(out_dir) == ["F.NPZ"]
    back = load_features(out_dir / "F.NPZ")
    np.testing.assert_array_equal(back.features, feature_set().features)


def test_features_refuses_an_existing_out_before_any_work_unless_overwrite(
    tmp_path, monkeypatch, no_work
):
    folder = write_images(tmp_path / "imgs", 2)
    out = tmp_path / "f.npz"
    out.write_bytes(b"the user's file")
    line = one_line_error(run("features", folder, "--out", out, *LITE))
    assert "--overwrite" in line and str(out) in line
    assert out.read_bytes() == b"the user's file"

    monkeypatch.setattr(
        pipeline, "compute_features", lambda source, options, on_progress=None: feature_set()
    )
    result = run("features", folder, "--out", out, "--overwrite", *LITE)
    assert result.exit_code == 0, result.output
    assert load_features(out).features.shape == (12, 8)


def test_features_out_under_a_file_is_one_line_before_any_work(tmp_path, no_work):
    folder = write_images(tmp_path / "imgs", 2)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    before = files_in(tmp_path)
    line = one_line_error(run("features", folder, "--out", tmp_path / "notes.txt/f.npz", *LITE))
    assert "notes.txt" in line and "not a folder" in line
    assert files_in(tmp_path) == before


def test_features_out_in_a_folder_that_is_not_writable_is_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, fake_features
):
    folder = write_images(tmp_path / "imgs", 2)
    locked = tmp_path / "locked"
    locked.mkdir()
    deny_writes_under(monkeypatch, locked)
    line = one_line_error(run("features", folder, "--out", locked / "f.npz", *LITE))
    assert "f.npz" in line and "Permission denied" in line
    assert files_in(locked) == []


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path, fake_features):
    folder = write_images(tmp_path / "imgs", 2)
    old = os.umask(0o022)
    try:
        result = run("features", folder, "--out", tmp_path / "f.npz", *LITE)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.npz").stat().st_mode & 0o777 == 0o644


def test_a_full_disk_on_the_output_is_one_line_and_leaves_no_partial_or_temp_file(
    tmp_path, monkeypatch, fake_features
):
    folder = write_images(tmp_path / "imgs", 2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    full_disk(monkeypatch)
    line = one_line_error(run("features", folder, "--out", out_dir / "f.npz", *LITE))
    assert "No space left on device" in line
    assert files_in(out_dir) == []


def test_a_full_cache_disk_warns_once_and_the_run_goes_on(tmp_path, monkeypatch, fresh_warnings):
    a = write_images(tmp_path / "a", 6, seed=0)
    b = write_images(tmp_path / "b", 6, seed=1, offset=40)
    full_disk(monkeypatch)  # compare writes nothing but cache entries
    result = run(
        "compare", a, b, "--json", "--bootstrap", "0", "--kid-subset-size", "6", "--k-dc", "3",
        *LITE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "feature cache" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], result.output
    assert json.loads(result.stdout)["sources"]["candidate"]["n"] == 6
    assert files_in(advisor.cache.cache_root() / "features") == []


@pytest.mark.parametrize("how", ["a file", "not writable"])
@pytest.mark.parametrize("no_cache", [False, True])
def test_an_unusable_advisor_cache_never_stops_a_run_that_does_not_need_it(
    tmp_path, monkeypatch, fresh_warnings, how, no_cache
):
    cache = tmp_path / "cache"
    if how == "a file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        deny_writes_under(monkeypatch, cache)
    monkeypatch.setenv("ADVISOR_CACHE", str(cache))
    folder = write_images(tmp_path / "imgs", 2)
    flags = ["--no-cache"] if no_cache else []
    result = run("features", folder, "--out", tmp_path / "f.npz", *flags, *LITE)
    assert result.exit_code == 0, result.output
    assert load_features(tmp_path / "f.npz").features.shape == (2, 1280)
    warned = "feature cache not used" in result.output
    assert warned != no_cache, result.output  # --no-cache: the cache is not even looked at


def test_an_advisor_cache_that_is_a_file_is_one_line_when_the_cache_is_needed(
    tmp_path, monkeypatch
):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))
    folder = write_images(tmp_path / "imgs", 2)
    # the FID Inception weights live in the cache: without one there is nothing to load
    line = one_line_error(run("features", folder, "--out", tmp_path / "f.npz", "--offline"))
    assert "ADVISOR_CACHE" in line
    assert not (tmp_path / "f.npz").exists()


# --- 3. feature files are validated, not trusted --------------------------------------------


def _npz(path: pathlib.Path, **arrays: np.ndarray) -> pathlib.Path:
    np.savez(path, **arrays)
    return path


def _meta(value: object) -> np.ndarray:
    return np.array(json.dumps(value))


def test_an_npz_named_npy_and_an_npy_named_npz_are_one_line_errors(tmp_path):
    good = np.random.default_rng(0).normal(size=(20, 8))
    np.save(tmp_path / "ok.npy", good)
    with open(tmp_path / "archive.npy", "wb") as f:
        np.savez(f, features=good)
    with open(tmp_path / "array.npz", "wb") as f:
        np.save(f, good)
    for name, pattern in [("archive.npy", "rename it to .npz"), ("array.npz", "rename it to .npy")]:
        line = one_line_error(run("compare", tmp_path / "ok.npy", tmp_path / name))
        assert pattern in line


@pytest.mark.parametrize(
    "meta, pattern",
    [
        ([1, 2, 3], "must be a JSON object, got a list"),
        (42, "must be a JSON object, got a number"),
        ("text", "must be a JSON object, got a string"),
        ({"protocol": ["inception"]}, "'protocol' must be an object"),
        ({"protocol": dict(PROTOCOL, extractor=7)}, "'extractor' must be str"),
        ({"protocol": dict(PROTOCOL, dim="8")}, "'dim' must be int"),
        ({"protocol": dict(PROTOCOL, dim=True)}, "'dim' must be int"),
        ({"protocol": dict(PROTOCOL, comparable="yes")}, "'comparable' must be bool"),
        ({"protocol": {"extractor": "inception"}}, "lacks"),
        ({"protocol": dict(PROTOCOL, dim=2048)}, "dim 2048"),
        ({"names": 5}, "'names' must be a list of strings"),
        ({"names": ["a.png"]}, "names 1 images"),
        ({"skipped": [{"path": "x.png"}]}, "'skipped' entries"),
        ({"skipped": "x"}, "'skipped' must be a list"),
        ({"source": ["x"]}, "'source' must be a string"),
        ({"format": "advisor-features/99"}, "unknown feature file format"),
    ],
)
def test_meta_of_the_wrong_json_shape_is_a_one_line_error(tmp_path, meta, pattern):
    path = _npz(tmp_path / "f.npz", features=np.ones((4, 8), np.float32), meta=_meta(meta))
    with pytest.raises(AdvisorError, match=pattern) as info:
        load_features(path)
    assert "\n" not in str(info.value)


def test_meta_that_is_not_json_text_is_a_one_line_error(tmp_path):
    for meta in (np.array("{not json"), np.array([1, 2]), np.array("[" * 100_000)):
        path = _npz(tmp_path / "f.npz", features=np.ones((4, 8), np.float32), meta=meta)
        with pytest.raises(AdvisorError, match="meta") as info:
            load_features(path)
        assert "\n" not in str(info.value)


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


@pytest.mark.parametrize("claim", [(10**15, 2048), (2**28, 2)], ids=["exabytes", "2GiB"])
@pytest.mark.parametrize("container", ["npy", "npz"])
def test_a_header_claiming_more_than_the_file_holds_is_one_line_under_a_memory_cap(
    tmp_path, claim, container
):
    payload = _npy_header(claim) + bytes(64)
    path = tmp_path / f"huge.{container}"
    if container == "npy":
        path.write_bytes(payload)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("features.npy", payload)
    result = run_bounded(
        f"""
        from advisor.errors import AdvisorError
        from advisor.features.pipeline import load_features
        try:
            load_features({str(path)!r})
        except AdvisorError as err:
            print("ERROR:", err)
        """,
        imports="import torch, advisor, advisor.features.pipeline",
        budget_mb=256,
        timeout=60,
    )
    assert not result.timed_out
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ERROR:" in result.stdout and "claims" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_a_deflated_member_inflating_beyond_any_real_feature_file_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, features=np.zeros((2048, 2048), np.float32))  # 16 MB -> ~16 kB
    with pytest.raises(AdvisorError, match="inflate"):
        load_features(path)


class _Boom:
    """Unpickling this would create a file next to the feature file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty((2, 2), dtype=object)
    evil[:] = _Boom(str(marker))
    for name in ("evil.npy", "evil.npz"):
        path = tmp_path / name
        if name.endswith(".npy"):
            np.save(path, evil, allow_pickle=True)
        else:
            np.savez(path, features=evil)
        with pytest.raises(AdvisorError, match="Python objects"):
            load_features(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.ones((4, 8, 2), np.float32), "2-D float"),
        (np.ones(8, np.float32), "2-D float"),
        (np.ones((4, 8), np.int64), "2-D float"),
        (np.ones((4, 8), np.complex64), "2-D float"),
        (np.ones((4, 8), dtype="f4,f4"), "2-D float"),
        (np.ones((4, 8), dtype="U3"), "2-D float"),
        (np.ones((4, 0), np.float32), "no columns"),
        (np.array([[1.0, np.nan], [0.0, 1.0]], np.float32), "NaN, inf"),
        (np.array([[1.0, 2.0], [np.inf, 1.0]], np.float64), "first at row 1"),
        (np.array([[1.0, 2.0], [1e300, 1.0]], np.float64), "beyond float32"),
    ],
)
def test_features_that_are_not_finite_2d_floats_are_refused_when_read(tmp_path, array, pattern):
    for path in (tmp_path / "f.npy", tmp_path / "f.npz"):
        if path.suffix == ".npy":
            np.save(path, array)
        else:
            np.savez(path, features=array)
        with pytest.raises(AdvisorError, match=pattern) as info:
            load_features(path)
        assert "\n" not in str(info.value)


def test_a_feature_file_that_is_a_fifo_or_a_folder_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    (tmp_path / "folder.npy").mkdir()
    for name in ("pipe.npz", "folder.npy"):
        with pytest.raises(AdvisorError, match="not a regular file"):
            load_features(tmp_path / name)  # and no hang on the FIFO


@pytest.mark.parametrize("replacement", ["npy", "fifo", "json", "folder"])
def test_a_cache_entry_replaced_by_another_file_type_is_a_miss_and_is_rewritten(
    tmp_path, fresh_warnings, replacement
):
    folder = write_images(tmp_path / "imgs", 2)
    options = pipeline.FeatureOptions(
        extractor="efficientnet-lite0", device="cpu", workers=0, progress=False
    )
    first = pipeline.compute_features(folder, options=options)
    (entry,) = (advisor.cache.cache_root() / "features").iterdir()
    entry.unlink()
    if replacement == "npy":
        with open(entry, "wb") as f:
            np.save(f, np.ones((2, 1280), np.float32))
    elif replacement == "fifo":
        os.mkfifo(entry)
    elif replacement == "json":
        entry.write_text('{"features": [1, 2]}')
    else:
        entry.mkdir()
    if replacement == "folder":  # a folder advisor did not make is never deleted: warn, go on
        with pytest.warns(UserWarning, match="feature cache not written"):
            again = pipeline.compute_features(folder, options=options)
    else:
        again = pipeline.compute_features(folder, options=options)
    assert not again.from_cache
    np.testing.assert_array_equal(again.features, first.features)
    if replacement != "folder":
        assert pipeline.compute_features(folder, options=options).from_cache


def test_a_cache_entry_replaced_by_another_sets_valid_features_is_a_miss(tmp_path):
    options = pipeline.FeatureOptions(
        extractor="efficientnet-lite0", device="cpu", workers=0, progress=False
    )
    small = write_images(tmp_path / "small", 2)
    other = write_images(tmp_path / "other", 3, seed=5)
    first = pipeline.compute_features(small, options=options)
    (entry,) = (advisor.cache.cache_root() / "features").iterdir()
    pipeline.compute_features(other, options=options)
    foreign = next(p for p in (advisor.cache.cache_root() / "features").iterdir() if p != entry)
    entry.write_bytes(foreign.read_bytes())  # a valid file with the same protocol, 3 rows
    again = pipeline.compute_features(small, options=options)
    assert not again.from_cache and len(again.features) == 2
    np.testing.assert_array_equal(again.features, first.features)


def test_kid_of_huge_float32_features_is_finite_and_json_never_holds_nan(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", (rng.normal(size=(40, 8)) * 1e20).astype(np.float32))
    np.save(tmp_path / "b.npy", (rng.normal(size=(30, 8)) * 1e20).astype(np.float32))
    result = run(
        "compare", tmp_path / "a.npy", tmp_path / "b.npy", "--json", "--bootstrap", "20",
        "--kid-subset-size", "20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in --json output")

    out = json.loads(result.stdout, parse_constant=refuse)
    assert np.isfinite(out["kid"]) and np.isfinite(out["kid_std"])


def test_features_too_large_for_float64_metrics_are_a_one_line_error_not_nan():
    from advisor.metrics import MetricOptions, compare_features

    rng = np.random.default_rng(0)
    options = MetricOptions(bootstrap=0, kid_subset_size=20)
    for scale in (1e60, 1e160):  # KID's cubes, then FID's covariances, leave float64's range
        x, y = rng.normal(size=(40, 8)) * scale, rng.normal(size=(30, 8)) * scale
        with pytest.raises(ValueError, match="rescale the features") as info:
            compare_features(x, y, options=options)
        assert "\n" not in str(info.value)


def test_a_report_with_a_non_finite_number_is_refused(monkeypatch):
    from advisor.metrics import MetricOptions, compare_features, frechet

    monkeypatch.setattr(frechet, "fid", lambda x, y: float("nan"))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="fid is not finite"):
        compare_features(
            rng.normal(size=(20, 4)),
            rng.normal(size=(20, 4)),
            options=MetricOptions(bootstrap=0, kid_subset_size=10),
        )


# --- 4. devices -----------------------------------------------------------------------------


def _unavailable_devices() -> list[str]:
    names = ["meta", "tpu", "cuda:99", "cpu:1", "xla"]
    if not torch.cuda.is_available():
        names.append("cuda")
    return names


@pytest.mark.parametrize("device", _unavailable_devices())
def test_an_unusable_device_is_one_line_naming_what_is_available_before_any_work(
    tmp_path, no_work, device
):
    folder = write_images(tmp_path / "imgs", 2)
    for args in (
        ["features", folder, "--out", tmp_path / "f.npz"],
        ["compare", folder, folder],
    ):
        line = one_line_error(run(*args, "--device", device, "--workers", "0"))
        assert "available: cpu" in line


def test_generate_checks_its_device_with_the_same_rule(tmp_path):
    line = one_line_error(
        run("generate", "no-such-checkpoint", "--seeds", "0", "--out", tmp_path, "--device", "meta")
    )
    assert "available: cpu" in line
    assert files_in(tmp_path) == []


def test_resolve_device_names_the_visible_cuda_devices(monkeypatch):
    from advisor.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(AdvisorError, match="available: cpu, cuda:0, cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(AdvisorError, match="no CUDA device is visible"):
        resolve_device("cuda")


# --- 5. small things ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--extractor", "inception"], "--extractor"),
        (["--precision", "bf16"], "--precision"),
        (["--extractor-weights", "w.pth"], "--extractor-weights"),
    ],
)
def test_protocol_options_with_two_feature_files_are_refused_not_ignored(tmp_path, flags, named):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(20, 8)))
    np.save(tmp_path / "b.npy", rng.normal(size=(20, 8)))
    line = one_line_error(run("compare", tmp_path / "a.npy", tmp_path / "b.npy", *flags))
    assert named in line and "feature files" in line


def test_an_extractor_that_contradicts_a_feature_file_fails_before_any_image_is_read(
    tmp_path, no_work
):
    from advisor.features.pipeline import save_features

    save_features(tmp_path / "a.npz", feature_set())  # efficientnet-lite0 features
    folder = write_images(tmp_path / "imgs", 2)
    line = one_line_error(
        run("compare", tmp_path / "a.npz", folder, "--extractor", "inception", "--device", "cpu")
    )
    assert "efficientnet-lite0" in line and "inception" in line


class _NotATensor:
    pass


def test_a_weights_file_with_python_objects_never_gets_torchs_weights_only_false_advice(
    tmp_path,
):
    from advisor.features import get_extractor

    path = tmp_path / "weights.pth"
    torch.save({"state": _NotATensor()}, path)
    with pytest.warns(UserWarning), pytest.raises(AdvisorError) as info:
        get_extractor("efficientnet-lite0", weights=path)
    message = str(info.value)
    assert "weights_only" not in message and "can still be loaded" not in message
    assert "\x1b" not in message and "\n" not in message
    assert "never loads" in message
