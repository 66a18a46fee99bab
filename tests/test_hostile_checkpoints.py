"""Hostile checkpoints, configs and generate options: bounded work, one-line errors, whole files.

Pickles that ``pickle.dumps`` cannot make (a tuple hashed as a dict key that expands
exponentially, a module that is its own child, lists nested 100,000 deep, numpy stand-ins built
without their constructor) are written opcode by opcode with :class:`PickleWriter`; the
NVlabs-shaped rest comes from :mod:`tests.test_checkpoints_fixtures`. Anything that would eat
the machine on a regression runs in a child process under a memory cap and a timeout
(:func:`tests.bounded.run_bounded`).
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from advisor.checkpoints import import_checkpoint, load_checkpoint, read_checkpoint
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from advisor.networks.config import MAX_STATE_NUMEL
from advisor.sampling import MAX_SEEDS, parse_seeds
from tests.bounded import dumps, run_bounded
from tests.test_checkpoints_fixtures import (
    SG2ADA_D_KWARGS,
    SG2ADA_G_KWARGS,
    nvlabs_snapshot,
    tiny_networks,
)

# A child process that reads a checkpoint and reports how it ended, one line per outcome.
_READ = """
import json
from advisor.checkpoints import read_checkpoint
from advisor.errors import AdvisorError
try:
    read_checkpoint(json.loads({path}))
except AdvisorError as err:
    print("ADVISOR_ERROR", str(err))
else:
    print("READ")
"""
_READ_IMPORTS = "import torch, advisor, advisor.checkpoints, advisor.checkpoints.importers"


def _read_bounded(path: Path, *, budget_mb: int = 512, timeout: float = 60) -> str:
    """Read ``path`` in a capped child; returns the AdvisorError line (fails on anything else)."""
    result = run_bounded(
        _READ.format(path=repr(dumps(str(path)))),
        imports=_READ_IMPORTS,
        budget_mb=budget_mb,
        timeout=timeout,
    )
    assert not result.timed_out, f"reading {path.name} ran past {timeout} s"
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ADVISOR_ERROR "), result.stdout
    return lines[0].removeprefix("ADVISOR_ERROR ")


def _one_line_error(call: Callable[[], Any], match: str = "") -> str:
    with pytest.raises(AdvisorError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return message


# --------------------------------------------------------------------------- pickle writer


@dataclass(frozen=True)
class Laughs:
    """A list of two references to a list of two references to ... (``depth`` levels)."""

    depth: int


@dataclass(frozen=True)
class SelfList:
    """A list that contains itself."""


@dataclass(frozen=True)
class Deep:
    """``depth`` lists, each the only item of the one before."""

    depth: int


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are (they must leave exactly one value on the stack)."""

    data: bytes


