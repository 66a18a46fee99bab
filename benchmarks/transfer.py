"""Evidence benchmark: does ``advisor rank`` predict which source fine-tunes best on a target?

    python benchmarks/transfer.py --target DIR --out FILE.json [--zoo REGISTRY] [--tag TAG]
        [--budget-kimg 8] [--metric-every 2] [--metric-samples 500] [--probe-samples 250]
        [--source-data NAME=DIR ...] [--work DIR] [--device cpu] [--ablation]
        [--check-budget [--check-factor 4]] [--no-report]

For one target folder (any images; nothing here knows the example targets):

1. *Zero-shot predictions*: :func:`advisor.ranking.rank_with` scores every zoo source in both
   settings: ``generated`` (each checkpoint's samples vs the target) and ``source`` (each
   source's training data vs the target: the registry entries' ``source_features``, or
   ``--source-data NAME=DIR``; without either the setting is recorded as skipped). Every metric
   the ranking computes is a predictor (``generated/recall``, ``source/fid``, ...): the six
   default ones from one ranking, and each other measure (``is``, the classifier measures with
   ``--classes`` k-means surrogate classes) from a ranking by it, which reuses the cached
   features; a measure that cannot be computed is recorded with its reason.
2. *Truth*: every zoo source is fine-tuned with G and D pretrained, and a from-scratch baseline
   (``g_init = d_init = "random"`` with the first source's architecture), all with the same
   budget, seed and options (:class:`advisor.finetuning.FinetuneOptions`; NVlabs' resume rules
   give the scratch run an EMA ramp-up and ``ada_kimg`` 500). Every metric curve is recorded.
   The true order is the final FID; the orders by best FID and final KID, recall and coverage
   are compared with it.
3. *Probe fine-tunes* (:mod:`advisor.ranking.probe`, the code behind ``advisor rank --probe``):
   successive halving over every source at a total cost of at most one full fine-tune
   (training kimg plus its evaluations), ranked by FID at the end of the probes.
4. *Per predictor*: Spearman and Kendall correlation with the true order, the top-1 regret
   (FID of the pick / best FID - 1), whether the pick is optimal (within 5% of the best FID),
   and its cost in seconds (see :mod:`benchmarks.evidence`); convergence of every run; scratch
   vs the best source.
5. ``--ablation``: the best source again with only G, only D, and neither pretrained.
6. ``--check-budget``: the three best sources and scratch continued to ``--check-factor`` times
   the budget (resume is exact, so the 4x run is the 1x run continued); the correlation of the
   true orders at 1x and 4x.

Resumable: each fine-tune is an advisor run folder under the work folder (default
``benchmarks/.work/transfer/<target>-<config hash>``); finished runs are skipped and
interrupted ones resumed from their last snapshot; the JSON is written atomically after every
step, and a second call with the same configuration continues where the first stopped (another
configuration is refused rather than mixed). Offline: the zoo must be local files (or cached).

Default budget, and why one target fits 60 minutes on a 2-core CPU: 32 px fine-tunes train at
about 13 s/kimg and a 500-sample evaluation with EfficientNet-Lite0 takes 6-12 s
(``benchmarks/results/finetune.json``; the upper figure under load). Each run is 8 kimg with
metrics every 2 kimg (5 evaluations of 500 samples, kimg 0 included) and snapshots every 2 kimg:
about 8 x 13 + 5 x 12 + 10 (snapshots, start-up) = 175 s. Six sources and scratch: 7 x 175 =
1,225 s; probes: at most one run's cost, about 200 s with their start-ups; zero-shot scoring of
six generators (1,000 samples each, the target's features) about 100 s, plus the source data's
features on first use (cached after). Total about 26 minutes (22 on an idle machine), leaving
room for a machine shared with other jobs; the 4x check adds about 4 x 24 kimg, 25-30 minutes.
A longer budget is ``--budget-kimg``; ``--check-budget`` says whether the default is long
enough for the order to settle.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from advisor.checkpoints.registry import (  # noqa: E402
    Registry,
)
from advisor.errors import AdvisorError, one_line  # noqa: E402
from advisor.finetuning.options import FinetuneOptions  # noqa: E402
from advisor.ranking.probe import probe_plan, run_probes  # noqa: E402
from advisor.ranking.probe_report import ProbeCandidate  # noqa: E402
from benchmarks.evidence import SCRATCH, analyse  # noqa: E402
from benchmarks.transfer_runs import (  # noqa: E402
    DEFAULT_BUDGET_KIMG,
    DEFAULT_EXTRACTOR,
    DEFAULT_METRIC_EVERY,
    DEFAULT_METRIC_SAMPLES,
    DEFAULT_PROBE_SAMPLES,
    BenchmarkOptions,
    Log,
    RunSpec,
    Source,
    config_key,
    config_of,
    ensure_run,
    load_doc,
    run_finished,
    save,
    select_zoo,
)

RESEED_BASE = 1_000_000
"""Seeds of the truth's re-measurement (disjoint from the runs' metric seeds from 0)."""
ABLATION = (
    ("G+D", "pretrained", "pretrained"),
    ("G only", "pretrained", "random"),
    ("D only", "random", "pretrained"),
    ("neither", "random", "random"),
)


# --------------------------------------------------------------------------- zero-shot
def zero_shot(
    target: Path,
    registry: Registry,
    sources: Sequence[Source],
    setting: str,
    options: BenchmarkOptions,
    source_data: Mapping[str, str],
) -> dict[str, Any]:
    """Every rank metric for every source in ``setting``, with the wall time it took."""
    from advisor.metrics import MetricOptions
    from advisor.ranking import LOWER_IS_BETTER, RANK_METRICS, RankOptions, SourceData, rank_with

    names = tuple(s.name for s in sources)
    given = tuple(SourceData(name=n, path=p) for n, p in source_data.items())
    if (
        setting == "source"
        and not given
        and not any(getattr(s.record, "source_features", None) for s in sources)
    ):
        return {
            "skipped": "no source data: the zoo's registry entries give no source_features "
            "and no --source-data NAME=DIR was passed"
        }

    def ranked(by: str) -> tuple[Any, float]:
        rank_options = RankOptions(
            by=by,  # type: ignore[arg-type]
            setting=setting,  # type: ignore[arg-type]
            checkpoints=() if setting == "source" and given else names,
            source_data=given if setting == "source" else (),
            n_samples=options.rank_samples,
            extractor=options.extractor,
            devices=(options.device,),
            metrics=MetricOptions(bootstrap=0),
            classes=options.classes,
            offline=options.offline,
            progress=sys.stderr.isatty(),
        )
        start = time.perf_counter()
        ranking = rank_with(target, registry=registry, options=rank_options)
        return ranking, time.perf_counter() - start

    try:
        ranking, cost = ranked("recall")
    except AdvisorError as err:
        return {"skipped": one_line(str(err))}
    rows = [row for row in ranking.rows if row.setting == setting]
    scores: dict[str, dict[str, float]] = {row.checkpoint: {} for row in rows}
    extra_cost: dict[str, float] = {}
    not_measured: dict[str, str] = {}
    for metric in RANK_METRICS:
        values = {row.checkpoint: _value(row, metric) for row in rows}
        if None in values.values():  # an other measure: computed only when ranked by
            try:
                extra, extra_cost[metric] = ranked(metric)
            except (AdvisorError, ValueError) as err:
                not_measured[metric] = one_line(str(err))
                continue
            values = {
                row.checkpoint: _value(row, metric) for row in extra.rows if row.setting == setting
            }
        for name, value in values.items():
            if value is not None and name in scores:
                scores[name][metric] = value
    measured = [m for m in RANK_METRICS if m not in not_measured]
    return {
        "cost_s": round(cost, 3),
        "extra_cost_s": {m: round(c, 3) for m, c in extra_cost.items()},
        "scores": scores,
        "directions": {m: "min" if m in LOWER_IS_BETTER else "max" for m in measured},
        "not_measured": not_measured,
        "n_samples": ranking.protocol.n_samples,
        "extractor": ranking.protocol.extractor.to_dict(),
        "skipped_sources": [s.to_dict() for s in ranking.skipped],
        "cached": all(row.from_cache for row in ranking.rows),
    }


def _value(row: Any, metric: str) -> float | None:
    """``row``'s value of ``metric``, or None when the ranking did not compute it."""
    try:
        found = row.estimate(metric)
    except (KeyError, AttributeError):
        return None
    value = getattr(found, "value", None)
    return float(value) if isinstance(value, (int, float)) else None


