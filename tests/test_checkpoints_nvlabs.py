"""NVlabs pickles: structure-faithful imports, and hostile pickles that must run nothing."""

import builtins
import os
import pickle
import subprocess

import pytest
import torch

from advisor.checkpoints import import_checkpoint, load_checkpoint, read_checkpoint
from advisor.checkpoints.nvlabs_pickle import RefusedGlobal, load_nvlabs_pickle, to_plain
from advisor.errors import AdvisorError
from advisor.networks import z_from_seeds
from tests.test_checkpoints_fixtures import (
    PAYLOAD_SRC,
    SG2ADA_G_KWARGS,
    Persistent,
    Reduce,
    fake_nvlabs_modules,
    nvlabs_snapshot,
    persistent_tree,
    tiny_networks,
)


def _write(tmp_path, data, name="network-snapshot-000120.pkl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_snapshot_imports_one_to_one_and_generates_the_same_images(tmp_path, protocol):
    g, g_ema, d = tiny_networks(seed=3)
    marker = tmp_path / "marker"
    data = nvlabs_snapshot(
        networks=(g, g_ema, d), module_src=PAYLOAD_SRC.format(marker=str(marker)),
        protocol=protocol,
    )  # fmt: skip
    ckpt, report = read_checkpoint(_write(tmp_path, data))

    assert report.format == "nvlabs-pkl"
    assert [r.network for r in report.networks] == ["G_ema", "G", "D"]
    for r, source in zip(report.networks, (g_ema, g, d), strict=True):
        assert r.missing == () and r.unexpected == () and r.derived == ()
        assert set(r.matched) == set(source.state_dict())
    z = z_from_seeds([0, 1, 2, 3], 8)
    with torch.no_grad():
        assert torch.equal(ckpt.G_ema(z), g_ema(z))
        assert torch.equal(ckpt.G(z, truncation_psi=0.5), g(z, truncation_psi=0.5))
        images = g_ema(z)
        assert torch.equal(ckpt.D(images), d(images))
    assert ckpt.metadata.source_dataset == "tiny-faces.zip"
    assert ckpt.metadata.training_kimg == 120.0
    assert not marker.exists(), "module_src from the pickle was executed"


def test_import_writes_advisor_checkpoint_that_loads_identically(tmp_path):
    g, g_ema, d = tiny_networks(seed=5)
    src = _write(tmp_path, nvlabs_snapshot(networks=(g, g_ema, d)))
    report = import_checkpoint(src, out_dir=tmp_path / "out", name="tiny", licence="test-licence")
    assert report.output == tmp_path / "out" / "tiny.json"
    assert (tmp_path / "out" / "tiny.safetensors").is_file()
    ckpt = load_checkpoint(tmp_path / "out" / "tiny")
    assert ckpt.metadata.name == "tiny" and ckpt.metadata.licence == "test-licence"
    assert ckpt.metadata.provenance.source_sha256 == report.source_sha256
    assert ckpt.metadata.provenance.importer.endswith("nvlabs-pkl")
    z = z_from_seeds([7], 8)
    with torch.no_grad():
        assert torch.equal(ckpt.G_ema(z), g_ema(z))
    with pytest.raises(AdvisorError, match="already exists"):
        import_checkpoint(src, out_dir=tmp_path / "out", name="tiny")
    import_checkpoint(src, out_dir=tmp_path / "out", name="tiny", overwrite=True)
    with pytest.raises(AdvisorError, match="plain file name"):
        import_checkpoint(src, out_dir=tmp_path, name="../escape")


def test_stylegan3_repository_stylegan2_layout_imports(tmp_path):
    # The StyleGAN3 repository's networks_stylegan2.Generator takes synthesis kwargs at top level.
    flat = {k: v for k, v in SG2ADA_G_KWARGS.items() if k != "synthesis_kwargs"}
    flat.update(SG2ADA_G_KWARGS["synthesis_kwargs"])
    g, g_ema, d = tiny_networks(seed=1)
    ckpt, report = read_checkpoint(_write(tmp_path, nvlabs_snapshot(g_kwargs=flat)))
    assert report.complete
    assert "training.networks_stylegan2" in " ".join(report.notes)
    assert ckpt.metadata.generator.channel_base == 256


def test_stylegan3_generator_is_refused_as_not_supported_yet(tmp_path):
    def make_sg3(snapshot):
        for net in ("G", "G_ema"):
            synthesis = snapshot[net].meta["state"]["_modules"]["synthesis"]
            synthesis.meta["state"]["_modules"]["input"] = Persistent("SynthesisInput", {})

    with pytest.raises(AdvisorError, match="StyleGAN3 .* not supported yet"):
        read_checkpoint(_write(tmp_path, nvlabs_snapshot(tweak=make_sg3)))


def test_conditional_network_is_refused(tmp_path):
    kwargs = dict(SG2ADA_G_KWARGS, c_dim=10)
    with pytest.raises(AdvisorError, match="conditional"):
        read_checkpoint(_write(tmp_path, nvlabs_snapshot(g_kwargs=kwargs)))


def test_missing_and_unexpected_parameters_are_reported(tmp_path):
    def edit(snapshot):
        mapping = snapshot["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]
        del mapping["_modules"]["fc1"].meta["state"]["_parameters"]["bias"]
        mapping["_buffers"]["surprise"] = torch.ones(3)

    path = _write(tmp_path, nvlabs_snapshot(tweak=edit))
    with pytest.raises(AdvisorError, match="G_ema lacks 1 parameters"):
        read_checkpoint(path)
    ckpt, report = read_checkpoint(path, strict=False)
    g_ema = report.networks[0]
    assert g_ema.missing == ("mapping.fc1.bias",)
    assert g_ema.unexpected == ("mapping.surprise",)
    assert not report.complete


def test_shape_mismatch_is_an_error(tmp_path):
    def edit(snapshot):
        synthesis = snapshot["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]
        synthesis["_modules"]["b4"].meta["state"]["_parameters"]["const"] = torch.zeros(1, 4, 4)

    with pytest.raises(AdvisorError, match="synthesis.b4.const has shape"):
        read_checkpoint(_write(tmp_path, nvlabs_snapshot(tweak=edit)))


# --- hostile pickles -------------------------------------------------------------------------


def _hostile(tmp_path, marker):
    """(id, pickle bytes) pairs, each of which would create ``marker`` if unpickled normally."""
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').write('x')"
    cases = {
        "os.system": Reduce(os.system, cmd),
        "builtins.eval": Reduce(builtins.eval, code),
        "builtins.exec": Reduce(builtins.exec, code),
        "subprocess.Popen": Reduce(subprocess.Popen, ["touch", str(marker)]),
        "builtins.getattr": Reduce(builtins.getattr, Reduce(builtins.__import__, "os"), "system"),
    }
    out = {name: pickle.dumps(obj, protocol=4) for name, obj in cases.items()}
    # Hidden deep inside an otherwise valid snapshot: G_ema.mapping state.
    out["nested-in-snapshot"] = nvlabs_snapshot(
        tweak=lambda s: s["G_ema"].meta["state"].__setitem__("evil", cases["os.system"])
    )
    # A persistent object whose meta is built by a hostile call.
    with fake_nvlabs_modules():
        out["hostile-meta"] = pickle.dumps(
            {"G_ema": Persistent("Generator", {"x": cases["builtins.eval"]})}
        )
    # A tensor storage whose inner torch.save payload asks for os.system.
    out["storage-payload"] = pickle.dumps(
        Reduce(torch.storage._load_from_bytes, pickle.dumps(cases["os.system"], protocol=2))
    )
    return out


@pytest.mark.parametrize(
    "case",
    ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "builtins.getattr",
     "nested-in-snapshot", "hostile-meta", "storage-payload"],
)  # fmt: skip
def test_hostile_pickles_are_refused_and_run_nothing(tmp_path, case):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, _hostile(tmp_path, marker)[case], "evil.pkl")
    with pytest.raises(AdvisorError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert "refused" in message
    assert not marker.exists()


def test_refusal_names_the_global_and_happens_before_any_call(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, pickle.dumps(Reduce(os.system, f"touch {marker}")), "evil.pkl")
    with pytest.raises(RefusedGlobal, match=r"posix\.system|os\.system|nt\.system"):
        load_nvlabs_pickle(path)
    assert not marker.exists()


def test_nvlabs_code_classes_are_never_imported(tmp_path):
    # A pickle naming NVlabs' own network class (as a stock pickle of live objects would).
    with pytest.raises(RefusedGlobal, match="training.networks.Generator"):
        load_nvlabs_pickle(
            _write(tmp_path, b"\x80\x04ctraining.networks\nGenerator\n)\x81.", "x.pkl")
        )


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "not a checkpoint advisor knows"),
        (b"GIF89a not a pickle at all", "not a checkpoint advisor knows"),
        (None, "not a readable NVlabs pickle"),  # truncated snapshot
        (pickle.dumps({"G_ema": 3}), "not an NVlabs snapshot"),
        (pickle.dumps([1, 2, 3]), "not an NVlabs snapshot"),
    ],
)
def test_corrupt_or_unknown_files_give_one_line_errors(tmp_path, data, match):
    if data is None:
        data = nvlabs_snapshot()[:5000]
    with pytest.raises(AdvisorError, match=match) as info:
        read_checkpoint(_write(tmp_path, data, "bad.pkl"))
    assert "\n" not in str(info.value)


def test_persistent_records_keep_source_as_text_only(tmp_path):
    g, g_ema, d = tiny_networks()
    with fake_nvlabs_modules():
        data = pickle.dumps({"G_ema": persistent_tree(g_ema, module_src="raise SystemExit(3)")})
    loaded = load_nvlabs_pickle(_write(tmp_path, data))
    record = loaded["G_ema"]
    assert record.module_src == "raise SystemExit(3)"
    assert set(record.tensors()) == set(g_ema.state_dict())
    assert record.children["mapping"].state["weight_gain"] == 0.125
    assert to_plain(record.children["mapping"].state["some_array"]).tolist() == [[0, 1], [2, 3]]