class PickleWriter:
    """Writes pickle opcodes by hand (protocol 4), for structures ``pickle.dumps`` cannot make."""

    def __init__(self) -> None:
        self.data = bytearray(pickle.PROTO + b"\x04")
        self.slots = 0

    def op(self, *codes: bytes) -> PickleWriter:
        for code in codes:
            self.data += code
        return self

    def memoize(self) -> int:
        self.data += pickle.MEMOIZE
        self.slots += 1
        return self.slots - 1

    def get(self, slot: int) -> PickleWriter:
        return self.op(pickle.LONG_BINGET + struct.pack("<I", slot))

    def global_(self, module: str, name: str) -> PickleWriter:
        return self.op(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def value(self, v: Any) -> PickleWriter:  # noqa: C901, PLR0912 - one branch per kind
        if v is None:
            self.op(pickle.NONE)
        elif isinstance(v, bool):
            self.op(pickle.NEWTRUE if v else pickle.NEWFALSE)
        elif isinstance(v, int):
            self.op(pickle.BININT + struct.pack("<i", v))
        elif isinstance(v, float):
            self.op(pickle.BINFLOAT + struct.pack(">d", v))
        elif isinstance(v, str):
            raw = v.encode()
            self.op(pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw)
        elif isinstance(v, bytes):
            self.op(pickle.BINBYTES + struct.pack("<I", len(v)) + v)
        elif isinstance(v, tuple):
            self.op(pickle.MARK)
            for item in v:
                self.value(item)
            self.op(pickle.TUPLE)
        elif isinstance(v, list):
            self.op(pickle.EMPTY_LIST)
            self.memoize()
            self.op(pickle.MARK)
            for item in v:
                self.value(item)
            self.op(pickle.APPENDS)
        elif isinstance(v, dict):
            self.op(pickle.EMPTY_DICT)
            self.memoize()
            self.op(pickle.MARK)
            for key, item in v.items():
                self.value(key).value(item)
            self.op(pickle.SETITEMS)
        elif isinstance(v, Laughs):
            self.op(pickle.EMPTY_LIST)
            previous = self.memoize()
            for _ in range(v.depth):
                self.op(pickle.POP, pickle.EMPTY_LIST)  # the previous level stays in the memo
                slot = self.memoize()
                self.op(pickle.MARK).get(previous).get(previous).op(pickle.APPENDS)
                previous = slot
        elif isinstance(v, SelfList):
            self.op(pickle.EMPTY_LIST)
            slot = self.memoize()
            self.get(slot).op(pickle.APPEND)
        elif isinstance(v, Deep):
            self.op(pickle.EMPTY_LIST * v.depth, pickle.APPEND * (v.depth - 1))
        elif isinstance(v, Raw):
            self.op(v.data)
        else:
            raise TypeError(type(v))
        return self

    def record(
        self,
        class_name: str,
        *,
        init_kwargs: Any = None,
        modules: dict[str, Any] | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> tuple[int, int]:
        """An NVlabs persistent object; returns (its memo slot, its ``_modules`` dict's slot).

        ``modules`` values are ints (memo slots of earlier records) or plain values.
        """
        self.global_("torch_utils.persistence", "_reconstruct_persistent_obj")
        self.op(pickle.EMPTY_DICT)
        self.memoize()
        self.op(pickle.MARK)
        for key, item in (("type", "class"), ("version", 6), ("module_src", "# src\n"),
                          ("class_name", class_name)):  # fmt: skip
            self.value(key).value(item)
        self.value("state").op(pickle.EMPTY_DICT)
        self.memoize()
        self.op(pickle.MARK)
        self.value("_init_kwargs").value(init_kwargs if init_kwargs is not None else {})
        for key, item in (extra_state or {}).items():
            self.value(key).value(item)
        self.value("_modules").op(pickle.EMPTY_DICT)
        modules_slot = self.memoize()
        if modules:
            self.op(pickle.MARK)
            for key, item in modules.items():
                self.value(key)
                if isinstance(item, int) and not isinstance(item, bool):
                    self.get(item)
                else:
                    self.value(item)
            self.op(pickle.SETITEMS)
        self.op(pickle.SETITEMS)  # state
        self.op(pickle.SETITEMS)  # meta
        self.op(pickle.TUPLE1, pickle.REDUCE)
        return self.memoize(), modules_slot

    def snapshot(self, build: Callable[[PickleWriter], int]) -> bytes:
        """``{"G_ema": <record built by build>}``, then STOP."""
        self.op(pickle.EMPTY_DICT)
        self.memoize()
        self.value("G_ema")
        build(self)
        self.op(pickle.SETITEM, pickle.STOP)
        return bytes(self.data)


def _g_kwargs(**mapping: Any) -> dict[str, Any]:
    kwargs = json.loads(json.dumps(SG2ADA_G_KWARGS))
    kwargs["mapping_kwargs"].update(mapping)
    return kwargs


def _write(tmp_path: Path, data: bytes, name: str = "hostile.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _tuple_bomb(depth: int) -> Raw:
    """A tuple holding the same tuple twice, ``depth`` levels: hashing it visits 2**depth."""
    w = PickleWriter()
    w.op(pickle.EMPTY_TUPLE)
    previous = w.memoize()
    for _ in range(depth):
        w.op(pickle.POP).get(previous).get(previous).op(pickle.TUPLE2)  # POP: memo keeps it
        previous = w.memoize()
    return Raw(bytes(w.data[2:]))  # without PROTO: spliced into another pickle below


# --------------------------------------------------------------------------- pickle work


def test_a_tuple_billion_laughs_used_as_a_dict_key_is_refused_before_unpickling(tmp_path):
    # {t100: 1}: the stock unpickler hashes t100, visiting 2**100 tuples; nothing can stop it
    # once it started, so the pickle must be refused before.
    bomb = bytes(_tuple_bomb(100).data)
    data = pickle.PROTO + b"\x04" + pickle.EMPTY_DICT + bomb + pickle.BININT1 + b"\x01"
    data += pickle.SETITEM + pickle.STOP
    message = _read_bounded(_write(tmp_path, data), timeout=60)
    assert "refused" in message and "billion laughs" in message


@pytest.mark.parametrize("how", ["set-of-list", "frozenset-opcode", "dict-opcode"])
def test_every_way_of_hashing_a_tuple_bomb_is_refused(tmp_path, how):
    bomb = bytes(_tuple_bomb(80).data)
    body = {
        "set-of-list": b"c__builtin__\nset\n" + pickle.EMPTY_LIST + pickle.MARK + bomb
        + pickle.APPENDS + pickle.TUPLE1 + pickle.REDUCE,
        "frozenset-opcode": pickle.MARK + bomb + pickle.FROZENSET,
        "dict-opcode": pickle.MARK + bomb + pickle.NONE + pickle.DICT,
    }[how]  # fmt: skip
    data = pickle.PROTO + b"\x04" + body + pickle.STOP
    message = _read_bounded(_write(tmp_path, data), timeout=60)
    assert "refused" in message


@pytest.mark.parametrize("where", ["init-kwargs", "training-set-kwargs"])
def test_shared_list_billion_laughs_is_refused_within_memory(tmp_path, where):
    # 2**28 list references from a ~2 KB pickle: a naive walk builds a 2**28-element structure.
    laughs = Laughs(28)
    w = PickleWriter()

    def g_ema(w: PickleWriter) -> int:
        kwargs = _g_kwargs(bomb=laughs) if where == "init-kwargs" else _g_kwargs()
        return w.record("Generator", init_kwargs=kwargs)[0]

    w.op(pickle.EMPTY_DICT)
    w.memoize()
    w.op(pickle.MARK)
    w.value("G_ema")
    g_ema(w)
    w.value("training_set_kwargs").value({"path": "/x.zip", "bomb": laughs})
    w.op(pickle.SETITEMS, pickle.STOP)
    message = _read_bounded(_write(tmp_path, bytes(w.data)), budget_mb=384)
    assert "billion laughs" in message


def test_a_module_tree_of_shared_children_is_refused_not_walked(tmp_path):
    # Each module's two children are the same module, 30 levels: 2**30 paths to walk.
    def g_ema(w: PickleWriter) -> int:
        leaf, _ = w.record("Leaf")
        for _ in range(30):
            w.op(pickle.POP)  # records stay in the memo
            leaf, _ = w.record("Pair", modules={"a": leaf, "b": leaf})
        w.op(pickle.POP)
        return w.record("Generator", init_kwargs=_g_kwargs(), modules={"mapping": leaf})[0]

    message = _read_bounded(_write(tmp_path, PickleWriter().snapshot(g_ema)))
    assert "appears twice" in message


def test_a_module_that_is_its_own_child_is_one_line(tmp_path):
    def g_ema(w: PickleWriter) -> int:
        slot, modules = w.record("Generator", init_kwargs=_g_kwargs())
        # After the record is built, put it into its own _modules dict (shared with its state).
        w.get(modules).value("self").get(slot).op(pickle.SETITEM, pickle.POP)
        return slot

    path = _write(tmp_path, PickleWriter().snapshot(g_ema))
    _one_line_error(lambda: read_checkpoint(path), "appears twice")


@pytest.mark.parametrize(
    "bomb, match",
    [(SelfList(), "contains itself"), (Deep(100_000), "nest deeper")],
    ids=["cycle", "deep"],
)
def test_cyclic_or_deeply_nested_kwargs_are_one_line(tmp_path, bomb, match):
    def g_ema(w: PickleWriter) -> int:
        return w.record("Generator", init_kwargs=_g_kwargs(bomb=bomb))[0]

    path = _write(tmp_path, PickleWriter().snapshot(g_ema))
    _one_line_error(lambda: read_checkpoint(path), match)


@pytest.mark.parametrize(
    "state, match",
    [
        ({"_parameters": 5}, "_parameters of Generator is of type int, not dict"),
        ({"_buffers": [1, 2]}, "_buffers of Generator is of type list, not dict"),
        ({"_non_persistent_buffers_set": 5}, "_non_persistent_buffers_set"),
        ({"_init_args": 7}, "_init_args of Generator"),
    ],
    ids=["parameters-int", "buffers-list", "buffer-set-int", "init-args-int"],
)
def test_wrong_types_where_dicts_are_expected_are_one_line(tmp_path, state, match):
    def g_ema(w: PickleWriter) -> int:
        return w.record("Generator", init_kwargs=_g_kwargs(), extra_state=state)[0]

    path = _write(tmp_path, PickleWriter().snapshot(g_ema))
    _one_line_error(lambda: read_checkpoint(path), match)


def test_a_parameter_named_by_a_number_is_one_line(tmp_path):
    def tweak(snapshot):
        mapping = snapshot["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]
        mapping["_parameters"][3] = torch.zeros(1)

    path = _write(tmp_path, nvlabs_snapshot(tweak=tweak))
    _one_line_error(lambda: read_checkpoint(path), "_parameters of Mapping.* non-string keys")


def test_modules_that_are_not_a_dict_are_one_line(tmp_path):
    def g_ema(w: PickleWriter) -> int:
        slot, _ = w.record("Generator", init_kwargs=_g_kwargs())
        return slot

    data = PickleWriter().snapshot(g_ema)
    # Swap the (empty) _modules dict for a list of one string: '_modules' key, EMPTY_DICT, MEMOIZE.
    key = pickle.BINUNICODE + struct.pack("<I", 8) + b"_modules"
    replacement = key + pickle.EMPTY_LIST + pickle.MEMOIZE + pickle.MARK
    replacement += pickle.BINUNICODE + struct.pack("<I", 1) + b"x" + pickle.APPENDS
    data = data.replace(key + pickle.EMPTY_DICT + pickle.MEMOIZE, replacement, 1)
    path = _write(tmp_path, data)
    _one_line_error(lambda: read_checkpoint(path), "_modules of Generator is of type list")


def test_a_numpy_stand_in_cannot_be_built_without_its_constructor(tmp_path):
    # NEWOBJ creates an instance without __init__; numpy arrays must only come from
    # _reconstruct + BUILD, so NEWOBJ on numpy.ndarray must not produce a half-made array.
    newobj = Raw(b"cnumpy\nndarray\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ)

    def g_ema(w: PickleWriter) -> int:
        return w.record("Generator", init_kwargs=_g_kwargs(array=newobj))[0]

    path = _write(tmp_path, PickleWriter().snapshot(g_ema))
    message = _one_line_error(lambda: read_checkpoint(path), "not a readable NVlabs pickle")
    assert "NEWOBJ" in message


def test_a_tensor_cannot_claim_more_values_than_its_storage(tmp_path):
    # One stored float shown as w_avg's 8 values (stride 0): a few bytes could claim any size.
    def tweak(snapshot):
        mapping = snapshot["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]
        mapping["_buffers"]["w_avg"] = torch.zeros(1).expand(8)

    path = _write(tmp_path, nvlabs_snapshot(tweak=tweak))
    _one_line_error(lambda: read_checkpoint(path), "more values than its storage")


def test_a_forged_length_prefix_is_refused_before_anything_allocates(tmp_path):
    # BINBYTES8 claiming 2**40 bytes in a 30-byte file.
    data = pickle.PROTO + b"\x04" + b"\x8e" + struct.pack("<Q", 2**40) + b"x" * 8 + pickle.STOP
    message = _read_bounded(_write(tmp_path, data), budget_mb=256)
    assert "not a readable NVlabs pickle" in message and "truncated" in message


# --------------------------------------------------------------------------- network configs


def test_parameter_estimate_is_exact_for_every_layout():
    for arch in ("skip", "orig", "resnet"):
        for taps in ((1, 3, 3, 1), (1, 2, 1)):
            g = GeneratorConfig(z_dim=7, w_dim=5, img_resolution=32, mapping_layers=3,
                                channel_base=512, channel_max=32, architecture=arch,
                                resample_filter=taps, use_noise=arch != "orig")  # fmt: skip
            d = DiscriminatorConfig(img_resolution=32, channel_base=512, channel_max=32,
                                    architecture=arch, resample_filter=taps,
                                    mbstd_num_channels=2)  # fmt: skip
            with torch.device("meta"):
                built = (Generator(g), Discriminator(d))
            for config, net in zip((g, d), built, strict=True):
                assert config.state_numel() == sum(v.numel() for v in net.state_dict().values())


def test_the_largest_real_configs_are_accepted():
    # StyleGAN2 config-f at 1024 px, StyleGAN3-R-sized channels, an XL-sized 2048 px network.
    GeneratorConfig(img_resolution=1024)
    DiscriminatorConfig(img_resolution=1024)
    GeneratorConfig(img_resolution=1024, channel_base=65536, channel_max=1024)
    GeneratorConfig(img_resolution=2048, channel_base=65536, channel_max=1024, z_dim=512)
    assert GeneratorConfig(img_resolution=1024, channel_max=1024, channel_base=65536).state_numel()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"z_dim": 10**9}, "z_dim must be in"),
        ({"w_dim": 2**40}, "w_dim must be in"),
        ({"mapping_layers": 10**6}, "mapping_layers must be in"),
        ({"img_resolution": 2**30}, "img_resolution must be in"),
        ({"img_channels": 10**5}, "img_channels must be in"),
        ({"channel_max": 10**6}, "channel_max must be in"),
        ({"channel_base": 2**60}, "channel_base must be in"),
        ({"channel_base": 8}, "leaves zero channels at 16 px"),
        ({"channel_max": 16384, "channel_base": 2**20}, "advisor refuses networks above"),
        ({"resample_filter": (1e200, 1.0)}, "finite taps"),
        ({"resample_filter": (1.0, -1.0)}, "non-zero"),
        ({"mapping_lr_multiplier": float("inf")}, "finite number"),
        ({"conv_clamp": float("nan")}, "finite number"),
        ({"z_dim": True}, "must be an integer"),
    ],
)
def test_absurd_generator_configs_are_refused_before_anything_is_built(change, match):
    base = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "channel_base": 256, "channel_max": 16}
    with pytest.raises(ValueError, match=match) as info:
        GeneratorConfig(**{**base, **change})
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_discriminator_mbstd_channels_must_split_the_4x4_channels():
    with pytest.raises(ValueError, match="does not divide"):
        DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=16,
                            mbstd_num_channels=3)  # fmt: skip


