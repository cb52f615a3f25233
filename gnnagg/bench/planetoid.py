"""The GAT paper's transductive protocol on a Planetoid split."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ..models import build_model, check_model
from ..nn.aggr import degree_histogram
from .results import ResultStore
from .training import check_positive, fit, run_seeds

PLANETOID = ("Cora", "CiteSeer", "PubMed")


def load_planetoid(name: str, root: str):
    """PyG's ``Planetoid(root, name)`` with normalised features: reads
    ``root/<name>/raw`` and downloads there when missing."""
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures
    if name not in PLANETOID:
        raise ValueError(f"unknown Planetoid data set {name!r}; choose one "
                         f"of {', '.join(PLANETOID)}")
    try:
        return Planetoid(root, name, transform=NormalizeFeatures())
    except OSError as error:  # no network, no raw files
        raise FileNotFoundError(
            f"could not load {name} under {root} ({error.__class__.__name__}"
            f"): put the raw ind.{name.lower()}.* files in "
            f"{Path(root) / name / 'raw'} (e.g. `--raw-dir "
            f"../shared/datasets/planetoid`) or run with network") from None


@torch.no_grad()
def _scores(model, data) -> Dict[str, float]:
    model.eval()
    logits = model(data.x, data.edge_index)
    out = {}
    for split, key in (("train", "train"), ("val", "valid"), ("test", "test")):
        mask = data[f"{split}_mask"]
        out[key] = float((logits[mask].argmax(-1) == data.y[mask]).float()
                         .mean())
        if split == "val":
            out["valid_loss"] = float(F.cross_entropy(logits[mask],
                                                      data.y[mask]))
    return out


def train_transductive(model: torch.nn.Module, data, lr: float = 0.005,
                       weight_decay: float = 5e-4, epochs: int = 1000,
                       patience: Optional[int] = 100) -> dict:
    """Full-batch Adam with the GAT paper's early stopping (:func:`fit`):
    test accuracy at the epoch of best validation accuracy."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr,
                                 weight_decay=weight_decay)

    def train_epoch(epoch: int) -> float:
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return fit(train_epoch, lambda: _scores(model, data), epochs, patience)


def run_planetoid(name: str, model: str, runs: int, root: str, out_dir: str,
                  epochs: int = 1000, patience: int = 100,
                  device: str = "cpu") -> ResultStore:
    """``runs`` seeds of ``model`` on a Planetoid data set, results appended
    to ``out_dir/results.jsonl`` (finished seeds are skipped)."""
    check_model(model)
    check_positive(runs=runs, epochs=epochs, patience=patience)
    dataset = load_planetoid(name, root)
    data = dataset[0].to(device)
    store = ResultStore(out_dir)
    config = {"epochs": epochs, "patience": patience, "lr": 0.005,
              "weight_decay": 5e-4}

    def run_one(seed: int) -> dict:
        net = build_model(model, dataset.num_features, dataset.num_classes,
                          paper_gat=True, deg=degree_histogram([data]))
        net = net.to(device)
        result = train_transductive(net, data, epochs=epochs,
                                    patience=patience)
        return dict(result, params=sum(p.numel() for p in net.parameters()))

    run_seeds(store, name, model, config, runs, run_one, "accuracy")
    return store
