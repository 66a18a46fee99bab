"""One job in its own process: ``python -m advisor.serve.worker JOB_DIR --device DEVICE``.

A finetune on several devices runs as a torchrun group (``--device cuda:0,cuda:1`` under
``torch.distributed.run --nproc-per-node 2``): every process trains on the device of its
``LOCAL_RANK``, and only rank 0 writes the files below and logs (the run folder's own files are
written by rank 0 as well, see :mod:`advisor.finetuning.run`).

The worker reads ``JOB_DIR/job.json`` (kind, validated params, the server's registry files),
calls advisor's Python API (:func:`advisor.compare.run_compare`,
:func:`advisor.ranking.rank_with`, :func:`advisor.finetuning.finetune` / ``resume``), and
leaves in ``JOB_DIR``:

- ``log.txt``: its stdout and stderr (the server opens it), one line per progress step;
- ``progress.json``: ``{"fraction", "stage", ...}``, replaced atomically as it goes;
- ``result.json`` on success: the summary the server stores (paths relative to ``JOB_DIR``);
- ``error.json`` on failure: ``{"error": one line}``; exit status 1;
- ``report/`` (rank: ``rank.json``, ``index.html``, plots, grids) or ``run/`` (a finetune's run
  folder, see :mod:`advisor.finetuning.run`).

Stopping: SIGINT is Ctrl-C (the server also writes ``JOB_DIR/cancel`` first, for a worker
still starting). A finetune finishes its step, writes a snapshot and returns
(``stopped_by: "interrupt"``); a compare or rank stops at once (exit status 130). A finetune
whose run folder already holds a snapshot resumes from it exactly; a rank simply runs again
(its feature caches make that cheap).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.cache import atomic_write_bytes, json_safe
from advisor.errors import AdvisorError, one_line

if TYPE_CHECKING:
    from advisor.finetuning import TrainingEvent

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
#: Progress is written at most this often (seconds), and always when a task finishes.
PROGRESS_EVERY_S = 0.5

JOB_FILE = "job.json"
LOG_FILE = "log.txt"
PROGRESS_FILE = "progress.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
#: Written by the server before it sends SIGINT: a worker that starts after it stops at once.
CANCEL_FILE = "cancel"


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere nothing):
    the server for a worker or torchrun, torchrun for a process of its group. So a SIGKILLed
    server leaves nothing running that could run a job twice."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: Scheduler.start still kills what a killed server left
        return
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def group_rank() -> tuple[int, int]:
    """``(RANK, LOCAL_RANK)`` of this process in a torchrun group; ``(0, 0)`` alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def write_json(path: Path, doc: Any) -> None:
    atomic_write_bytes(path, (json.dumps(json_safe(doc), allow_nan=False) + "\n").encode())


