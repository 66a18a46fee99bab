"""Options more than one command takes, made in one place, and the small helpers they share.

Each factory returns a click decorator; a command that takes the option lists the parameter in
its own signature, typed. Device, precision and batch-size flags are made only here, so every
command spells, documents and bounds them the same way. The values are checked where they are
used (the library's options classes), so a bad device or precision is the same one-line error
from the CLI and from Python.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from advisor.features.pipeline import ExtractionOptions
from advisor.metrics import MetricOptions
from advisor.metrics.classifier import DEFAULT_MIN_COUNT
from advisor.progress import TqdmProgress

if TYPE_CHECKING:
    from advisor.features.files import FeatureSet
    from advisor.features.pipeline import ExtractionOptions, FeatureOptions

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

#: The precisions a network can run in: ``fp32`` (the default everywhere) or bf16 autocast.
PRECISION_CHOICES = ("fp32", "bf16")


def device_option(*, default: str | None, multiple: bool = False, help: str) -> Decorator:
    """``--device``: cpu, cuda, cuda:N or auto (``multiple``: repeatable, into ``devices``)."""
    if multiple:
        return click.option("--device", "devices", multiple=True, help=help)
    return click.option("--device", default=default, show_default=True, help=help)


def precision_option(*, default: str | None, show_default: str | bool = True) -> Decorator:
    """``--precision``: fp32 or bf16 (None: the command decides, e.g. from a feature file)."""
    return click.option(
        "--precision",
        type=click.Choice(PRECISION_CHOICES),
        default=default,
        show_default=show_default,
        help="Run the network in fp32 or under bf16 autocast.",
    )


def batch_size_option(*, default: int, maximum: int | None = None) -> Decorator:
    """``--batch-size``: images per forward pass, at least 1 (and at most ``maximum``)."""
    return click.option(
        "--batch-size", type=click.IntRange(1, maximum), default=default, show_default=True
    )


def workers_option(help: str) -> Decorator:
    return click.option("--workers", type=click.IntRange(min=0), default=None, help=help)


def offline_option(help: str = "Never touch the network.") -> Decorator:
    # default None, not False: "not given" leaves the choice to $ADVISOR_OFFLINE
    return click.option("--offline", is_flag=True, default=None, help=help)


def registry_option(help: str) -> Decorator:
    return click.option(
        "--registry", "registries", multiple=True, type=click.Path(dir_okay=False), help=help
    )


def json_option(help: str = "Print JSON.") -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help)


def quiet_option(help: str | None = "No progress bars or skip reports.") -> Decorator:
    return click.option("-q", "--quiet", is_flag=True, help=help)


def overwrite_option(help: str) -> Decorator:
    return click.option("--overwrite", is_flag=True, help=help)


def seed_option(help: str | None = None) -> Decorator:
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


def no_cache_option(help: str = "Neither read nor write the feature cache.") -> Decorator:
    return click.option("--no-cache", is_flag=True, help=help)


def _together(options: list[Decorator]) -> Decorator:
    """One decorator applying ``options`` so that ``--help`` lists them in this order."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def metric_options(*, ties: bool = False) -> Decorator:
    """How the default metrics are measured: ``k_pr, k_dc, bootstrap, confidence``
    (``bootstrap`` None when not given: the library's default, see
    :meth:`advisor.metrics.MetricOptions.from_user`). ``ties``: the bootstrap also decides
    ties (``advisor rank``)."""
    decides = " and tie decisions" if ties else ""
    return _together(
        [
            click.option(
                "--k-pr",
                type=click.IntRange(min=1),
                default=MetricOptions.k_pr,
                show_default=True,
                help="k for precision and recall (Kynkaanniemi et al.).",
            ),
            click.option(
                "--k-dc",
                type=click.IntRange(min=1),
                default=MetricOptions.k_dc,
                show_default=True,
                help="k for density and coverage (Naeem et al.).",
            ),
            click.option(
                "--bootstrap",
                type=click.IntRange(min=0),
                default=None,
                help=f"Bootstrap resamples for confidence intervals{decides} (0: none).  "
                f"[default: {MetricOptions.bootstrap}]",
            ),
            click.option(
                "--confidence",
                type=click.FloatRange(0.5, 0.999),
                default=MetricOptions.confidence,
                show_default=True,
                help=f"Confidence of the intervals{decides}.",
            ),
        ]
    )


