"""The job store: one SQLite table in WAL mode, and the job state machine.

States: ``queued -> running -> succeeded | failed | cancelled``, ``running -> cancelling ->
cancelled`` (or ``succeeded``/``failed`` when the worker finished first), ``queued ->
cancelled``. The last three are terminal and never change again. Jobs run by priority (higher
first), then in submission order (FIFO).

Only the server process writes the store, through one connection behind a lock; every state
change is one transaction, so a SIGKILL leaves either the old or the new state, never a mix.
:meth:`JobStore.recover` runs at start: jobs left ``running`` by a killed server go back to
``queued`` (their ``attempts`` counts it), jobs left ``cancelling`` become ``cancelled``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from advisor.errors import AdvisorError

State = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
Kind = Literal["compare", "rank", "finetune"]

STATES: tuple[str, ...] = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
KINDS: tuple[str, ...] = ("compare", "rank", "finetune")
#: Priorities accepted: higher runs first.
MIN_PRIORITY, MAX_PRIORITY = -100, 100
#: Most jobs one ``GET /jobs`` returns.
MAX_LIST = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    device TEXT,
    pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, id);
"""


@dataclass(frozen=True, kw_only=True)
class Job:
    """One row of the store. ``params`` are the validated job parameters; ``result`` the
    worker's summary (None until it succeeds); ``error`` a one-line reason when it failed;
    ``note`` what the server did to it (re-queued after a restart, killed after a cancel)."""

    id: int
    kind: str
    state: str
    priority: int
    params: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    device: str | None
    pid: int | None
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    note: str | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but ``pid``, plus ``queued_s`` and ``run_s`` timings."""
        now = time.time()
        run_end = self.finished if self.finished is not None else now
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "priority": self.priority,
            "params": self.params,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "queued_s": round((self.started or run_end) - self.created, 3),
            "run_s": None if self.started is None else round(run_end - self.started, 3),
            "device": self.device,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "note": self.note,
        }


class JobStore:
    """The ``jobs`` table of ``path`` (created on first use), safe to call from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise AdvisorError(f"the job store {self.path} cannot be used ({err})") from None
        if check != "ok":
            raise AdvisorError(f"the job store {self.path} is damaged ({check})")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ reads
    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def list(
        self,
        *,
        states: Sequence[str] = (),
        kinds: Sequence[str] = (),
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[Job]:
        """Jobs filtered by state and kind (empty: any), newest first unless told otherwise."""
        where, args = [], []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?"
        args.append(max(1, min(limit, MAX_LIST)))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per state (every state present, 0 when none)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {state: n for state, n in rows}

    # ------------------------------------------------------------------ transitions
    def add(self, kind: str, params: dict[str, Any], *, priority: int = 0) -> Job:
        """Queue a new job (``params`` already validated)."""
        if kind not in KINDS:
            raise AdvisorError(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (kind, state, priority, params, created) VALUES (?,?,?,?,?)",
                (kind, "queued", priority, json.dumps(params), time.time()),
            )
            job_id = cursor.lastrowid
        job = self.get(int(job_id or 0))
        assert job is not None
        return job

    def claim_next(self, place: str | Callable[[Job], str | None]) -> Job | None:
        """Mark the next queued job (highest priority, then oldest) running.

        ``place``: the device to run it on, or a function of that job giving its device(s)
        (comma-separated), or None when they are not free: the job then stays queued and
        keeps its turn (nothing behind it overtakes it, so a job waiting for several devices
        is not starved by single-device jobs). Returns the claimed job, or None.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            device = place if isinstance(place, str) else place(_job(row))
            if device is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', device = ?, started = ?, pid = NULL, "
                "attempts = attempts + 1 WHERE id = ?",
                (device, time.time(), row[0]),
            )
        return self.get(row[0])

    def set_pid(self, job_id: int, pid: int | None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def request_cancel(self, job_id: int) -> Job | None:
        """``queued`` -> ``cancelled``; ``running`` -> ``cancelling`` (the scheduler stops the
        worker); any other state is left as it is. Returns the job after, or None."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?, note = 'cancelled while "
                "queued' WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            )
            db.execute(
                "UPDATE jobs SET state = 'cancelling' WHERE id = ? AND state = 'running'",
                (job_id,),
            )
        return self.get(job_id)

    def finish(
        self,
        job_id: int,
        state: State,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        note: str | None = None,
    ) -> None:
        """Move a running or cancelling job to the terminal ``state``."""
        if state not in TERMINAL:
            raise ValueError(f"{state} is not a terminal state")
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, finished = ?, pid = NULL, result = ?, error = ?, "
                "note = COALESCE(?, note) WHERE id = ? AND state IN ('running', 'cancelling')",
                (
                    state,
                    time.time(),
                    None if result is None else json.dumps(result, allow_nan=False),
                    error,
                    note,
                    job_id,
                ),
            )

    def requeue(self, job_id: int, note: str) -> None:
        """Put a running job back in the queue (the server is stopping or restarting)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', pid = NULL, device = NULL, note = ? "
                "WHERE id = ? AND state = 'running'",
                (note, job_id),
            )

    def recover(self) -> list[Job]:
        """At start: ``running`` jobs back to ``queued``, ``cancelling`` ones ``cancelled``.

        Returns the jobs as they were found (their ``pid`` names workers a killed server may
        have left behind; the caller stops them before anything runs again)."""
        stale = self.list(states=("running", "cancelling"), limit=MAX_LIST, newest_first=False)
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', pid = NULL, device = NULL, "
                "note = 're-queued after a server restart' WHERE state = 'running'"
            )
            db.execute(
                "UPDATE jobs SET state = 'cancelled', pid = NULL, finished = ?, "
                "note = 'cancelled across a server restart' WHERE state = 'cancelling'",
                (time.time(),),
            )
        return stale


def _job(row: tuple[Any, ...]) -> Job:
    (job_id, kind, state, priority, params, created, started, finished, device, pid, attempts,
     result, error, note) = row  # fmt: skip
    return Job(
        id=job_id,
        kind=kind,
        state=state,
        priority=priority,
        params=json.loads(params),
        created=created,
        started=started,
        finished=finished,
        device=device,
        pid=pid,
        attempts=attempts,
        result=None if result is None else json.loads(result),
        error=error,
        note=note,
    )
