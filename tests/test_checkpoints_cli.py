"""`advisor checkpoints ...` and `advisor generate`, driven through click's CliRunner."""

import hashlib
import json
import os
import pickle
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from advisor.cli import main
from advisor.sampling import sample
from tests.httpserver import serve
from tests.test_checkpoints_fixtures import Reduce, nvlabs_snapshot, tiny_networks


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture
def snapshot(tmp_path):
    networks = tiny_networks(seed=8)
    path = tmp_path / "network-snapshot-000040.pkl"
    path.write_bytes(nvlabs_snapshot(networks=networks))
    return path, networks


def _registry_file(tmp_path, url, sha=""):
    path = tmp_path / "reg.toml"
    path.write_text(
        f'[checkpoints.tiny]\nformat = "nvlabs-pkl"\nresolution = 16\nsource_dataset = "tiny"\n'
        f'licence = "test"\ntrust = "third-party"\nurl = "{url}"\nsha256 = "{sha}"\n'
    )
    return path


def test_list_is_offline_and_shows_defaults(runner, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(main, ["checkpoints", "list"])
    assert result.exit_code == 0, result.output
    assert "ffhq-256" in result.output and "(unverified)" in result.output
    result = runner.invoke(main, ["checkpoints", "list", "--json"])
    rows = json.loads(result.output)
    row = next(r for r in rows if r["name"] == "imagenet-256")
    assert row["resolution"] == 256 and row["cached"] is False and row["sha256"] == "unknown"
    assert {"name", "resolution", "source_dataset", "licence", "cached"} <= set(row)


def test_show_and_unknown_name(runner, no_network):
    result = runner.invoke(main, ["checkpoints", "show", "lsundog-256", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["url"].endswith("lsundog-res256-paper256-kimg100000-noaug.pkl")
    assert data["cached"] is False
    result = runner.invoke(main, ["checkpoints", "show", "nope"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: unknown checkpoint 'nope'; known: ")
    assert len(result.output.strip().splitlines()) == 1


def test_pull_generate_and_verify_through_a_registry(runner, tmp_path, snapshot):
    path, (_, g_ema, _) = snapshot
    data = path.read_bytes()
    with serve({"/n/tiny.pkl": data}) as served:
        reg = _registry_file(tmp_path, served.base_url + "/n/tiny.pkl",
                             hashlib.sha256(data).hexdigest())  # fmt: skip
        result = runner.invoke(main, ["checkpoints", "pull", "tiny", "--registry", str(reg)])
        assert result.exit_code == 0, result.output
        assert "tiny:" in result.output and "unverified" not in result.output
        out = tmp_path / "imgs"
        result = runner.invoke(
            main,
            ["generate", "tiny", "--seeds", "0-2,9", "--out", str(out), "--registry", str(reg),
             "--trunc", "0.5", "--batch-size", "3", "--offline"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(served.requests) == 1
    names = sorted(p.name for p in out.iterdir())
    assert names == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0009.png"]
    expected = next(sample(g_ema, [9], truncation_psi=0.5))[0].numpy()
    got = np.asarray(Image.open(out / "seed0009.png")).transpose(2, 0, 1)
    assert np.array_equal(got, expected)
    result = runner.invoke(main, ["checkpoints", "verify", "tiny", "--registry", str(reg)])
    assert result.exit_code == 0 and "tiny: ok" in result.output


def test_generate_from_a_file_is_batch_size_independent(runner, tmp_path, snapshot):
    path, _ = snapshot
    outs = []
    for batch in ("1", "4"):
        out = tmp_path / f"b{batch}"
        result = runner.invoke(
            main,
            ["generate", str(path), "--seeds", "3-6", "--out", str(out), "--batch-size", batch],
        )
        assert result.exit_code == 0, result.output
        outs.append([(out / f"seed{s:04d}.png").read_bytes() for s in range(3, 7)])
    assert outs[0] == outs[1]


def test_generate_user_errors_are_one_line_and_early(runner, tmp_path, snapshot):
    path, _ = snapshot
    result = runner.invoke(main, ["generate", str(path), "--seeds", "5-1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "end is below the start" in result.output
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "seed0001.png").write_bytes(b"x")
    result = runner.invoke(
        main, ["generate", "does-not-exist", "--seeds", "0-1", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "pass --overwrite" in result.output  # before resolving
    result = runner.invoke(main, ["generate", "nope", "--seeds", "0", "--out", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert "neither a checkpoint file nor a registry name" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_import_command_writes_and_reports(runner, tmp_path, snapshot):
    path, _ = snapshot
    out = tmp_path / "conv" / "tiny"
    result = runner.invoke(main, ["checkpoints", "import", str(path), "--out", str(out), "--json",
                                               "--licence", "test"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["complete"] and report["format"] == "nvlabs-pkl"
    assert [n["network"] for n in report["networks"]] == ["G_ema", "G", "D"]
    assert all(not n["missing"] and not n["unexpected"] for n in report["networks"])
    assert (tmp_path / "conv" / "tiny.safetensors").is_file()
    meta = json.loads((tmp_path / "conv" / "tiny.json").read_text())
    assert meta["licence"] == "test" and meta["training_kimg"] == 40.0
    result = runner.invoke(main, ["checkpoints", "import", str(path), "--out", str(out)])
    assert result.exit_code == 1 and "already exists" in result.output
    gen = runner.invoke(main, ["generate", str(out), "--seeds", "0", "--out", str(tmp_path / "g")])
    assert gen.exit_code == 0, gen.output


def test_import_refuses_a_hostile_pickle(runner, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Reduce(os.system, f"touch {marker}")))
    result = runner.invoke(main, ["checkpoints", "import", str(evil), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "refused" in result.output and len(result.output.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "x.json").exists()


def test_import_of_garbage_fails_cleanly(runner, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    result = runner.invoke(main, ["checkpoints", "import", str(junk), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "not a checkpoint advisor knows" in result.output
