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
anything is called. Persistent ids (``torch.save`` zip payloads) are refused too. Only plain
containers are exposed as classes; numpy stand-ins are built by functions, so no opcode can
create one without its constructor.

Work is bounded at every step: before unpickling, :mod:`.pickle_scan` refuses pickles whose
hashing would explode or whose lengths are forged; tensors must fit inside their storages;
after unpickling, every walk over what the pickle built (:func:`to_plain`, the module tree of
:meth:`PersistentRecord.tensors`) keeps a memo by ``id``, a depth bound and a size budget, so
shared references ("billion laughs"), cycles, modules that are their own child and deep nesting
are one :class:`AdvisorError` line, as are values of the wrong type where a dict is expected.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor.checkpoints.pickle_scan import scan_pickle, scan_torch_save
from advisor.errors import AdvisorError
from advisor.networks.config import short_repr

#: The persistence version NVlabs' StyleGAN2-ADA and StyleGAN3 repositories write.
PERSISTENCE_VERSION = 6
#: Values :func:`to_plain` converts in one structure, shared ones counted every time they
#: appear (as a naive walk would meet them). NVlabs init kwargs hold a few dozen.
MAX_PLAIN_ITEMS = 100_000
#: Nesting levels :func:`to_plain` follows. NVlabs init kwargs nest three deep.
MAX_PLAIN_DEPTH = 32
#: Nesting of modules in one network: NVlabs' deepest path is G.synthesis.b1024.conv0.affine.
MAX_MODULE_DEPTH = 32
#: Modules in one network: a StyleGAN2 G at 1024 px has ~100, StyleGAN-XL's D a few thousand.
MAX_MODULES = 100_000
#: Dimensions of one tensor: StyleGAN weights have at most 5 (rosinality's modulated convs).
MAX_TENSOR_DIMS = 16

_NUMPY_CODES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
)


class RefusedGlobal(AdvisorError):
    """The pickle asked for a global outside the allowlist; nothing was called."""


@dataclass
class PersistentRecord:
    """One NVlabs persistent object, as data: class name, stored state and (unexecuted) source.

    ``state`` is the module's pickled ``__dict__``; ``children`` and ``tensors`` read it,
    checking every field they use and never following a module twice (see the module doc).
    """

    class_name: str
    module_src: str = field(repr=False)
    state: dict[str, Any] = field(repr=False)

    def __setstate__(self, state: Any) -> None:
        raise AdvisorError("malformed NVlabs pickle: a persistent object received extra state")

    def _field(self, name: str, kind: type | tuple[type, ...], empty: Any) -> Any:
        """``state[name]`` checked to be ``kind``; ``None`` or absent gives ``empty``."""
        value = self.state.get(name)
        if value is None:
            return empty
        if not isinstance(value, kind):
            expected = " or ".join(
                k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,))
            )
            raise AdvisorError(
                f"malformed NVlabs pickle: {name} of {self.class_name[:60]} is of type "
                f"{type(value).__name__}, not {expected}"
            )
        return value

    def _named(self, name: str) -> dict[str, Any]:
        """A dict field whose keys must be names (``_parameters``, ``_modules``...)."""
        value = self._field(name, dict, {})
        if not all(isinstance(k, str) for k in value):
            raise AdvisorError(
                f"malformed NVlabs pickle: {name} of {self.class_name[:60]} has non-string keys"
            )
        return value

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs NVlabs stored (``_init_kwargs``), as plain Python values."""
        kwargs = to_plain(self._field("_init_kwargs", dict, {}))
        if not all(isinstance(k, str) for k in kwargs):
            raise AdvisorError(f"malformed NVlabs pickle: init kwargs of {self.class_name[:60]}")
        return kwargs

    @property
    def init_args(self) -> tuple[Any, ...]:
        """The positional constructor args NVlabs stored (usually empty)."""
        return tuple(to_plain(self._field("_init_args", (tuple, list), ())))

    @property
    def children(self) -> dict[str, PersistentRecord]:
        """Child modules by attribute name (``_modules``); ``None`` entries are skipped."""
        out = {}
        for name, child in self._named("_modules").items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise AdvisorError(
                    f"malformed NVlabs pickle: submodule {name[:60]!r} of "
                    f"{self.class_name[:60]} is {type(child).__name__}, not a persistent object"
                )
            out[name] = child
        return out

    def modules(self) -> list[tuple[str, PersistentRecord]]:
        """``(dotted prefix, record)`` for this module and all below it, depth first.

        Raises :class:`AdvisorError` when a module appears twice (its own descendant, or shared
        between two parents: NVlabs networks never share modules), or when the tree is deeper
        than ``MAX_MODULE_DEPTH`` or larger than ``MAX_MODULES``.
        """
        out: list[tuple[str, PersistentRecord]] = []
        seen: set[int] = set()
        pending: list[tuple[str, PersistentRecord, int]] = [("", self, 0)]
        while pending:
            prefix, record, depth = pending.pop()
            where = prefix.rstrip(".")[:80] or self.class_name[:60]
            if id(record) in seen:
                raise AdvisorError(
                    f"malformed NVlabs pickle: module {where} appears twice in its network "
                    "(a module that contains itself, or one shared by two parents)"
                )
            if depth > MAX_MODULE_DEPTH or len(seen) >= MAX_MODULES:
                raise AdvisorError(
                    f"malformed NVlabs pickle: the module tree is deeper than "
                    f"{MAX_MODULE_DEPTH} or larger than {MAX_MODULES} modules (at {where})"
                )
            seen.add(id(record))
            out.append((prefix, record))
            for name, child in reversed(record.children.items()):
                pending.append((f"{prefix}{name}.", child, depth + 1))
        return out

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, state_dict-named.

        Names are dotted paths exactly as ``torch.nn.Module.state_dict`` would give them
        (``mapping.fc0.weight``...). Order: own parameters, own buffers, then children.
        """
        out: dict[str, torch.Tensor] = {}
        for path, record in self.modules():
            out.update(record._own_tensors(prefix + path))
        return out

    def _own_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        skip = self._field("_non_persistent_buffers_set", (set, frozenset, list, tuple), ())
        if not all(isinstance(k, str) for k in skip):
            raise AdvisorError(
                f"malformed NVlabs pickle: _non_persistent_buffers_set of "
                f"{self.class_name[:60]} holds something other than names"
            )
        skip = set(skip)
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in self._named(group).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise AdvisorError(
                        f"malformed NVlabs pickle: {prefix}{name[:60]} is "
                        f"{type(value).__name__}, not a tensor"
                    )
                out[prefix + name] = value
        return out