class _Reporter:
    """Writes ``progress.json`` (throttled) and a log line per finished task or tick."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / PROGRESS_FILE
        self._last = 0.0

    def update(self, doc: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            try:
                write_json(self.path, {**doc, "time": time.time()})
            except OSError:  # progress is a courtesy; a full disk fails the job elsewhere
                pass


def _log(text: str) -> None:
    if group_rank()[0] == 0:  # one log line per event, not one per process of a group
        print(one_line(text), flush=True)


def run_job(job_dir: Path, device: str) -> dict[str, Any]:
    """Run the job in ``job_dir`` on ``device``; returns its result summary."""
    from advisor.serve.jobs import CompareParams, FinetuneParams, RankParams, from_json

    job = json.loads((job_dir / JOB_FILE).read_text())
    params = from_json(job["kind"], job["params"])
    reporter = _Reporter(job_dir)
    registry_files = [str(p) for p in job.get("registry_files", [])]
    _log(f"job {job['id']}: {job['kind']} on {device} (attempt {job.get('attempt', 1)})")
    if isinstance(params, CompareParams):
        return _compare(params, device, reporter)
    if isinstance(params, RankParams):
        return _rank(params, job_dir, device, registry_files, reporter)
    assert isinstance(params, FinetuneParams)
    return _finetune(params, job_dir, device, registry_files, reporter)


def _progress_events(reporter: _Reporter) -> Any:
    from advisor.progress import ProgressEvent

    def on_progress(event: ProgressEvent) -> None:
        doc = {"stage": event.task, "fraction": event.fraction, "done": event.done,
               "total": event.total}  # fmt: skip
        reporter.update(doc, force=event.finished or event.done == 0)
        if event.done == 0 and not event.finished:
            _log(f"{event.task}: started ({event.total} {event.unit})")
        elif event.finished:
            _log(f"{event.task}: finished ({event.done} {event.unit})")

    return on_progress


def _compare(params: Any, device: str, reporter: _Reporter) -> dict[str, Any]:
    from advisor.compare import run_compare

    result = run_compare(params.request(device), on_progress=_progress_events(reporter))
    summary = result.to_dict()
    for note in result.notes:
        _log(f"note: {note}")
    _log("compare: done")
    return summary


def _rank(
    params: Any, job_dir: Path, device: str, registry_files: list[str], reporter: _Reporter
) -> dict[str, Any]:
    from advisor.checkpoints.registry import load_registry
    from advisor.ranking import rank_with
    from advisor.ranking.core import target_preview
    from advisor.ranking.report import write_report

    registry = load_registry(registry_files)
    ranking = rank_with(
        params.target,
        registry=registry,
        options=params.options(device),
        on_progress=_progress_events(reporter),
    )
    write_report(ranking, job_dir / "report", target_images=target_preview(params.target))
    by = ranking.protocol.by
    rows = [
        {
            "rank": row.rank,
            "checkpoint": row.checkpoint,
            "setting": row.setting,
            by: row.estimate(by).value,
            "tied_with": list(row.tied_with),
        }  # fmt: skip
        for row in ranking.rows
    ]
    for skip in ranking.skipped:
        _log(f"skipped {skip.name}: {skip.reason}")
    _log(f"rank: best {ranking.best.checkpoint} by {by}")
    return {
        "best": ranking.best.checkpoint,
        "by": by,
        "rows": rows,
        "skipped": [s.to_dict() for s in ranking.skipped],
        "report": "report/index.html",
        "json": "report/rank.json",
    }


def _finetune(
    params: Any, job_dir: Path, device: str, registry_files: list[str], reporter: _Reporter
) -> dict[str, Any]:
    import advisor.finetuning as ft

    options = params.finetune_options()

    def on_event(event: TrainingEvent) -> None:
        v = event.values
        if event.kind == "tick":
            losses = "  ".join(f"{k} {v[k]:.4g}" for k in ("loss_g", "loss_d") if k in v)
            _log(f"kimg {event.kimg:.3f}  {v.get('s_per_kimg', 0):.1f} s/kimg  {losses}")
        else:
            _log(f"kimg {event.kimg:.3f}  " + "  ".join(f"{k} {x:.4g}" for k, x in v.items()))
        reporter.update(
            {
                "stage": "training",
                "fraction": event.progress.fraction,
                "kimg": event.kimg,
                "total_kimg": event.total_kimg,
            },  # fmt: skip
            force=event.kind == "metrics",
        )

    run_dir = job_dir / "run"
    if (run_dir / "snapshots" / "latest.json").is_file():
        _log(f"resuming {run_dir.name} from its last snapshot")
        run = ft.resume(run_dir, device=device, progress=on_event)
    else:
        # Stopped before its first snapshot: nothing to keep. Rank 0 alone removes it, before
        # it joins the group (the other processes look at the folder only after that).
        if run_dir.exists() and group_rank()[0] == 0:
            shutil.rmtree(run_dir)
        run = ft.finetune(
            params.checkpoint,
            params.target,
            run_dir=run_dir,
            options=options,
            device=device,
            registry_files=registry_files,
            progress=on_event,
        )
    summary = run.summary.to_dict()
    best = None if run.best_snapshot is None else f"run/{run.best_snapshot.relative_to(run.path)}"
    _log(f"finetune: {summary.get('kimg')} kimg, stopped by {summary.get('stopped_by')}")
    return {
        "run_dir": "run",
        "stopped_by": summary.get("stopped_by"),
        "summary": summary,
        "best_snapshot": best,
        "curves": "run/curves.png" if (run.path / "curves.png").is_file() else None,
        "notes": list(run.notes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m advisor.serve.worker")
    parser.add_argument("job_dir")
    parser.add_argument("--device", default="cpu", help="a device, or one per group process")
    args = parser.parse_args(argv)
    job_dir = Path(args.job_dir)
    devices = args.device.split(",")
    rank, local_rank = group_rank()
    if len(devices) > 1:
        die_with_parent()  # with torchrun, which dies with the server
        if os.getppid() == 1:  # torchrun died before that: do not train alone
            return EXIT_FAILED
    device = devices[local_rank]
    if len(devices) > 1:
        _log(f"a torchrun group of {len(devices)} processes on {args.device}")
    if rank == 0:
        for name in (RESULT_FILE, ERROR_FILE, PROGRESS_FILE):  # a previous attempt's
            (job_dir / name).unlink(missing_ok=True)
    try:
        # The server starts workers with SIGINT ignored, so that one sent while the interpreter
        # starts cannot print a traceback; from here on it is Ctrl-C (and a finetune's stop).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if (job_dir / CANCEL_FILE).exists():
            raise KeyboardInterrupt
        result = run_job(job_dir, device)
        if rank == 0:
            write_json(job_dir / RESULT_FILE, result)
    except KeyboardInterrupt:
        _log("interrupted")
        return EXIT_INTERRUPTED
    except AdvisorError as err:
        from advisor.serve.jobs import service_words

        return _fail(job_dir, one_line(service_words(str(err), _kind(job_dir))))
    except MemoryError:
        return _fail(job_dir, "out of memory")
    except OSError as err:
        traceback.print_exc()
        reason = err.strerror or type(err).__name__
        where = f" ({err.filename})" if err.filename else ""
        return _fail(job_dir, one_line(f"{reason}{where}"))
    except Exception as err:
        traceback.print_exc()
        text = " ".join(str(err).split())[:300]
        return _fail(job_dir, f"unexpected {type(err).__name__}: {text} (see the job's log)")
    return 0


def _kind(job_dir: Path) -> str | None:
    """The job's kind from its job.json (None when it cannot be read)."""
    try:
        kind = json.loads((job_dir / JOB_FILE).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _fail(job_dir: Path, reason: str) -> int:
    rank = group_rank()[0]
    if rank:  # rank 0 alone writes error.json; the log says which process failed
        print(one_line(f"process {rank} failed: {reason}"), flush=True)
        return EXIT_FAILED
    _log(f"failed: {reason}")
    try:
        write_json(job_dir / ERROR_FILE, {"error": reason})
    except OSError:  # a full disk: the exit status and the log carry it
        pass
    return EXIT_FAILED


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
