"""Convergence of a fine-tune, read off one metric curve: best value, plateau, convergence rate.

Pure functions over one metric curve, given as ``kimg`` (finite, strictly increasing) and
``values`` (the metric at each of those kimg), plus its ``mode``; nothing here reads files or
trains. A ``kimg`` that does not increase, or lengths that differ, is a ``ValueError``. The
conventions, in one place:

*Mode.* ``"min"`` when lower is better (FID, KID), ``"max"`` when higher is better (precision,
recall, density, coverage); :data:`advisor.metrics.directions.METRIC_MODES` maps advisor's metric
names to their mode (re-exported here with :data:`Mode`).

*Skipped points.* An evaluation whose value is NaN, +-inf or ``None`` (a failed metric) is
skipped by every function: it is neither a best, nor an evaluation in a plateau window, nor
one that counts toward ``stop_if_worse``. Its kimg must still be finite and increasing.

*Best.* The best value and the kimg of its **first** occurrence: a later evaluation that only
equals the best does not beat it.

*Relative improvement* of the best from ``old`` to ``new``: ``(old - new) / |old|`` in min
mode, ``(new - old) / |old|`` in max mode; when ``old`` is 0 it is 0 if nothing changed and
infinite otherwise.

*Plateau* (``delta`` relative, default 0.02; ``window`` evaluations, default 3). A window is
``window + 1`` consecutive evaluations ``s .. s + window``; it is flat when the best-so-far
improved over it by **at most** ``delta`` (``improvement <= delta``, up to :data:`SLACK`). The
plateau kimg is the kimg of the earliest evaluation ``s`` such that every window starting at
``s`` or later is flat: after it, no ``window`` evaluations in a row improved the best by more
than ``delta``. It is ``None`` when the latest window is not flat, or there are fewer than
``window + 1`` evaluations (the run has not plateaued yet). The boundary is ``<=``, as in
PyTorch Lightning's ``EarlyStopping`` and ``ReduceLROnPlateau(threshold_mode="rel")`` (Keras
documents ``<``): so ``delta = 0`` is exactly the usual GAN rule "the best has not been beaten
over the last ``window`` evaluations" (``stop_if_worse=window``), where ``<`` would make
``delta = 0`` never find a plateau. The plateau is a rate, not a total: a slow creep of
``delta`` per window forever is a plateau.

*Stop rules* (:func:`should_stop`, :func:`stop_reason`): ``stop_at_plateau`` fires as soon as
the plateau exists; ``stop_if_worse=K`` fires when the last K evaluations did not beat the
best before them (the best is K or more evaluations old).

*Convergence kimg* (``within``, default 0.05): the kimg of the first evaluation whose value is
within ``within`` of the run's best, relative and inclusive (``value - best <= within * |best|``
in min mode, ``best - value <= within * |best|`` in max mode). On advisor's kimg axis (which
starts at 0) it is the kimg needed to get there.

*AUC* of the normalised curve: x = (kimg - first kimg) / (last kimg - first kimg) in [0, 1];
y = (value - best) / (first value - best), so the start is 1 and the best is 0 in both modes;
the area by the trapezoid rule (linear between evaluations). It is >= 0, and <= 1 unless some
evaluation is worse than the start; lower means the run got close to its best sooner (a drop
straight to the best at x = a gives a / 2, a straight line to the best at the end 0.5). It is
``None`` with fewer than two evaluations or when no evaluation beat the first one.

The loss-only signal (D's margin per training tick, read from ``stats.jsonl``) has its own
convergence point: :mod:`advisor.finetuning.loss_signal`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import AdvisorError
from advisor.metrics.directions import METRIC_MODES, Mode

DEFAULT_DELTA = 0.02
DEFAULT_WINDOW = 3
DEFAULT_WITHIN = 0.05

SLACK = 1e-12
"""Added to ``delta`` and ``within`` in the comparisons, so a change that is exactly at the
boundary in decimal (0.5 -> 0.51 is +2%) is not pushed across it by floating-point rounding."""

STOP_PLATEAU = "plateau"
STOP_WORSE = "worse"


def mode_for(metric: str) -> Mode:
    """The mode of a metric name; an unknown name is an error listing the known ones."""
    try:
        return METRIC_MODES[metric]
    except KeyError:
        known = ", ".join(sorted(METRIC_MODES))
        raise AdvisorError(f"unknown metric {metric!r}; known metrics: {known}") from None


def finite_points(
    kimg: Sequence[float], values: Sequence[float | None], mode: str
) -> tuple[list[float], list[float]]:
    """Validate a curve and return the ``(kimg, values)`` of its finite evaluations.

    ``kimg`` must be finite and strictly increasing, ``values`` as long, ``mode`` ``"min"``
    or ``"max"``: ``ValueError`` otherwise.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    ks = [float(k) for k in kimg]
    vs = [math.nan if v is None else float(v) for v in values]
    if len(ks) != len(vs):
        raise ValueError(f"{len(ks)} kimg but {len(vs)} values")
    for i, k in enumerate(ks):
        if not math.isfinite(k):
            raise ValueError(f"kimg must be finite, got {k} at evaluation {i}")
        if i and k <= ks[i - 1]:
            raise ValueError(f"kimg must increase, got {ks[i - 1]} then {k} at evaluation {i}")
    kept = [(k, v) for k, v in zip(ks, vs, strict=True) if math.isfinite(v)]
    return [k for k, _ in kept], [v for _, v in kept]


