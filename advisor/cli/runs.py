"""``advisor runs ...``: list, show and compare fine-tune run folders (thin click commands).

``runs_group`` (list, show, compare) is added to the main ``advisor`` group by
:mod:`advisor.cli`, whose error mapping makes :class:`AdvisorError` one line. Each command
parses, calls :mod:`advisor.runs` and prints; ``--json`` prints one JSON object. Notes about a
run (a dropped unfinished line, a recomputed summary) go to stderr, or into the JSON object.
"""

from __future__ import annotations

from typing import Any

import click

from advisor.cache import check_destination
from advisor.cli.options import echo_json, json_option, overwrite_option
from advisor.errors import AdvisorError
from advisor.finetuning.convergence import DEFAULT_DELTA, DEFAULT_WINDOW
from advisor.metrics.directions import METRIC_MODES
from advisor.runs import LIST_DEPTH, Run, compare_runs, list_runs, load_run, plot_curves


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _overview(run: Run) -> dict[str, Any]:
    s = run.summary
    c = s.convergence
    return {
        "name": run.name,
        "path": str(run.path),
        "checkpoint": run.checkpoint_name,
        "target": run.config.get("target"),
        "metric": c.metric,
        "best": c.best,
        "kimg_at_best": c.kimg_at_best,
        "evaluations": len(run.metrics),
        "kimg": s.kimg,
        "finished": s.finished,
        "stopped_by": s.stopped_by,
    }


def _echo_notes(run: Run) -> None:
    for note in run.notes:
        click.echo(f"note: {run.name}: {note}", err=True)


@click.group("runs")
def runs_group() -> None:
    """List, show and compare fine-tune run folders."""


@runs_group.command("list")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--depth",
    type=click.IntRange(0, 20),
    default=LIST_DEPTH,
    show_default=True,
    help="How many folder levels below DIRECTORY to search.",
)
@json_option()
def list_command(directory: str, depth: int, as_json: bool) -> None:
    """List the run folders in DIRECTORY with their best value so far."""
    rows: list[dict[str, Any]] = []
    for path in list_runs(directory, depth=depth):
        try:
            rows.append(_overview(load_run(path)))
        except AdvisorError as err:  # one damaged run does not hide the others
            rows.append({"name": path.name, "path": str(path), "error": str(err)})
    if as_json:
        echo_json({"directory": directory, "runs": rows})
        return
    if not rows:
        click.echo(f"no run folders under {directory}")
        return
    width = max(len(r["path"]) for r in rows)
    for r in rows:
        if "error" in r:
            click.echo(f"{r['path']:<{width}}  error: {r['error']}")
            continue
        stopped = r["stopped_by"]
        state = "finished" if r["finished"] else "unfinished"
        state += f" ({stopped})" if stopped not in (None, "kimg") else ""
        click.echo(
            f"{r['path']:<{width}}  {r['checkpoint'] or '?'}  kimg {_fmt(r['kimg'])}  "
            f"{r['metric']} {_fmt(r['best'])} @ {_fmt(r['kimg_at_best'])}  {state}"
        )


@runs_group.command("show")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@json_option()
def show_command(run_dir: str, as_json: bool) -> None:
    """Show one run: what it fine-tuned, its convergence summary and its snapshots."""
    run = load_run(run_dir)
    last = run.metrics[-1] if run.metrics else None
    data = {
        **_overview(run),
        "advisor_version": run.config.get("advisor_version"),
        "summary": run.summary.to_dict(),
        "last_metrics": None if last is None else {"kimg": last.kimg, **last.metrics},
        "snapshots": [str(s.path) for s in run.snapshots],
        "best_snapshot": None if run.best_snapshot is None else str(run.best_snapshot),
        "notes": list(run.notes),
    }
    if as_json:
        echo_json(data)
        return
    _echo_notes(run)
    fields = {k: data[k] for k in ("name", "path", "checkpoint", "target", "advisor_version")}
    for key, value in (fields | data["summary"]).items():
        shown = _fmt(value) if isinstance(value, float) else value
        click.echo(f"{key}: {'-' if shown is None else shown}")
    if last is not None:
        values = "  ".join(f"{k} {_fmt(v)}" for k, v in last.metrics.items())
        click.echo(f"last evaluation: kimg {_fmt(last.kimg)}  {values}")
    click.echo(f"snapshots: {len(run.snapshots)}")
    click.echo(f"best snapshot: {data['best_snapshot'] or '-'}")


@runs_group.command("compare")
@click.argument(
    "run_dirs",
    metavar="RUN...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False),
)
@click.option(
    "--metric",
    type=click.Choice(sorted(METRIC_MODES)),
    default="fid",
    show_default=True,
    help="The metric to compare.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the curves on shared axes to this PNG.",
)
@overwrite_option("Replace an existing --out file.")
@click.option(
    "--plateau-delta",
    type=click.FloatRange(min=0),
    default=DEFAULT_DELTA,
    show_default=True,
    help="Relative improvement that still counts as a plateau.",
)
@click.option(
    "--plateau-window",
    type=click.IntRange(min=1),
    default=DEFAULT_WINDOW,
    show_default=True,
    help="Evaluations in a plateau window.",
)
@json_option()
def compare_command(
    run_dirs: tuple[str, ...],
    metric: str,
    out: str | None,
    overwrite: bool,
    plateau_delta: float,
    plateau_window: int,
    as_json: bool,
) -> None:
    """Compare runs on one metric: best, kimg at best, plateau, convergence kimg, AUC."""
    if out is not None:
        check_destination(out, overwrite=overwrite)
    runs = [load_run(d) for d in run_dirs]
    rows = compare_runs(runs, metric=metric, delta=plateau_delta, window=plateau_window)
    if not any(r.convergence.evaluations for r in rows):
        raise AdvisorError(f"none of the runs has a finite {metric} evaluation")
    plot = None if out is None else str(plot_curves(runs, metric, out))
    if as_json:
        notes = [f"{run.name}: {note}" for run in runs for note in run.notes]
        echo_json({"metric": metric, "runs": [r.to_dict() for r in rows], "plot": plot,
                    "notes": notes})  # fmt: skip
        return
    for run in runs:
        _echo_notes(run)
    header = ("run", "best", "kimg@best", "plateau", "conv kimg", "auc", "evals")
    table = [header] + [
        (r.name, _fmt(c.best), _fmt(c.kimg_at_best), _fmt(c.plateau_kimg),
         _fmt(c.convergence_kimg), _fmt(c.auc), str(c.evaluations))
        for r in rows
        for c in (r.convergence,)
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if plot is not None:
        click.echo(f"wrote {plot}")