def load_nvlabs_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle an NVlabs network pickle with the restricted unpickler described above.

    Returns the unpickled object (a snapshot is a dict whose networks are
    :class:`PersistentRecord`). Raises :class:`AdvisorError` (one line) for a refused global
    (:class:`RefusedGlobal`), a pickle whose work would be unbounded (see :mod:`.pickle_scan`),
    a truncated or corrupt file, or anything not a pickle.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's TypedStorage deprecation notices
            size = os.fstat(f.fileno()).st_size
            scan_pickle(f, size=size, what="the pickle")
            f.seek(0)
            return _RestrictedUnpickler(f).load()
    except AdvisorError as err:
        raise type(err)(f"{path.name}: {err}") from None
    except (OSError, MemoryError) as err:
        raise AdvisorError(f"cannot read {path}: {_one_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file, one line
        raise AdvisorError(
            f"{path.name} is not a readable NVlabs pickle ({_one_line(err)})"
        ) from None


def to_plain(
    value: Any, *, max_items: int = MAX_PLAIN_ITEMS, max_depth: int = MAX_PLAIN_DEPTH
) -> Any:
    """Turn unpickled containers into plain Python: dicts, lists, tuples, numbers, str, arrays.

    ``EasyDict``/``OrderedDict`` become ``dict``; numpy scalars become Python numbers; other
    values are kept as they are. The walk keeps a memo by ``id``: a container referenced twice
    is converted once, but counted each time, so the result holds at most ``max_items`` values
    however a caller walks it. A container inside itself, nesting deeper than ``max_depth`` or
    more than ``max_items`` values raise :class:`AdvisorError` (one line).
    """
    memo: dict[int, tuple[Any, int]] = {}  # id -> (converted, values in it, shared counted)
    active: set[int] = set()  # containers on the current path: meeting one again is a cycle
    # Ids are stable during the walk: every container walked is held by its (live) parent.

    def walk(v: Any, depth: int) -> tuple[Any, int]:
        if isinstance(v, _NumpyArrayStub):
            return v.finished(), 1
        if isinstance(v, np.generic):
            return v.item(), 1
        if not isinstance(v, dict | list | tuple | set | frozenset):
            return v, 1
        key = id(v)
        if key in memo:
            return memo[key]
        if key in active:
            raise AdvisorError("malformed NVlabs pickle: a value contains itself")
        if depth >= max_depth:
            raise AdvisorError(f"malformed NVlabs pickle: values nest deeper than {max_depth}")
        active.add(key)
        size = 1
        parts: list[Any] = []
        for item in v.items() if isinstance(v, dict) else v:
            pair = item if isinstance(v, dict) else (item,)
            converted = []
            for element in pair:  # a dict's key and value, or one item
                out, n = walk(element, depth + 1)
                converted.append(out)
                size += n
            if size > max_items:
                raise AdvisorError(
                    f"malformed NVlabs pickle: a value expands to more than {max_items} items "
                    "(shared references that expand exponentially, a 'billion laughs')"
                )
            parts.append(tuple(converted) if isinstance(v, dict) else converted[0])
        result: Any = parts
        for kind in (dict, frozenset, set, tuple):  # subclasses (EasyDict...) become plain
            if isinstance(v, kind):
                result = kind(parts)
                break
        active.discard(key)
        memo[key] = (result, size)
        return result, size

    return walk(value, 0)[0]


def torch_refused_global(err: BaseException) -> str | None:
    """The global that ``torch.load(weights_only=True)`` refused, from its error, else None."""
    match = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(err), re.IGNORECASE)
    return match.group(1) if match else None


