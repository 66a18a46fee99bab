"""advisor's checkpoint format: safetensors + JSON, round trips, and damaged pairs."""

import json

import pytest
import safetensors
import torch

from advisor.checkpoints import (
    Checkpoint,
    CheckpointMetadata,
    Provenance,
    checkpoint_paths,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from advisor.checkpoints.format import FORMAT, FORMAT_VERSION
from advisor.errors import AdvisorError
from advisor.networks import z_from_seeds
from tests.test_checkpoints_fixtures import tiny_networks


def _checkpoint(with_d=True):
    g, g_ema, d = tiny_networks(seed=11)
    meta = CheckpointMetadata(
        name="tiny",
        generator=g_ema.config,
        discriminator=d.config if with_d else None,
        source_dataset="tiny faces",
        training_kimg=120.0,
        licence="CC0",
        description="test",
        provenance=Provenance(
            source_file="x.pkl", source_sha256="0" * 64, importer="test", imported_at="2024"
        ),
    )
    return Checkpoint(metadata=meta, G_ema=g_ema, G=g, D=d if with_d else None)


def test_round_trip_keeps_every_tensor_and_field(tmp_path):
    ckpt = _checkpoint()
    json_path = save_checkpoint(tmp_path / "tiny", ckpt)
    tensors_path, json_path2 = checkpoint_paths(tmp_path / "tiny")
    assert json_path == json_path2 and tensors_path.name == "tiny.safetensors"

    doc = json.loads(json_path.read_text())
    assert doc["format"] == FORMAT and doc["format_version"] == FORMAT_VERSION
    assert doc["networks"] == ["G_ema", "G", "D"] and doc["resolution"] == 16
    assert doc["provenance"]["source_file"] == "x.pkl"
    with safetensors.safe_open(str(tensors_path), "pt") as f:
        keys = set(f.keys())
    assert {k.split(".")[0] for k in keys} == {"G_ema", "G", "D"}
    assert "G_ema.mapping.fc0.weight" in keys and "D.b4.out.bias" in keys

    for spec in (tmp_path / "tiny", json_path, tensors_path):
        loaded = load_checkpoint(spec)
        assert loaded.metadata == ckpt.metadata
        for net in ("G_ema", "G", "D"):
            want, got = getattr(ckpt, net).state_dict(), getattr(loaded, net).state_dict()
            assert want.keys() == got.keys()
            assert all(torch.equal(want[k], got[k]) for k in want)
    z = z_from_seeds([3, 4], 8)
    with torch.no_grad():
        assert torch.equal(loaded.G_ema(z), ckpt.G_ema(z))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left"


def test_subset_loading_and_absent_networks(tmp_path):
    save_checkpoint(tmp_path / "g_only", _checkpoint(with_d=False))
    ckpt = load_checkpoint(tmp_path / "g_only", networks=("G_ema",))
    assert ckpt.networks == ("G_ema",)
    with pytest.raises(AdvisorError, match="has no D"):
        load_checkpoint(tmp_path / "g_only", networks=("D",))
    assert read_metadata(tmp_path / "g_only")[0].discriminator is None


def test_tampered_tensors_are_detected(tmp_path):
    save_checkpoint(tmp_path / "tiny", _checkpoint())
    tensors, _ = checkpoint_paths(tmp_path / "tiny")
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(AdvisorError, match="does not match the sha256"):
        load_checkpoint(tmp_path / "tiny")
    load_checkpoint(tmp_path / "tiny", verify=False)  # still loads when asked not to verify


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(format="something-else"), "not an advisor checkpoint"),
        (lambda d: d.update(format_version=99), "format_version 99"),
        (lambda d: d["generator"].update(img_resolution=32), "do not fit its config"),
        (lambda d: d["generator"].update(bogus=1), "invalid metadata"),
    ],
)
def test_bad_metadata_is_a_one_line_error(tmp_path, edit, match):
    json_path = save_checkpoint(tmp_path / "tiny", _checkpoint())
    doc = json.loads(json_path.read_text())
    edit(doc)
    doc["tensors_sha256"] = None  # isolate the metadata problem from the hash check
    json_path.write_text(json.dumps(doc))
    with pytest.raises(AdvisorError, match=match) as info:
        load_checkpoint(tmp_path / "tiny")
    assert "\n" not in str(info.value)


def test_missing_halves_are_errors(tmp_path):
    json_path = save_checkpoint(tmp_path / "tiny", _checkpoint())
    tensors, _ = checkpoint_paths(tmp_path / "tiny")
    tensors.unlink()
    with pytest.raises(AdvisorError, match="incomplete"):
        load_checkpoint(tmp_path / "tiny")
    json_path.unlink()
    with pytest.raises(AdvisorError, match="no advisor checkpoint"):
        load_checkpoint(tmp_path / "tiny")
