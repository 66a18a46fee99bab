"""The ``advisor`` console script: the last line of defence around the click CLI.

Every error advisor expects is already a one-line ``AdvisorError`` or click error where it
arises. This wrapper catches what slipped through: any other exception becomes one line naming
its type, plus a hint to rerun with ``--debug`` (or ``ADVISOR_DEBUG=1``) for the traceback, and a
non-zero exit; Ctrl-C at any moment, start-up imports included, exits 130 with "interrupted".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130
EXIT_UNEXPECTED = 70  # EX_SOFTWARE: an internal error, not a user mistake


def _debug_requested(argv: Sequence[str]) -> bool:
    flag = os.environ.get("ADVISOR_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    return flag or "--debug" in argv


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def run(argv: Sequence[str] | None = None) -> None:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and exit with its status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        from advisor.cli import main

        main.main(args=args, prog_name="advisor", standalone_mode=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except (SystemExit, GeneratorExit):
        raise
    except Exception as err:  # the last line of defence: see the module docstring
        if debug:
            raise
        print(
            f"Error: unexpected {_one_line(err)} (an advisor bug: rerun with `advisor --debug "
            "...` for the traceback and report it)",
            file=sys.stderr,
        )
        sys.exit(EXIT_UNEXPECTED)
