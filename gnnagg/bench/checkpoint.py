"""Per-epoch checkpoints of one training run: model, optimiser, the epoch
loop's state and every rank's RNG states, written atomically by rank 0, so a
killed run resumes at the last finished epoch and continues exactly as if
it had not stopped."""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from .distributed import Process, gather
from .results import atomic_path, set_aside


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


class Checkpoint:
    """The checkpoint file ``path`` of one run of ``model``/``optimizer``.

    :meth:`save` is collective under ``torchrun`` (every rank calls it: the
    RNG states of all ranks are gathered), :meth:`load` is called by every
    rank and restores that rank's own RNG state. A learning-rate
    ``scheduler`` is saved and restored with the optimiser.
    """

    def __init__(self, path: str | os.PathLike, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer,
                 process: Process = Process(), scheduler=None):
        self.path = Path(path)
        self.model, self.optimizer, self.process = model, optimizer, process
        self.scheduler = scheduler

    @property
    def previous_path(self) -> Path:
        """The checkpoint before the last one, kept for when the last is
        damaged."""
        return self.path.with_name(self.path.stem + ".previous" +
                                   self.path.suffix)

    def save(self, loop_state: dict) -> None:
        rng = gather(_rng_state(), self.process)
        if not self.process.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": (None if self.scheduler is None
                               else self.scheduler.state_dict()),
                 "loop": loop_state, "rng": rng}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
            if self.path.exists():
                os.replace(self.path, self.previous_path)

    def load(self) -> Optional[dict]:
        """The saved epoch-loop state after restoring everything else, or
        ``None`` when there is no checkpoint.

        A checkpoint that cannot be read or does not fit this run (truncated,
        overwritten) is set aside as ``<name>.corrupt-<time>`` with a
        warning naming it, and the previous epoch's checkpoint is tried;
        with neither, the run starts over. Every rank reads the same file
        (rank 0 sets damaged ones aside only after all have looked)."""
        for path in (self.path, self.previous_path):
            if not path.exists():
                continue
            try:
                saved = torch.load(path, map_location="cpu",
                                   weights_only=False)
                ranks = len(saved["rng"])
            except Exception as error:  # any damage: set aside, go on
                self._set_aside(path, error)
                continue
            if ranks != self.process.world_size:
                raise ValueError(
                    f"checkpoint {path} was written by {ranks} processes; "
                    f"resume it with as many (this run has "
                    f"{self.process.world_size})")
            model_state = {k: v.clone() for k, v in
                           self.model.state_dict().items()}
            try:
                self.model.load_state_dict(saved["model"])
                self.optimizer.load_state_dict(saved["optimizer"])
                if self.scheduler is not None:
                    self.scheduler.load_state_dict(saved["scheduler"])
                loop = saved["loop"]
                _ = loop["epoch"], loop["curve"]
            except Exception as error:  # another run's checkpoint
                self.model.load_state_dict(model_state)
                self._set_aside(path, error)
                continue
            _set_rng_state(saved["rng"][self.process.rank])
            return loop
        return None

    def _set_aside(self, path: Path, error: Exception) -> None:
        if self.process.distributed:
            dist.barrier()  # every rank has tried this file
        kept = set_aside(path) if self.process.is_main else path
        warnings.warn(f"checkpoint {path} is damaged ({type(error).__name__}"
                      f": {str(error)[:200]}); kept as {kept}, resuming from "
                      f"the previous state", stacklevel=3)