def classifier_options(role: str) -> Decorator:
    """The classifier measures' ``classes, min_count``; ``role`` names the real side (the
    argument whose sub-folders are its classes, e.g. ``TARGET``)."""
    return _together(
        [
            click.option(
                "--classes",
                type=click.IntRange(min=2),
                default=None,
                help=f"Classifier measures on an unlabelled {role}: K surrogate classes from "
                f"k-means.  [default: {role}'s sub-folders are its classes]",
            ),
            click.option(
                "--min-count",
                type=click.IntRange(min=1),
                default=DEFAULT_MIN_COUNT,
                show_default=True,
                help="Mode coverage: a class counts as covered with at least this many samples.",
            ),
        ]
    )


def feature_options(func: F) -> F:
    """The options of every command that turns images into features (see :class:`FeatureFlags`):
    ``extractor, extractor_weights, precision, device, batch_size, workers, strict, no_cache,
    offline, quiet``."""
    options: list[Decorator] = [
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
        precision_option(default=None, show_default="fp32"),
        device_option(default="auto", help="cpu, cuda, cuda:N, auto."),
        batch_size_option(default=ExtractionOptions.batch_size),
        workers_option("Image decoding processes (0 = in this process). Default: up to 4."),
        click.option("--strict", is_flag=True, help="Treat any skipped (bad) file as an error."),
        no_cache_option(),
        offline_option(),
        quiet_option(),
    ]
    return _together(options)(func)


@dataclass(frozen=True, kw_only=True)
class FeatureFlags:
    """The values of :func:`feature_options`, as given (None: not given)."""

    extractor: str | None
    extractor_weights: str | None
    precision: str | None
    device: str
    batch_size: int
    workers: int | None
    strict: bool
    no_cache: bool
    offline: bool | None
    quiet: bool

    @property
    def show_progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def extraction_options(self) -> ExtractionOptions:
        """How extraction runs (validated there: a bad device fails here, before any image is
        read)."""
        from advisor.features.pipeline import ExtractionOptions

        return ExtractionOptions(
            device=self.device,
            batch_size=self.batch_size,
            workers=self.workers,
            strict=self.strict,
            cache=not self.no_cache,
            offline=self.offline,
            progress=self.show_progress,
        )

    def feature_options(self) -> FeatureOptions:
        """The extraction options with the protocol choices (defaults: inception, fp32;
        validated there, so a bad name or device fails before any image is read)."""
        from advisor.features.pipeline import FeatureOptions

        return FeatureOptions.of(
            self.extraction_options(),
            extractor=self.extractor or "inception",
            weights=self.extractor_weights,
            precision=self.precision or "fp32",
        )

    def progress(self) -> TqdmProgress:
        return TqdmProgress(enabled=self.show_progress)


def check_source(source: str) -> None:
    """A usage error when ``source`` cannot be opened at all (checked before any work)."""
    try:
        os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        raise click.UsageError(f"no such file or folder: {source}") from None
    except (OSError, ValueError) as err:  # permission denied, a NUL in the name
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise click.UsageError(f"cannot open {source}: {reason}") from None


def report_skips(feature_set: FeatureSet, quiet: bool) -> None:
    """One line on stderr naming the first skipped files; names print in their escaped form."""
    from advisor.images import format_skips, printable

    if quiet or not feature_set.skipped:
        return
    click.echo(
        f"{printable(str(feature_set.source))}: skipped {len(feature_set.skipped)} file(s): "
        f"{format_skips(feature_set.skipped)}",
        err=True,
    )


def echo_json(data: object, *, allow_nan: bool = True) -> None:
    """``data`` as indented JSON on stdout (``allow_nan=False``: a NaN is a bug, not output)."""
    click.echo(json.dumps(data, indent=2, allow_nan=allow_nan))


def echo_notes(notes: tuple[str, ...] | list[str], *, err: bool = False) -> None:
    """Each distinct note once, as ``note: ...`` (library results carry them as data)."""
    for note in dict.fromkeys(notes):
        click.echo(f"note: {note}", err=err)
