"""Read NVlabs StyleGAN2-ADA network pickles without running the code they carry.

An NVlabs snapshot (``network-snapshot-*.pkl``) is ``pickle.dump`` of a dict
``{G, D, G_ema, augment_pipe, training_set_kwargs}``. The networks are "persistent classes": each
pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type: 'class', version, module_src, class_name, state}``, where ``module_src`` is the
Python source of the module that defined the class and ``state`` is the module's ``__dict__``
(``_parameters``, ``_buffers``, ``_modules`` of child persistent objects, ``_init_kwargs``...).
NVlabs' own loader executes ``module_src``; so does any stock unpickler that has NVlabs' code on
its path. Tensors inside pickle as ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, hooks)`` whose storage is ``torch.storage._load_from_bytes(b)``, i.e. a
legacy ``torch.save`` payload; parameters wrap that in ``torch._utils._rebuild_parameter``.

``load_nvlabs_pickle`` reads such a file with an unpickler whose ``find_class`` answers only an
explicit allowlist, each entry a function written here (never the named original):

- the persistence hook returns a :class:`PersistentRecord` holding ``meta`` as data; the source
  text is kept as a string and never compiled or executed;
- storages are read with ``torch.load(..., weights_only=True)`` (torch's own restricted
  unpickler), tensors are rebuilt from them with bounds-checked ``Tensor.set_``;
- ``collections.OrderedDict``, ``set``/``frozenset``, ``dnnlib.util.EasyDict`` (as a plain dict),
  numpy scalars and arrays of plain numeric dtypes, and protocol-2 ``_codecs.encode`` of bytes.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``builtins.getattr``,
NVlabs' own classes...) raises :class:`AdvisorError` the moment the pickle names it, before
anything is called. Persistent ids (``torch.save`` zip payloads) are refused too.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor.errors import AdvisorError

#: The persistence version NVlabs' StyleGAN2-ADA and StyleGAN3 repositories write.
PERSISTENCE_VERSION = 6

_NUMPY_CODES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
)


class RefusedGlobal(AdvisorError):
    """The pickle asked for a global outside the allowlist; nothing was called."""


@dataclass
class PersistentRecord:
    """One NVlabs persistent object, as data: class name, stored state and (unexecuted) source.

    ``state`` is the module's pickled ``__dict__``; ``children`` and ``tensors`` read it.
    """

    class_name: str
    module_src: str = field(repr=False)
    state: dict[str, Any] = field(repr=False)

    def __setstate__(self, state: Any) -> None:
        raise AdvisorError("malformed NVlabs pickle: a persistent object received extra state")

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs NVlabs stored (``_init_kwargs``), as plain Python values."""
        return to_plain(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple[Any, ...]:
        """The positional constructor args NVlabs stored (usually empty)."""
        return tuple(to_plain(self.state.get("_init_args") or ()))

    @property
    def children(self) -> dict[str, PersistentRecord]:
        """Child modules by attribute name (``_modules``); ``None`` entries are skipped."""
        modules = self.state.get("_modules") or {}
        out = {}
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise AdvisorError(
                    f"malformed NVlabs pickle: submodule {name!r} of {self.class_name} is "
                    f"{type(child).__name__}, not a persistent object"
                )
            out[name] = child
        return out

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, state_dict-named.

        Names are dotted paths exactly as ``torch.nn.Module.state_dict`` would give them
        (``mapping.fc0.weight``...). Order: own parameters, own buffers, then children.
        """
        out: dict[str, torch.Tensor] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise AdvisorError(
                        f"malformed NVlabs pickle: {prefix}{name} is {type(value).__name__}, "
                        "not a tensor"
                    )
                out[prefix + name] = value
        for name, child in self.children.items():
            out.update(child.tensors(f"{prefix}{name}."))
        return out


def load_nvlabs_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle an NVlabs network pickle with the restricted unpickler described above.

    Returns the unpickled object (a snapshot is a dict whose networks are
    :class:`PersistentRecord`). Raises :class:`AdvisorError` (one line) for a refused global
    (:class:`RefusedGlobal`), a truncated or corrupt file, or anything not a pickle.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's TypedStorage deprecation notices
            return _RestrictedUnpickler(f).load()
    except AdvisorError as err:
        raise type(err)(f"{path.name}: {err}") from None
    except (OSError, MemoryError) as err:
        raise AdvisorError(f"cannot read {path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file, one line
        raise AdvisorError(
            f"{path.name} is not a readable NVlabs pickle ({_one_line(err)})"
        ) from None


def to_plain(value: Any) -> Any:
    """Turn unpickled containers into plain Python: dicts, lists, tuples, numbers, str, arrays.

    ``EasyDict``/``OrderedDict`` become ``dict``; numpy scalars become Python numbers.
    """
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, _NumpyArrayStub):
        return value.array
    if isinstance(value, np.generic):
        return value.item()
    return value


def torch_refused_global(err: BaseException) -> str | None:
    """The global that ``torch.load(weights_only=True)`` refused, from its error, else None."""
    match = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(err), re.IGNORECASE)
    return match.group(1) if match else None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedGlobal(
                f"refused: the pickle asks for {module}.{name}, which advisor never loads "
                "(only NVlabs network state is read; nothing was run)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise AdvisorError("refused: the pickle uses persistent ids (not an NVlabs network pickle)")


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    """Stand-in for NVlabs' hook: validate ``meta`` and keep it as data. Never runs the source."""
    if not isinstance(meta, dict):
        raise AdvisorError("malformed NVlabs pickle: persistent object meta is not a dict")
    if meta.get("type") != "class":
        raise AdvisorError(f"unsupported NVlabs persistent object type {meta.get('type')!r}")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise AdvisorError(
            f"unsupported NVlabs persistence version {meta.get('version')!r} "
            f"(advisor reads version {PERSISTENCE_VERSION})"
        )
    class_name, module_src, state = (meta.get(k) for k in ("class_name", "module_src", "state"))
    if not isinstance(class_name, str) or not isinstance(module_src, str):
        raise AdvisorError("malformed NVlabs pickle: class_name/module_src are not strings")
    if not isinstance(state, dict):
        raise AdvisorError(f"malformed NVlabs pickle: state of {class_name} is not a dict")
    return PersistentRecord(class_name=class_name, module_src=module_src, state=dict(state))


def _load_from_bytes(data: Any) -> torch.storage.TypedStorage:
    """Stand-in for ``torch.storage._load_from_bytes``: torch's restricted loader, CPU only."""
    if not isinstance(data, (bytes, bytearray)):
        raise AdvisorError("malformed NVlabs pickle: tensor storage is not bytes")
    try:
        storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        refused = torch_refused_global(err)
        if refused:
            raise RefusedGlobal(
                f"refused: a tensor storage in the pickle asks for {refused} (nothing was run)"
            ) from None
        raise
    if not isinstance(storage, torch.storage.TypedStorage):
        raise AdvisorError("malformed NVlabs pickle: tensor storage payload is not a storage")
    return storage


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any
) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor[_v2]``; hooks and metadata must be empty."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise AdvisorError("malformed NVlabs pickle: tensor without a storage")
    if not (
        isinstance(storage_offset, int)
        and isinstance(size, tuple | list | torch.Size)
        and isinstance(stride, tuple | list)
        and all(isinstance(v, int) and v >= 0 for v in (storage_offset, *size, *stride))
    ):
        raise AdvisorError("malformed NVlabs pickle: bad tensor geometry")
    hooks = rest[1] if len(rest) > 1 else None  # rest = (requires_grad, hooks, metadata)
    if hooks or any(extra for extra in rest[2:]):
        raise AdvisorError("refused: a tensor in the pickle carries hooks or metadata")
    tensor = torch.empty((0,), dtype=storage.dtype)
    # set_ checks the geometry against the storage's size and raises if it overruns.
    tensor.set_(storage.untyped(), storage_offset, tuple(size), tuple(stride))
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, *state: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor."""
    if not isinstance(data, torch.Tensor):
        raise AdvisorError("malformed NVlabs pickle: parameter without a tensor")
    if hooks:
        raise AdvisorError("refused: a parameter in the pickle carries hooks")
    return data.detach()


class _EasyDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (no attribute magic, no code)."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise AdvisorError("malformed NVlabs pickle: EasyDict with attribute state")


class _NumpyDtypeStub:
    """``numpy.dtype(code, align, copy)`` + BUILD state, limited to plain numeric dtypes."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or code not in _NUMPY_CODES:
            raise AdvisorError(f"refused: numpy dtype {code!r} in the pickle")
        self.code = code
        self.byteorder = "|" if code in ("b1", "i1", "u1") else "<"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise AdvisorError("malformed NVlabs pickle: bad numpy dtype state")
        self.byteorder = state[1]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.byteorder.replace("=", "<") + self.code)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _NumpyDtypeStub) or not isinstance(data, bytes):
        raise AdvisorError("refused: numpy scalar of a non-numeric type in the pickle")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0]