@pytest.mark.parametrize(
    "change, match",
    [
        ({"z_dim": 10**9}, "z_dim must be in"),
        ({"synthesis_kwargs": {"channel_base": 2**40, "channel_max": 2**20}}, "channel_base"),
        ({"synthesis_kwargs": {"channel_base": 8}}, "zero channels"),
        ({"synthesis_kwargs": {"resample_filter": [1e200, 1]}}, "finite taps"),
        ({"synthesis_kwargs": {"resample_filter": [float("inf"), 1]}}, "finite number"),
        ({"mapping_kwargs": {"num_layers": 10**7}}, "mapping_layers must be in"),
        ({"img_resolution": 2**24}, "img_resolution must be in"),
    ],
)
def test_absurd_pickle_init_kwargs_are_refused_within_memory(tmp_path, change, match):
    kwargs = {**SG2ADA_G_KWARGS, **change}
    path = _write(tmp_path, nvlabs_snapshot(g_kwargs=kwargs))
    message = _read_bounded(path, budget_mb=512)
    assert "cannot be rebuilt" in message and match in message


def test_absurd_json_configs_are_refused_within_memory(tmp_path):
    src = _write(tmp_path, nvlabs_snapshot())
    import_checkpoint(src, out_dir=tmp_path / "out", name="tiny")
    meta = tmp_path / "out" / "tiny.json"
    doc = json.loads(meta.read_text())
    doc["generator"]["z_dim"] = 10**9
    meta.write_text(json.dumps(doc))
    message = _read_bounded(tmp_path / "out" / "tiny")
    assert "invalid metadata" in message and "z_dim must be in" in message


