"""Probe fine-tunes: short fine-tunes of the candidates by successive halving, ranked by a metric.

A predictor no zero-shot score can be: fine-tune every candidate a little, keep the better half,
fine-tune those further, and so on, at a total cost of at most ``budget_kimg`` (the cost of the
one full fine-tune the user is choosing a checkpoint for). ``advisor rank --probe`` and the
evidence benchmark (``benchmarks/transfer.py``) both call :func:`run_probes`.

*Schedule* and *order*: :mod:`advisor.ranking.halving`; the results:
:mod:`advisor.ranking.probe_report`.

*Runs.* Each candidate is one advisor run folder under the work folder
(:func:`advisor.finetuning.run.run_finetune`, then :func:`~advisor.finetuning.run.resume_finetune`
to the next round's total); the evaluation at a round's end samples the last snapshot's G_ema
with the fine-tune evaluator (the target's features come from the feature cache). No evaluation
runs inside the training loop (``metric_every`` is off), so none is spent at kimg 0.

*Resuming.* ``probe.json`` in the work folder records the plan and every finished training and
evaluation, written atomically after each; calling :func:`run_probes` again with the same
inputs skips what is recorded and resumes a killed run from its last snapshot. Its cost in
seconds (training wall time from each run's ``summary.json``, evaluation time measured) is
recorded with it, so a resumed probe still reports what it cost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, one_line
from advisor.finetuning.options import MAX_KIMG, FinetuneOptions, auto_batch
from advisor.metrics.directions import METRIC_MODES
from advisor.ranking.halving import HalvingRound, halving_order, halving_schedule, survivors
from advisor.ranking.probe_report import (
    ProbeCandidate,
    ProbeOptions,
    ProbeReport,
    ProbeRow,
)

STATE_VERSION = 1

Log = Callable[[str], None]


# --------------------------------------------------------------------------- running
def probe_key(
    target_hash: str, candidates: Sequence[tuple[str, str]], options: ProbeOptions
) -> str:
    """A hex digest of what decides a probe: the target's content hash, the candidates'
    ``(name, checkpoint sha256)`` and the options (the work folder's name in the cache)."""
    doc = {
        "version": STATE_VERSION,
        "target": target_hash,
        "candidates": [list(c) for c in candidates],
        "options": options.to_dict(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _state_doc(
    target_hash: str, candidates: Sequence[ProbeCandidate], options: ProbeOptions, batch: int
) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "target_sha256": target_hash,
        "candidates": [[c.name, c.checkpoint] for c in candidates],
        "options": options.to_dict(),
        "batch": batch,
    }


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise AdvisorError(f"{path} is damaged ({one_line(str(err))[:120]})") from None
    return doc if isinstance(doc, dict) else None


def _write_state(path: Path, doc: dict[str, Any]) -> None:
    from advisor.finetuning.folder import write_json

    write_json(path, doc)


def _folder_name(name: str, index: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:80]
    return f"{index:02d}-{safe or 'candidate'}"


def probe_plan(
    candidates: Sequence[ProbeCandidate], options: ProbeOptions
) -> tuple[int, tuple[HalvingRound, ...]]:
    """``(batch, schedule)`` for probing the first ``options.top`` of ``candidates``: the batch is
    the recipe's, else NVlabs' auto batch at the first candidate's resolution (every probe uses
    it). Cheap (reads one checkpoint's G_ema); a budget too small is an :class:`AdvisorError`."""
    from advisor.checkpoints.importers import read_checkpoint

    chosen = list(candidates)[: options.top]
    batch = options.finetune.batch
    if batch is None:
        ckpt, _ = read_checkpoint(chosen[0].checkpoint, networks=())
        batch = auto_batch(int(ckpt.metadata.resolution))
    schedule = halving_schedule(
        len(chosen),
        budget_kimg=options.budget_kimg,
        eval_kimg=options.eval_kimg,
        eta=options.eta,
        step_images=batch,
    )
    return batch, schedule


def run_probes(
    candidates: Sequence[ProbeCandidate],
    target: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str],
    options: ProbeOptions = ProbeOptions(),  # noqa: B008 - frozen
    device: str = "auto",
    log: Log | None = None,
) -> ProbeReport:
    """Probe-fine-tune ``candidates`` (the first ``options.top``) on ``target`` by successive
    halving inside ``work_dir``; resumable (see the module docstring).

    Returns a :class:`ProbeReport`; a candidate whose fine-tune cannot start (no D, wrong
    architecture...) is a skipped row with its one-line reason. Raises :class:`AdvisorError`
    for fewer than two candidates, a budget too small for them, or a ``work_dir`` holding the
    probes of other inputs.
    """
    from advisor.devices import resolve_device
    from advisor.images import open_image_set

    say = log or (lambda _text: None)
    chosen = list(candidates)[: options.top]
    names = [c.name for c in chosen]
    if len(chosen) < 2:
        raise AdvisorError("probing needs at least two candidate checkpoints")
    if len(set(names)) != len(names):
        raise AdvisorError("two probe candidates share a name")
    dev = str(resolve_device(device))
    batch, schedule = probe_plan(chosen, options)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    mode = METRIC_MODES[options.metric]
    recipe = dataclasses.replace(
        options.finetune,
        batch=batch,
        kimg=schedule[0].kimg,
        metric=options.metric,
        metric_every=None,
        metric_samples=options.metric_samples,
        stop_at_plateau=False,
        stop_if_worse=None,
        snapshot_every=MAX_KIMG,
        keep_snapshots=1,
    )
    state_path = work / "probe.json"
    expected = _state_doc(open_image_set(str(target)).content_hash(), chosen, options, batch)
    state = _read_state(state_path)
    if state is not None and {k: state.get(k) for k in expected} != expected:
        raise AdvisorError(
            f"{work} holds the probes of other inputs (target, candidates or options); "
            "choose another folder"
        )
    if state is None:
        state = {
            **expected,
            "target": str(target),
            "runs": {},
            "schedule": [r.to_dict() for r in schedule],
        }
        _write_state(state_path, state)
    runs: dict[str, dict[str, Any]] = state["runs"]
    evaluator = None
    alive = list(names)
    per_round: list[dict[str, float]] = []
    skipped: dict[str, str] = {}
    by_name = {c.name: c for c in chosen}
    for rnd in schedule:
        say(
            f"probe round {rnd.index + 1}/{len(schedule)}: {len(alive)} candidate(s) to "
            f"{rnd.kimg:g} kimg"
        )
        values: dict[str, float] = {}
        for name in alive:
            entry = runs.setdefault(
                name, {"dir": _folder_name(name, names.index(name)), "rounds": {}}
            )
            run_dir = work / entry["dir"]
            record = entry["rounds"].get(str(rnd.index))
            if record is None or "metrics" not in record:
                if record is None:
                    try:
                        wall = _train(by_name[name], target, run_dir, recipe, rnd.kimg, dev)
                    except AdvisorError as err:
                        skipped[name] = one_line(str(err))
                        say(f"  {name}: skipped ({skipped[name]})")
                        continue
                    before = _previous_wall(entry, rnd.index)
                    record = {"kimg": rnd.kimg, "wall_s": wall, "train_s": max(wall - before, 0)}
                    entry["rounds"][str(rnd.index)] = record
                    _write_state(state_path, state)
                if evaluator is None:
                    evaluator = _evaluator(target, recipe, dev)
                start = time.perf_counter()
                record["metrics"] = evaluate_latest(evaluator, run_dir)
                record["eval_s"] = round(time.perf_counter() - start, 3)
                _write_state(state_path, state)
            values[name] = float(record["metrics"].get(options.metric, math.nan))
            say(f"  {name}: {options.metric} {values[name]:.4g} at {rnd.kimg:g} kimg")
        per_round.append(values)
        keep = math.ceil(rnd.candidates / options.eta)
        alive = list(survivors(values, keep, mode=mode))
        if not alive:
            break
    return _report(options, schedule, per_round, runs, skipped, names, work)


def _previous_wall(entry: Mapping[str, Any], index: int) -> float:
    earlier = [r for i, r in entry["rounds"].items() if int(i) < index]
    return max((float(r.get("wall_s", 0.0)) for r in earlier), default=0.0)


def _train(
    candidate: ProbeCandidate,
    target: str | os.PathLike[str],
    run_dir: Path,
    recipe: FinetuneOptions,
    kimg: float,
    device: str,
) -> float:
    """Bring ``run_dir`` to ``kimg`` (start, resume, or nothing when it is there); returns the
    run's training wall time so far (``summary.json``)."""
    from advisor.finetuning.folder import RunFolder
    from advisor.finetuning.run import resume_finetune, run_finetune

    folder = RunFolder(run_dir)
    if folder.config.is_file() and not folder.latest.is_file():
        shutil.rmtree(run_dir)  # killed before its first snapshot: nothing to resume
    if not folder.config.is_file():
        run_finetune(
            candidate.checkpoint,
            target,
            run_dir=run_dir,
            options=dataclasses.replace(recipe, kimg=kimg),
            device=device,
            offline=True,
        )
    else:
        latest = json.loads(folder.latest.read_text())
        if latest["nimg"] < int(round(kimg * 1000)):
            resume_finetune(run_dir, kimg=kimg, device=device)
    summary = json.loads(folder.summary.read_text()) if folder.summary.is_file() else {}
    return float(summary.get("wall_s", 0.0))


def _evaluator(target: str | os.PathLike[str], recipe: FinetuneOptions, device: str) -> Any:
    import torch

    from advisor.finetuning.distributed import Distributed
    from advisor.finetuning.inputs import Evaluator

    return Evaluator(target, recipe, torch.device(device), Distributed())


def evaluate_latest(evaluator: Any, run_dir: Path) -> dict[str, float]:
    """The metrics of a run folder's last snapshot's G_ema by ``evaluator`` (an
    :class:`advisor.finetuning.inputs.Evaluator`)."""
    from advisor.checkpoints.format import load_checkpoint
    from advisor.finetuning.folder import RunFolder

    folder = RunFolder(run_dir)
    latest = json.loads(folder.latest.read_text())
    ckpt = load_checkpoint(
        folder.snapshots / latest["snapshot"], networks=(), device=evaluator.device
    )
    values = evaluator(ckpt.G_ema)
    return {k: float(v) for k, v in values.items()}


def _report(
    options: ProbeOptions,
    schedule: tuple[HalvingRound, ...],
    per_round: list[dict[str, float]],
    runs: Mapping[str, Mapping[str, Any]],
    skipped: Mapping[str, str],
    names: Sequence[str],
    work: Path,
) -> ProbeReport:
    mode = METRIC_MODES[options.metric]
    order = halving_order(per_round, mode=mode)
    rows = []
    train_s = eval_s = 0.0
    for entry in runs.values():
        for record in entry["rounds"].values():
            train_s += float(record.get("train_s", 0.0))
            eval_s += float(record.get("eval_s", 0.0))
    last_round = {name: r for r, values in enumerate(per_round) for name in values}
    for rank, name in enumerate(order, start=1):
        last = last_round[name]
        record = runs[name]["rounds"][str(last)]
        metrics = record.get("metrics", {})
        rows.append(
            ProbeRow(
                name=name,
                rank=rank,
                rounds=last + 1,
                kimg=float(record["kimg"]),
                value=float(metrics.get(options.metric, math.nan)),
                metrics=metrics,
                run_dir=str(work / runs[name]["dir"]),
            )
        )
    for name in names:
        if name in skipped:
            rows.append(
                ProbeRow(
                    name=name,
                    rank=len(rows) + 1,
                    rounds=0,
                    kimg=0.0,
                    value=None,
                    metrics={},
                    run_dir="",
                    skipped=skipped[name],
                )
            )
    return ProbeReport(
        options=options,
        schedule=schedule,
        rows=tuple(rows),
        work_dir=str(work),
        train_s=train_s,
        eval_s=eval_s,
        cost_kimg=sum(r.cost_kimg for r in schedule),
    )


# --------------------------------------------------------------------------- from a ranking
def probe_ranking(
    ranking: Any,
    target: str | os.PathLike[str],
    *,
    registry: Any,
    rank_options: Any,
    options: ProbeOptions = ProbeOptions(),  # noqa: B008 - frozen
    work_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    log: Log | None = None,
) -> ProbeReport:
    """Probe the ``options.top`` best generators of a zero-shot ``ranking`` (an
    :class:`~advisor.ranking.Ranking` made with ``rank_options`` from ``registry``).

    ``work_dir`` None: a folder in advisor's cache named by :func:`probe_key`, so a second
    ``advisor rank --probe`` with the same target, candidates and options reuses the runs.
    """
    from advisor.cache import cache_dir
    from advisor.checkpoints.fetch import pull
    from advisor.features.samples import checkpoint_sha256
    from advisor.images import open_image_set
    from advisor.ranking.select import select

    rows = [row for row in ranking.rows if row.setting == "generated"][: options.top]
    if len(rows) < 2:
        raise AdvisorError("--probe needs at least two ranked generators (checkpoints)")
    selected, _ = select(registry, options=rank_options, resolution=ranking.target.resolution)
    by_name = {c.name: c for c in selected}
    candidates = []
    for row in rows:
        found = by_name.get(row.checkpoint)
        if found is None:
            raise AdvisorError(f"{row.checkpoint}: not among the selected checkpoints")
        if found.record is not None:
            path = pull(found.record, offline=rank_options.offline, progress=rank_options.progress)
        else:
            assert found.path is not None
            path = found.path
        candidates.append(ProbeCandidate(name=row.checkpoint, checkpoint=str(path)))
    if work_dir is None:
        key = probe_key(
            open_image_set(str(target)).content_hash(),
            [(c.name, checkpoint_sha256(c.checkpoint)) for c in candidates],
            options,
        )
        work_dir = cache_dir("probes", key[:24])
    return run_probes(
        candidates, target, work_dir=work_dir, options=options, device=device, log=log
    )