def _better(a: float, b: float, mode: str) -> bool:
    """True when ``a`` strictly beats ``b``."""
    return a < b if mode == "min" else a > b


def _best_so_far(values: Sequence[float], mode: str) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out or _better(v, out[-1], mode) else out[-1])
    return out


def relative_improvement(old: float, new: float, mode: Mode) -> float:
    """How much ``new`` beats ``old``, relative to ``|old|`` (negative when it is worse)."""
    gain = old - new if mode == "min" else new - old
    if old == 0:
        return 0.0 if gain == 0 else math.copysign(math.inf, gain)
    return gain / abs(old)


def best(
    kimg: Sequence[float], values: Sequence[float], *, mode: Mode
) -> tuple[float, float] | None:
    """``(best value, kimg of its first occurrence)``, or ``None`` without a finite value."""
    ks, vs = finite_points(kimg, values, mode)
    if not vs:
        return None
    i = _best_index(vs, mode)
    return vs[i], ks[i]


def _best_index(values: Sequence[float], mode: str) -> int:
    i = 0
    for j, v in enumerate(values):
        if _better(v, values[i], mode):
            i = j
    return i


def plateau_kimg(
    kimg: Sequence[float],
    values: Sequence[float],
    *,
    mode: Mode,
    delta: float = DEFAULT_DELTA,
    window: int = DEFAULT_WINDOW,
) -> float | None:
    """The kimg after which every ``window`` evaluations improved the best by ``<= delta``.

    See the module docstring for the exact definition; ``None`` until the run has plateaued.
    """
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta >= 0):
        raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    ks, vs = finite_points(kimg, values, mode)
    running = _best_so_far(vs, mode)
    start = None
    for s in range(len(running) - window - 1, -1, -1):  # latest window first
        if relative_improvement(running[s], running[s + window], mode) > delta + SLACK:
            break
        start = s
    return None if start is None else ks[start]


def convergence_kimg(
    kimg: Sequence[float], values: Sequence[float], *, mode: Mode, within: float = DEFAULT_WITHIN
) -> float | None:
    """kimg of the first evaluation within ``within`` (relative, inclusive) of the best."""
    if not (math.isfinite(within) and within >= 0):
        raise ValueError(f"within must be a finite number >= 0, got {within!r}")
    ks, vs = finite_points(kimg, values, mode)
    if not vs:
        return None
    top = vs[_best_index(vs, mode)]
    for k, v in zip(ks, vs, strict=True):
        gap = v - top if mode == "min" else top - v
        if gap <= (within + SLACK) * abs(top):
            return k
    raise AssertionError("unreachable: the best is within any tolerance of itself")


def normalised_auc(kimg: Sequence[float], values: Sequence[float], *, mode: Mode) -> float | None:
    """Area under the normalised curve (start 1, best 0, kimg in [0, 1]); lower is faster."""
    ks, vs = finite_points(kimg, values, mode)
    if len(vs) < 2:
        return None
    top = vs[_best_index(vs, mode)]
    span_y = vs[0] - top
    if span_y == 0:
        return None
    span_x = ks[-1] - ks[0]
    xs = [(k - ks[0]) / span_x for k in ks]
    ys = [(v - top) / span_y for v in vs]
    return math.fsum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))