def test_json_metadata_nested_absurdly_deep_is_one_line(tmp_path):
    src = _write(tmp_path, nvlabs_snapshot())
    import_checkpoint(src, out_dir=tmp_path / "out", name="tiny")
    meta = tmp_path / "out" / "tiny.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps(doc)[:-1] + ', "extra2": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _one_line_error(lambda: load_checkpoint(tmp_path / "out" / "tiny"), "not readable JSON")


# --------------------------------------------------------------------------- state dicts


def _state_file(tmp_path: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    _, g_ema, _ = tiny_networks(seed=4)
    state = {k: v.clone() for k, v in g_ema.state_dict().items()}
    edit(state)
    path = tmp_path / "state.pt"
    torch.save({"G_ema": state}, path)
    return path


def _rename_block(state: dict[str, torch.Tensor], old: str, new: str) -> None:
    for key in [k for k in state if k.startswith(old)]:
        state[new + key[len(old) :]] = state.pop(key)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.__setitem__("mapping.fc0.weight", torch.zeros(8)), "has shape"),
        (lambda s: s.__setitem__("synthesis.b4.const", torch.tensor(1.0)), "3-d tensor"),
        (lambda s: s.__setitem__("synthesis.b16.torgb.weight", torch.zeros(3)), "4-d tensor"),
        (lambda s: _rename_block(s, "synthesis.b16.", "synthesis.b12."), "resolution 12"),
        (lambda s: _rename_block(s, "synthesis.b16.", "synthesis.b32."), "not the layout"),
        (lambda s: s["synthesis.b4.resample_filter"].zero_(), "sums to zero"),
        (lambda s: s.__setitem__("mapping.fc1.weight", s["mapping.fc1.weight"].long()), "dtype"),
        (lambda s: s["mapping.fc1.weight"].__setitem__((0, 0), float("nan")), "NaN or infinite"),
        (lambda s: s["synthesis.b8.conv1.bias"].__setitem__(0, float("inf")), "NaN or infinite"),
    ],
    ids=["1d-for-2d", "0d-const", "1d-torgb", "block-12", "block-gap", "zero-filter", "int64",
         "nan", "inf"],
)  # fmt: skip
def test_bad_state_dict_tensors_are_one_line_errors(tmp_path, edit, match):
    path = _state_file(tmp_path, edit)
    _one_line_error(lambda: read_checkpoint(path), match)


