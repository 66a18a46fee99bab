"""Fine-tune run folders: read them (config, metric history, summary, snapshots), compare, plot.

A run folder (written by ``advisor finetune``) holds:

* ``config.json``: ``{"advisor_version", "options": {...}, "checkpoint": {"name", "sha256"},
  "target", ...}``; a folder is a run folder when it has one.
* ``metrics.jsonl``: one JSON object per evaluation, ``{"kimg", "nimg", "wall_s", "metrics":
  {"fid", "kid", "precision", "recall", "coverage", ...}, "protocol", "snapshot"}``, in
  increasing kimg.
* ``stats.jsonl``: one JSON object per training tick (``kimg``, ``s_per_kimg``, losses, ADA p,
  the loss-only signal ``d_gap``/``d_gap_ema``...).
* ``summary.json``: the tracked metric's best, plateau and convergence, ``wall_s``,
  ``s_per_kimg``, ``kimg``, ``finished``, ``stopped_by``.
* ``snapshots/snapshot-NNNNNNNNN.safetensors`` + ``.json`` (NNNNNNNNN = nimg, 9 digits) and
  ``snapshots/best.safetensors`` + ``.json``; ``curves.png``.

Reading conventions: the last line of a ``.jsonl`` file that has no newline and does not parse
is a write cut short by a kill, and is dropped with a note; any other bad line is an
:class:`AdvisorError` naming the file and line. A metric that is ``null`` reads as NaN (skipped
by :mod:`advisor.finetuning.convergence`). The convergence numbers are always recomputed from
``metrics.jsonl`` (the record of truth) with the run's own plateau options; ``summary.json``
adds the wall time, s/kimg, ``finished`` and ``stopped_by`` unless it is stale (its best
disagrees with ``metrics.jsonl``, or it predates the last evaluation), in which case the run
reads as unfinished and a note says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.cache import atomic_path
from advisor.errors import AdvisorError
from advisor.finetuning.convergence import (
    DEFAULT_DELTA,
    DEFAULT_WINDOW,
    ConvergenceSummary,
    mode_for,
    summarize,
)
from advisor.finetuning.loss_signal import SIGNAL, signal_convergence

SNAPSHOT_RE = re.compile(r"snapshot-(\d{9})\.safetensors")
LIST_DEPTH = 3
"""How many folder levels below the given one :func:`list_runs` looks."""


@dataclass(frozen=True, kw_only=True)
class MetricRecord:
    """One evaluation from ``metrics.jsonl``; ``metrics`` maps a metric name to its value."""

    kimg: float
    nimg: int | None
    wall_s: float | None
    metrics: Mapping[str, float]
    protocol: Mapping[str, Any]
    snapshot: str | None


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """A complete snapshot (both ``.safetensors`` and ``.json`` present)."""

    path: Path
    nimg: int

    @property
    def kimg(self) -> float:
        return self.nimg / 1000


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The tracked metric's convergence (recomputed) and the run's bookkeeping.

    ``source`` is ``"summary.json"`` when the bookkeeping came from a current ``summary.json``,
    ``"metrics.jsonl"`` when it was missing or stale (then ``finished`` is False,
    ``stopped_by`` None, and ``kimg``/``wall_s``/``s_per_kimg`` come from the last records).
    """

    convergence: ConvergenceSummary
    kimg: float | None
    wall_s: float | None
    s_per_kimg: float | None
    finished: bool
    stopped_by: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The convergence fields flattened beside the bookkeeping ones."""
        rest = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del rest["convergence"]
        return self.convergence.to_dict() | rest


@dataclass(frozen=True, kw_only=True)
class Run:
    """A run folder as read by :func:`load_run`; ``notes`` says what was dropped or recomputed."""

    path: Path
    config: Mapping[str, Any]
    metrics: tuple[MetricRecord, ...]
    stats: tuple[Mapping[str, Any], ...]
    summary: RunSummary
    snapshots: tuple[Snapshot, ...]
    best_snapshot: Path | None
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint_name(self) -> str | None:
        """The name of the checkpoint it fine-tunes (from ``config.json``), None if unrecorded."""
        checkpoint = self.config.get("checkpoint")
        name = checkpoint.get("name") if isinstance(checkpoint, Mapping) else None
        return name if isinstance(name, str) else None

    def curve(self, metric: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(kimg, values)`` of ``metric`` (see :func:`metric_curve`)."""
        return metric_curve(self.metrics, metric)


