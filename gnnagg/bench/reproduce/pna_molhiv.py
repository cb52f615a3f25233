"""``pna-molhiv``: the PNA repository's ogbg-molhiv recipe under OGB's
protocol (scaffold split, OGB's ``Evaluator``, test ROC-AUC at the epoch of
best validation ROC-AUC)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import Linear, SimpleConv, global_mean_pool

from ...nn.functional import dropout
from .base import Reproduction, Run, ours_text

AGGREGATORS = ["mean", "min", "max", "std"]
SCALERS = ["identity", "amplification", "attenuation"]


class PyGPNASimpleConv(SimpleConv):
    r"""gnnagg's :class:`~gnnagg.nn.PNASimpleConv` from PyG's parts:
    ``SimpleConv`` with PyG's ``DegreeScalerAggregation``, then a linear map
    of its ``N x |S| |A| F`` output; the same parameter names."""

    def __init__(self, in_channels: int, out_channels: int,
                 aggregators: List[str], scalers: List[str], deg: Tensor):
        from torch_geometric.nn import aggr as pyg_aggr
        super().__init__(aggr=pyg_aggr.DegreeScalerAggregation(
            aggregators, scalers, deg))
        self.lin = Linear(len(aggregators) * len(scalers) * in_channels,
                          out_channels)
        self.reset_parameters()  # as PNASimpleConv: the same draws

    def reset_parameters(self):
        super().reset_parameters()
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.lin(super().forward(x, edge_index))


class PNAMolhivNet(torch.nn.Module):
    r"""The PNA repository's ogbg-molhiv network (326,081 parameters):
    ``AtomEncoder(80)``, then 4 times

    .. math::
        \mathbf{h} \leftarrow \mathrm{dropout}_{0.3}\Big(\mathbf{h} +
        \mathrm{ReLU}\big(\mathrm{BN}(\mathbf{W}\,
        \big[\mathbf{S}(\mathbf{D}, \alpha)\otimes \mathbf{A}\big]
        _{j \in \mathcal{N}(i)} \mathbf{h}_j + \mathbf{b})\big)\Big)

    (aggregators mean/min/max/std, scalers identity/amplification/
    attenuation over the neighbours' states; no pre-transformation, no edge
    features), mean pooling and an MLP 80-40-20-1.

    The layers are gnnagg's :class:`~gnnagg.nn.PNASimpleConv`, or with
    ``backend="pyg"`` the same layer from PyG's parts
    (:class:`PyGPNASimpleConv`): same parameter names, same
    initialisation from the same seed.
    """

    def __init__(self, deg: Tensor, hidden: int = 80, layers: int = 4,
                 dropout: float = 0.3, backend: str = "gnnagg"):
        super().__init__()
        from ogb.graphproppred.mol_encoder import AtomEncoder
        from ...nn import PNASimpleConv
        if backend not in ("gnnagg", "pyg"):
            raise ValueError(f"backend must be 'gnnagg' or 'pyg', got "
                             f"{backend!r}")
        layer = PNASimpleConv if backend == "gnnagg" else PyGPNASimpleConv
        self.dropout = dropout
        self.encoder = AtomEncoder(hidden)
        self.convs = torch.nn.ModuleList(
            layer(hidden, hidden, AGGREGATORS, SCALERS, deg)
            for _ in range(layers))
        self.norms = torch.nn.ModuleList(
            torch.nn.BatchNorm1d(hidden) for _ in range(layers))
        self.head = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden // 2), torch.nn.ReLU(),
            torch.nn.Linear(hidden // 2, hidden // 4), torch.nn.ReLU(),
            torch.nn.Linear(hidden // 4, 1))

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        h = self.encoder(x)
        for conv, norm in zip(self.convs, self.norms):
            update = F.relu(norm(conv(h, edge_index)))
            h = dropout(h + update, self.dropout, self.training)
        return self.head(global_mean_pool(h, batch))


class PNAMolhiv(Reproduction):
    name = "pna-molhiv"
    paper = ("Corso et al., \"Principal Neighbourhood Aggregation for Graph "
             "Nets\", NeurIPS 2020 (https://arxiv.org/abs/2004.05718); OGB "
             "leaderboard entry for ogbg-molhiv")
    compares = ("PNA (gnnagg's PNASimpleConv; the same layer from PyG's "
                "SimpleConv and DegreeScalerAggregation with --models "
                "pna,pna-pyg) on ogbg-molhiv, test ROC-AUC at best "
                "validation; 326,161 parameters: the paper's 326,081 plus "
                "one row of 80 in OGB's AtomEncoder, whose chirality "
                "vocabulary has grown by one since")
    paper_results = {"pna": {
        "test_rocauc": {"mean": 0.7905, "std": 0.0132},
        "valid_rocauc": {"mean": 0.8519, "std": 0.0099},
        "parameters": 326081}}
    default_seeds = 10
    extra_models = ["pna-pyg"]

    def __init__(self, root: str = "data/ogb"):
        self.root = root

    def protocol(self, quick: bool) -> Dict[str, Any]:
        return {"models": ["pna"], "tasks": ["ogbg-molhiv"],
                "epochs": 2 if quick else 200, "patience": None,
                "batch_size": 128, "hidden": 80, "layers": 4,
                "dropout": 0.3, "lr": 0.01, "weight_decay": 3e-6,
                "plateau": {"mode": "max", "factor": 0.5, "patience": 20,
                            "min_lr": 1e-4},
                "subset": 512 if quick else None}

    def build(self, task: str, model: str, seed: int,
              protocol: Dict[str, Any], cache: Path) -> Run:
        from ogb.graphproppred import Evaluator
        from torch_geometric.loader import DataLoader
        from ...nn.aggr import degree_histogram
        from ..ogb import load_ogb
        dataset = load_ogb(task, self.root)
        split = dataset.get_idx_split()
        if protocol["subset"]:  # --quick: the first graphs of each split
            split = {k: v[:protocol["subset"]] for k, v in split.items()}
        train_set = dataset[split["train"]]
        net = PNAMolhivNet(degree_histogram(train_set), protocol["hidden"],
                           protocol["layers"], protocol["dropout"],
                           "pyg" if model == "pna-pyg" else "gnnagg")
        optimizer = torch.optim.Adam(net.parameters(), lr=protocol["lr"],
                                     weight_decay=protocol["weight_decay"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, **protocol["plateau"])
        train = DataLoader(train_set, protocol["batch_size"], shuffle=True)
        held_out = {k: DataLoader(dataset[split[k]], protocol["batch_size"])
                    for k in ("valid", "test")}
        evaluator = Evaluator(task)

        def train_epoch(epoch: int) -> float:
            net.train()
            total = 0.0
            for batch in train:
                out = net(batch.x, batch.edge_index, batch.batch)
                loss = F.binary_cross_entropy_with_logits(
                    out, batch.y.to(out.dtype))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.num_graphs
            return total / len(train_set)

        @torch.no_grad()
        def evaluate() -> Dict[str, float]:
            net.eval()
            scores = {}
            for key, loader in held_out.items():
                pred = torch.cat([net(b.x, b.edge_index, b.batch)
                                  for b in loader])
                true = torch.cat([b.y for b in loader])
                scores[key] = float(evaluator.eval(
                    {"y_true": true, "y_pred": pred})["rocauc"])
            scheduler.step(scores["valid"])
            scores["lr"] = optimizer.param_groups[0]["lr"]
            return scores

        return Run(net, optimizer, train_epoch, evaluate, scheduler)

    def metrics(self, record: Dict[str, Any]) -> Dict[str, float]:
        return {"test_rocauc": record["test"],
                "valid_rocauc": record["valid"],
                "parameters": record["params"]}

    def figure(self, summary: Dict[str, Any],
               records: List[Dict]) -> Any:
        """Validation and test ROC-AUC per epoch (mean over seeds), the
        paper's test mean +- std as a band."""
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for model in summary["ours"]:
            runs = [r["curve"] for r in records if r["model"] == model]
            length = min(len(c["test"]) for c in runs)
            for key, style in (("valid", "--"), ("test", "-")):
                mean = [sum(c[key][i] for c in runs) / len(runs)
                        for i in range(length)]
                ax.plot(range(1, length + 1), mean, style,
                        label=f"{model} {key} (n={len(runs)})")
        paper = self.paper_results["pna"]["test_rocauc"]
        ax.axhspan(paper["mean"] - paper["std"], paper["mean"] + paper["std"],
                   alpha=0.2, color="grey", label="paper: test mean +- std")
        ax.set(xlabel="epoch", ylabel="ROC-AUC", title="PNA on ogbg-molhiv")
        ax.legend(fontsize="small")
        fig.tight_layout()
        return fig

    def headline(self, summary: Dict[str, Any]) -> Tuple[str, str]:
        n = summary["ours"].get("pna", {}).get("test_rocauc", {}).get("n", 0)
        return ("test ROC-AUC 79.05 ± 1.32",
                f"{ours_text(summary, 'pna', 'test_rocauc', 100)} "
                f"({n} seeds)")
