"""Bound the work of unpickling before any unpickler runs: one linear pass over the opcodes.

A pickle is a program for a stack machine. Python's unpickler runs it in time linear in its
length except where it hashes: dict keys (``SETITEM``, ``SETITEMS``, ``DICT``, ``BUILD``), set
members (``ADDITEMS``, ``FROZENSET``, ``set(list)``...). Hashing a tuple hashes its items,
recursively and without a cache, and the memo lets a tuple hold the same tuple twice, which
holds the same tuple twice...: a hundred levels are a few hundred bytes of pickle, and hashing
the top one visits 2**100 items, a "billion laughs" that hangs the stock unpickler, which has no
hook there. So :func:`scan_pickle` reads the opcodes first (``pickletools.genops``: nothing is
built or called) and models the stack with, for every value, what hashing it would cost: a
tuple 1 + its items' cost, an int its digits, anything else 1 (strings, bytes and frozensets
cache their hash; lists, dicts and sets cannot be hashed).

It refuses (:class:`AdvisorError`) a pickle that has more than :data:`MAX_OPCODES`
opcodes, asks for more than :data:`MAX_HASH_WORK` units of hashing in all, or uses persistent
ids where the format has none; and it calls a pickle unreadable (``ValueError``) when a length
prefix claims more bytes than the file has left (checked before reading, so a few forged
bytes never make anything allocate gigabytes), or it reads a memo slot it never filled or a
stack value it does not have.

Everything else (what globals may be named, what the objects mean) is the unpickler's business.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from collections.abc import Iterable
from typing import IO, Any

from advisor.errors import AdvisorError

#: Opcodes in one pickle. An NVlabs StyleGAN2 snapshot at 1024 px has well under 100k (a few
#: dozen per tensor, ~1000 tensors in G, G_ema and D); StyleGAN-XL's, with its feature networks
#: in D, some hundred thousand. Scanning 5M takes a few seconds.
MAX_OPCODES = 5_000_000
#: Units of hashing (one per atom hashed) the whole pickle may ask for: ten per opcode allowed.
#: Real pickles hash each dict key once, ~ a third of their opcodes.
MAX_HASH_WORK = 10 * MAX_OPCODES

#: Globals that hash the items of their first argument when called (``set(list)``...).
_HASHING_CALLS = frozenset(
    (module, name)
    for module in ("builtins", "__builtin__", "collections", "dnnlib.util", "dnnlib")
    for name in ("set", "frozenset", "OrderedDict", "EasyDict", "dict")
)
_STRINGS = frozenset(
    ["STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
     "BINUNICODE8"]
)  # fmt: skip
_INTS = frozenset(["INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"])
_ATOMS = frozenset(
    ["BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NEXT_BUFFER", "NONE", "NEWTRUE",
     "NEWFALSE", "FLOAT", "BINFLOAT", "EXT1", "EXT2", "EXT4"]
)  # fmt: skip
_CONTAINERS = frozenset(["EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"])


_TUPLE_SIZES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _capped(cost: int) -> int:
    """Costs saturate just above the budget, so exponential ones stay small numbers."""
    return min(cost, MAX_HASH_WORK + 1)


class _Value:
    """What the scan knows of one stacked value: its hash cost and, for containers, the summed
    hash cost of what they hold (what ``set(value)`` would pay); tuples keep their items."""

    __slots__ = ("cost", "global_name", "held", "items", "text")

    def __init__(self, cost: int = 1, *, text: str | None = None) -> None:
        self.cost = cost
        self.held = 0
        self.items: tuple[_Value, ...] = ()
        self.text = text
        self.global_name: tuple[str, str] | None = None


#: Stands for every value whose only property is costing 1 to hash (floats, bytes, None...),
#: so a pickle of millions of them costs the scan no more than a pointer each.
_ATOM = _Value()


class _Scan:
    def __init__(self, what: str, allow_persistent_ids: bool) -> None:
        self.what = what
        self.allow_persistent_ids = allow_persistent_ids
        self.stack: list[_Value] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Value] = {}
        self.hash_work = 0

    def refuse(self, why: str) -> AdvisorError:
        return AdvisorError(f"refused: {self.what} {why} (nothing was unpickled)")

    @staticmethod
    def malformed(why: str) -> ValueError:
        return ValueError(f"malformed: {why}")

    def pop(self, n: int = 1) -> list[_Value]:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) - floor < n:
            raise self.malformed("an opcode pops more than the stack holds")
        out = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return out

    def pop_mark(self) -> list[_Value]:
        if not self.marks:
            raise self.malformed("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        out = self.stack[start:]
        del self.stack[start:]
        return out

    def top(self) -> _Value:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            raise self.malformed("an opcode needs a value the stack does not hold")
        return self.stack[-1]

    def charge(self, values: Iterable[_Value]) -> None:
        """Hashing ``values`` (as keys or set members) costs their summed hash cost."""
        for value in values:
            self.hash_work += value.cost
        if self.hash_work > MAX_HASH_WORK:
            raise self.refuse(
                "asks for more hashing than any checkpoint needs (shared references that "
                "expand exponentially, a 'billion laughs')"
            )

    def _add(self, target: _Value, items: list[_Value], *, hashed: bool) -> None:
        """Items (or keys) added to the container ``target``; hashed ones are charged now."""
        if hashed:
            self.charge(items)
        target.held = _capped(target.held + sum(v.cost for v in items))

    def step(self, name: str, arg: Any) -> None:  # noqa: C901, PLR0912 - one branch per opcode
        push = self.stack.append
        if name in ("PROTO", "FRAME"):
            return
        if name == "MARK":
            self.marks.append(len(self.stack))
        elif name in _STRINGS:  # short strings are kept: STACK_GLOBAL names a global with two
            push(_Value(text=arg) if isinstance(arg, str) and len(arg) <= 256 else _ATOM)
        elif name in _INTS:
            cost = 1 + abs(int(arg)).bit_length() // 64
            push(_ATOM if cost == 1 else _Value(cost))
        elif name in _CONTAINERS:
            push(_Value())
        elif name in _ATOMS:
            push(_ATOM)
        elif name in _TUPLE_SIZES or name == "TUPLE":
            items = self.pop_mark() if name == "TUPLE" else self.pop(_TUPLE_SIZES[name])
            value = _Value(_capped(1 + sum(v.cost for v in items)))
            value.items, value.held = tuple(items), value.cost - 1
            push(value)
        elif name in ("LIST", "DICT", "FROZENSET"):
            items = self.pop_mark()
            hashed = items[0::2] if name == "DICT" else items
            if name != "LIST":
                self.charge(hashed)
            value = _Value()
            value.held = _capped(sum(v.cost for v in hashed))
            push(value)
        elif name in ("APPEND", "SETITEM"):
            items = self.pop(1 if name == "APPEND" else 2)
            self._add(self.top(), items[0:1], hashed=name == "SETITEM")
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            items = self.pop_mark()
            hashed = items[0::2] if name == "SETITEMS" else items
            self._add(self.top(), hashed, hashed=name != "APPENDS")
        elif name == "POP":
            if self.marks and len(self.stack) == self.marks[-1]:
                self.marks.pop()
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            push(self.top())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.memo[len(self.memo) if name == "MEMOIZE" else int(arg)] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise self.malformed("it reads a memo slot it never wrote")
            push(self.memo[int(arg)])
        elif name == "GLOBAL":
            value = _Value()
            module, _, attr = str(arg).partition(" ")
            value.global_name = (module, attr)
            push(value)
        elif name == "STACK_GLOBAL":
            module, attr = self.pop(2)
            value = _Value()
            value.global_name = (module.text or "", attr.text or "")
            push(value)
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            func, args, *_ = self.pop(3 if name == "NEWOBJ_EX" else 2)
            if name == "REDUCE" and func.global_name in _HASHING_CALLS:
                self.charge(_Value(v.held) for v in args.items[:1])
            push(_Value())
        elif name in ("INST", "OBJ"):
            items = self.pop_mark()
            func = items.pop(0) if name == "OBJ" and items else None
            called = (str(arg).partition(" ")[0], str(arg).partition(" ")[2]) if arg else None
            if (func.global_name if func else called) in _HASHING_CALLS:
                self.charge(_Value(v.held) for v in items[:1])
            push(_Value())
        elif name == "BUILD":
            (state,) = self.pop()
            self.top()
            self.charge([_Value(state.held)])  # a dict state's keys are hashed again
        elif name == "READONLY_BUFFER":
            self.top()
        elif name in ("PERSID", "BINPERSID"):
            if not self.allow_persistent_ids:
                raise self.refuse("uses persistent ids, which this format never has")
            if name == "BINPERSID":
                self.pop()
            push(_Value())
        elif name == "STOP":
            self.pop()
        else:
            raise self.malformed(f"unknown opcode {name}")


class _Bounded(io.RawIOBase):
    """A read-only view of ``size`` bytes of ``f`` whose reads refuse to go past the end.

    ``pickletools.genops`` reads a length-prefixed argument with one ``read(n)``; refusing an
    ``n`` beyond the end keeps a forged prefix from allocating ``n`` bytes.
    """

    def __init__(self, f: IO[bytes], size: int) -> None:
        super().__init__()
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.left
        if n > self.left:  # checked before reading: a forged length must not allocate
            raise EOFError(f"truncated: a length claims {n} bytes where {self.left} remain")
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def readline(self, limit: int | None = -1) -> bytes:
        line = self.f.readline(self.left if limit is None or limit < 0 else min(limit, self.left))
        self.left -= len(line)
        return line

    def tell(self) -> int:
        return self.f.tell()


def scan_pickle(
    f: IO[bytes], *, size: int, what: str = "the pickle", allow_persistent_ids: bool = False
) -> None:
    """Scan one pickle from ``f``'s position (reading at most ``size`` bytes) up to its STOP.

    Raises :class:`AdvisorError` (one line, ``refused: ...``) when unpickling it would take
    unbounded work or memory or it uses persistent ids where none are allowed, ``ValueError``
    (one line) when it is truncated or malformed; returns None when it is safe to hand to an
    unpickler (which still decides what the pickle may build). ``f`` is left after the STOP.
    """
    reader = _Bounded(f, size)
    scan = _Scan(what, allow_persistent_ids)
    try:
        for count, (opcode, arg, _pos) in enumerate(pickletools.genops(reader), start=1):
            if count > MAX_OPCODES:
                raise scan.refuse(f"has more than {MAX_OPCODES} opcodes")
            scan.step(opcode.name, arg)
    except AdvisorError:
        raise
    except (ValueError, EOFError, OverflowError, MemoryError, UnicodeDecodeError) as err:
        text = " ".join(str(err).split())[:120] or type(err).__name__
        raise ValueError(text) from None


#: Pickles at the start of a legacy (non-zip) ``torch.save`` file: magic number, protocol
#: version, system info, the object (with persistent ids for storages), the storage keys.
_LEGACY_PICKLES = 5


def scan_torch_save(f: IO[bytes], *, size: int, what: str) -> None:
    """Scan the pickles of a ``torch.save`` file (zip or legacy) before ``torch.load`` runs.

    Zip files: the ``data.pkl`` member, which must be stored uncompressed as ``torch.save``
    writes it. Legacy files (also the storage payloads inside NVlabs pickles): the leading
    pickles; the raw storage bytes after them are torch's to read.
    """
    start = f.tell()
    head = f.read(4)
    f.seek(start)
    if head != b"PK\x03\x04":
        for _ in range(_LEGACY_PICKLES):
            left = size - (f.tell() - start)
            if left <= 0:
                break  # fewer pickles than torch writes: torch.load says what is wrong
            scan_pickle(f, size=left, what=what, allow_persistent_ids=True)
        f.seek(start)
        return
    try:
        with zipfile.ZipFile(f) as archive:
            members = [i for i in archive.infolist() if i.filename.endswith("data.pkl")]
            if len(members) != 1:
                raise ValueError("a torch.save zip holds one data.pkl; this one does not")
            info = members[0]
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise AdvisorError(
                    f"refused: {what} has a compressed or oversized data.pkl; torch.save "
                    "stores it uncompressed"
                )
            with archive.open(info) as member:
                scan_pickle(member, size=info.file_size, what=what, allow_persistent_ids=True)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
        text = " ".join(str(err).split())[:120] or type(err).__name__
        raise ValueError(f"unreadable zip: {text}") from None
    finally:
        f.seek(start)
