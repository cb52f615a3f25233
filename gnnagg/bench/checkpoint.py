"""Per-epoch checkpoints of one training run: model, optimiser, the epoch
loop's state and every rank's RNG states, written atomically by rank 0, so a
killed run resumes at the last finished epoch and continues exactly as if
it had not stopped."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .distributed import Process, gather


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
    rank and restores that rank's own RNG state.
    """

    def __init__(self, path: str | os.PathLike, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, process: Process):
        self.path = Path(path)
        self.model, self.optimizer, self.process = model, optimizer, process

    def save(self, loop_state: dict) -> None:
        rng = gather(_rng_state(), self.process)
        if not self.process.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "loop": loop_state, "rng": rng}, tmp)
        os.replace(tmp, self.path)

    def load(self) -> Optional[dict]:
        """The saved epoch-loop state after restoring everything else, or
        ``None`` when there is no checkpoint."""
        if not self.path.exists():
            return None
        saved = torch.load(self.path, map_location="cpu",
                           weights_only=False)
        if len(saved["rng"]) != self.process.world_size:
            raise ValueError(
                f"checkpoint {self.path} was written by "
                f"{len(saved['rng'])} processes; resume it with as many "
                f"(this run has {self.process.world_size})")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        _set_rng_state(saved["rng"][self.process.rank])
        return saved["loop"]
