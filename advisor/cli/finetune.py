"""``advisor finetune``: a thin click command over :mod:`advisor.finetuning.run`.

Parses, builds one :class:`FinetuneOptions` (so every bad value fails before any work), calls
``run_finetune`` or ``resume_finetune``, prints the summary (``--json`` for pipelines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from advisor.cli.options import (
    device_option,
    json_option,
    offline_option,
    precision_option,
    quiet_option,
    registry_option,
    seed_option,
)
from advisor.errors import AdvisorError
from advisor.finetuning.options import TRACKED_METRICS

if TYPE_CHECKING:
    from advisor.finetuning import TrainingEvent
    from advisor.finetuning.options import Augment, Init, Precision


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


def _echo(event: TrainingEvent) -> None:
    v = event.values
    if event.kind == "tick":
        parts = [f"kimg {event.kimg:.2f}", f"{v.get('s_per_kimg', float('nan')):.1f} s/kimg"]
        parts += [f"{k} {v[k]:.4g}" for k in ("loss_g", "loss_d", "r1", "ada_p") if k in v]
        click.echo("  ".join(parts), err=True)
    else:
        values = "  ".join(f"{k} {x:.4g}" for k, x in v.items())  # every tracked metric
        click.echo(f"kimg {event.kimg:.2f}  {values}", err=True)


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
    default=None,
    help="Path-length regularisation weight (0: off; auto: 0 at 64 px or less, else 2).",
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
@precision_option(default="fp32")
@seed_option()
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
    type=click.Choice(tuple(TRACKED_METRICS)),
    default="fid",
    show_default=True,
    help="The curve that decides best and stops (the other measures are computed only when "
    "tracked; see README, 'Other measures').",
)
@click.option(
    "--classes",
    type=click.IntRange(min=2),
    default=None,
    help="--metric gan_train/gan_test_confidence/mode_coverage on an unlabelled target: K "
    "surrogate classes from k-means.  [default: the target's sub-folders]",
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
@device_option(default="auto", help="cpu, cuda, cuda:N, auto.")
@registry_option("Extra registry TOML file (repeatable; after $ADVISOR_REGISTRY).")
@offline_option()
@quiet_option("No progress lines.")
@json_option("Print the summary as JSON.")
def finetune_command(
    checkpoint: str | None,
    target: str | None,
    run_dir: str | None,
    resume_dir: str | None,
    from_rank: str | None,
    g_init: Init,
    d_init: Init,
    kimg: float | None,
    batch: int | None,
    lr: float | None,
    r1_gamma: float | None,
    pl_weight: float | None,
    style_mixing: float,
    ema_kimg: float | None,
    mirror: bool,
    freeze_d: int,
    aug: Augment,
    aug_p: float,
    ada_target: float,
    ada_kimg: float | None,
    precision: Precision,
    seed: int,
    tick_kimg: float,
    metric_every: float,
    metric_samples: int,
    metric: str,
    classes: int | None,
    extractor: str,
    plateau_delta: float,
    plateau_window: int,
    stop_at_plateau: bool,
    stop_if_worse: int | None,
    snapshot_every: float,
    keep_snapshots: int,
    device: str,
    registries: tuple[str, ...],
    offline: bool | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Fine-tune CHECKPOINT (registry name or file) on TARGET images into --run-dir."""
    from advisor.finetuning.options import FinetuneOptions
    from advisor.finetuning.run import resume_finetune, run_finetune

    progress = None if quiet else _echo
    if resume_dir is not None:
        if checkpoint or target or run_dir or from_rank:
            raise click.UsageError("--resume takes only the run folder (and --kimg, --device)")
        result = resume_finetune(resume_dir, kimg=kimg, device=device, progress=progress)
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
        options = FinetuneOptions(
            g_init=g_init,
            d_init=d_init,
            kimg=kimg if kimg is not None else FinetuneOptions.kimg,
            batch=batch,
            lr=lr,
            r1_gamma=r1_gamma,
            pl_weight=pl_weight,
            style_mixing=style_mixing,
            ema_kimg=ema_kimg,
            mirror=mirror,
            freeze_d=freeze_d,
            aug=aug,
            aug_p=aug_p,
            ada_target=ada_target,
            ada_kimg=ada_kimg,
            precision=precision,
            seed=seed,
            tick_kimg=tick_kimg,
            metric_every=metric_every or None,
            metric_samples=metric_samples,
            metric=metric,
            classes=classes,
            extractor=extractor,
            plateau_delta=plateau_delta,
            plateau_window=plateau_window,
            stop_at_plateau=stop_at_plateau,
            stop_if_worse=stop_if_worse,
            snapshot_every=snapshot_every,
            keep_snapshots=keep_snapshots,
        )
        result = run_finetune(
            checkpoint,
            target,
            run_dir=run_dir,
            options=options,
            device=device,
            registry_files=registries,
            offline=offline,
            progress=progress,
        )
    if as_json:
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