class _NumpyArrayStub:
    """``numpy.core.multiarray._reconstruct(ndarray, shape, b'b')`` + BUILD state, numeric only."""

    def __init__(self, cls: Any, shape: Any = (0,), dummy: Any = b"b") -> None:
        if cls is not _NumpyArrayStub:
            raise AdvisorError("refused: numpy array subclass in the pickle")
        self.array = np.empty((0,))

    def __setstate__(self, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) == 5
        if ok:
            _version, shape, dtype, fortran, raw = state
            ok = (
                isinstance(dtype, _NumpyDtypeStub)
                and isinstance(raw, bytes)
                and isinstance(shape, tuple)
                and all(isinstance(n, int) and n >= 0 for n in shape)
            )
        if not ok:
            raise AdvisorError("refused: numpy array of a non-numeric type in the pickle")
        array = np.frombuffer(raw, dtype=dtype.dtype).copy()
        self.array = array.reshape(shape, order="F" if fortran else "C")


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """Protocol-5 numpy arrays: ``numpy.core.numeric._frombuffer(buf, dtype, shape, order)``."""
    if (
        not isinstance(buffer, (bytes, bytearray))
        or not isinstance(dtype, _NumpyDtypeStub)
        or not isinstance(shape, tuple)
        or order not in ("C", "F")
    ):
        raise AdvisorError("refused: numpy buffer of a non-numeric type in the pickle")
    return np.frombuffer(bytes(buffer), dtype=dtype.dtype).reshape(shape, order=order)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise AdvisorError("refused: _codecs.encode other than latin1 bytes in the pickle")
    return text.encode("latin1")


def _build_allowlist() -> dict[tuple[str, str], Callable[..., Any] | type]:
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("dnnlib", "EasyDict"): _EasyDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("numpy", "dtype"): _NumpyDtypeStub,
        ("numpy", "ndarray"): _NumpyArrayStub,
        ("_codecs", "encode"): _codecs_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "scalar")] = _numpy_scalar
        allowed[(f"{core}.multiarray", "_reconstruct")] = _NumpyArrayStub
        allowed[(f"{core}.numeric", "_frombuffer")] = _numpy_frombuffer
    return allowed


_ALLOWED = _build_allowlist()
