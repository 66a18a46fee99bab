"""The command line: outputs equal the oracles, errors are one line, never a traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from advisor.cli import main
from tests.conftest import write_images


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_line_error(result):
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("Error")]
    assert len(error_lines) == 1, result.output
    return error_lines[0]


@pytest.fixture
def feature_files(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 16))
    cand = rng.normal(0.3, 1.2, size=(250, 16))
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "cand.npy", cand)
    return tmp_path / "ref.npy", tmp_path / "cand.npy", ref, cand


def test_compare_json_equals_oracles(feature_files):
    from prdc import compute_prdc
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_kid import kid_features_to_metric

    ref_path, cand_path, ref, cand = feature_files
    result = run(
        "compare",
        ref_path,
        cand_path,
        "--json",
        "--bootstrap",
        "0",
        "--kid-subset-size",
        "200",
        "--kid-subsets",
        "20",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "protocol"):
        assert key in out
    fid = calculate_frechet_distance(
        ref.mean(0), np.cov(ref, rowvar=False), cand.mean(0), np.cov(cand, rowvar=False)
    )
    assert out["fid"] == pytest.approx(fid, rel=1e-6)
    kid = kid_features_to_metric(
        torch.from_numpy(ref),
        torch.from_numpy(cand),
        kid_subsets=20,
        kid_subset_size=200,
        rng_seed=3,
        verbose=False,
    )
    assert out["kid"] == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-6)
    assert out["kid_std"] == pytest.approx(kid["kernel_inception_distance_std"], rel=1e-6)
    pr = compute_prdc(real_features=ref, fake_features=cand, nearest_k=3)
    dc = compute_prdc(real_features=ref, fake_features=cand, nearest_k=5)
    assert out["precision"] == pytest.approx(pr["precision"])
    assert out["recall"] == pytest.approx(pr["recall"])
    assert out["density"] == pytest.approx(dc["density"])
    assert out["coverage"] == pytest.approx(dc["coverage"])


def test_compare_direction(tmp_path):
    """A tight candidate cluster inside a wide reference: high precision, low recall."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "wide.npy", rng.normal(size=(400, 8)))
    np.save(tmp_path / "tight.npy", rng.normal(scale=0.1, size=(400, 8)))
    out = json.loads(
        run(
            "compare",
            tmp_path / "wide.npy",
            tmp_path / "tight.npy",
            "--json",
            "--bootstrap",
            "0",
            "--kid-subset-size",
            "100",
        ).stdout
    )
    assert out["precision"] > 0.9 and out["recall"] < 0.3


def test_text_output_has_intervals_and_protocol(feature_files):
    ref_path, cand_path, _, _ = feature_files
    result = run("compare", ref_path, cand_path, "--bootstrap", "50", "--kid-subset-size", "100")
    assert result.exit_code == 0, result.output
    assert "95% CI" in result.stdout and "protocol:" in result.stdout
    assert "precision" in result.stdout and "recall" in result.stdout


def test_features_then_compare_on_images(tmp_path):
    a = write_images(tmp_path / "a", 6, seed=0)
    b = write_images(tmp_path / "b", 6, seed=1, offset=40)
    out = tmp_path / "a.npz"
    result = run(
        "features",
        a,
        "--out",
        out,
        "--extractor",
        "efficientnet-lite0",
        "--device",
        "cpu",
        "--workers",
        "0",
        "-q",
    )
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert data["features"].shape == (6, 1280)
        assert json.loads(str(data["meta"]))["protocol"]["extractor"] == "efficientnet-lite0"
    # the .npz's protocol decides the extractor for the image side when none is named
    result = run(
        "compare",
        out,
        b,
        "--json",
        "--bootstrap",
        "0",
        "--kid-subset-size",
        "6",
        "--k-dc",
        "3",
        "--device",
        "cpu",
        "--workers",
        "0",
        "-q",
    )
    assert result.exit_code == 0, result.output
    out_json = json.loads(result.stdout)
    assert out_json["protocol"]["extractor"] == "efficientnet-lite0"
    assert out_json["sources"]["candidate"]["n"] == 6


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["compare", "nope", "nope2"], "no such file"),
        (["features", "nope", "--out", "x.npz"], "no such file"),
        (["compare", "{ref}", "{cand}", "--extractor", "resnet9000"], "resnet9000"),
        (["compare", "{ref}", "{bad}"], "dimensions differ"),
        (["compare", "{ref}", "{junk}"], "not a readable feature file"),
        (["compare", "{ref}", "{tiny}", "--bootstrap", "0"], "k=3 needs more than 3 candidate"),
        (["compare", "{ref}", "{cand}", "--bootstrap", "1"], "bootstrap"),
    ],
)
def test_user_errors_are_one_line(tmp_path, feature_files, args, pattern):
    ref_path, cand_path, _, _ = feature_files
    np.save(tmp_path / "bad.npy", np.ones((10, 5)))
    np.save(tmp_path / "tiny.npy", np.random.default_rng(0).normal(size=(3, 16)))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    names = {
        "ref": ref_path,
        "cand": cand_path,
        "bad": tmp_path / "bad.npy",
        "junk": tmp_path / "junk.npz",
        "tiny": tmp_path / "tiny.npy",
    }
    args = [a.format(**names) for a in args]
    # extractor names are checked on image inputs only; give it one
    if "resnet9000" in args:
        args[2] = str(write_images(tmp_path / "imgs", 2))
    line = one_line_error(run(*args))
    assert pattern in line


def test_offline_inception_error_names_both_ways_out(tmp_path):
    folder = write_images(tmp_path / "imgs", 2)
    line = one_line_error(run("features", folder, "--out", tmp_path / "f.npz", "--offline"))
    assert "efficientnet-lite0" in line and "ADVISOR_INCEPTION_WEIGHTS" in line


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "advisor", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "compare" in proc.stdout
