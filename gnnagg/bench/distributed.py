"""Data-parallel training under ``torchrun``: process group, rank-0-only
writes, and the few collective helpers the runners need.

``torchrun --nproc-per-node N -m gnnagg ogb ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` joins the group (gloo on
CPU, nccl on CUDA). Without ``torchrun`` everything is a single process and
the helpers are no-ops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, List

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes results and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> Process:
    """This process's place in a ``torchrun`` job (a single process when
    not launched by ``torchrun``). CUDA ranks use ``cuda:LOCAL_RANK``."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not "
                         "available on this machine")
    if world_size == 1:
        return Process(device=device)
    rank = int(os.environ["RANK"])
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda")
                                else "gloo")
    return Process(rank, world_size, device)


def leave_distributed(process: Process) -> None:
    """End a finished ``torchrun`` job cleanly: every rank waits for the
    others, then destroys its process group. Ranks that exited with the
    group alive closed gloo connections under a peer still tearing down,
    which then aborted (SIGABRT) after finishing its work."""
    if process.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main_first(make: Callable[[], Any], process: Process) -> Any:
    """``make()`` on rank 0, then on the other ranks once it has finished:
    for work that writes files the others read (a data set's first
    processing), which all ranks doing at once would corrupt. A failure on
    rank 0 is raised on every rank."""
    if not process.distributed:
        return make()
    result, error = None, None
    if process.is_main:
        try:
            result = make()
        except Exception as caught:  # re-raised below, on every rank
            error = caught
    failure = broadcast(None if error is None else
                        f"{type(error).__name__}: {error}", process)
    if error is not None:
        raise error
    if failure is not None:
        raise RuntimeError(f"rank 0 failed: {failure}")
    return result if process.is_main else make()


def broadcast(obj: Any, process: Process) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not process.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, process: Process) -> List[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not process.distributed:
        return [obj]
    out: List[Any] = [None] * process.world_size
    dist.all_gather_object(out, obj)
    return out


def global_mean(total: float, count: int, process: Process) -> float:
    """``sum(total) / sum(count)`` over ranks."""
    if process.distributed:
        pair = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(pair)
        total, count = float(pair[0]), int(pair[1])
    return total / max(count, 1)
