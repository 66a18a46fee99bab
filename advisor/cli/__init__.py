"""The ``advisor`` command line: parse, call one library function, print.

:data:`main` is the one click group; every command runs inside its :class:`AdvisorGroup`, the
one place where errors become one line: an :class:`AdvisorError` prints as ``Error: ...`` (its
text escaped to one line), an existing output names the ``--overwrite`` flag, Ctrl-C prints
"interrupted" and exits 130, and each distinct warning is shown once, on one line. The console
script (:mod:`advisor.entry`) is the last line of defence around it.

One module per command family: :mod:`~advisor.cli.features` (features, compare),
:mod:`~advisor.cli.checkpoints` (checkpoints, generate), :mod:`~advisor.cli.finetune`,
:mod:`~advisor.cli.runs`, :mod:`~advisor.cli.rank`; options several of them take are made in
:mod:`~advisor.cli.options`.
"""

from __future__ import annotations

import warnings
from typing import Any, TextIO

import click

from advisor import __version__
from advisor.cli.checkpoints import checkpoints_group, generate_command
from advisor.cli.features import compare_command, features_command
from advisor.cli.finetune import finetune_command
from advisor.cli.rank import rank_command
from advisor.cli.runs import runs_group
from advisor.cli.serve import jobs_group, serve_command
from advisor.errors import AdvisorError, one_line

EXIT_INTERRUPTED = 130

_shown_warnings: set[str] = set()


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show each distinct warning once, on one line, on stderr."""
    text = one_line(str(message))
    if text not in _shown_warnings:
        _shown_warnings.add(text)
        click.echo(f"warning: {text}", err=True)


class AdvisorGroup(click.Group):
    """The click group whose ``invoke`` turns advisor's errors into one-line messages, for
    itself and every command and group below it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdvisorError as err:
            raise click.ClickException(_message(err)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _message(err: AdvisorError) -> str:
    from advisor.checkpoints.format import OutputExists

    if isinstance(err, OutputExists):  # the library names its keyword; the CLI names its flag
        return one_line(f"{err.path} already exists; pass --overwrite to replace it")
    return one_line(str(err))


@click.group(cls=AdvisorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="advisor")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the full traceback of an unexpected error (also ADVISOR_DEBUG=1).",
)
def main(debug: bool) -> None:
    """Pick the pretrained StyleGAN2 checkpoint to fine-tune for your images."""
    del debug  # read by advisor.entry before click runs: it decides what an unexpected error shows
    warnings.showwarning = _one_line_warning
    # "fp32 means fp32" (no TF32) is scoped inside the extractor's, the sampler's and the
    # training loop's own forward passes (advisor.devices.fp32_math), for API callers too.


for _command in (
    features_command,
    compare_command,
    checkpoints_group,
    generate_command,
    finetune_command,
    runs_group,
    rank_command,
    serve_command,
    jobs_group,
):
    main.add_command(_command)

__all__ = ["AdvisorGroup", "main"]
