"""The scheduler: one worker subprocess per device at a time, watched until it ends.

A thread claims the next queued job while devices are free (priority, then FIFO; see
:mod:`advisor.serve.store`), writes ``JOB_DIR/job.json``, and starts
``python -m advisor.serve.worker`` with its output appended to ``JOB_DIR/log.txt``. A finetune
given ``devices`` > 1 waits for that many free devices (:func:`advisor.serve.jobs.device_group`;
nothing overtakes it meanwhile) and runs as one torchrun group, ``python -m
torch.distributed.run --standalone --nproc-per-node N -m advisor.serve.worker``, one process per
device (:func:`worker_command`). The worker (or torchrun) runs in its own session (a Ctrl-C at
the server's terminal does not reach it) and is killed by the kernel if the server dies
(``PR_SET_PDEATHSIG``; a group's processes die with torchrun the same way), so a SIGKILLed
server leaves no worker behind to run a job twice; at start, :meth:`Scheduler.start` also kills
any process a previous server left for a re-queued job (found by its command line).

A worker's end decides its job's state: ``result.json`` and status 0 -> ``succeeded`` (or
``cancelled`` when a cancel was asked: a finetune stopped by SIGINT keeps its snapshot and
summary); ``error.json`` -> ``failed`` with its one-line reason; killed by a signal ->
``failed`` naming the signal (SIGKILL: most often the out-of-memory killer). A cancel writes
``JOB_DIR/cancel`` and sends SIGINT (torchrun passes it on to its processes), then SIGKILL after
``cancel_grace_s``.
"""

from __future__ import annotations

import contextlib
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
from advisor.serve.jobs import device_group, devices_wanted
from advisor.serve.store import Job, JobStore


def _prepare_worker() -> None:  # pragma: no cover - runs in the child
    """Die with the server, and ignore SIGINT until the worker installs its own handler (a
    cancel during the interpreter's start-up is then seen through the cancel marker)."""
    worker.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class _Running:
    job: Job
    devices: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    cancel_at: float | None = None


def job_dir(data: Path, job_id: int) -> Path:
    """The folder of job ``job_id`` under the server's data folder."""
    return data / "jobs" / f"{job_id:06d}"


def worker_command(folder: Path, devices: Sequence[str]) -> list[str]:
    """The command that runs the job in ``folder`` on ``devices``: the worker itself on one
    device, a torchrun group of one worker process per device on several."""
    args = ["-m", "advisor.serve.worker", str(folder), "--device", ",".join(devices)]
    if len(devices) == 1:
        return [sys.executable, *args]
    group = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={len(devices)}"]
    return [sys.executable, *group, *args]


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
            _kill_stale_workers(job_dir(self.data, job.id))
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
            _interrupt(r)
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
                    _interrupt(r)
        return job

    def running(self) -> dict[int, str]:
        """Running job ids and their devices (comma-separated for a group)."""
        with self._lock:
            return {job_id: ",".join(r.devices) for job_id, r in self._running.items()}

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
            busy = [d for r in self._running.values() for d in r.devices]
        free = list(self.devices)
        for device in busy:
            free.remove(device)
        return free

    def _fill(self) -> None:
        """Start queued jobs, in order, while the next one's devices are free."""
        while free := self._free_devices():

            def place(job: Job, free: list[str] = free) -> str | None:
                group = device_group(free, devices_wanted(job.kind, job.params))
                return None if group is None else ",".join(group)

            job = self.store.claim_next(place)
            if job is None:
                return
            devices = tuple(str(job.device).split(","))
            try:
                self._spawn(job, devices)
            except OSError as err:
                self.store.finish(job.id, "failed", error=f"cannot start a worker ({err})")

    def _spawn(self, job: Job, devices: tuple[str, ...]) -> None:
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
                worker_command(folder, devices),
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
            self._running[job.id] = _Running(job=job, devices=devices, proc=proc, log=log)
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


def _interrupt(r: _Running) -> None:
    """Ctrl-C for a running job: SIGINT to its worker, or to every process of its torchrun
    group (each stops after the same step, see :func:`advisor.finetuning.distributed.any_rank`),
    which then exit normally, and torchrun with them. torchrun itself is signalled only while
    its processes are not started yet (it passes the signal on to them, but then ends with a
    traceback)."""
    targets = _children(r.proc.pid) if len(r.devices) > 1 else []
    for pid in targets or [r.proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``; elsewhere none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "PID (COMMAND) STATE PPID ...": the command may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


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


def _kill_stale_workers(folder: Path) -> None:
    """SIGKILL every process still working on ``folder`` (a worker, a torchrun group and its
    processes, recognised by their command line), and wait for them."""
    wanted = os.fsencode(str(folder))
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"advisor.serve.worker" in cmdline and wanted in cmdline:
            pids.append(int(entry.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)