def metric_curve(
    records: Sequence[MetricRecord], metric: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(kimg, values)`` of ``metric`` over the evaluations that report it (others left out)."""
    kept = [r for r in records if metric in r.metrics]
    return tuple(r.kimg for r in kept), tuple(r.metrics[metric] for r in kept)


def _summarize(
    records: Sequence[MetricRecord], metric: str, *, delta: float, window: int
) -> ConvergenceSummary:
    kimg, values = metric_curve(records, metric)
    return summarize(kimg, values, mode=mode_for(metric), metric=metric, delta=delta, window=window)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdvisorError(f"{path} is not valid JSON ({err})") from None
    except OSError as err:
        raise AdvisorError(f"cannot read {path} ({err.strerror or err})") from None


def read_jsonl(path: Path, notes: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``path`` (none if it is missing).

    A final line without a newline that does not parse is dropped with a note in ``notes``;
    any other line that is not a JSON object is an :class:`AdvisorError` naming file and line.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise AdvisorError(f"cannot read {path} ({err.strerror or err})") from None
    lines = data.split(b"\n")
    out: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if number == len(lines):  # no newline after it: the write was cut short
                notes.append(f"{path.name}: ignored the unfinished last line {number}")
                continue
            raise AdvisorError(f"{path} line {number} is not valid JSON") from None
        if not isinstance(obj, dict):
            raise AdvisorError(f"{path} line {number} is not a JSON object")
        out.append((number, obj))
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _metric_record(path: Path, number: int, obj: Mapping[str, Any]) -> MetricRecord:
    where = f"{path} line {number}"
    kimg = _number(obj.get("kimg"))
    if kimg is None or not math.isfinite(kimg):
        raise AdvisorError(f"{where}: 'kimg' must be a finite number")
    metrics = obj.get("metrics")
    if not isinstance(metrics, dict):
        raise AdvisorError(f"{where}: 'metrics' must be an object of numbers")
    values: dict[str, float] = {}
    for name, value in metrics.items():
        number_value = math.nan if value is None else _number(value)
        if number_value is None:
            raise AdvisorError(f"{where}: metric {name!r} is not a number")
        values[name] = number_value
    nimg, protocol, snapshot = obj.get("nimg"), obj.get("protocol"), obj.get("snapshot")
    nimg = nimg if isinstance(nimg, int) and not isinstance(nimg, bool) else None
    return MetricRecord(kimg=kimg, nimg=nimg,
                        wall_s=_number(obj.get("wall_s")), metrics=values,
                        protocol=protocol if isinstance(protocol, dict) else {},
                        snapshot=snapshot if isinstance(snapshot, str) else None)  # fmt: skip


def _read_metrics(path: Path, notes: list[str]) -> tuple[MetricRecord, ...]:
    records: list[MetricRecord] = []
    for number, obj in read_jsonl(path, notes):
        record = _metric_record(path, number, obj)
        if records and record.kimg <= records[-1].kimg:
            raise AdvisorError(
                f"{path} line {number}: kimg {record.kimg:g} does not increase "
                f"(the line before has {records[-1].kimg:g})"
            )
        records.append(record)
    return tuple(records)


def _snapshots(folder: Path, notes: list[str]) -> tuple[tuple[Snapshot, ...], Path | None]:
    if not folder.is_dir():
        return (), None
    found = []
    for path in sorted(folder.iterdir()):
        match = SNAPSHOT_RE.fullmatch(path.name)
        if not match:
            continue
        if path.with_suffix(".json").is_file():
            found.append(Snapshot(path=path, nimg=int(match.group(1))))
        else:
            notes.append(f"snapshot {path.name} has no .json beside it; left out")
    best = folder / "best.safetensors"
    best_path = best if best.is_file() and best.with_suffix(".json").is_file() else None
    return tuple(sorted(found, key=lambda s: s.nimg)), best_path


def _plateau_options(options: Mapping[str, Any]) -> tuple[float, int]:
    delta = _number(options.get("plateau_delta"))
    window = options.get("plateau_window")
    return (
        delta if delta is not None and math.isfinite(delta) and delta >= 0 else DEFAULT_DELTA,
        window if isinstance(window, int) and not isinstance(window, bool) and window >= 1
        else DEFAULT_WINDOW,
    )  # fmt: skip


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _stale_reason(
    saved: Mapping[str, Any], conv: ConvergenceSummary, last_kimg: float | None
) -> str | None:
    """Why ``summary.json`` disagrees with ``metrics.jsonl``, or ``None`` when it agrees.

    ``best`` may be the value itself or an object with ``value`` and ``kimg``.
    """
    best = saved.get("best")
    if isinstance(best, Mapping):
        value, kimg = _number(best.get("value")), _number(best.get("kimg"))
    else:
        value, kimg = _number(best), _number(saved.get("kimg_at_best"))
    if not _close(value, conv.best):
        return "its best differs from metrics.jsonl"
    if kimg is not None and not _close(kimg, conv.kimg_at_best):
        return "its kimg at best differs from metrics.jsonl"
    total = _number(saved.get("kimg"))
    if last_kimg is not None and total is not None and total < last_kimg:
        return f"metrics.jsonl goes on to kimg {last_kimg:g}"
    return None


def _summary(
    folder: Path,
    options: Mapping[str, Any],
    metrics: Sequence[MetricRecord],
    stats: Sequence[Mapping[str, Any]],
    notes: list[str],
) -> RunSummary:
    path = folder / "summary.json"
    saved: Any = None
    if path.is_file():
        try:
            saved = _read_json(path)
        except AdvisorError as err:
            notes.append(f"{err}; recomputed the summary from metrics.jsonl")
    if saved is not None and not isinstance(saved, dict):
        notes.append("summary.json is not a JSON object; recomputed it from metrics.jsonl")
        saved = None
    metric = (saved or {}).get("metric") or options.get("metric") or "fid"
    if not isinstance(metric, str):
        raise AdvisorError(f"{folder}: the tracked metric is not a name: {metric!r}")
    delta, window = _plateau_options(options)
    conv = _summarize(metrics, metric, delta=delta, window=window)
    last_kimg = metrics[-1].kimg if metrics else None
    if saved is not None:
        reason = _stale_reason(saved, conv, last_kimg)
        if reason is None:
            stopped_by = saved.get("stopped_by")
            return RunSummary(convergence=conv, kimg=_number(saved.get("kimg")),
                              wall_s=_number(saved.get("wall_s")),
                              s_per_kimg=_number(saved.get("s_per_kimg")),
                              finished=saved.get("finished") is True,
                              stopped_by=stopped_by if isinstance(stopped_by, str) else None,
                              source="summary.json")  # fmt: skip
        notes.append(f"summary.json is stale ({reason}); recomputed it from metrics.jsonl")
    stat_kimg = [k for k in (_number(s.get("kimg")) for s in stats) if k is not None]
    kimgs = stat_kimg[-1:] + ([last_kimg] if last_kimg is not None else [])
    return RunSummary(convergence=conv, kimg=max(kimgs) if kimgs else None,
                      wall_s=metrics[-1].wall_s if metrics else None,
                      s_per_kimg=_number(stats[-1].get("s_per_kimg")) if stats else None,
                      finished=False, stopped_by=None, source="metrics.jsonl")  # fmt: skip


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read the run folder at ``path``; bad content is a one-line :class:`AdvisorError`."""
    folder = Path(path)
    config_path = folder / "config.json"
    if not folder.is_dir():
        raise AdvisorError(f"{folder} is not a folder")
    if not config_path.is_file():
        raise AdvisorError(f"{folder} is not a run folder (it has no config.json)")
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise AdvisorError(f"{config_path} is not a JSON object")
    options = config.get("options")
    options = options if isinstance(options, dict) else {}
    notes: list[str] = []
    metrics = _read_metrics(folder / "metrics.jsonl", notes)
    stats = tuple(obj for _, obj in read_jsonl(folder / "stats.jsonl", notes))
    snapshots, best_snapshot = _snapshots(folder / "snapshots", notes)
    summary = _summary(folder, options, metrics, stats, notes)
    return Run(path=folder, config=config, metrics=metrics, stats=stats, summary=summary,
               snapshots=snapshots, best_snapshot=best_snapshot, notes=tuple(notes))  # fmt: skip


def list_runs(path: str | os.PathLike[str], *, depth: int = LIST_DEPTH) -> list[Path]:
    """Run folders (with a ``config.json``) at ``path`` or up to ``depth`` levels below it,
    sorted; a run folder's own subfolders and hidden folders are not searched."""
    root = Path(path)
    if not root.is_dir():
        raise AdvisorError(f"{root} is not a folder")
    found: list[Path] = []

    def walk(folder: Path, level: int) -> None:
        if (folder / "config.json").is_file():
            found.append(folder)
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return  # an unreadable folder holds no run we can show
        for child in children:
            if not child.name.startswith("."):
                walk(child, level + 1)

    walk(root, 0)
    return found


@dataclass(frozen=True, kw_only=True)
class CompareRow:
    """One run's line in :func:`compare_runs`: its label, folder and the metric's convergence."""

    name: str
    path: str
    convergence: ConvergenceSummary

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, **self.convergence.to_dict()}


