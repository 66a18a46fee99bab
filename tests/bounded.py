"""Run a snippet of Python in a child process under a memory cap and a timeout.

Hostile-input tests (zip bombs, pickle "billion laughs", absurd configs) must prove that advisor
stops with a clear error instead of eating the machine. The child imports what it needs first,
then caps its address space at (what it uses after the imports) + ``budget_mb``, so the cap
measures only the work the snippet does, whatever torch's own mappings cost on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

_PRELUDE = """
import resource, sys
{imports}
def _vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
_cap = _vm_bytes() + {budget} * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (_cap, _cap))
"""


@dataclass(frozen=True, kw_only=True)
class BoundedResult:
    """What the child did: exit code, its output, and whether it hit the timeout."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def run_bounded(
    code: str,
    *,
    imports: str = "import torch, advisor",
    budget_mb: int = 512,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> BoundedResult:
    """Run ``code`` after ``imports`` in a fresh interpreter capped at ``budget_mb`` extra memory.

    Returns the child's result; ``timed_out`` is True when it ran past ``timeout`` seconds (then
    it was killed). A ``MemoryError`` in the child shows up as a non-zero exit with it in stderr.
    """
    script = _PRELUDE.format(imports=imports, budget=int(budget_mb)) + textwrap.dedent(code)
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env.setdefault("OMP_NUM_THREADS", "1")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
        )
    except subprocess.TimeoutExpired as err:
        return BoundedResult(
            returncode=-9,
            stdout=_text(err.stdout),
            stderr=_text(err.stderr),
            timed_out=True,
        )
    return BoundedResult(
        returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, timed_out=False
    )


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def dumps(value: object) -> str:
    """JSON for passing a value into a snippet (``json.loads`` it there)."""
    return json.dumps(value)
