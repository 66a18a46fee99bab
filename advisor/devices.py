"""Where networks run: the one place a user's ``--device`` becomes a usable ``torch.device``.

Every command and library entry point that takes a device resolves it here, before any work, so
that a device this machine cannot use (``cuda`` without a visible CUDA device, ``cuda:3`` on a
two-GPU machine, ``meta``, a typo) is one line naming what is available instead of a failure
deep inside torch after images were decoded or a checkpoint was read.

It is also where advisor's numeric mode lives: :func:`fp32_math` scopes "fp32 means fp32" (no
TF32 matmuls or cuDNN convolutions) around the extractor's and the sampler's forward, so the
Python API, torchrun workers and a service compute what the CLI computes under the same cache
key, whatever the process-wide flags say.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from advisor.errors import AdvisorError

#: Picks ``cuda`` when a CUDA device is visible, else ``cpu``.
AUTO = "auto"
#: Longest device text quoted back in an error (the rest is cut, so a hostile value stays short).
_SHOWN_CHARS = 40


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_devices() -> str:
    """What ``--device`` can name here, as text: ``"cpu, cuda:0, cuda:1"``, or
    ``"cpu; no CUDA device is visible"``."""
    count = _cuda_count()
    if count == 0:
        return "cpu; no CUDA device is visible"
    return ", ".join(["cpu", *(f"cuda:{i}" for i in range(count))])


def _shown(name: object) -> str:
    text = ascii(str(name))
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; ``cpu``, ``cuda``,
    ``cuda:N`` (or a ``torch.device``) as given, once checked to exist on this machine.

    Cheap (no CUDA context is created). Raises :class:`AdvisorError` naming the available
    devices for an unknown device string, a CUDA device that is not visible, and device types
    advisor's networks do not run on (``meta``, ``mps``, ``xla``, ...).
    """
    if isinstance(name, str) and name == AUTO:
        return torch.device("cuda" if _cuda_count() > 0 else "cpu")
    if not isinstance(name, (str, torch.device)):
        raise AdvisorError(f"a device is a name like cpu or cuda:0, got {type(name).__name__}")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise AdvisorError(
            f"unknown device {_shown(name)}; available: {available_devices()} (or auto)"
        ) from None
    if device.type == "cpu":
        usable = device.index in (None, 0)
    elif device.type == "cuda":
        count = _cuda_count()
        usable = count > 0 and (device.index is None or device.index < count)
    else:
        raise AdvisorError(
            f"advisor does not run on device {_shown(name)}; available: {available_devices()}"
        )
    if not usable:
        raise AdvisorError(
            f"device {_shown(name)} is not available; available: {available_devices()}"
        )
    # "cpu:0" is the one CPU: normalised, since some readers (safetensors) refuse an index.
    return torch.device("cpu") if device.type == "cpu" else device


# --- numeric mode ----------------------------------------------------------------------------

_fp32_lock = threading.Lock()
_fp32_depth = 0
_fp32_restore: list[tuple[object, str, object]] = []


@contextlib.contextmanager
def fp32_math() -> Iterator[None]:
    """Within this block float32 matmuls and cuDNN convolutions run in IEEE fp32, not TF32.

    The process-wide flags are set on entry and put back as they were on exit, so the caller's
    own setting is untouched. Blocks may nest and overlap across threads (ranking runs one
    thread per device): the flags are set by the first block to enter and restored by the last
    to leave, so no thread restores TF32 while another still computes. A flag that is already
    off is not touched.

    The flags are read and written through torch's legacy ``allow_tf32`` attributes (what
    ``torch.backends`` reports and what most code sets); when the process mixed those with the
    newer ``fp32_precision`` attributes, so that the legacy ones cannot be read, the newer ones
    are used instead. On a machine without CUDA the flags change nothing.
    """
    global _fp32_depth
    with _fp32_lock:
        if _fp32_depth == 0:
            _fp32_restore[:] = _disable_tf32()
        _fp32_depth += 1
    try:
        yield
    finally:
        with _fp32_lock:
            _fp32_depth -= 1
            if _fp32_depth == 0:
                for owner, name, value in reversed(_fp32_restore):
                    setattr(owner, name, value)
                _fp32_restore.clear()


def _disable_tf32() -> list[tuple[object, str, object]]:
    """Turn TF32 off; returns ``(owner, attribute, previous value)`` for what was changed."""
    backends = torch.backends
    try:
        legacy = [
            (backends.cuda.matmul, "allow_tf32", backends.cuda.matmul.allow_tf32, False),
            (backends.cudnn, "allow_tf32", backends.cudnn.allow_tf32, False),
        ]
    except RuntimeError:  # torch refuses legacy reads once the two APIs were mixed
        legacy = [
            (owner, "fp32_precision", owner.fp32_precision, "ieee")
            for owner in (backends.cuda.matmul, backends.cudnn.conv, backends.cudnn.rnn)
        ]
    changed = []
    for owner, name, before, wanted in legacy:
        if before != wanted:
            setattr(owner, name, wanted)
            changed.append((owner, name, before))
    return changed
