"""Builders for checkpoint files shaped like NVlabs and rosinality ones, without their code.

NVlabs pickles: ``nvlabs_snapshot`` emits the structure NVlabs' ``torch_utils.persistence``
produces: every network is ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type, version, module_src, class_name, state}`` and ``state`` a module ``__dict__``
(``_parameters`` of ``torch.nn.Parameter``, ``_buffers``, ``_modules``, ``_init_kwargs`` as
``dnnlib.util.EasyDict``, numpy scalars...). The two NVlabs names exist only while writing: a
fake ``torch_utils.persistence`` / ``dnnlib.util`` module is put in ``sys.modules`` for the
``pickle.dumps`` call and removed afterwards. Tensors pickle through torch's own reducers, so
storages are real ``torch.storage._load_from_bytes`` payloads.

This file holds no tests; pytest collects it harmlessly.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

SG2ADA_G_KWARGS: dict[str, Any] = {
    "z_dim": 8,
    "c_dim": 0,
    "w_dim": 8,
    "img_resolution": 16,
    "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {
        "channel_base": 256,
        "channel_max": 16,
        "num_fp16_res": 4,
        "conv_clamp": 256,
    },
}
SG2ADA_D_KWARGS: dict[str, Any] = {
    "c_dim": 0,
    "img_resolution": 16,
    "img_channels": 3,
    "architecture": "resnet",
    "channel_base": 256,
    "channel_max": 16,
    "num_fp16_res": 4,
    "conv_clamp": 256,
    "block_kwargs": {},
    "mapping_kwargs": {},
    "epilogue_kwargs": {"mbstd_group_size": 2},
}
#: What a malicious module_src would do if anyone executed it: create ``marker``.
PAYLOAD_SRC = "import pathlib\npathlib.Path({marker!r}).write_text('pwned')\n"


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every float parameter and buffer except resample filters with N(0, 0.5) values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not name.endswith("resample_filter"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)
    return module.eval()


def tiny_networks(seed: int = 0) -> tuple[Generator, Generator, Discriminator]:
    """(G, G_ema, D) built from the SG2ADA kwargs, with random weights."""
    g_cfg = GeneratorConfig.from_nvlabs_kwargs(SG2ADA_G_KWARGS)
    d_cfg = DiscriminatorConfig.from_nvlabs_kwargs(SG2ADA_D_KWARGS)
    return (
        randomize(Generator(g_cfg), seed),
        randomize(Generator(g_cfg), seed + 1),
        randomize(Discriminator(d_cfg), seed + 2),
    )


def _fake_reconstruct(meta: Any) -> Any:  # pragma: no cover - never called
    raise AssertionError("the fake persistence hook is only for writing pickles")


class _EasyDict(dict):
    pass


@contextlib.contextmanager
def fake_nvlabs_modules() -> Iterator[dict[str, types.ModuleType]]:
    """Temporarily register ``torch_utils.persistence`` and ``dnnlib.util`` stand-ins."""
    persistence = types.ModuleType("torch_utils.persistence")
    _fake_reconstruct.__module__ = "torch_utils.persistence"
    _fake_reconstruct.__qualname__ = "_reconstruct_persistent_obj"
    _fake_reconstruct.__name__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _fake_reconstruct
    util = types.ModuleType("dnnlib.util")
    _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = _EasyDict
    mods = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persistent:
    """Pickles exactly like an NVlabs persistent object."""

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str = "") -> None:
        self.meta = {
            "type": "class",
            "version": 6,
            "module_src": module_src or "# networks source (never executed)\n",
            "class_name": class_name,
            "state": state,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_fake_reconstruct, (self.meta,))


def easydict(value: Any) -> Any:
    """Nested dicts -> the fake ``dnnlib.util.EasyDict`` (for init kwargs)."""
    if isinstance(value, dict):
        return _EasyDict({k: easydict(v) for k, v in value.items()})
    return value


def persistent_tree(
    module: torch.nn.Module,
    *,
    class_name: str | None = None,
    init_kwargs: dict[str, Any] | None = None,
    module_src: str = "",
) -> Persistent:
    """An NVlabs-style persistent record of ``module`` and (recursively) its children."""
    params = collections.OrderedDict(
        (k, None if v is None else torch.nn.Parameter(v.detach().clone(), requires_grad=False))
        for k, v in module._parameters.items()
    )
    buffers = collections.OrderedDict(
        (k, None if v is None else v.detach().clone()) for k, v in module._buffers.items()
    )
    children = collections.OrderedDict(
        (k, persistent_tree(c, module_src=module_src)) for k, c in module._modules.items()
    )
    state = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": children,
        "_init_args": (),
        "_init_kwargs": easydict(init_kwargs or {}),
        "weight_gain": np.float64(0.125),  # NVlabs layers keep numpy scalars as attributes
        "some_array": np.arange(4, dtype=np.float32).reshape(2, 2),
    }
    return Persistent(class_name or type(module).__name__, state, module_src)


def nvlabs_snapshot(
    *,
    g_kwargs: dict[str, Any] = SG2ADA_G_KWARGS,
    d_kwargs: dict[str, Any] = SG2ADA_D_KWARGS,
    networks: tuple[Generator, Generator, Discriminator] | None = None,
    module_src: str = "",
    protocol: int = 4,
    tweak: Any = None,
) -> bytes:
    """Bytes of an NVlabs-structured snapshot ``{G, D, G_ema, augment_pipe, training_set_kwargs}``.

    ``tweak(snapshot_dict)`` may edit the Persistent records before pickling.
    """
    g, g_ema, d = networks if networks is not None else tiny_networks()
    with fake_nvlabs_modules():
        snapshot = {
            "G": persistent_tree(g, class_name="Generator", init_kwargs=g_kwargs,
                                 module_src=module_src),
            "D": persistent_tree(d, class_name="Discriminator", init_kwargs=d_kwargs,
                                 module_src=module_src),
            "G_ema": persistent_tree(g_ema, class_name="Generator", init_kwargs=g_kwargs,
                                     module_src=module_src),
            "augment_pipe": Persistent("AugmentPipe", {
                "_parameters": collections.OrderedDict(),
                "_buffers": collections.OrderedDict(p=torch.zeros([])),
                "_modules": collections.OrderedDict(),
                "_init_kwargs": easydict({"xflip": 1}),
            }),
            "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                    "path": "/data/tiny-faces.zip", "max_size": None},
        }  # fmt: skip
        if tweak is not None:
            tweak(snapshot)
        return pickle.dumps(snapshot, protocol=protocol)


class Reduce:
    """An object that pickles as ``func(*args)``: a stand-in for a hostile payload."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)