def run_labels(runs: Sequence[Run], labels: Sequence[str] | None = None) -> list[str]:
    """``labels`` when given (one per run, distinct), else each run's folder name, or its whole
    path where two runs share a name."""
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != len(runs) or len(set(labels)) != len(labels):
            raise ValueError("give one distinct label per run")
        return labels
    names = [r.name for r in runs]
    return [str(r.path) if names.count(r.name) > 1 else r.name for r in runs]


def compare_runs(
    runs: Sequence[Run],
    *,
    metric: str = "fid",
    delta: float = DEFAULT_DELTA,
    window: int = DEFAULT_WINDOW,
    labels: Sequence[str] | None = None,
) -> list[CompareRow]:
    """One row per run for ``metric``, every run judged with the same ``delta`` and ``window``
    (a run without the metric gets ``None`` numbers and 0 evaluations). Rows are named by
    ``labels`` (e.g. a service's job names), else by :func:`run_labels`."""
    mode_for(metric)  # an unknown name fails before any work
    return [
        CompareRow(
            name=label,
            path=str(run.path),
            convergence=_summarize(run.metrics, metric, delta=delta, window=window),
        )
        for label, run in zip(run_labels(runs, labels), runs, strict=True)
    ]


def plot_curves(
    runs: Iterable[Run],
    metric: str,
    out_png: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
) -> Path:
    """Plot ``metric`` against kimg for every run on shared axes, and the loss-only signal of
    the runs that logged it in a panel below (see :func:`plot_metric_curves`); lines are
    labelled by ``labels``, else as :func:`run_labels` names them."""
    runs = list(runs)
    labels = run_labels(runs, labels)
    records = {
        label: [{"kimg": r.kimg, "metrics": r.metrics} for r in run.metrics]
        for label, run in zip(labels, runs, strict=True)
    }
    stats = {label: run.stats for label, run in zip(labels, runs, strict=True)}
    return plot_metric_curves(records, metric, out_png, signals=stats)


