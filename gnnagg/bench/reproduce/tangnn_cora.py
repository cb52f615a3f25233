"""``tangnn-cora``: the TANGNN repository's Cora setting, TANGNN and
TANGNN-LC beside GAT and GraphSAGE under the same settings (the paper's own
table is not available here)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .base import Reproduction, Run, ours_text


def build_net(model: str, in_channels: int, out_channels: int,
              protocol: Dict[str, Any]) -> torch.nn.Module:
    """TANGNN, TANGNN-LC (gnnagg), GAT (PyG's model on gnnagg's GATConv)
    and PyG's GraphSAGE, all ``hidden`` wide and ``layers`` deep."""
    from torch_geometric.nn.models import GraphSAGE
    from ...models import GAT, TANGNN
    hidden, layers = protocol["hidden"], protocol["layers"]
    if model in ("tangnn", "tangnn_lc"):
        return TANGNN(in_channels, hidden, out_channels, layers,
                      m=protocol["m"][model],
                      num_neighbors=protocol["num_neighbors"],
                      heads=protocol["heads"], dropout=protocol["dropout"],
                      lc=model == "tangnn_lc")
    if model == "gat":
        return GAT(in_channels, hidden, layers, out_channels,
                   heads=protocol["heads"], dropout=protocol["dropout"])
    if model == "sage":
        return GraphSAGE(in_channels, hidden, layers, out_channels,
                         dropout=protocol["dropout"])
    raise ValueError(f"unknown model {model!r}")


class TANGNNCora(Reproduction):
    name = "tangnn-cora"
    paper = ("TANGNN: a Top-m Attention and Neighbourhood aggregation GNN "
             "(2024); settings of the authors' repository")
    compares = ("TANGNN, TANGNN-LC, GAT, GraphSAGE on Cora (public split): "
                "macro one-vs-rest ROC-AUC and weighted F1")
    paper_results = {model: {"test_rocauc": "not available",
                             "test_f1_weighted": "not available"}
                     for model in ("tangnn", "tangnn_lc")}
    default_seeds = 10

    def __init__(self, root: str = "data/Planetoid",
                 raw_dir: Optional[str] = None):
        self.root, self.raw_dir = root, raw_dir

    def protocol(self, quick: bool) -> Dict[str, Any]:
        return {"models": ["tangnn", "tangnn_lc", "gat", "sage"],
                "tasks": ["Cora"], "hidden": 32, "heads": 1, "layers": 2,
                "m": {"tangnn": 20, "tangnn_lc": 30}, "num_neighbors": 5,
                "dropout": 0.5, "lr": 0.005, "weight_decay": 1e-4,
                "epochs": 2 if quick else 80,
                "model_epochs": {} if quick else {"tangnn_lc": 100},
                "patience": None}

    def build(self, task: str, model: str, seed: int,
              protocol: Dict[str, Any], cache: Path) -> Run:
        from sklearn.metrics import f1_score, roc_auc_score
        from ..data import link_planetoid_raw
        from ..planetoid import load_planetoid
        if self.raw_dir:
            link_planetoid_raw(self.raw_dir, self.root, task)
        dataset = load_planetoid(task, self.root)
        data = dataset[0]
        net = build_net(model, dataset.num_features, dataset.num_classes,
                        protocol)
        optimizer = torch.optim.Adam(net.parameters(), lr=protocol["lr"],
                                     weight_decay=protocol["weight_decay"])

        def train_epoch(epoch: int) -> float:
            net.train()
            out = net(data.x, data.edge_index)
            loss = F.cross_entropy(out[data.train_mask],
                                   data.y[data.train_mask])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        @torch.no_grad()
        def evaluate() -> Dict[str, float]:
            net.eval()
            prob = net(data.x, data.edge_index).softmax(-1)
            y, test = data.y, data.test_mask
            valid_acc = float((prob[data.val_mask].argmax(-1) ==
                               y[data.val_mask]).float().mean())
            return {"valid": valid_acc,
                    "test": float(roc_auc_score(
                        y[test].numpy(), prob[test].numpy(),
                        multi_class="ovr", average="macro")),
                    "test_f1_weighted": float(f1_score(
                        y[test].numpy(), prob[test].argmax(-1).numpy(),
                        average="weighted")),
                    "test_acc": float((prob[test].argmax(-1) ==
                                       y[test]).float().mean())}

        return Run(net, optimizer, train_epoch, evaluate)

    def metrics(self, record: Dict[str, Any]) -> Dict[str, float]:
        best = record["best_scores"]
        return {"test_rocauc": record["test"],
                "test_f1_weighted": best["test_f1_weighted"],
                "test_acc": best["test_acc"], "valid_acc": record["valid"]}

    def figure(self, summary: Dict[str, Any],
               records: List[Dict]) -> Any:
        """Test ROC-AUC and weighted F1 per model (mean +- std over
        seeds)."""
        import matplotlib.pyplot as plt
        import numpy as np
        models = list(summary["ours"])
        fig, ax = plt.subplots(figsize=(6, 4))
        x = np.arange(len(models))
        for offset, metric in ((-0.2, "test_rocauc"),
                               (0.2, "test_f1_weighted")):
            ax.bar(x + offset, [summary["ours"][m][metric]["mean"]
                                for m in models], 0.4,
                   yerr=[summary["ours"][m][metric]["std"] for m in models],
                   label=metric)
        ax.set_xticks(x, models)
        ax.set(ylim=(0, 1.15), title="Cora (public split), test at best "
               "validation accuracy")
        ax.legend(loc="upper center", ncol=2)
        fig.tight_layout()
        return fig

    def headline(self, summary: Dict[str, Any]) -> Tuple[str, str]:
        return ("not available here",
                "macro ROC-AUC / weighted F1: " + ", ".join(
                    f"{m} {ours_text(summary, m, 'test_rocauc', 100)} / "
                    f"{ours_text(summary, m, 'test_f1_weighted', 100)}"
                    for m in ("tangnn", "tangnn_lc", "gat", "sage")))