#: Lines of torch's loader errors that advise the user rather than say what went wrong: they
#: recommend ``weights_only=False`` or allowlisting globals, never right for an untrusted file.
_TORCH_ADVICE = re.compile(
    r"weights_only|weights only|trusted source|safe_globals|documentation|allowlist", re.I
)


def torch_load_detail(err: BaseException) -> str:
    """What went wrong in a ``torch.load`` call, one line, with torch's advice removed.

    torch's ``weights_only`` errors suggest rerunning with ``weights_only=False`` (which runs
    the file's code) or allowlisting its globals; advisor never passes that on for a file it
    does not trust. Returns ``""`` when nothing but advice was said.
    """
    lines = [" ".join(line.split()) for line in str(err).splitlines()]
    facts = [line for line in lines if line and not _TORCH_ADVICE.search(line)]
    return _one_line_text(facts[0]) if facts else ""


def _one_line(err: BaseException) -> str:
    return _one_line_text(str(err)) or type(err).__name__


def _one_line_text(text: str) -> str:
    text = " ".join(text.split())
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
    kind, version = meta.get("type"), meta.get("version")
    if not (isinstance(kind, str) and kind == "class"):
        raise AdvisorError(f"unsupported NVlabs persistent object type {short_repr(kind)}")
    if not (type(version) is int and version == PERSISTENCE_VERSION):
        raise AdvisorError(
            f"unsupported NVlabs persistence version {short_repr(version)} "
            f"(advisor reads version {PERSISTENCE_VERSION})"
        )
    class_name, module_src, state = (meta.get(k) for k in ("class_name", "module_src", "state"))
    if not isinstance(class_name, str) or not isinstance(module_src, str):
        raise AdvisorError("malformed NVlabs pickle: class_name/module_src are not strings")
    if not isinstance(state, dict):
        raise AdvisorError(f"malformed NVlabs pickle: state of {class_name[:60]} is not a dict")
    return PersistentRecord(class_name=class_name, module_src=module_src, state=dict(state))


def _load_from_bytes(data: Any) -> torch.storage.TypedStorage:
    """Stand-in for ``torch.storage._load_from_bytes``: torch's restricted loader, CPU only."""
    if not isinstance(data, (bytes, bytearray)):
        raise AdvisorError("malformed NVlabs pickle: tensor storage is not bytes")
    payload = io.BytesIO(data)
    scan_torch_save(payload, size=len(data), what="a tensor storage in the pickle")
    try:
        storage = torch.load(payload, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - torch's refusal or a corrupt payload, one line
        refused = torch_refused_global(err)
        if refused:
            raise RefusedGlobal(
                f"refused: a tensor storage in the pickle asks for {refused} (nothing was run)"
            ) from None
        detail = torch_load_detail(err) or "refused by torch's restricted loader"
        raise AdvisorError(f"malformed NVlabs pickle: a tensor storage ({detail})") from None
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
        and len(size) == len(stride) <= MAX_TENSOR_DIMS
        and all(isinstance(v, int) and v >= 0 for v in (storage_offset, *size, *stride))
    ):
        raise AdvisorError("malformed NVlabs pickle: bad tensor geometry")
    # A tensor may not show more values than its storage holds: that would take overlapping
    # (e.g. stride-0) views, which a saved parameter never is, and would let a few bytes claim
    # a tensor of any size.
    if math.prod(size) > storage.size() - min(storage_offset, storage.size()):
        raise AdvisorError("malformed NVlabs pickle: a tensor claims more values than its storage")
    hooks = rest[1] if len(rest) > 1 else None  # rest = (requires_grad, hooks, metadata)
    if not _empty(hooks) or not all(_empty(extra) for extra in rest[2:]):
        raise AdvisorError("refused: a tensor in the pickle carries hooks or metadata")
    tensor = torch.empty((0,), dtype=storage.dtype)
    # set_ checks the geometry against the storage's size and raises if it overruns.
    tensor.set_(storage.untyped(), storage_offset, tuple(size), tuple(stride))
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, *state: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor."""
    if not isinstance(data, torch.Tensor):
        raise AdvisorError("malformed NVlabs pickle: parameter without a tensor")
    if not _empty(hooks):
        raise AdvisorError("refused: a parameter in the pickle carries hooks")
    return data.detach()


def _empty(value: Any) -> bool:
    """None, or an empty plain container (never calls a truth test on a tensor)."""
    return value is None or (isinstance(value, dict | list | tuple | set) and not value)


class _EasyDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (no attribute magic, no code)."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise AdvisorError("malformed NVlabs pickle: EasyDict with attribute state")


class _NumpyDtypeStub:
    """A numpy dtype of a plain numeric code, built only by :func:`_numpy_dtype` + BUILD."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.byteorder = "|" if code in ("b1", "i1", "u1") else "<"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise AdvisorError("malformed NVlabs pickle: bad numpy dtype state")
        self.byteorder = state[1]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.byteorder.replace("=", "<") + self.code)


