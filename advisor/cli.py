"""The ``advisor`` command line: parse, call one library function, print.

User mistakes become one-line errors with a non-zero exit, never tracebacks.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from advisor import __version__
from advisor.errors import AdvisorError, one_line

_shown_warnings: set[str] = set()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Show each distinct warning once, on one line, on stderr."""
    text = one_line(str(message))
    if text not in _shown_warnings:
        _shown_warnings.add(text)
        click.echo(f"warning: {text}", err=True)


class _Group(click.Group):
    """A click group that turns advisor's errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdvisorError as err:
            raise click.ClickException(one_line(str(err))) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="advisor")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the full traceback of an unexpected error (also ADVISOR_DEBUG=1).",
)
def main(debug: bool) -> None:
    """Pick the pretrained StyleGAN2 checkpoint to fine-tune for your images."""
    warnings.showwarning = _one_line_warning
    # "fp32" means fp32: no TF32 matmuls or convolutions on Ampere+ GPUs.
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def feature_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that turns images into features."""
    options = [
        click.option(
            "--extractor",
            default=None,
            show_default="inception",
            help="Feature extractor: inception (the FID standard) or efficientnet-lite0 (offline).",
        ),
        click.option(
            "--extractor-weights",
            type=click.Path(dir_okay=False),
            default=None,
            help="Local weights file for the extractor (else $ADVISOR_INCEPTION_WEIGHTS, "
            "else the cache, else a verified download).",
        ),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "bf16"]),
            default=None,
            show_default="fp32",
            help="Run the network in fp32 or under bf16 autocast.",
        ),
        click.option(
            "--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, auto."
        ),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=None,
            help="Image decoding processes (0 = in this process). Default: up to 4.",
        ),
        click.option("--strict", is_flag=True, help="Treat any skipped (bad) file as an error."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache."),
        click.option("--offline", is_flag=True, default=None, help="Never touch the network."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars or skip reports."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


def _feature_options(kw: dict[str, Any], *, extractor: str | None, precision: str | None):
    from advisor.features.pipeline import FeatureOptions

    return FeatureOptions(
        extractor=extractor or "inception",
        weights=kw["extractor_weights"],
        precision=precision or "fp32",
        device=kw["device"],
        batch_size=kw["batch_size"],
        workers=kw["workers"],
        strict=kw["strict"],
        cache=not kw["no_cache"],
        offline=kw["offline"],
        progress=not kw["quiet"] and sys.stderr.isatty(),
    )


def _report_skips(feature_set, quiet: bool) -> None:  # noqa: ANN001
    """One line on stderr naming the first skipped files; names print in their escaped form."""
    from advisor.images import format_skips, printable

    if quiet or not feature_set.skipped:
        return
    click.echo(
        f"{printable(str(feature_set.source))}: skipped {len(feature_set.skipped)} file(s): "
        f"{format_skips(feature_set.skipped)}",
        err=True,
    )


def _check_source(source: str) -> None:
    try:
        os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        raise click.UsageError(f"no such file or folder: {source}") from None
    except (OSError, ValueError) as err:  # permission denied, a NUL in the name
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise click.UsageError(f"cannot open {source}: {reason}") from None


@main.command()
@click.argument("source")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .npz file."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@feature_options
def features(source: str, out: str, overwrite: bool, **kw: Any) -> None:
    """Compute features of an image folder or .zip and write them to a .npz file.

    The file holds ``features`` (N x D float32) and ``meta`` (JSON: protocol, image names).
    It is written whole or not at all; an existing file is replaced only with --overwrite.
    """
    from advisor.cache import check_destination
    from advisor.features.pipeline import compute_features, save_features

    _check_source(source)
    if not out.lower().endswith(".npz"):
        raise click.UsageError(f"--out must end in .npz, got {out}")
    check_destination(out, overwrite=overwrite)  # before any image is decoded
    options = _feature_options(kw, extractor=kw["extractor"], precision=kw["precision"])
    feature_set = compute_features(source, options=options)
    _report_skips(feature_set, kw["quiet"])
    save_features(out, feature_set, overwrite=overwrite)
    if not kw["quiet"]:
        n, d = feature_set.features.shape
        click.echo(f"wrote {out}: {n} x {d} features ({feature_set.protocol.get('extractor')})")


@main.command()
@click.argument("reference")
@click.argument("candidate")
@click.option(
    "--k-pr",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="k for precision and recall (Kynkaanniemi et al.).",
)
@click.option(
    "--k-dc",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="k for density and coverage (Naeem et al.).",
)
@click.option(
    "--kid-subsets",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="KID subsets.",
)
@click.option(
    "--kid-subset-size",
    type=click.IntRange(min=2),
    default=1000,
    show_default=True,
    help="Rows per KID subset (clamped to the smaller set).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=None,
    help="Bootstrap resamples for confidence intervals (0: none).  [default: 200]",
)
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of KID's subsets and the bootstrap.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@feature_options
def compare(reference: str, candidate: str, as_json: bool, **kw: Any) -> None:
    """Compare CANDIDATE images with REFERENCE (target) images.

    Each is an image folder, a .zip, or a feature file (.npz from `advisor features`, or a plain
    .npy N x D array). Precision: fraction of CANDIDATE inside REFERENCE's k-NN manifold;
    recall: fraction of REFERENCE inside CANDIDATE's.
    """
    from advisor.compare import CompareRequest, protocol_options_without_effect, run_compare

    for source in (reference, candidate):
        _check_source(source)
    unused = protocol_options_without_effect(
        reference,
        candidate,
        extractor=kw["extractor"],
        precision=kw["precision"],
        weights=kw["extractor_weights"],
    )
    if unused:
        # Refused, not warned about: these options say how to measure images, and a user who
        # passes one to two feature files expects it to matter; a warning scrolls past in a
        # script or a --json pipeline, and the fix (drop the option) is trivial.
        flags = {
            "extractor": "--extractor",
            "precision": "--precision",
            "weights": "--extractor-weights",
        }
        shown = ", ".join(flags[name] for name in unused)
        raise click.UsageError(
            f"both sides are feature files, so {shown} would change nothing; leave "
            f"{'it' if len(unused) == 1 else 'them'} out (only images use them)"
        )
    request = CompareRequest(
        reference=reference,
        candidate=candidate,
        extractor=kw["extractor"],
        precision=kw["precision"],
        feature_options=_feature_options(kw, extractor=kw["extractor"], precision=kw["precision"]),
        k_pr=kw["k_pr"],
        k_dc=kw["k_dc"],
        kid_subsets=kw["kid_subsets"],
        kid_subset_size=kw["kid_subset_size"],
        bootstrap=kw["bootstrap"],
        confidence=kw["confidence"],
        seed=kw["seed"],
    )
    result = run_compare(request)
    for feature_set in (result.reference, result.candidate):
        _report_skips(feature_set, kw["quiet"])
    if as_json:
        # allow_nan=False: JSON has no NaN; the report guarantees finite numbers, this keeps
        # a broken guarantee from printing invalid JSON.
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        click.echo(result.format_text())


def _register_subcommands() -> None:
    from advisor.checkpoints_cli import checkpoints_group, generate_command
    from advisor.finetune_cli import finetune_command
    from advisor.runs_cli import runs_group

    main.add_command(checkpoints_group)
    main.add_command(generate_command)
    main.add_command(finetune_command)
    main.add_command(runs_group)

    from advisor.rank_cli import rank_command

    main.add_command(rank_command)


_register_subcommands()