# --------------------------------------------------------------------------- the benchmark
def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }


def benchmark(
    target: Path,
    out: Path,
    *,
    zoo: str | None = None,
    tag: str | None = None,
    options: BenchmarkOptions = BenchmarkOptions(),  # noqa: B008 - frozen
    source_data: Mapping[str, str] | None = None,
    work: Path | None = None,
    ablation: bool = False,
    check_budget: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Run (or continue) the benchmark for ``target``; returns the document written to ``out``."""
    from advisor.images import open_image_set

    if not target.is_dir() and not target.is_file():
        raise AdvisorError(f"no such target folder or file: {target}")
    source_data = dict(source_data or {})
    for name, path in source_data.items():
        if not Path(path).exists():
            raise AdvisorError(f"--source-data {name}: no such folder or file: {path}")
    image_set = open_image_set(str(target))
    if len(image_set) < 2:
        raise AdvisorError(f"{target}: the target needs at least 2 images")
    registry, sources = select_zoo(zoo, tag, offline=options.offline)
    candidates = [ProbeCandidate(name=s.name, checkpoint=str(s.path)) for s in sources]
    probe_plan(candidates, options.probe(len(sources)))  # a budget too small fails before work
    config = config_of(
        target, image_set.content_hash(), len(image_set), sources, options, source_data
    )
    work = work or REPO / "benchmarks" / ".work" / "transfer" / (
        f"{target.resolve().name}-{config_key(config)[:10]}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = load_doc(out, config)
    doc["machine"] = machine()
    doc["work_dir"] = str(work)
    doc["budget"] = {
        "kimg": options.budget_kimg,
        "evaluations": options.evaluations,
        "full_run_cost_kimg": options.full_run_kimg,
    }
    recipe = options.finetune()
    started = time.perf_counter()
    steps = 2 + len(sources) + 1 + 1 + 1 + (3 if ablation else 0) + (4 if check_budget else 0)
    step = 0

    def stage(text: str) -> None:
        nonlocal step
        step += 1
        log(f"[{step}/{steps}] {text} ({time.perf_counter() - started:.0f} s)")

    def commit() -> None:
        doc["analysis"] = analyse(doc)
        save(out, doc)

    zero = doc.setdefault("zero_shot", {})
    for setting in ("generated", "source"):
        stage(f"zero-shot scores, {setting} setting")
        if setting not in zero:
            zero[setting] = zero_shot(target, registry, sources, setting, options, source_data)
            commit()
    runs = doc.setdefault("runs", {})
    specs = [
        RunSpec(
            key=s.name,
            kind="source",
            source=s.name,
            checkpoint=s.path,
            g_init="pretrained",
            d_init="pretrained",
            kimg=options.budget_kimg,
            folder=work / "runs" / s.name,
        )
        for s in sources
    ] + [
        RunSpec(
            key=SCRATCH,
            kind="scratch",
            source=sources[0].name,
            checkpoint=sources[0].path,
            g_init="random",
            d_init="random",
            kimg=options.budget_kimg,
            folder=work / "runs" / SCRATCH,
        )
    ]
    for spec in specs:
        stage(f"fine-tune {spec.key}")
        runs[spec.key] = ensure_run(spec, recipe, target, device=options.device, log=log)
        commit()
    stage("repeatability of the truth: final G_ema re-measured on other seeds")
    remeasure(doc, specs, target, recipe, device=options.device, log=log)
    commit()
    stage("probe fine-tunes (successive halving)")
    report = run_probes(
        candidates,
        target,
        work_dir=work / "probes",
        options=options.probe(len(sources)),
        device=options.device,
        log=log,
    )
    walls = [r["wall_s"] for k, r in runs.items() if k != SCRATCH and r.get("wall_s")]
    doc["probe"] = {
        **report.to_dict(),
        "full_run_mean_s": sum(walls) / len(walls) if walls else None,
    }
    commit()
    truth = doc["analysis"]["true_order"]
    if ablation and truth:
        best = next(s for s in sources if s.name == truth[0])
        block = doc.setdefault("ablation", {"source": best.name, "runs": {}})
        block["runs"]["G+D"] = runs[best.name]
        for variant, g_init, d_init in ABLATION[1:]:
            stage(f"ablation: {best.name}, {variant}")
            if variant == "neither" and best.name == sources[0].name:
                block["runs"][variant] = runs[SCRATCH]  # the scratch run is exactly this
                continue
            slug = variant.replace(" ", "-").replace("+", "")
            spec = RunSpec(
                key=f"{best.name} ({variant})",
                kind="ablation",
                source=best.name,
                checkpoint=best.path,
                g_init=g_init,
                d_init=d_init,
                kimg=options.budget_kimg,
                folder=work / "ablation" / f"{best.name}-{slug}",
            )
            block["runs"][variant] = ensure_run(
                spec, recipe, target, device=options.device, log=log
            )
            commit()
    if check_budget and truth:
        keys = [*truth[:3], SCRATCH]
        block = doc.setdefault("check_budget", {"factor": options.check_factor, "runs": {}})
        for key in keys:
            stage(f"budget check: {key} to {options.check_factor:g}x")
            base = next(s for s in specs if s.key == key)
            spec = dataclasses.replace(
                base,
                kind="check",
                kimg=options.budget_kimg * options.check_factor,
                folder=work / f"runs-{options.check_factor:g}x" / key,
                continue_from=base.folder,
            )
            block["runs"][key] = ensure_run(spec, recipe, target, device=options.device, log=log)
            commit()
    doc["wall_s_this_call"] = round(time.perf_counter() - started, 3)
    commit()
    return doc


def remeasure(
    doc: dict[str, Any],
    specs: Sequence[RunSpec],
    target: Path,
    recipe: FinetuneOptions,
    *,
    device: str,
    log: Log,
) -> None:
    """Measure every finished run's final G_ema again on ``metric_samples`` other seeds (from
    :data:`RESEED_BASE`) into ``doc["remeasured"]``: how much of the true order is sampling
    noise, a ceiling for any predictor's correlation (see :func:`benchmarks.evidence.analyse`).
    Resumable: a run measured before is skipped."""
    import torch

    from advisor.finetuning.distributed import Distributed
    from advisor.finetuning.inputs import Evaluator
    from advisor.ranking.probe import evaluate_latest

    block = doc.setdefault("remeasured", {"seed_base": RESEED_BASE, "fid": {}})
    todo = [s for s in specs if s.key not in block["fid"] and run_finished(s.folder, s.kimg)]
    if not todo:
        return
    evaluator = Evaluator(
        target, recipe, torch.device(device), Distributed(), seed_base=RESEED_BASE
    )
    for spec in todo:
        values = evaluate_latest(evaluator, spec.folder)
        block["fid"][spec.key] = values["fid"]
        log(f"  {spec.key}: fid {values['fid']:.2f} on seeds from {RESEED_BASE}")


def _source_data(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in items:
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise AdvisorError(f"--source-data takes NAME=DIR, got {text!r}")
        if name.strip() in out:
            raise AdvisorError(f"--source-data names {name.strip()!r} twice")
        out[name.strip()] = path.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, required=True, help="target images (folder/.zip)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (resumable)")
    parser.add_argument("--zoo", default=None, help="registry TOML of the zoo (every entry)")
    parser.add_argument(
        "--tag", default=None, help="only entries with this tag (default without --zoo: demo)"
    )
    parser.add_argument("--budget-kimg", type=float, default=DEFAULT_BUDGET_KIMG)
    parser.add_argument("--metric-every", type=float, default=DEFAULT_METRIC_EVERY)
    parser.add_argument("--metric-samples", type=int, default=DEFAULT_METRIC_SAMPLES)
    parser.add_argument(
        "--snapshot-every", type=float, default=None, help="default: --metric-every"
    )
    parser.add_argument("--probe-samples", type=int, default=DEFAULT_PROBE_SAMPLES)
    parser.add_argument(
        "--rank-samples",
        type=int,
        default=None,
        help="zero-shot samples per source (default: rank's)",
    )
    parser.add_argument("--extractor", default=DEFAULT_EXTRACTOR)
    parser.add_argument(
        "--classes",
        type=int,
        default=10,
        help="k-means surrogate classes of the target for rank's classifier "
        "measures (0: the target's sub-folders)",
    )
    parser.add_argument("--batch", type=int, default=None, help="default: NVlabs' auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source-data", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--work", type=Path, default=None, help="folder for the run folders")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--online", action="store_true", help="allow downloading zoo entries")
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--check-budget", action="store_true")
    parser.add_argument("--check-factor", type=float, default=4.0)
    parser.add_argument("--no-report", action="store_true", help="skip the markdown and plots")
    args = parser.parse_args(argv)
    log: Log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        options = BenchmarkOptions(
            budget_kimg=args.budget_kimg,
            metric_every=args.metric_every,
            metric_samples=args.metric_samples,
            snapshot_every=args.snapshot_every,
            probe_samples=args.probe_samples,
            extractor=args.extractor,
            rank_samples=args.rank_samples,
            classes=args.classes or None,
            batch=args.batch,
            seed=args.seed,
            device=args.device,
            offline=not args.online,
            check_factor=args.check_factor,
        )
        doc = benchmark(
            args.target,
            args.out,
            zoo=args.zoo,
            tag=args.tag,
            options=options,
            source_data=_source_data(args.source_data),
            work=args.work,
            ablation=args.ablation,
            check_budget=args.check_budget,
            log=log,
        )
        if not args.no_report:
            from benchmarks.transfer_report import write_target_report

            log(f"report: {write_target_report(doc, args.out)}")
    except AdvisorError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 1
    analysis = doc["analysis"]
    log(f"true order (final FID): {', '.join(analysis['true_order'])}")
    for p in analysis["predictors"]:
        log(
            f"  {p['name']:<22} spearman {_num(p['spearman'])}  kendall {_num(p['kendall'])}  "
            f"pick {p['pick']}  regret {_num(p['regret'])}  optimal {p['optimal']}"
        )
    log(f"wrote {args.out}")
    return 0


def _num(value: float | None) -> str:
    return "  -  " if value is None else f"{value:+.2f}"


if __name__ == "__main__":
    sys.exit(main())
