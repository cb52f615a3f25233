"""The epoch loop every runner shares, and the loop over seeds."""
from __future__ import annotations

import random
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .results import ResultStore


def fit(train_epoch: Callable[[], float],
        evaluate: Callable[[], Dict[str, float]], epochs: int,
        patience: Optional[int] = None, desc: str = "epochs") -> dict:
    """Train for up to ``epochs``; ``evaluate`` returns ``valid`` and
    ``test`` scores (higher is better) and optionally ``valid_loss``.

    The reported test score is the one at the epoch of best validation
    (OGB's protocol; ties go to the lower validation loss). With
    ``patience``, stop once that many epochs passed without a better
    validation score or a lower validation loss (the GAT paper's rule).
    """
    curve = {"train_loss": [], "valid": [], "test": []}
    best, best_key = None, None
    best_valid, best_loss, waited, seconds = -float("inf"), float("inf"), \
        0, 0.0
    bar = tqdm(range(1, epochs + 1), desc=desc, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        loss = train_epoch()
        seconds += time.perf_counter() - start
        scores = evaluate()
        curve["train_loss"].append(float(loss))
        curve["valid"].append(scores["valid"])
        curve["test"].append(scores["test"])
        valid_loss = scores.get("valid_loss", 0.0)
        key = (scores["valid"], -valid_loss)
        if best_key is None or key > best_key:
            best_key, best = key, dict(scores, epoch=epoch)
        improved = scores["valid"] > best_valid or valid_loss < best_loss
        best_valid = max(best_valid, scores["valid"])
        best_loss = min(best_loss, valid_loss)
        waited = 0 if improved else waited + 1
        bar.set_postfix(loss=f"{loss:.4f}", valid=f"{scores['valid']:.4f}")
        if patience is not None and waited >= patience:
            break
    return {"valid": best["valid"], "test": best["test"],
            "best_epoch": best["epoch"], "epochs": epoch,
            "time_per_epoch_s": seconds / epoch, "curve": curve}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_seeds(store: ResultStore, dataset: str, model: str, config: dict,
              runs: int, run_one: Callable[[int], dict],
              metric: str) -> None:
    """Run seeds ``0..runs-1`` not yet in ``store`` (so a killed job
    resumes), appending each result as soon as it finishes, then write the
    leaderboard and curves."""
    done = store.completed_seeds(dataset, model, config)
    for seed in tqdm(range(runs), desc=f"{dataset} {model} runs"):
        if seed in done:
            continue
        seed_everything(seed)
        result = run_one(seed)
        store.append({"dataset": dataset, "model": model, "seed": seed,
                      "config": config, **result})
        store.write_reports(metric)
    store.write_reports(metric)