def _numpy_dtype(code: Any, align: Any = False, copy: Any = True) -> _NumpyDtypeStub:
    """``numpy.dtype(code, align, copy)``, limited to plain numeric dtypes."""
    if not isinstance(code, str) or code not in _NUMPY_CODES:
        raise AdvisorError(f"refused: numpy dtype {short_repr(code)} in the pickle")
    return _NumpyDtypeStub(code)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _NumpyDtypeStub) or not isinstance(data, bytes):
        raise AdvisorError("refused: numpy scalar of a non-numeric type in the pickle")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0]


class _NdarrayMarker:
    """What the pickle gets for ``numpy.ndarray``: an instance, not a class, so no opcode can
    instantiate it; only :func:`_numpy_reconstruct` accepts it."""


_NDARRAY = _NdarrayMarker()


class _NumpyArrayStub:
    """An array made by :func:`_numpy_reconstruct`, filled by BUILD state, numeric only."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) == 5
        if ok:
            _version, shape, dtype, fortran, raw = state
            ok = (
                isinstance(dtype, _NumpyDtypeStub)
                and isinstance(raw, bytes)
                and isinstance(shape, tuple)
                and len(shape) <= MAX_TENSOR_DIMS
                and all(isinstance(n, int) and n >= 0 for n in shape)
            )
        if not ok:
            raise AdvisorError("refused: numpy array of a non-numeric type in the pickle")
        array = np.frombuffer(raw, dtype=dtype.dtype).copy()
        self.array = array.reshape(shape, order="F" if fortran else "C")

    def finished(self) -> np.ndarray:
        """The array; a stub never given its data is a malformed pickle."""
        if self.array is None:
            raise AdvisorError("malformed NVlabs pickle: a numpy array without its data")
        return self.array


def _numpy_reconstruct(cls: Any, shape: Any = (0,), dummy: Any = b"b") -> _NumpyArrayStub:
    """``numpy.core.multiarray._reconstruct(ndarray, shape, b'b')``: an empty array stub."""
    if cls is not _NDARRAY:
        raise AdvisorError("refused: numpy array subclass in the pickle")
    return _NumpyArrayStub()


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """Protocol-5 numpy arrays: ``numpy.core.numeric._frombuffer(buf, dtype, shape, order)``."""
    if (
        not isinstance(buffer, (bytes, bytearray))
        or not isinstance(dtype, _NumpyDtypeStub)
        or not isinstance(shape, tuple)
        or len(shape) > MAX_TENSOR_DIMS
        or order not in ("C", "F")
    ):
        raise AdvisorError("refused: numpy buffer of a non-numeric type in the pickle")
    return np.frombuffer(bytes(buffer), dtype=dtype.dtype).reshape(shape, order=order)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise AdvisorError("refused: _codecs.encode other than latin1 bytes in the pickle")
    return text.encode("latin1")


def _build_allowlist() -> dict[tuple[str, str], Any]:
    # Classes here are plain containers only (safe to create without __init__, as NEWOBJ does);
    # everything else is a function or a marker instance.
    allowed: dict[tuple[str, str], Any] = {
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
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy", "ndarray"): _NDARRAY,
        ("_codecs", "encode"): _codecs_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "scalar")] = _numpy_scalar
        allowed[(f"{core}.multiarray", "_reconstruct")] = _numpy_reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _numpy_frombuffer
    return allowed


_ALLOWED = _build_allowlist()