def test_a_forged_tensor_view_in_a_state_dict_is_refused_within_memory(tmp_path):
    # A 4-byte storage shown as a 100,000 x 100,000 filter: materialising it is 40 GB.
    path = _state_file(
        tmp_path,
        lambda s: s.__setitem__(
            "synthesis.b4.resample_filter", torch.zeros(1).expand(100_000, 100_000)
        ),
    )
    message = _read_bounded(path, budget_mb=512)
    assert "claims more values than its storage" in message


def test_rosinality_layer_indices_with_thousands_of_digits_are_one_line(tmp_path):
    path = tmp_path / "ros.pt"
    torch.save({"g_ema": {"style." + "9" * 5000 + ".weight": torch.zeros(2, 2),
                          "input.input": torch.zeros(1, 2, 4, 4)}}, path)  # fmt: skip
    _one_line_error(lambda: read_checkpoint(path), "absurd layer index")


# --------------------------------------------------------------------------- small things


def test_a_snapshot_holding_a_zip_end_record_is_still_read_as_a_pickle(tmp_path):
    # zipfile.is_zipfile looks for "PK\x05\x06" in the file's last 64 KB; a pickle may hold it.
    def tweak(snapshot):
        snapshot["training_set_kwargs"]["note"] = b"PK\x05\x06" + bytes(18)

    path = _write(tmp_path, nvlabs_snapshot(tweak=tweak), "network-snapshot-000040.pkl")
    assert zipfile.is_zipfile(path)  # the trap is real
    _, report = read_checkpoint(path)
    assert report.format == "nvlabs-pkl" and report.complete


