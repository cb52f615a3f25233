"""The epoch loop every runner shares, and the loop over seeds."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional

from torch_geometric import seed_everything
from tqdm.auto import tqdm

from .checkpoint import Checkpoint
from .distributed import Process, broadcast
from .results import ResultStore


def check_positive(**values: Optional[int]) -> None:
    """``ValueError`` naming the first of ``values`` (name=value) that is
    not a positive integer (None is allowed: not set)."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or
                                  not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got "
                             f"{value!r}")


def fit(train_epoch: Callable[[int], float],
        evaluate: Callable[[], Dict[str, float]], epochs: int,
        patience: Optional[int] = None, desc: str = "epochs",
        checkpoint: Optional[Checkpoint] = None,
        show_progress: bool = True, min_delta: float = 0.0,
        stop_at: Optional[float] = None) -> dict:
    """Train for up to ``epochs``; ``train_epoch(epoch)`` (1-based) returns
    the training loss, ``evaluate`` returns ``valid`` and ``test`` scores
    (higher is better), optionally ``valid_loss`` and any other scores
    (all of them at the best epoch are returned as ``best_scores``).

    The reported test score is the one at the epoch of best validation
    (OGB's protocol; ties go to the lower validation loss). With
    ``patience``, stop once that many epochs passed without a validation
    score better by more than ``min_delta`` or a lower validation loss (the
    GAT paper's rule); with ``stop_at``, stop once the validation score
    reaches it.
    With ``checkpoint``, the state is saved after every epoch and a run
    with a saved state continues after its last finished epoch (reported
    as ``resumed_from_epoch``, 0 for a fresh run). ``time_per_epoch_s``
    times training alone, ``wall_seconds`` every epoch with its evaluation,
    over all sessions of a resumed run.
    """
    check_positive(epochs=epochs, patience=patience)
    state: Dict[str, Any] = {
        "epoch": 0, "curve": {"train_loss": [], "valid": [], "test": []},
        "best": None, "best_key": None, "best_valid": -float("inf"),
        "best_loss": float("inf"), "waited": 0, "seconds": 0.0,
        "wall_seconds": 0.0}
    if checkpoint is not None:
        state = checkpoint.load() or state
    resumed_from_epoch = state["epoch"]
    curve = state["curve"]
    bar = tqdm(range(state["epoch"] + 1, epochs + 1), desc=desc, leave=False,
               disable=not show_progress)
    for epoch in bar:
        if patience is not None and state["waited"] >= patience or \
                stop_at is not None and state["best_valid"] >= stop_at:
            break
        start = time.perf_counter()
        loss = train_epoch(epoch)
        state["seconds"] += time.perf_counter() - start
        scores = evaluate()
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + \
            time.perf_counter() - start
        curve["train_loss"].append(float(loss))
        curve["valid"].append(scores["valid"])
        curve["test"].append(scores["test"])
        valid_loss = scores.get("valid_loss", 0.0)
        key = (scores["valid"], -valid_loss)
        if state["best_key"] is None or key > state["best_key"]:
            state["best_key"], state["best"] = key, dict(scores, epoch=epoch)
        improved = (scores["valid"] > state["best_valid"] + min_delta
                    or valid_loss < state["best_loss"])
        state["best_valid"] = max(state["best_valid"], scores["valid"])
        state["best_loss"] = min(state["best_loss"], valid_loss)
        state["waited"] = 0 if improved else state["waited"] + 1
        state["epoch"] = epoch
        if checkpoint is not None:
            checkpoint.save(state)
        bar.set_postfix(loss=f"{loss:.4f}", valid=f"{scores['valid']:.4f}")
    best, done = state["best"], state["epoch"]
    return {"valid": best["valid"], "test": best["test"],
            "best_epoch": best["epoch"], "epochs": done, "best_scores": best,
            "time_per_epoch_s": state["seconds"] / max(done, 1),
            "wall_seconds": state.get("wall_seconds", 0.0),
            "resumed_from_epoch": resumed_from_epoch, "curve": curve}


def run_seeds(store: ResultStore, dataset: str, model: str, config: dict,
              runs: int, run_one: Callable[[int], dict], metric: str,
              process: Process = Process()) -> None:
    """Run seeds ``0..runs-1`` not yet in ``store`` (so a killed job
    resumes), appending each result as soon as it finishes, then write the
    leaderboard and curves. Under torchrun every rank runs every seed and
    rank 0 alone writes."""
    done = broadcast(store.completed_seeds(dataset, model, config)
                     if process.is_main else None, process)
    for seed in tqdm(range(runs), desc=f"{dataset} {model} runs",
                     disable=not process.is_main):
        if seed in done:
            continue
        seed_everything(seed)
        result = run_one(seed)
        if process.is_main:
            store.append({"dataset": dataset, "model": model, "seed": seed,
                          "config": config, **result})
            store.write_reports(metric)
    if process.is_main:
        store.write_reports(metric)
