"""Where networks run: the one place a user's ``--device`` becomes a usable ``torch.device``.

Every command and library entry point that takes a device resolves it here, before any work, so
that a device this machine cannot use (``cuda`` without a visible CUDA device, ``cuda:3`` on a
two-GPU machine, ``meta``, a typo) is one line naming what is available instead of a failure
deep inside torch after images were decoded or a checkpoint was read.
"""

from __future__ import annotations

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
    return device
