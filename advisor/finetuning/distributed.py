"""A fine-tune's processes under torchrun: the group, each process's device, and the small
collectives that keep the processes in step.

One process (``WORLD_SIZE`` unset or 1) is a group of one: every helper here is then a no-op
that returns its input, so the training loop reads the same either way. The gradients' own
all-reduces belong to the training step (:mod:`advisor.finetuning.training`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from advisor.devices import resolve_device


@dataclass(frozen=True, kw_only=True)
class Distributed:
    """This process's place in a torchrun group (``world_size`` 1: a single process)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1


def join_group() -> Distributed:
    """torchrun's environment (WORLD_SIZE, RANK): join the process group; else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not torch.distributed.is_initialized():
        # Gradients are CUDA tensors on GPUs, but the small collectives (ADA's signs, the tick
        # signal, stop decisions) are CPU tensors: NCCL alone cannot carry those.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return Distributed(rank=torch.distributed.get_rank(), world_size=world)


@contextmanager
def joined(dist: Distributed | None) -> Iterator[Distributed]:
    """The group a run uses: ``dist`` as given, else torchrun's, joined here and, when this
    call created it, left at the end (also on failure), as torch asks of every process
    (``destroy_process_group`` before it exits). A caller that wants the group after the run
    makes it first (``init_process_group``) and leaves it itself."""
    if dist is not None:
        yield dist
        return
    made_here = (
        int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized()
    )
    group = join_group()
    try:
        yield group
    finally:
        if made_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def rank_device(device: torch.device, dist: Distributed) -> torch.device:
    """This process's device: in a group on GPUs, ``cuda`` without an index (``auto``) means
    the process's own GPU, ``cuda:LOCAL_RANK``, and the process's current CUDA device is set to
    it (NCCL's collectives and barriers run on the current device; it is process state that
    joining the group already implies)."""
    if not dist.active or device.type != "cuda":
        return device
    if device.index is None:
        device = resolve_device(f"cuda:{int(os.environ.get('LOCAL_RANK', dist.rank))}")
    torch.cuda.set_device(device)
    return device


def broadcast_choice(value: str | None, choices: Sequence[str], dist: Distributed) -> str | None:
    """Rank 0's ``value`` (None or one of ``choices``) on every process."""
    if not dist.active:
        return value
    code = torch.tensor([choices.index(value) + 1 if value else 0])
    torch.distributed.broadcast(code, src=0)
    return choices[int(code.item()) - 1] if int(code.item()) else None


def any_rank(flag: bool, dist: Distributed) -> bool:
    """``flag`` of this process, or whether any process of the group set it.

    Every process calls it after every step, so a Ctrl-C that reaches the processes of a group
    at different steps (or only one of them) stops them all after the same step: a process
    that left the loop alone would wait forever in its snapshot's barrier while the others
    wait in their next step's all-reduce. One all-reduce of one number per step.
    """
    if not dist.active:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def barrier(dist: Distributed) -> None:
    """Wait for every process of the group (e.g. until rank 0 has written a file)."""
    if dist.active:
        torch.distributed.barrier()


def gather_interleaved(rows: torch.Tensor, total: int, dist: Distributed) -> torch.Tensor:
    """Every process's ``rows`` [n, D] in one [total, D] tensor, on every process.

    Process ``r`` of ``w`` holds the rows of items ``r, r + w, r + 2w, ...`` (``items[r::w]``),
    so it holds ``ceil(total / w)`` rows or one fewer; the result is in item order.
    """
    if not dist.active:
        return rows
    world = dist.world_size
    per = math.ceil(total / world)
    padded = torch.zeros(per, rows.shape[1])
    padded[: len(rows)] = rows
    parts = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded)
    out = torch.stack(parts, dim=1).reshape(per * world, -1)  # item i is part i % w, row i // w
    return out[:total]
