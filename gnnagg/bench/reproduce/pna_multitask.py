"""``pna-multitask``: the multitask benchmark of Corso et al. (2020): three
node tasks and three graph tasks on random graphs of ten families, one
network for all six, average log10 MSE."""
from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import (GCNConv, GINConv, global_add_pool,
                                global_max_pool, global_mean_pool)

from ...nn import GATConv, PNAConv
from ...nn.aggr import degree_histogram
from ..results import cached
from ..synthetic import GRAPH_TASKS, NODE_TASKS, pna_multitask_graphs
from .base import Reproduction, Run, ours_text

#: model -> PNAConv (aggregators, scalers); others are GAT, GCN, GIN
PNA_VARIANTS = {
    "pna": (["mean", "min", "max", "std"],
            ["identity", "amplification", "attenuation"]),
    "pna-no-scalers": (["mean", "min", "max", "std"], ["identity"]),
    "mpnn-sum": (["sum"], ["identity"]),
    "mpnn-max": (["max"], ["identity"]),
}
TASKS = NODE_TASKS + GRAPH_TASKS


def make_layer(model: str, hidden: int, towers: int,
               deg: Tensor) -> torch.nn.Module:
    """The convolution of ``model``: gnnagg's PNAConv (PNA and the MPNN
    baselines: one aggregator, no scaler) and GATConv, PyG's GCNConv and
    GINConv."""
    if model in PNA_VARIANTS:
        aggregators, scalers = PNA_VARIANTS[model]
        return PNAConv(hidden, hidden, aggregators, scalers, deg,
                       towers=towers, divide_input=False)
    if model == "gat":
        return GATConv(hidden, hidden)
    if model == "gcn":
        return GCNConv(hidden, hidden)
    if model == "gin":
        return GINConv(torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden)))
    raise ValueError(f"unknown model {model!r}")


