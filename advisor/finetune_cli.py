"""``advisor finetune``: a thin click command over :mod:`advisor.finetuning.run`.

Parses, builds one :class:`FinetuneOptions` (so every bad value fails before any work), calls
``run_finetune`` or ``resume_finetune``, prints the summary (``--json`` for pipelines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from advisor.errors import AdvisorError


def _best_of_rank_report(path: str) -> str:
    """The checkpoint of the best row of an ``advisor rank --json`` report."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AdvisorError(f"--from-rank: no such file: {path}") from None
    except (OSError, ValueError) as err:
        raise AdvisorError(f"--from-rank: {path} is not a JSON report ({err})") from None
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        raise AdvisorError(f"--from-rank: {path} has no ranked rows")
    best = rows[0]
    spec = best.get("checkpoint") or best.get("name")
    if not isinstance(spec, str) or not spec:
        raise AdvisorError(f"--from-rank: the best row of {path} names no checkpoint")
    return spec


def _echo(event: dict[str, Any]) -> None:
    if event["event"] == "tick":
        parts = [f"kimg {event['kimg']:.2f}", f"{event['s_per_kimg']:.1f} s/kimg"]
        parts += [f"{k} {event[k]:.4g}" for k in ("loss_g", "loss_d", "r1", "ada_p") if k in event]
        click.echo("  ".join(parts), err=True)
    elif event["event"] == "metrics":
        values = "  ".join(f"{k} {event[k]:.4g}" for k in ("fid", "kid", "recall", "coverage"))
        click.echo(f"kimg {event['kimg']:.2f}  {values}", err=True)


