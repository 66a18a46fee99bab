"""``advisor rank TARGET``: a thin click layer over :func:`advisor.ranking.rank_with`.

Parses typed options, runs the ranking, prints the table (or ``--json`` / ``--csv``) and, with
``--out DIR``, writes the self-contained report. Cheap checks (paths, names, option ranges,
output conflicts) run before any feature is computed. :class:`AdvisorError` becomes a one-line
error through the main group.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from advisor.cli.options import (
    batch_size_option,
    classifier_options,
    device_option,
    echo_json,
    json_option,
    metric_options,
    no_cache_option,
    offline_option,
    precision_option,
    quiet_option,
    registry_option,
    seed_option,
    workers_option,
)
from advisor.errors import AdvisorError
from advisor.progress import TqdmProgress
from advisor.ranking.options import DEFAULT_BY, RANK_METRICS, SETTINGS
from advisor.ranking.probe_report import (
    DEFAULT_PROBE_KIMG,
    DEFAULT_PROBE_SAMPLES,
    DEFAULT_PROBE_TOP,
    ProbeOptions,
    ProbeReport,
    probe_recommendation,
)
from advisor.ranking.result import (
    SHOWN_METRICS,
    Ranking,
    RankRow,
    format_estimate,
    interval_rule,
    recommendation,
)
from advisor.sampling import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from advisor.ranking import RankOptions


@click.command("rank")
@click.argument("target")
@registry_option("Extra registry TOML file (repeatable; after $ADVISOR_REGISTRY).")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    help="Rank this registry name or checkpoint file (repeatable).",
)
@click.option("--tag", "tags", multiple=True, help="Select registry entries by tag.")
@click.option("--all", "include_all", is_flag=True, help="Rank every registry entry.")
@click.option(
    "--source-data",
    "source_data",
    multiple=True,
    metavar="NAME=DIR",
    help="A source dataset (folder, .zip or feature file) for --setting source/both.",
)
@click.option(
    "--setting",
    type=click.Choice(SETTINGS),
    default="generated",
    show_default=True,
    help="generated: samples vs target; source: source data vs target; both.",
)
@click.option(
    "--by",
    type=click.Choice(RANK_METRICS),
    default=DEFAULT_BY,
    show_default=True,
    help="Ranking metric (fid and kid: lower is better). is, gan_train, gan_test_confidence "
    "and mode_coverage are the other measures (see README, 'Other measures').",
)
@classifier_options("TARGET")
@click.option(
    "--n-samples",
    type=int,
    default=None,
    help="Samples per checkpoint.  [default: target size clamped to 1000..10000]",
)
@click.option(
    "--extractor",
    default="inception",
    show_default=True,
    help="Feature extractor: inception or efficientnet-lite0 (offline).",
)
@click.option(
    "--extractor-weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local weights file for the extractor.",
)
@precision_option(default="fp32")
@device_option(
    default=None,
    multiple=True,
    help="cpu, cuda, cuda:N or auto; repeat to spread checkpoints over devices. "
    "[default: every visible GPU, else cpu]",
)
@batch_size_option(default=32, maximum=MAX_BATCH_SIZE)
@workers_option("Image decoding processes for the target (0 = in this process).")
@metric_options(ties=True)
@seed_option("Seed of KID subsets and the bootstrap.")
@no_cache_option("Neither read nor write feature caches.")
@offline_option()
@json_option("Print one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write a report folder: rank.json, index.html, plots, sample grids.",
)
@click.option(
    "--probe",
    is_flag=True,
    help="After scoring, probe-fine-tune the best --probe-top generators by successive halving "
    "and rank them by their FID at the end (costs about one --probe-kimg fine-tune).",
)
@click.option(
    "--probe-kimg",
    type=float,
    default=DEFAULT_PROBE_KIMG,
    show_default=True,
    help="Total cost of the probes in training kimg (evaluations included).",
)
@click.option(
    "--probe-top",
    type=int,
    default=DEFAULT_PROBE_TOP,
    show_default=True,
    help="Probe at most this many of the best-ranked generators.",
)
@click.option(
    "--probe-samples",
    type=int,
    default=DEFAULT_PROBE_SAMPLES,
    show_default=True,
    help="G_ema samples per probe evaluation.",
)
@click.option(
    "--probe-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the probe runs (resumable).  [default: in advisor's cache]",
)
@quiet_option("No progress bars.")
def rank_command(
    target: str,
    registries: tuple[str, ...],
    checkpoints: tuple[str, ...],
    tags: tuple[str, ...],
    include_all: bool,
    source_data: tuple[str, ...],
    setting: str,
    by: str,
    n_samples: int | None,
    extractor: str,
    extractor_weights: str | None,
    precision: str,
    devices: tuple[str, ...],
    batch_size: int,
    workers: int | None,
    k_pr: int,
    k_dc: int,
    bootstrap: int | None,
    confidence: float,
    seed: int,
    classes: int | None,
    min_count: int,
    no_cache: bool,
    offline: bool | None,
    as_json: bool,
    as_csv: bool,
    out_dir: str | None,
    probe: bool,
    probe_kimg: float,
    probe_top: int,
    probe_samples: int,
    probe_dir: str | None,
    quiet: bool,
) -> None:
    """Rank source checkpoints for fine-tuning on TARGET (a folder or .zip of images).

    Each checkpoint's generator is sampled (per-image seeds, random noise seeded per image,
    truncation 1) and its samples are measured against TARGET: recall (the fraction of TARGET
    inside the samples' k-NN manifold, the transfer paper's recipe), precision, FID, KID,
    density and coverage, each with a bootstrap interval. Neighbours that a paired bootstrap
    cannot separate are marked as tied.
    """
    from advisor.checkpoints.registry import load_registry
    from advisor.metrics import MetricOptions
    from advisor.ranking import RankOptions, SourceData, rank_with

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    try:
        metric_options = MetricOptions.from_user(
            k_pr=k_pr, k_dc=k_dc, bootstrap=bootstrap, confidence=confidence, seed=seed
        )
    except AdvisorError as err:  # a usage error, like the flags' own range checks
        raise click.UsageError(str(err)) from None
    options = RankOptions(
        by=by,  # type: ignore[arg-type]  (click.Choice)
        setting=setting,  # type: ignore[arg-type]
        n_samples=n_samples,
        checkpoints=checkpoints,
        tags=tags,
        include_all=include_all,
        source_data=tuple(SourceData.parse(text) for text in source_data),
        extractor=extractor,
        extractor_weights=extractor_weights,
        precision=precision,
        devices=devices,
        batch_size=batch_size,
        workers=workers,
        metrics=metric_options,
        classes=classes,
        min_count=min_count,
        cache=not no_cache,
        offline=offline,
        progress=not quiet and sys.stderr.isatty(),
    )
    probe_options = _probe_options(probe, probe_kimg, probe_top, probe_samples, options)
    on_progress = TqdmProgress(enabled=options.progress)
    if out_dir is not None:
        from advisor.cache import check_destination

        check_destination(f"{out_dir}/index.html", overwrite=True)
    registry = load_registry(list(registries))
    ranking = rank_with(target, registry=registry, options=options, on_progress=on_progress)
    probed = None
    if probe_options is not None:
        from advisor.ranking.probe import probe_ranking

        probed = probe_ranking(
            ranking,
            target,
            registry=registry,
            rank_options=options,
            options=probe_options,
            work_dir=probe_dir,
            device=options.devices[0] if options.devices else "auto",
            log=None if quiet else lambda text: click.echo(text, err=True),
        )
    if out_dir is not None:
        from advisor.ranking.core import target_preview
        from advisor.ranking.report import write_report

        index = write_report(ranking, out_dir, target_images=target_preview(target))
        if probed is not None:
            from advisor.finetuning.folder import write_json

            write_json(Path(out_dir) / "probe.json", probed.to_dict())
        if not (as_json or as_csv or quiet):
            click.echo(f"report: {index}", err=True)
    if as_json:
        doc = ranking.to_dict()
        if probed is not None:
            doc["probe"] = probed.to_dict()
        echo_json(doc, allow_nan=False)
    elif as_csv:
        click.echo(ranking.to_csv(), nl=False)
    else:
        click.echo(format_ranking(ranking))
        if probed is not None:
            click.echo("")
            click.echo(format_probe(probed))


def _probe_options(
    probe: bool, kimg: float, top: int, samples: int, options: RankOptions
) -> ProbeOptions | None:
    """The probe's options, checked before any work (None without ``--probe``)."""
    if not probe:
        return None
    if options.setting == "source":
        raise click.UsageError("--probe fine-tunes generators; use --setting generated or both")
    return ProbeOptions(budget_kimg=kimg, top=top, metric_samples=samples)