def _torch_zip_with_pickle(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save({"g_ema": {}}, buf)
    source = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for name in source.namelist():
            z.writestr(name, pkl if name.endswith("data.pkl") else source.read(name))
    return out.getvalue()


def test_torch_advice_to_load_with_weights_only_false_never_reaches_the_user(tmp_path):
    # INST is an opcode torch's restricted loader does not support; its error text advises
    # rerunning with weights_only=False, which would run the file's code.
    path = _write(tmp_path, _torch_zip_with_pickle(b"(i__builtin__\nset\n."), "odd.pt")
    result = CliRunner().invoke(main, ["checkpoints", "import", str(path), "--out",
                                                    str(tmp_path / "x")])  # fmt: skip
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "weights_only" not in result.output and "trusted source" not in result.output
    assert "not a readable torch.save file" in result.output


def test_import_says_overwrite_as_the_cli_flag_and_the_library_keyword(tmp_path):
    src = _write(tmp_path, nvlabs_snapshot())
    import_checkpoint(src, out_dir=tmp_path, name="tiny")
    _one_line_error(
        lambda: import_checkpoint(src, out_dir=tmp_path, name="tiny"), "pass overwrite=True"
    )
    result = CliRunner().invoke(main, ["checkpoints", "import", str(src), "--out",
                                                    str(tmp_path / "tiny")])  # fmt: skip
    assert result.exit_code == 1 and "pass --overwrite to replace it" in result.output
    assert "pass overwrite" not in result.output


# --------------------------------------------------------------------------- generate options


def test_a_huge_seed_range_is_refused_without_building_it():
    code = """
from click.testing import CliRunner
from advisor.cli import main
r = CliRunner().invoke(main, ["generate", "nope", "--seeds", "0-99999999", "--out", "/tmp/x"])
print(r.exit_code)
print(" ".join(r.output.split()))
"""
    result = run_bounded(code, imports="import torch, advisor, advisor.cli, click",
                         budget_mb=256, timeout=60)  # fmt: skip
    assert not result.timed_out and result.returncode == 0, result.stderr[-2000:]
    exit_code, output = result.stdout.strip().splitlines()
    assert exit_code == "2" and "--seeds" in output and f"{MAX_SEEDS:,}" in output


def test_seed_count_bound_counts_ranges_before_expanding_them():
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    for text in (f"0-{MAX_SEEDS}", f"0-{MAX_SEEDS // 2},0-{MAX_SEEDS // 2}", "5-" + "9" * 5000):
        with pytest.raises(ValueError):
            parse_seeds(text)


@pytest.mark.parametrize("trunc", ["nan", "inf", "-inf"])
def test_trunc_must_be_finite_and_is_checked_before_loading(tmp_path, trunc):
    result = CliRunner().invoke(
        main, ["generate", "no-such-checkpoint", "--seeds", "0", "--out", str(tmp_path / "o"),
                           "--trunc", trunc],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--trunc" in result.output and "finite" in result.output
    assert "neither a checkpoint file" not in result.output  # nothing was resolved


# --------------------------------------------------------------------------- complete or absent


def _enospc(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_json_fsync(monkeypatch) -> None:
    """A disk that fills up when the JSON half of a checkpoint is flushed."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if ".json" in os.readlink(f"/proc/self/fd/{fd}"):
            _enospc()
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_full_disk_during_import_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    src = _write(tmp_path, nvlabs_snapshot())
    out = tmp_path / "out"
    out.mkdir()
    _fail_json_fsync(monkeypatch)
    _one_line_error(lambda: import_checkpoint(src, out_dir=out, name="tiny"), "No space left")
    assert _files(out) == []  # no .safetensors without its .json, no temporary file


def test_a_full_disk_while_writing_tensors_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.torch

    def partial_then_enospc(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"half a file")
        _enospc()

    src = _write(tmp_path, nvlabs_snapshot())
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(safetensors.torch, "save_file", partial_then_enospc)
    _one_line_error(lambda: import_checkpoint(src, out_dir=out, name="tiny"), "No space left")
    assert _files(out) == []


def test_a_failure_while_replacing_keeps_the_existing_pair_intact(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _write(tmp_path, nvlabs_snapshot(networks=tiny_networks(seed=1)), "a.pkl")
    second = _write(tmp_path, nvlabs_snapshot(networks=tiny_networks(seed=2)), "b.pkl")
    import_checkpoint(first, out_dir=out, name="tiny")
    before = {name: (out / name).read_bytes() for name in _files(out)}
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".json") and ".tmp" in Path(src).suffixes:
            _enospc()  # moving the new JSON in fails, after the new tensors went in
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    _one_line_error(
        lambda: import_checkpoint(second, out_dir=out, name="tiny", overwrite=True),
        "No space left",
    )
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    monkeypatch.setattr(os, "replace", real)
    assert load_checkpoint(out / "tiny").metadata.provenance.source_file == "a.pkl"


def test_checkpoints_import_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    src = _write(tmp_path, nvlabs_snapshot())
    _fail_json_fsync(monkeypatch)
    result = CliRunner().invoke(main, ["checkpoints", "import", str(src), "--out",
                                                    str(tmp_path / "o" / "tiny")])  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "No space left on device" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # the folder made for the output is removed too


def test_generate_on_a_full_disk_is_one_line_and_leaves_no_partial_png(tmp_path, monkeypatch):
    from PIL import Image

    src = _write(tmp_path, nvlabs_snapshot(), "snap.pkl")
    real_save = Image.Image.save
    calls = []

    def save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(fp)
        if len(calls) == 2:  # the second image: half written, then the disk is full
            Path(fp).write_bytes(b"\x89PNG half")
            _enospc()
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "imgs"
    result = CliRunner().invoke(main, ["generate", str(src), "--seeds", "0-3", "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "No space left on device" in result.output and "seed0001.png" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _files(out) == ["seed0000.png"]  # complete files only, no temporary ones


def test_the_discriminator_kwargs_bounds_hold_too(tmp_path):
    kwargs = {**SG2ADA_D_KWARGS, "channel_base": 8}
    path = _write(tmp_path, nvlabs_snapshot(d_kwargs=kwargs))
    _one_line_error(lambda: read_checkpoint(path), "D cannot be rebuilt: .*zero channels")


def test_the_state_numel_cap_is_far_above_real_networks():
    real = GeneratorConfig(img_resolution=1024).state_numel()
    assert MAX_STATE_NUMEL > 50 * real


def _tiny_checkpoint(kimg=None):
    from advisor.checkpoints.format import Checkpoint, CheckpointMetadata
    from advisor.networks import Generator, GeneratorConfig

    config = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8,
                             mapping_layers=1)  # fmt: skip
    meta = CheckpointMetadata(name="t", generator=config, training_kimg=kimg)
    return Checkpoint(metadata=meta, G_ema=Generator(config))


@pytest.mark.parametrize("kimg", [float("nan"), float("inf"), -1.0])
def test_a_training_kimg_that_json_cannot_hold_is_refused(kimg):
    with pytest.raises(AdvisorError, match="training kimg"):
        _tiny_checkpoint(kimg)


def test_a_safetensors_write_error_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    import safetensors
    import safetensors.torch

    from advisor.checkpoints.format import save_checkpoint

    def full(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(AdvisorError, match="no space left"):
        save_checkpoint(tmp_path / "new" / "deeper" / "ck", _tiny_checkpoint())
    assert list(tmp_path.iterdir()) == []


def test_seed_lists_take_ascii_digits_only_and_psi_is_bounded():
    from advisor.sampling import check_truncation, parse_seeds

    with pytest.raises(ValueError, match="bad seed list"):
        parse_seeds("\u0663")  # ARABIC-INDIC DIGIT THREE: int() would read it as 3
    assert parse_seeds("3") == [3]
    for psi in (1e30, 1e308, -101.0):
        with pytest.raises(ValueError, match="within"):
            check_truncation(psi)
    check_truncation(-2.0)


def test_cpu_with_an_index_is_the_one_cpu():
    import torch

    from advisor.devices import resolve_device

    assert resolve_device("cpu:0") == torch.device("cpu")