def plot_metric_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    metric: str,
    out_png: str | os.PathLike[str],
    *,
    signals: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Plot ``metric`` against kimg, one line per label, on shared axes; write a PNG atomically.

    ``curves`` maps a label to ``metrics.jsonl`` records (objects with ``kimg`` and
    ``metrics``), so a training loop can plot before any run is loaded. Each line goes through
    the finite evaluations, its best marked by a star. ``signals`` maps a label to its
    ``stats.jsonl`` records: where any has the loss-only signal (the smoothed ``d_gap_ema``,
    else the raw ``d_gap``), a second panel under the first, on the same kimg axis, draws it
    per label with a dashed line at its settling point
    (:func:`advisor.finetuning.loss_signal.signal_convergence`); without it the figure has one
    panel. The figure uses matplotlib's default
    style whatever the user's matplotlibrc says (restored afterwards), draws on an Agg canvas
    (no pyplot, no global backend) and carries no version metadata, so the same curves give
    the same bytes. Without matplotlib it is an :class:`AdvisorError`.
    """
    mode = mode_for(metric)
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise AdvisorError("plotting needs matplotlib: pip install matplotlib") from None
    out = Path(out_png)
    traces = _signal_traces(signals or {})
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        if traces:
            fig = Figure(figsize=(7, 6.5), dpi=100)
            ax, ax_signal = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
        else:
            fig, ax_signal = Figure(figsize=(7, 4.5), dpi=100), None
            ax = fig.add_subplot()
        FigureCanvasAgg(fig)
        for label, records in curves.items():
            kimg, values = [], []
            for rec in records:
                metrics = rec.get("metrics")
                k = _number(rec.get("kimg"))
                v = _number(metrics.get(metric)) if isinstance(metrics, Mapping) else None
                if k is not None and v is not None and math.isfinite(v):
                    kimg.append(k)
                    values.append(v)
            (line,) = ax.plot(kimg, values, marker="o", markersize=3, label=label)
            if values:
                i = values.index(min(values) if mode == "min" else max(values))
                ax.plot([kimg[i]], [values[i]], marker="*", markersize=12,
                        color=line.get_color(), linestyle="none")  # fmt: skip
        ax.set_xlabel("kimg" if ax_signal is None else "")
        ax.set_ylabel(f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)")
        ax.grid(True, alpha=0.3)
        if curves:
            ax.legend(fontsize="small")
        if ax_signal is not None:
            for label, (kimg, values, _field, settled) in traces.items():
                (line,) = ax_signal.plot(kimg, values, linewidth=1, label=label)
                if settled is not None:
                    ax_signal.axvline(settled, color=line.get_color(), linestyle="--", alpha=0.7)
            fields = sorted({t[2] for t in traces.values()})
            ax_signal.set_ylabel(" / ".join(fields) + "\nE[D(real)] - E[D(fake)]", fontsize="small")
            ax_signal.set_xlabel("kimg (dashed: where the loss-only signal settles)")
            ax_signal.grid(True, alpha=0.3)
        fig.tight_layout()
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
    return out


def _signal_traces(
    signals: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, tuple[list[float], list[float], str, float | None]]:
    """Per label that logged the loss-only signal: ``(kimg, values, field, settling kimg)``."""
    traces = {}
    for label, stats in signals.items():
        for field in (f"{SIGNAL}_ema", SIGNAL):
            points = [(_number(s.get("kimg")), _number(s.get(field))) for s in stats]
            kept = [(k, v) for k, v in points if k is not None and v is not None]
            kept = [(k, v) for k, v in kept if math.isfinite(k) and math.isfinite(v)]
            if kept:
                settled = signal_convergence(stats, plateau_kimg=None).convergence_kimg
                traces[label] = ([k for k, _ in kept], [v for _, v in kept], field, settled)
                break
    return traces
