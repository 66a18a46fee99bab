"""Spreading checkpoints over devices: one worker per device, results gathered in job order.

:func:`assign` is a longest-job-first greedy plan (each job to the least-loaded worker; equal
loads go to the lower worker index), deterministic for a given list of costs. :func:`run_spread`
runs one thread per device, each working through its own jobs in order; a thread is enough,
since the work (generator and extractor forward passes, BLAS) releases the GIL. With one device
everything runs in the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from advisor.devices import AUTO, resolve_device

J = TypeVar("J")
R = TypeVar("R")


def default_devices(devices: Sequence[str]) -> tuple[str, ...]:
    """``devices`` resolved (``auto`` allowed); empty: every visible CUDA device, else cpu."""
    if devices:
        return tuple(str(resolve_device(d)) for d in devices)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return tuple(f"cuda:{i}" for i in range(count)) or (str(resolve_device(AUTO)),)


def assign(costs: Sequence[float], workers: int) -> list[list[int]]:
    """Job indices per worker, each worker's jobs in ascending index order."""
    if workers < 1:
        raise ValueError(f"need at least one worker, got {workers}")
    loads = [0.0] * workers
    plan: list[list[int]] = [[] for _ in range(workers)]
    for job in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        worker = min(range(workers), key=lambda w: (loads[w], w))
        loads[worker] += costs[job]
        plan[worker].append(job)
    return [sorted(jobs) for jobs in plan]


def run_spread(
    jobs: Sequence[J],
    devices: Sequence[str],
    work: Callable[[J, str], R],
    *,
    costs: Sequence[float] | None = None,
) -> list[R]:
    """``[work(job, device) for job in jobs]``, the jobs spread over ``devices``.

    Results come back in job order whichever worker ran them. An exception in one job stops
    the run and is raised here (``work`` turns expected failures into results itself).
    """
    if not jobs:
        return []
    plan = assign(costs if costs is not None else [1.0] * len(jobs), len(devices))
    results: list[R | None] = [None] * len(jobs)

    def worker(index: int) -> None:
        for job in plan[index]:
            results[job] = work(jobs[job], devices[index])

    busy = [w for w in range(len(devices)) if plan[w]]
    if len(busy) == 1:
        worker(busy[0])
    else:
        with ThreadPoolExecutor(max_workers=len(busy), thread_name_prefix="advisor-rank") as pool:
            for future in [pool.submit(worker, w) for w in busy]:
                future.result()
    return results  # type: ignore[return-value]  (every slot was filled)