def evaluations_since_best(
    kimg: Sequence[float], values: Sequence[float], *, mode: Mode
) -> int | None:
    """Finite evaluations after the first occurrence of the best (0 when the last is the best)."""
    _, vs = finite_points(kimg, values, mode)
    if not vs:
        return None
    return len(vs) - 1 - _best_index(vs, mode)


def stop_reason(
    kimg: Sequence[float],
    values: Sequence[float],
    *,
    mode: Mode,
    stop_at_plateau: bool,
    stop_if_worse: int | None,
    delta: float = DEFAULT_DELTA,
    window: int = DEFAULT_WINDOW,
) -> str | None:
    """Which stop rule fires on the history so far: :data:`STOP_PLATEAU`, :data:`STOP_WORSE`,
    or ``None`` to go on.

    ``stop_at_plateau``: the plateau exists (the latest window is flat). ``stop_if_worse=K``:
    the last K finite evaluations did not beat the best before them (ties do not beat it).
    The plateau rule is checked first.
    """
    if stop_if_worse is not None and (
        isinstance(stop_if_worse, bool) or not isinstance(stop_if_worse, int) or stop_if_worse < 1
    ):
        raise ValueError(f"stop_if_worse must be an integer >= 1 or None, got {stop_if_worse!r}")
    if stop_at_plateau and plateau_kimg(
        kimg, values, mode=mode, delta=delta, window=window
    ) is not None:  # fmt: skip
        return STOP_PLATEAU
    if stop_if_worse is not None:
        since = evaluations_since_best(kimg, values, mode=mode)
        if since is not None and since >= stop_if_worse:
            return STOP_WORSE
    return None


def should_stop(
    kimg: Sequence[float],
    values: Sequence[float],
    *,
    mode: Mode,
    stop_at_plateau: bool,
    stop_if_worse: int | None,
    delta: float = DEFAULT_DELTA,
    window: int = DEFAULT_WINDOW,
) -> bool:
    """True when a stop rule fires on the history ``(kimg, values)``; see :func:`stop_reason`."""
    reason = stop_reason(
        kimg,
        values,
        mode=mode,
        stop_at_plateau=stop_at_plateau,
        stop_if_worse=stop_if_worse,
        delta=delta,
        window=window,
    )
    return reason is not None


@dataclass(frozen=True, kw_only=True)
class ConvergenceSummary:
    """Everything the module computes for one curve, with the parameters that produced it.

    ``best``/``kimg_at_best``/``convergence_kimg`` are ``None`` for a curve with no finite
    value; ``evaluations`` counts finite evaluations, ``skipped`` the NaN/inf ones.
    """

    metric: str
    mode: Mode
    best: float | None
    kimg_at_best: float | None
    plateau_kimg: float | None
    convergence_kimg: float | None
    auc: float | None
    evaluations: int
    skipped: int = 0
    plateau_delta: float = DEFAULT_DELTA
    plateau_window: int = DEFAULT_WINDOW
    within: float = DEFAULT_WITHIN

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


def summarize(
    kimg: Sequence[float],
    values: Sequence[float],
    *,
    mode: Mode,
    metric: str = "",
    delta: float = DEFAULT_DELTA,
    window: int = DEFAULT_WINDOW,
    within: float = DEFAULT_WITHIN,
) -> ConvergenceSummary:
    """Best value, plateau, convergence kimg and AUC of one curve in one record."""
    _, vs = finite_points(kimg, values, mode)
    top = best(kimg, values, mode=mode)
    return ConvergenceSummary(
        metric=metric,
        mode=mode,
        best=None if top is None else top[0],
        kimg_at_best=None if top is None else top[1],
        plateau_kimg=plateau_kimg(kimg, values, mode=mode, delta=delta, window=window),
        convergence_kimg=convergence_kimg(kimg, values, mode=mode, within=within),
        auc=normalised_auc(kimg, values, mode=mode),
        evaluations=len(vs),
        skipped=len(values) - len(vs),
        plateau_delta=delta,
        plateau_window=window,
        within=within,
    )