def format_probe(report: ProbeReport) -> str:
    """The probe table (best first), the plan, and the probe's recommendation."""
    metric = report.options.metric
    header = ["#", "checkpoint", "rounds", "kimg", metric, "recall", "coverage"]
    lines = [header]
    for row in report.rows:
        if row.skipped is not None:
            continue
        lines.append(
            [str(row.rank), row.name, f"{row.rounds}/{len(report.schedule)}", f"{row.kimg:g}"]
            + [_value(row.metrics.get(m)) for m in (metric, "recall", "coverage")]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]  # fmt: skip
    plan = ", ".join(f"{r.candidates} to {r.kimg:g} kimg" for r in report.schedule)
    text.append(
        f"probe fine-tunes by successive halving ({plan}), ranked by {metric} on "
        f"{report.options.metric_samples} samples at each round's end; runs in {report.work_dir}"
    )
    for row in report.rows:
        if row.skipped is not None:
            text.append(f"skipped {row.name} (probe): {row.skipped}")
    text.append("")
    text.append(probe_recommendation(report))
    return "\n".join(text)


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_ranking(ranking: Ranking) -> str:
    """The terminal table, the skipped list, the recommendation and each distinct note once."""
    by = ranking.protocol.by
    metrics = [by, *[m for m in SHOWN_METRICS if m != by]]
    groups = _group_marks(ranking.rows)
    header = ["#", "checkpoint", *metrics, "setting", "tie"]
    lines = [header]
    for row, mark in zip(ranking.rows, groups, strict=True):
        lines.append(
            [str(row.rank), row.checkpoint]
            + [format_estimate(row.estimate(m), m) for m in metrics]
            + [row.setting, mark]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]  # fmt: skip
    confidence = ranking.protocol.metrics.confidence
    text.append(
        f"ranked by {by} ({'lower' if ranking.protocol.lower_is_better else 'higher'} is "
        f"better); [low, high] = {confidence} "
        f"{interval_rule(by, ranking.protocol.metrics.bootstrap)}; rows sharing a tie letter "
        "cannot be told apart at that confidence"
    )
    for skip in ranking.skipped:
        text.append(f"skipped {skip.name} ({skip.setting}): {skip.reason}")
    text.append("")
    text.append(recommendation(ranking))
    notes = _notes(ranking.rows)
    if notes:
        text.append("")
        text.extend(notes)
    return "\n".join(text)


def _notes(rows: tuple[RankRow, ...]) -> list[str]:
    """``note: TEXT`` per distinct row note, naming the rows it concerns unless it is all."""
    where: dict[str, list[str]] = {}
    for row in rows:
        for note in row.report.notes:
            where.setdefault(note, []).append(row.checkpoint)
    return [
        f"note: {note}" if len(names) == len(rows) else f"note: {note} ({', '.join(names)})"
        for note, names in where.items()
    ]


def _group_marks(rows: tuple[RankRow, ...]) -> list[str]:
    """A letter per tied group (``a``, ``b``, ...), blank for rows tied with nobody."""
    marks, letters, seen = [], iter("abcdefghijklmnopqrstuvwxyz"), {}
    for row in rows:
        if not row.tied_with:
            marks.append("")
            continue
        group = frozenset((row.checkpoint, *row.tied_with))
        if group not in seen:
            seen[group] = next(letters, "*")
        marks.append(seen[group])
    return marks