class MultitaskNet(torch.nn.Module):
    r"""The paper's recurrent network: one convolution applied
    :math:`\lfloor N/2 \rfloor` times on graphs of :math:`N` nodes, a GRU
    update :math:`h \leftarrow \mathrm{GRU}(\mathrm{ReLU}(\mathrm{conv}(h)),
    h)` after each; a node MLP for the three node tasks and an MLP on
    mean, max and sum pooling for the three graph tasks."""

    def __init__(self, model: str, deg: Tensor, hidden: int = 16,
                 towers: int = 4):
        super().__init__()
        self.encoder = torch.nn.Linear(2, hidden)
        self.conv = make_layer(model, hidden, towers, deg)
        self.gru = torch.nn.GRUCell(hidden, hidden)
        self.node_head = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, len(NODE_TASKS)))
        self.graph_head = torch.nn.Sequential(
            torch.nn.Linear(3 * hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, len(GRAPH_TASKS)))

    def forward(self, batch) -> tuple:
        h = self.encoder(batch.x)
        for _ in range(batch.graph_size // 2):
            h = self.gru(F.relu(self.conv(h, batch.edge_index)), h)
        pooled = torch.cat([pool(h, batch.batch) for pool in (
            global_mean_pool, global_max_pool, global_add_pool)], -1)
        return self.node_head(h), self.graph_head(pooled)


def size_batches(graphs: List, batch_size: int,
                 shuffle: bool) -> List[Batch]:
    """Batches of graphs of one size (the depth is per size), in a random
    order with ``shuffle`` (Python's ``random``, checkpointed)."""
    by_size = defaultdict(list)
    for graph in graphs:
        by_size[graph.num_nodes].append(graph)
    batches = []
    for size, group in sorted(by_size.items()):
        if shuffle:
            group = random.sample(group, len(group))
        for start in range(0, len(group), batch_size):
            batch = Batch.from_data_list(group[start:start + batch_size])
            batch.graph_size = size
            batches.append(batch)
    if shuffle:
        random.shuffle(batches)
    return batches


class PNAMultitask(Reproduction):
    name = "pna-multitask"
    paper = ("Corso et al., \"Principal Neighbourhood Aggregation for Graph "
             "Nets\", NeurIPS 2020 (https://arxiv.org/abs/2004.05718), "
             "Table 1")
    compares = ("PNA, PNA without scalers, MPNN (sum, max), GAT, GCN, GIN: "
                "average log10 MSE over six node and graph tasks")
    paper_results = {model: {"avg_log10_mse": value} for model, value in {
        "pna": -2.97, "pna-no-scalers": -2.64, "mpnn-sum": -2.44,
        "mpnn-max": -2.20, "gat": -2.09, "gcn": -1.90, "gin": -1.88}.items()}

    def protocol(self, quick: bool) -> Dict[str, Any]:
        return {"models": list(self.paper_results), "tasks": ["multitask"],
                # the PNA repository's: training graphs of 15-24 nodes,
                # validation and test graphs of 15-19 (its data set
                # generator pairs 5 counts with the first 5 sizes)
                "sizes": {"train": [15, 16], "valid": [15], "test": [15]}
                if quick else {"train": list(range(15, 25)),
                               "valid": list(range(15, 20)),
                               "test": list(range(15, 20))},
                "per_size": {"train": 8, "valid": 4, "test": 8} if quick
                else {"train": 512, "valid": 128, "test": 256},
                "toggle_fraction": 0.1, "hidden": 16, "towers": 4,
                "batch_size": 128, "lr": 3e-3, "weight_decay": 1e-6,
                "epochs": 2 if quick else 10_000,
                "patience": None if quick else 1_000}

    def data(self, protocol: Dict[str, Any], cache: Path) -> Dict[str, List]:
        """The splits (one fixed data set, seed 0, for every model seed),
        labels divided by their maximum over the training set."""
        def make():
            splits = {split: pna_multitask_graphs(
                protocol["sizes"][split], count, seed=index,
                toggle_fraction=protocol["toggle_fraction"])
                for index, (split, count) in enumerate(
                    protocol["per_size"].items())}
            node_max = torch.cat([g.y_node for g in splits["train"]]).abs() \
                .amax(0).clamp(min=1e-12)
            graph_max = torch.cat([g.y_graph for g in splits["train"]]) \
                .abs().amax(0).clamp(min=1e-12)
            for graphs in splits.values():
                for g in graphs:
                    g.y_node, g.y_graph = g.y_node / node_max, \
                        g.y_graph / graph_max
            return splits
        tag = "-".join(f"{split}{sizes[0]}to{sizes[-1]}x"
                       f"{protocol['per_size'][split]}"
                       for split, sizes in protocol["sizes"].items())
        return cached(cache, f"multitask-{tag}", make)

    def build(self, task: str, model: str, seed: int,
              protocol: Dict[str, Any], cache: Path) -> Run:
        splits = self.data(protocol, cache)
        net = MultitaskNet(model, degree_histogram(splits["train"]),
                           protocol["hidden"], protocol["towers"])
        optimizer = torch.optim.Adam(net.parameters(), lr=protocol["lr"],
                                     weight_decay=protocol["weight_decay"])
        held_out = {split: size_batches(splits[split], 1024, shuffle=False)
                    for split in ("valid", "test")}

        def squared_errors(batch) -> tuple:
            node_out, graph_out = net(batch)
            return (node_out - batch.y_node) ** 2, \
                (graph_out - batch.y_graph) ** 2

        def train_epoch(epoch: int) -> float:
            net.train()
            total = count = 0.0
            for batch in size_batches(splits["train"],
                                      protocol["batch_size"], shuffle=True):
                node_err, graph_err = squared_errors(batch)
                loss = torch.cat([node_err.mean(0), graph_err.mean(0)]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.num_graphs
                count += batch.num_graphs
            return total / count

        @torch.no_grad()
        def log10_mse(batches) -> Dict[str, float]:
            net.eval()
            node, graph = zip(*(squared_errors(b) for b in batches))
            mse = torch.cat([torch.cat(node).mean(0), torch.cat(graph).mean(0)])
            scores = {name: math.log10(float(value))
                      for name, value in zip(TASKS, mse)}
            scores["average"] = sum(scores.values()) / len(TASKS)
            return scores

        def evaluate() -> Dict[str, float]:
            valid, test = (log10_mse(held_out[s]) for s in ("valid", "test"))
            return {"valid": -valid["average"], "test": -test["average"],
                    **{f"test_{name}": value for name, value in test.items()}}

        return Run(net, optimizer, train_epoch, evaluate)

    def metrics(self, record: Dict[str, Any]) -> Dict[str, float]:
        best = record["best_scores"]
        return {"avg_log10_mse": -record["test"],
                **{f"{name}_log10_mse": best[f"test_{name}"]
                   for name in TASKS}}

    def figure(self, summary: Dict[str, Any],
               records: List[Dict]) -> Any:
        """Average log10 MSE per model, paper beside ours (lower is
        better), and ours per task."""
        import matplotlib.pyplot as plt
        import numpy as np
        models = list(self.paper_results)
        ours = summary["ours"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        x = np.arange(len(models))
        left.bar(x - 0.2, [self.paper_results[m]["avg_log10_mse"]
                           for m in models], 0.4, label="paper")
        left.bar(x + 0.2, [ours[m]["avg_log10_mse"]["mean"] if m in ours
                           else np.nan for m in models], 0.4,
                 yerr=[ours[m]["avg_log10_mse"]["std"] if m in ours else 0
                       for m in models], label="ours")
        left.set_xticks(x, models, rotation=30, ha="right")
        left.set(ylabel="average log10 MSE (lower is better)",
                 title="PNA multitask")
        left.legend()
        width = 0.8 / max(len(ours), 1)
        for i, model in enumerate(m for m in models if m in ours):
            right.bar(np.arange(len(TASKS)) + i * width,
                      [ours[model][f"{t}_log10_mse"]["mean"] for t in TASKS],
                      width, label=model)
        right.set_xticks(np.arange(len(TASKS)) + 0.4 - width / 2, TASKS,
                         rotation=30, ha="right")
        right.set(ylabel="log10 MSE", title="ours per task")
        right.legend(fontsize="small")
        fig.tight_layout()
        return fig

    def headline(self, summary: Dict[str, Any]) -> Tuple[str, str]:
        models = ("pna", "mpnn-sum", "gat", "gin")
        return ("average log10 MSE: " + ", ".join(
            f"{m} {self.paper_results[m]['avg_log10_mse']}" for m in models),
            ", ".join(f"{m} {ours_text(summary, m, 'avg_log10_mse')}"
                      for m in models))