@click.command("finetune")
@click.argument("checkpoint", required=False)
@click.argument("target", required=False)
@click.option("--run-dir", type=click.Path(file_okay=False), help="New run folder.")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    help="Continue the run in this folder from its last complete snapshot.",
)
@click.option(
    "--from-rank",
    type=click.Path(dir_okay=False),
    help="Fine-tune the best checkpoint of an `advisor rank --json` report.",
)
@click.option(
    "--g-init", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True
)
@click.option(
    "--d-init", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True
)
@click.option(
    "--kimg",
    type=float,
    default=None,
    help="Total length in thousands of images (default 50; with --resume: a new total).",
)
@click.option("--batch", type=int, default=None, help="Images per step (auto: NVlabs' rule).")
@click.option("--lr", type=float, default=None, help="Adam learning rate (auto: 0.0025).")
@click.option("--r1-gamma", type=float, default=None, help="R1 weight (auto: 2e-4 res^2/batch).")
@click.option(
    "--pl-weight",
    type=float,
    default=2.0,
    show_default=True,
    help="Path-length regularisation weight (0: off).",
)
@click.option("--style-mixing", type=float, default=0.9, show_default=True)
@click.option("--ema-kimg", type=float, default=None, help="G_ema half-life (auto: batch*10/32).")
@click.option("--mirror", is_flag=True, help="Add x-flipped copies of the target.")
@click.option(
    "--freeze-d",
    type=int,
    default=0,
    show_default=True,
    help="FreezeD: freeze the first N D layers from the input.",
)
@click.option(
    "--aug", type=click.Choice(["ada", "fixed", "none"]), default="ada", show_default=True
)
@click.option(
    "--aug-p",
    type=float,
    default=0.0,
    show_default=True,
    help="Augmentation probability (the fixed p, or ADA's start).",
)
@click.option("--ada-target", type=float, default=0.6, show_default=True)
@click.option(
    "--ada-kimg",
    type=float,
    default=None,
    help="ADA speed (auto: 100 from a pretrained D, else 500).",
)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tick-kimg", type=float, default=1.0, show_default=True)
@click.option(
    "--metric-every",
    type=float,
    default=5.0,
    show_default=True,
    help="Evaluate G_ema every N kimg (0: never).",
)
@click.option("--metric-samples", type=int, default=1000, show_default=True)
@click.option(
    "--metric",
    type=click.Choice(["fid", "kid", "recall", "coverage"]),
    default="fid",
    show_default=True,
    help="The curve that decides best and stops.",
)
@click.option("--extractor", default="efficientnet-lite0", show_default=True)
@click.option("--plateau-delta", type=float, default=0.02, show_default=True)
@click.option("--plateau-window", type=int, default=3, show_default=True)
@click.option("--stop-at-plateau", is_flag=True)
@click.option(
    "--stop-if-worse", type=int, default=None, help="Stop after K evaluations without a new best."
)
@click.option("--snapshot-every", type=float, default=10.0, show_default=True)
@click.option("--keep-snapshots", type=int, default=3, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, default=None)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def finetune_command(
    checkpoint: str | None,
    target: str | None,
    run_dir: str | None,
    resume_dir: str | None,
    from_rank: str | None,
    **kw: Any,
) -> None:
    """Fine-tune CHECKPOINT (registry name or file) on TARGET images into --run-dir."""
    from advisor.finetuning.options import FinetuneOptions
    from advisor.finetuning.run import resume_finetune, run_finetune

    progress = None if kw["quiet"] else _echo
    if resume_dir is not None:
        if checkpoint or target or run_dir or from_rank:
            raise click.UsageError("--resume takes only the run folder (and --kimg, --device)")
        result = resume_finetune(
            resume_dir, kimg=kw["kimg"], device=kw["device"], progress=progress
        )
    else:
        if from_rank is not None:
            if target is None and checkpoint is not None:
                checkpoint, target = None, checkpoint
            if checkpoint is not None:
                raise click.UsageError("give CHECKPOINT or --from-rank, not both")
            checkpoint = _best_of_rank_report(from_rank)
        if checkpoint is None or target is None:
            raise click.UsageError("give CHECKPOINT and TARGET (or --resume RUN)")
        if run_dir is None:
            raise click.UsageError("give --run-dir for a new run")
        if not Path(target).exists():
            raise click.UsageError(f"no such file or folder: {target}")
        metric_every = kw["metric_every"] or None
        options = FinetuneOptions(
            g_init=kw["g_init"],
            d_init=kw["d_init"],
            kimg=kw["kimg"] if kw["kimg"] is not None else 50.0,
            batch=kw["batch"],
            lr=kw["lr"],
            r1_gamma=kw["r1_gamma"],
            pl_weight=kw["pl_weight"],
            style_mixing=kw["style_mixing"],
            ema_kimg=kw["ema_kimg"],
            mirror=kw["mirror"],
            freeze_d=kw["freeze_d"],
            aug=kw["aug"],
            aug_p=kw["aug_p"],
            ada_target=kw["ada_target"],
            ada_kimg=kw["ada_kimg"],
            precision=kw["precision"],
            seed=kw["seed"],
            tick_kimg=kw["tick_kimg"],
            metric_every=metric_every,
            metric_samples=kw["metric_samples"],
            metric=kw["metric"],
            extractor=kw["extractor"],
            plateau_delta=kw["plateau_delta"],
            plateau_window=kw["plateau_window"],
            stop_at_plateau=kw["stop_at_plateau"],
            stop_if_worse=kw["stop_if_worse"],
            snapshot_every=kw["snapshot_every"],
            keep_snapshots=kw["keep_snapshots"],
        )
        result = run_finetune(
            checkpoint,
            target,
            run_dir=run_dir,
            options=options,
            device=kw["device"],
            registry_files=kw["registries"],
            offline=kw["offline"],
            progress=progress,
        )
    if kw["as_json"]:
        click.echo(json.dumps({"run_dir": str(result.run_dir), **result.summary}, indent=2))
        return
    s = result.summary
    click.echo(
        f"run {result.run_dir}: {s['kimg']:g} kimg, stopped by {result.stopped_by}, "
        f"{s['s_per_kimg']:.1f} s/kimg"
    )
    if result.best_snapshot is not None:
        click.echo(
            f"best {s.get('metric')}: {s.get('best')} at kimg {s.get('kimg_at_best')} "
            f"-> {result.best_snapshot}"
        )
