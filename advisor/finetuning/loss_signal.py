"""The loss-only convergence point of a fine-tune, read from ``stats.jsonl`` instead of a
metric curve, so it needs no feature extraction.

The signal (:func:`signal_convergence`) is one number per training tick, by default D's margin
``d_gap = E[D(real)] - E[D(fake)]`` (mean logits over every D minibatch of the tick), smoothed
by an exponential moving average over ticks, ``m_0 = x_0`` and
``m_i = beta * m_(i-1) + (1 - beta) * x_i`` with ``beta = 0.5 ** (1 / halflife)`` (``halflife``
in ticks, default 4). Its convergence kimg is a settling point, as BEGAN reads convergence off
the flattening of its own loss-based measure: the kimg of the earliest tick after which every
smoothed value stays within ``w`` of the signal's final level ``L`` (``|m_i - L| <= w``,
inclusive), where

- ``L`` is the mean of ``m`` over the final ``tail`` of the run's kimg span (default 0.25:
  the last quarter);
- ``w = max(tol * (max m - min m), z * sigma_m)``: a tenth (``tol``) of the whole excursion of
  the smoothed signal, or ``z`` (3) times the noise of ``m`` if that is wider, so that a signal
  that is only noise settles at once instead of never. ``sigma_m`` is the raw signal's noise,
  estimated from its tick-to-tick differences (robust to a trend: ``1.4826 * MAD / sqrt(2)``),
  times ``sqrt((1 - beta) / (1 + beta))``, the EMA's noise reduction.

It is ``None`` when the smoothed signal leaves the band anywhere in the final ``tail`` (it is
still moving, like a ramp), or with fewer than :data:`SIGNAL_MIN_TICKS` finite ticks. Ticks
follow the curve conventions of :mod:`advisor.finetuning.convergence`: kimg finite and
increasing, a NaN or ``None`` value skipped. The EMA lags its input by about
``halflife / ln 2`` ticks, and so does the settling point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.finetuning.convergence import SLACK, finite_points

SIGNAL = "d_gap"
"""The ``stats.jsonl`` field the loss-only convergence point is read from (raw, per tick)."""

DEFAULT_SIGNAL_HALFLIFE = 4.0
DEFAULT_SIGNAL_TAIL = 0.25
DEFAULT_SIGNAL_TOL = 0.1
DEFAULT_SIGNAL_Z = 3.0
SIGNAL_MIN_TICKS = 4


def ema_beta(halflife: float) -> float:
    """The EMA's per-tick decay ``0.5 ** (1 / halflife)`` (``halflife`` in ticks, > 0)."""
    if not (isinstance(halflife, (int, float)) and math.isfinite(halflife) and halflife > 0):
        raise ValueError(f"halflife must be a finite number > 0, got {halflife!r}")
    return 0.5 ** (1.0 / halflife)


def ema_step(previous: float | None, value: float, *, halflife: float) -> float:
    """One EMA update: ``value`` when there is no ``previous``, else ``beta * previous +
    (1 - beta) * value``. A non-finite ``value`` leaves ``previous`` as it was (NaN if none)."""
    if not math.isfinite(value):
        return math.nan if previous is None else previous
    if previous is None or not math.isfinite(previous):
        return value
    beta = ema_beta(halflife)
    return beta * previous + (1.0 - beta) * value


def smooth(values: Sequence[float], *, halflife: float = DEFAULT_SIGNAL_HALFLIFE) -> list[float]:
    """The EMA of ``values`` over ticks (see the module docstring), one output per input."""
    out: list[float] = []
    previous: float | None = None
    for v in values:
        previous = ema_step(previous, float(v), halflife=halflife)
        out.append(previous)
    return out


def _noise_sd(values: Sequence[float]) -> float:
    """Robust per-tick noise sd of a series from its differences: ``1.4826 * MAD / sqrt(2)``."""
    diffs = sorted(values[i] - values[i - 1] for i in range(1, len(values)))
    centre = _median(diffs)
    mad = _median(sorted(abs(d - centre) for d in diffs))
    return 1.4826 * mad / math.sqrt(2)


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


@dataclass(frozen=True, kw_only=True)
class Settling:
    """Where a smoothed signal settles: ``kimg`` (``None`` if it has not), the final ``level``
    ``L`` and band half-width ``band`` ``w`` it settled into, and ``reason`` when ``kimg`` is
    ``None``."""

    kimg: float | None
    level: float | None
    band: float | None
    reason: str | None = None


