"""The scheduler: one worker subprocess per device at a time, watched until it ends.

A thread claims the next queued job for each free device (priority, then FIFO; see
:mod:`advisor.serve.store`), writes ``JOB_DIR/job.json``, and starts
``python -m advisor.serve.worker`` with its output appended to ``JOB_DIR/log.txt``. The worker
runs in its own session (a Ctrl-C at the server's terminal does not reach it) and is killed by
the kernel if the server dies (``PR_SET_PDEATHSIG``), so a SIGKILLed server leaves no worker
behind to run a job twice; at start, :meth:`Scheduler.start` also kills any worker a previous
server left (checked by its command line) before re-queued jobs run again.

A worker's end decides its job's state: ``result.json`` and status 0 -> ``succeeded`` (or
``cancelled`` when a cancel was asked: a finetune stopped by SIGINT keeps its snapshot and
summary); ``error.json`` -> ``failed`` with its one-line reason; killed by a signal ->
``failed`` naming the signal (SIGKILL: most often the out-of-memory killer). A cancel writes
``JOB_DIR/cancel`` and sends SIGINT, then SIGKILL after ``cancel_grace_s``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from advisor.serve import worker
from advisor.serve.store import Job, JobStore

_PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: workers outlive a killed server; start() still stops them
        return None


_LIBC = _libc()


def _prepare_worker() -> None:  # pragma: no cover - runs in the child
    """Die with the server, and ignore SIGINT until the worker installs its own handler (a
    cancel during the interpreter's start-up is then seen through the cancel marker)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class _Running:
    job: Job
    device: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    cancel_at: float | None = None


def job_dir(data: Path, job_id: int) -> Path:
    """The folder of job ``job_id`` under the server's data folder."""
    return data / "jobs" / f"{job_id:06d}"


class Scheduler:
    """Runs queued jobs from ``store`` on ``devices`` (one job per entry; repeat an entry to
    run several jobs on it at once)."""

    def __init__(
        self,
        *,
        store: JobStore,
        data: Path,
        devices: Sequence[str],
        registry_files: Sequence[str] = (),
        poll_s: float = 0.2,
        cancel_grace_s: float = 60.0,
    ) -> None:
        if not devices:
            raise ValueError("the scheduler needs at least one device")
        self.store = store
        self.data = data
        self.devices = tuple(devices)
        self.registry_files = tuple(str(p) for p in registry_files)
        self.poll_s = poll_s
        self.cancel_grace_s = cancel_grace_s
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    # ------------------------------------------------------------------ life cycle
    def start(self) -> list[Job]:
        """Recover the store (see :meth:`JobStore.recover`), stop workers a killed server left
        behind, and start the scheduling thread. Returns the recovered jobs."""
        stale = self.store.recover()
        for job in stale:
            if job.pid is not None:
                _kill_stale_worker(job.pid, job_dir(self.data, job.id))
        self._thread = threading.Thread(target=self._loop, name="advisor-scheduler", daemon=True)
        self._thread.start()
        return stale

    def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling; interrupt running workers (a finetune snapshots), wait up to
        ``timeout`` seconds, kill the rest, and leave their jobs queued for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            running = list(self._running.values())
        for r in running:
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for r in running:
            try:
                r.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
            self._finish(r, stopping=True)

    def wake(self) -> None:
        """Look at the queue now (a job was added)."""
        self._wake.set()

    def cancel(self, job_id: int) -> Job | None:
        """Cancel a job: a queued one at once, a running one by SIGINT to its worker."""
        job = self.store.request_cancel(job_id)
        if job is not None and job.state == "cancelling":
            with self._lock:
                r = self._running.get(job_id)
                if r is not None and r.cancel_at is None:
                    r.cancel_at = time.monotonic() + self.cancel_grace_s
                    (job_dir(self.data, job_id) / worker.CANCEL_FILE).touch()
                    with contextlib.suppress(ProcessLookupError):
                        r.proc.send_signal(signal.SIGINT)
        return job

    def running(self) -> dict[int, str]:
        """Running job ids and their devices."""
        with self._lock:
            return {job_id: r.device for job_id, r in self._running.items()}

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._reap()
                self._enforce_cancels()
                self._fill()
            except Exception as err:  # a full disk or a store error: keep serving, say so
                self.errors.append(f"{type(err).__name__}: {err}")
                del self.errors[:-20]
                print(f"advisor serve: scheduler: {type(err).__name__}: {err}", file=sys.stderr)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _free_devices(self) -> list[str]:
        with self._lock:
            busy = [r.device for r in self._running.values()]
        free = list(self.devices)
        for device in busy:
            free.remove(device)
        return free

    def _fill(self) -> None:
        for device in self._free_devices():
            job = self.store.claim_next(device)
            if job is None:
                return
            try:
                self._spawn(job, device)
            except OSError as err:
                self.store.finish(job.id, "failed", error=f"cannot start a worker ({err})")

    def _spawn(self, job: Job, device: str) -> None:
        folder = job_dir(self.data, job.id)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"id": job.id, "kind": job.kind, "params": job.params,
               "registry_files": list(self.registry_files), "attempt": job.attempts}  # fmt: skip
        worker.write_json(folder / worker.JOB_FILE, doc)
        (folder / worker.CANCEL_FILE).unlink(missing_ok=True)
        log = open(folder / worker.LOG_FILE, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "advisor.serve.worker", str(folder), "--device", device],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_prepare_worker,  # noqa: PLW1509 - a prctl and a signal disposition
            )
        except OSError:
            log.close()
            raise
        with self._lock:
            self._running[job.id] = _Running(job=job, device=device, proc=proc, log=log)
        self.store.set_pid(job.id, proc.pid)
        current = self.store.get(job.id)
        if current is not None and current.state == "cancelling":  # cancelled while starting
            self.cancel(job.id)

    def _reap(self) -> None:
        with self._lock:
            done = [r for r in self._running.values() if r.proc.poll() is not None]
        for r in done:
            self._finish(r, stopping=False)

    def _enforce_cancels(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [r for r in self._running.values() if r.cancel_at and now > r.cancel_at]
        for r in late:
            with contextlib.suppress(ProcessLookupError):
                r.proc.kill()

    def _finish(self, r: _Running, *, stopping: bool) -> None:
        """Record how the worker of ``r`` ended, and free its device."""
        rc = r.proc.returncode
        r.log.close()
        folder = job_dir(self.data, r.job.id)
        current = self.store.get(r.job.id)
        cancelling = current is not None and current.state == "cancelling"
        result = _read_json(folder / worker.RESULT_FILE)
        error = _read_json(folder / worker.ERROR_FILE)
        interrupted = rc == worker.EXIT_INTERRUPTED or (
            result is not None and result.get("stopped_by") == "interrupt"
        )
        if stopping and not cancelling and (interrupted or rc != 0):
            self.store.requeue(r.job.id, "re-queued: the server stopped while it ran")
        elif cancelling:
            note = "cancelled while running"
            if result is not None and r.job.kind == "finetune":
                note += f"; stopped at {result['summary'].get('kimg')} kimg, snapshot kept"
            elif rc is not None and rc < 0:
                note += f"; killed after {self.cancel_grace_s:g} s without stopping"
            self.store.finish(r.job.id, "cancelled", result=result, note=note)
        elif rc == 0 and result is not None and not interrupted:
            self.store.finish(r.job.id, "succeeded", result=result)
        elif error is not None:
            self.store.finish(r.job.id, "failed", error=str(error.get("error")))
        else:
            self.store.finish(r.job.id, "failed", error=_exit_reason(rc, interrupted))
        with self._lock:
            self._running.pop(r.job.id, None)
        self._wake.set()


def _exit_reason(rc: int | None, interrupted: bool) -> str:
    if interrupted:
        return "the worker was interrupted from outside the server"
    if rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else -rc
        hint = " (most often the out-of-memory killer)" if rc == -signal.SIGKILL else ""
        return f"the worker was killed by {name}{hint}; see the job's log"
    return f"the worker exited with status {rc} without a result; see the job's log"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _kill_stale_worker(pid: int, folder: Path) -> None:
    """SIGKILL process ``pid`` if it is still the worker of ``folder``, and wait for it."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"advisor.serve.worker" not in cmdline or os.fsencode(str(folder)) not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
