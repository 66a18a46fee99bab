"""``advisor serve``: a job service over advisor's Python API, for teams and pipelines.

The data flow::

    client -> POST /jobs (validated params) -> store (SQLite, WAL) -> scheduler (one job per
    device, priority then FIFO) -> worker subprocess (advisor.rank / finetune / run_compare)
    -> the job's folder (log.txt, progress.json, result.json, report/ or run/) -> GET /jobs/...

Modules: ``store`` (the job table and its state machine), ``jobs`` (typed job parameters and
path confinement), ``worker`` (the subprocess that runs one job), ``scheduler`` (starts,
watches and cancels workers), ``auth`` (the bearer token), ``uploads`` (target zips),
``app`` (the FastAPI application), ``client`` (:class:`Client`, standard library only).

Only ``app`` needs the ``serve`` extra (FastAPI, uvicorn); the rest imports without it.
"""

from __future__ import annotations

from advisor.serve.client import Client, ClientError

__all__ = ["Client", "ClientError"]