def settling_kimg(
    kimg: Sequence[float],
    values: Sequence[float | None],
    *,
    halflife: float = DEFAULT_SIGNAL_HALFLIFE,
    tail: float = DEFAULT_SIGNAL_TAIL,
    tol: float = DEFAULT_SIGNAL_TOL,
    z: float = DEFAULT_SIGNAL_Z,
) -> Settling:
    """The settling point of the raw per-tick signal ``values`` at ``kimg`` (module docstring)."""
    ema_beta(halflife)
    if not (math.isfinite(tail) and 0 < tail < 1):
        raise ValueError(f"tail must be a number in (0, 1), got {tail!r}")
    for name, x in (("tol", tol), ("z", z)):
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    ks, xs = finite_points(kimg, values, "min")
    if len(xs) < SIGNAL_MIN_TICKS:
        return Settling(kimg=None, level=None, band=None,
                        reason=f"{len(xs)} finite ticks, {SIGNAL_MIN_TICKS} needed")  # fmt: skip
    m = smooth(xs, halflife=halflife)
    tail_start = ks[-1] - tail * (ks[-1] - ks[0])
    in_tail = [v for k, v in zip(ks, m, strict=True) if k >= tail_start]
    level = math.fsum(in_tail) / len(in_tail)
    beta = ema_beta(halflife)
    sigma_m = _noise_sd(xs) * math.sqrt((1 - beta) / (1 + beta))
    band = max(tol * (max(m) - min(m)), z * sigma_m)
    s = len(m)
    while s > 0 and abs(m[s - 1] - level) <= band + SLACK * max(abs(level), 1.0):
        s -= 1
    if s == len(m) or ks[s] > tail_start:
        return Settling(kimg=None, level=level, band=band,
                        reason="the smoothed signal leaves its final band in the last "
                        f"{tail:g} of the run (still moving)")  # fmt: skip
    return Settling(kimg=ks[s], level=level, band=band)


@dataclass(frozen=True, kw_only=True)
class SignalConvergence:
    """The loss-only convergence point of a run beside the tracked metric's plateau.

    ``kimg_from_plateau = convergence_kimg - plateau_kimg`` (negative: the signal settled
    before the metric plateaued); ``None`` with ``note`` saying why when either is missing.
    ``level``/``band``: the final level and band the smoothed signal settled into.
    """

    signal: str
    ticks: int
    convergence_kimg: float | None
    level: float | None
    band: float | None
    metric: str
    plateau_kimg: float | None
    kimg_from_plateau: float | None
    note: str | None
    halflife: float = DEFAULT_SIGNAL_HALFLIFE
    tail: float = DEFAULT_SIGNAL_TAIL
    tol: float = DEFAULT_SIGNAL_TOL
    z: float = DEFAULT_SIGNAL_Z

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


def signal_convergence(
    stats: Sequence[Mapping[str, Any]],
    *,
    plateau_kimg: float | None,
    metric: str = "fid",
    signal: str = SIGNAL,
    halflife: float = DEFAULT_SIGNAL_HALFLIFE,
    tail: float = DEFAULT_SIGNAL_TAIL,
    tol: float = DEFAULT_SIGNAL_TOL,
    z: float = DEFAULT_SIGNAL_Z,
) -> SignalConvergence:
    """The settling point of ``signal`` over ``stats`` (``stats.jsonl`` records with ``kimg``)
    and its distance in kimg from ``plateau_kimg``, the tracked ``metric``'s plateau.

    Records without a finite ``kimg`` or without the field are left out; a run whose stats
    predate the signal gets ``None`` and a note saying so.
    """
    ks: list[float] = []
    xs: list[float] = []
    for record in stats:
        k, v = record.get("kimg"), record.get(signal)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if ks and k <= ks[-1]:
            continue  # a repeated tick (never written by advisor): keep the first
        ks.append(float(k))
        xs.append(float(v))
    ticks = sum(math.isfinite(v) for v in xs)
    if not xs:
        settled = Settling(kimg=None, level=None, band=None,
                           reason=f"no tick in stats.jsonl has {signal!r} (written by advisor "
                           "finetune since the loss-only signal was added)")  # fmt: skip
    else:
        settled = settling_kimg(ks, xs, halflife=halflife, tail=tail, tol=tol, z=z)
    notes = [settled.reason] if settled.reason else []
    if plateau_kimg is None:
        notes.append(f"{metric} has not plateaued")
    distance = (
        None if settled.kimg is None or plateau_kimg is None else settled.kimg - float(plateau_kimg)
    )
    return SignalConvergence(
        signal=signal,
        ticks=ticks,
        convergence_kimg=settled.kimg,
        level=settled.level,
        band=settled.band,
        metric=metric,
        plateau_kimg=plateau_kimg,
        kimg_from_plateau=distance,
        note="; ".join(notes) or None,
        halflife=halflife,
        tail=tail,
        tol=tol,
        z=z,
    )
