"""The CLI, the service and the Python API start from the same defaults.

Each command's options and each service job's params name fields of the library's options
dataclasses; where an option has a default of its own it must be the library's. ``None`` (and
click's unset flags) mean "the library decides" and are left out of the comparison, as are the
options the CLI parses into another type first (``--metrics``).
"""

import dataclasses

import click
import pytest

from advisor.cli import main as cli
from advisor.compare import CompareRequest
from advisor.features.pipeline import ExtractionOptions
from advisor.finetuning.options import FinetuneOptions
from advisor.metrics import MetricOptions
from advisor.ranking.options import RankOptions
from advisor.serve.jobs import CompareParams, RankParams

PARSED_FIRST = {"metrics"}


def _defaults(cls: type) -> dict[str, object]:
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING and f.name not in PARSED_FIRST
    }


@pytest.mark.parametrize(
    ("command", "libraries"),
    [
        ("finetune", (FinetuneOptions,)),
        ("compare", (CompareRequest, MetricOptions, ExtractionOptions)),
        ("rank", (RankOptions, MetricOptions)),
    ],
)
def test_every_cli_default_is_the_librarys(command, libraries):
    compared = 0
    for param in cli.commands[command].params:
        default = param.default
        if (
            not isinstance(param, click.Option)
            or default is None
            or not isinstance(default, int | float | str | bool)
        ):
            continue  # None: the library decides; click's unset flags are not values
        for library in libraries:
            defaults = _defaults(library)
            if param.name in defaults:
                assert default == defaults[param.name], (command, param.name)
                compared += 1
                break
    assert compared >= 5  # the comparison saw the options it is about


@pytest.mark.parametrize(
    ("params", "libraries"),
    [
        (CompareParams, (CompareRequest, ExtractionOptions)),
        (RankParams, (RankOptions, MetricOptions)),
    ],
)
def test_every_service_job_default_is_the_librarys(params, libraries):
    compared = 0
    for name, default in _defaults(params).items():
        for library in libraries:
            if name in _defaults(library):
                assert default == _defaults(library)[name], (params.__name__, name)
                compared += 1
                break
    assert compared >= 8
