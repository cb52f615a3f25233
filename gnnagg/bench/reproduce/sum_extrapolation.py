"""``sum-extrapolation``: the two functions of Rosenbluth, Tönshoff and
Grohe (2023), "Some Might Say All You Need Is Sum", on which sum
aggregation fits the training range and fails outside it while mean (UCF)
or sum and mean together (SVF) extrapolate."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from ...ops import build_csr, neighbor_stats
from .base import Reproduction, Run, ours_text

#: each aggregation as the neighbourhood statistics it concatenates
AGGREGATIONS = {"sum": ["sum"], "mean": ["mean"], "sum+mean": ["sum", "mean"]}


def ucf_graph(k: int, c: int) -> Data:
    """A star: ``k`` leaves of value ``c`` send to the centre (value 0),
    whose target is ``c``."""
    x = torch.cat([torch.zeros(1, 1), torch.full((k, 1), float(c))])
    edge_index = torch.stack([torch.arange(1, k + 1),
                              torch.zeros(k, dtype=torch.long)])
    return Data(x=x, edge_index=edge_index, y=torch.tensor([[float(c)]]),
                num_nodes=k + 1)


def svf_graph(k: int, c: int) -> Data:
    """A root (node 0) fed by ``k`` middle nodes, each fed by the same
    ``c`` bottom nodes; every feature is 1 and the root's target is ``c``
    (the middles must count, the root must not). Edges sorted by target,
    as a batch of them then is: its CSR view needs no sort."""
    middles = torch.arange(1, k + 1)
    bottoms = torch.arange(k + 1, k + c + 1)
    edge_index = torch.cat([
        torch.stack([middles, torch.zeros(k, dtype=torch.long)]),
        torch.stack([bottoms.repeat(k), middles.repeat_interleave(c)])], 1)
    return Data(x=torch.ones(k + c + 1, 1), edge_index=edge_index,
                y=torch.tensor([[float(c)]]), num_nodes=k + c + 1)


GRAPHS = {"ucf": ucf_graph, "svf": svf_graph}


class ExtrapolationNet(torch.nn.Module):
    r"""The paper's network: layers
    :math:`\mathbf{x}_i' = \mathrm{MLP}([\mathbf{x}_i,
    \mathrm{agg}_{j \in \mathcal{N}(i)} \mathbf{x}_j])`, a linear
    read-out at the root. The aggregation (sum, mean, or both side by side,
    as PyG's ``SimpleConv`` with that ``aggr``) runs on sparse products
    over the node rows (:func:`gnnagg.ops.neighbor_stats`): an SVF batch
    has about 22 edges per node, and gathering the ``E x 256``
    neighbour rows took 60% of a training step. Each layer runs only on
    the nodes that reach a root (:meth:`forward`): an SVF epoch takes a
    quarter of the time of running both layers on every node. The first
    layer's MLP runs once per distinct input row (:func:`_rowwise`): a
    UCF epoch took 2.3-2.6 instead of 4.1-4.9 s on one thread, an SVF
    epoch 5.7-6.3 instead of 7.7-8.7 s (alternating runs). An SVF batch's
    edges come sorted by target and its first layer keeps them all, so
    its 255,000 edges are neither sorted nor masked: 2.4-3.6 instead of
    4.2-5.2 s an SVF epoch (alternating runs, 2026-12-08)."""

    def __init__(self, aggregation: str, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.statistics = AGGREGATIONS[aggregation]
        self.mlps = torch.nn.ModuleList()
        width = 1
        for _ in range(layers):
            parts = 1 + len(self.statistics)
            self.mlps.append(torch.nn.Sequential(
                torch.nn.Linear(parts * width, hidden), torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden), torch.nn.ReLU()))
            width = hidden
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, x: Tensor, edge_index: Tensor, root: Tensor) -> Tensor:
        """The read-out at the nodes ``root``. Layer :math:`l` of :math:`L`
        runs only on the nodes whose output reaches a root, those within
        :math:`L - l` hops upstream of one (as PyG's ``trim_to_layer``):
        the same outputs and gradients, without the MLPs of the SVF bottom
        nodes or any second-layer work away from the roots."""
        num_nodes = x.size(0)
        source, target = edge_index
        reach = torch.zeros(num_nodes, dtype=torch.bool, device=x.device)
        reach[root] = True
        reaches = [reach]  # reaches[h]: within h hops upstream of a root
        for _ in range(len(self.mlps) - 1):
            reach = reach.clone()
            reach[source[reaches[-1][target]]] = True
            reaches.append(reach)

        def positions(nodes: Tensor) -> Tensor:
            """Each node's index in ``nodes`` (-1 elsewhere)."""
            index = torch.full((num_nodes,), -1, device=x.device)
            index[nodes] = torch.arange(nodes.numel(), device=x.device)
            return index

        # x's row of each node; None: the node's own (the input)
        row_of: Optional[Tensor] = None
        for depth, (mlp, needed) in enumerate(zip(self.mlps,
                                                  reversed(reaches))):
            outputs = needed.nonzero().view(-1)
            output_of = positions(outputs)
            kept = needed[target]
            sources, targets = source, target
            if not bool(kept.all()):  # (the first layer keeps every edge)
                sources, targets = source[kept], target[kept]
            if row_of is not None:
                sources = row_of[sources]
            # a fresh edge tensor each call: built, not cached
            csr = build_csr(torch.stack([sources, output_of[targets]]),
                            x.size(0), outputs.numel())
            stats = neighbor_stats(x, csr, self.statistics)
            own = x[outputs if row_of is None else row_of[outputs]]
            rows = torch.cat([own] + [stats[s] for s in self.statistics], -1)
            # the first layer's rows are data, a few columns wide
            x = _rowwise(mlp, rows) if depth == 0 else mlp(rows)
            row_of = output_of
        return self.out(x[output_of[root]])


def _rowwise(mlp: torch.nn.Module, rows: Tensor) -> Tensor:
    """``mlp(rows)``, row by row the same function, computed once per
    distinct row where no gradient flows into ``rows``. For the first
    layer's input, data a few columns wide (one sort per column): an SVF
    graph's ``k`` middle nodes all see ``[1, c]``, so a batch's first
    layer has about one distinct row per graph, not 50. The outputs and
    the weights' gradients are the same sums, added in another order."""
    if rows.requires_grad:
        return mlp(rows)
    distinct, inverse = _distinct_rows(rows)
    return mlp(distinct).index_select(0, inverse)


def _distinct_rows(rows: Tensor) -> Tuple[Tensor, Tensor]:
    """``(distinct, inverse)`` with ``rows == distinct[inverse]``: rows
    sorted by stable sorts of their columns, last to first, and split
    where a row differs from the one before (``torch.unique(dim=0)``
    compares rows one by one: 45 ms on a batch's 5,000 rows of 3)."""
    order = torch.arange(rows.size(0), device=rows.device)
    for column in reversed(range(rows.size(1))):
        order = order[torch.argsort(rows[order, column], stable=True)]
    ordered = rows[order]
    starts = torch.ones(rows.size(0), dtype=torch.bool, device=rows.device)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(1)
    inverse = torch.empty_like(order)
    inverse[order] = starts.cumsum(0) - 1
    return ordered[starts], inverse


def grid(low: int, high: int, points: int) -> List[int]:
    """Up to ``points`` distinct integers from ``low`` to ``high``, spaced
    evenly on a log scale."""
    return sorted({int(round(v)) for v in np.logspace(
        np.log10(low), np.log10(high), points)})


class SumExtrapolation(Reproduction):
    name = "sum-extrapolation"
    paper = ("Rosenbluth, Tönshoff, Grohe, \"Some Might Say All You Need Is "
             "Sum\", IJCAI 2023 (https://arxiv.org/abs/2302.11603)")
    compares = ("sum, mean and sum+mean aggregation on UCF and SVF: trained "
                "on (k, c) in [1,100]^2, tested on [1,1000]^2")
    paper_results = {
        "sum": {"out_of_range": "error grows far beyond mean's and "
                                "sum+mean's"},
        "mean": {"ucf_out_of_range": "extrapolates"},
        "sum+mean": {"out_of_range": "extrapolates (UCF and SVF)"}}
    default_seeds = 5

    def protocol(self, quick: bool) -> Dict[str, Any]:
        return {"models": list(AGGREGATIONS), "tasks": list(GRAPHS),
                "train_max": 5 if quick else 100,
                "test_max": 20 if quick else 1000,
                "test_points": 4 if quick else 13,
                "hidden": 16 if quick else 256, "layers": 2,
                "batch_size": 100, "lr": 1e-3, "weight_decay": 1e-5,
                "epochs": 2 if quick else 500, "patience": None}

    def build(self, task: str, model: str, seed: int,
              protocol: Dict[str, Any], cache: Path) -> Run:
        make = GRAPHS[task]
        top = protocol["train_max"]
        train = [make(k, c) for k in range(1, top + 1)
                 for c in range(1, top + 1)]
        in_range = grid(1, top, protocol["test_points"])
        beyond = grid(1, protocol["test_max"], protocol["test_points"])
        net = ExtrapolationNet(model, protocol["hidden"], protocol["layers"])
        optimizer = torch.optim.AdamW(net.parameters(), lr=protocol["lr"],
                                      weight_decay=protocol["weight_decay"])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, protocol["epochs"])
        loader = DataLoader(train, protocol["batch_size"], shuffle=True)

        def predict(batch) -> Tensor:
            return net(batch.x, batch.edge_index, batch.ptr[:-1])

        def train_epoch(epoch: int) -> float:
            net.train()
            total = 0.0
            for batch in loader:
                loss = F.smooth_l1_loss(predict(batch), batch.y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.num_graphs
            scheduler.step()
            return total / len(train)

        @torch.no_grad()
        def errors(ks: List[int], cs: List[int]) -> np.ndarray:
            """|prediction - c| on every (k, c) of the grid, one batch of
            graphs per k."""
            net.eval()
            out = np.zeros((len(ks), len(cs)))
            for i, k in enumerate(ks):
                batch = Batch.from_data_list([make(k, c) for c in cs])
                pred = predict(batch).view(-1).double().numpy()
                out[i] = np.abs(pred - np.array(cs, dtype=float))
            return out

        def evaluate() -> Dict[str, float]:
            error = float(errors(in_range, in_range).mean())
            return {"valid": -error, "test": -error}

        def final() -> Dict[str, Any]:
            error = errors(beyond, beyond)
            cs = np.array(beyond, dtype=float)
            relative = error / cs[None, :]
            inside = np.array(beyond) <= top
            box = inside[:, None] & inside[None, :]
            return {"mae_in_range": float(error[box].mean()),
                    "mae_out_of_range": float(error[~box].mean()),
                    "rel_err_out_of_range": float(relative[~box].mean()),
                    "grid": beyond, "abs_error": error.tolist()}

        return Run(net, optimizer, train_epoch, evaluate, scheduler, final)

    def metrics(self, record: Dict[str, Any]) -> Dict[str, float]:
        task = record["task"]
        return {f"{task}_{name}": record["final"][name] for name in (
            "mae_in_range", "mae_out_of_range", "rel_err_out_of_range")}

    def figure(self, summary: Dict[str, Any],
               records: List[Dict]) -> Any:
        """Heat maps of log10 relative error |pred - c| / c over (k, c),
        mean over seeds; the box is the training range."""
        import matplotlib.pyplot as plt
        tasks = [t for t in GRAPHS if any(r["task"] == t for r in records)]
        models = [m for m in AGGREGATIONS if m in summary["ours"]]
        fig, axes = plt.subplots(len(tasks), len(models), squeeze=False,
                                 figsize=(3.6 * len(models), 3.2 * len(tasks)))
        top = summary["protocol"]["train_max"]
        for row, task in zip(axes, tasks):
            for ax, model in zip(row, models):
                runs = [r["final"] for r in records
                        if r["task"] == task and r["model"] == model]
                if not runs:
                    ax.axis("off")
                    continue
                ticks = np.array(runs[0]["grid"], dtype=float)
                error = np.mean([r["abs_error"] for r in runs], 0)
                image = ax.pcolormesh(
                    np.arange(len(ticks) + 1), np.arange(len(ticks) + 1),
                    np.log10(error / ticks[None, :] + 1e-6), vmin=-3, vmax=1,
                    cmap="viridis")
                inside = int((ticks <= top).sum())
                ax.plot([0, inside, inside], [inside, inside, 0], "w--")
                labels = [f"{int(t)}" for t in ticks]
                ax.set_xticks(np.arange(len(ticks)) + 0.5, labels,
                              rotation=90, fontsize=6)
                ax.set_yticks(np.arange(len(ticks)) + 0.5, labels, fontsize=6)
                ax.set(xlabel="c", ylabel="k",
                       title=f"{task.upper()} {model} (n={len(runs)})")
                fig.colorbar(image, ax=ax, label="log10 |pred-c|/c")
        fig.tight_layout()
        return fig

    def headline(self, summary: Dict[str, Any]) -> Tuple[str, str]:
        return ("sum's error outside the training range far beyond mean's "
                "and sum+mean's",
                "relative error outside [1,100]²: " + "; ".join(
                    f"{task.upper()} " + ", ".join(
                        f"{m} {ours_text(summary, m, f'{task}_rel_err_out_of_range')}"
                        for m in AGGREGATIONS) for task in GRAPHS))
