"""``gnnagg bench``: the papers' synthetic tasks, every aggregator side by
side, on CPU and without downloads. Results go to ``OUT/suite.json`` after
every (task, model) pair, so a killed run resumes; the leaderboard is
printed and written to ``OUT/leaderboard.md``."""
from __future__ import annotations

import json
import math
import os
import time
from functools import partial
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_max_pool, global_mean_pool
from tqdm.auto import tqdm

from ..models import make_conv
from ..nn.aggr import degree_histogram
from .synthetic import (GRAPH_TASKS, NODE_TASKS, degree_extrapolation,
                        dictionary_lookup, multitask_graphs)
from .results import cached, set_aside
from .training import seed_everything

SUITE_MODELS = ("gat", "gatv2", "pna", "lcm", "gru", "topm", "sum", "mean",
                "max")

#: sizes of the default run (about 10 minutes on 2 CPU cores)
FULL = {"lookup_k": (5, 10, 20), "lookup_graphs": 1000, "lookup_steps": 600,
        "multitask_train": 512, "multitask_test": 256,
        "multitask_epochs": 30, "extrapolation_train": 100,
        "extrapolation_test": 10, "extrapolation_epochs": 60}
QUICK = {"lookup_k": (4,), "lookup_graphs": 24, "lookup_steps": 6,
         "multitask_train": 40, "multitask_test": 20, "multitask_epochs": 2,
         "extrapolation_train": 10, "extrapolation_test": 2,
         "extrapolation_epochs": 2}


class SuiteNet(torch.nn.Module):
    """``encoder -> [conv -> ReLU] x L -> node head`` and, with
    ``graph_out``, a graph head on mean and max pooling."""

    def __init__(self, kind: str, encoder: torch.nn.Module, hidden: int,
                 num_layers: int, node_out: int, graph_out: int = 0,
                 deg: Optional[torch.Tensor] = None):
        super().__init__()
        self.encoder = encoder
        self.convs = torch.nn.ModuleList(
            make_conv(kind, hidden, hidden, deg=deg, heads=1, m=8)
            for _ in range(num_layers))
        self.node_head = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, node_out))
        self.graph_head = torch.nn.Sequential(
            torch.nn.Linear(2 * hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, graph_out)) if graph_out else None

    def forward(self, batch):
        h = self.encoder(batch.x)
        for conv in self.convs:
            h = F.relu(conv(h, batch.edge_index))
        if self.graph_head is None:
            return self.node_head(h)
        pooled = torch.cat([global_mean_pool(h, batch.batch),
                            global_max_pool(h, batch.batch)], -1)
        return self.node_head(h), self.graph_head(pooled)


class KeyValueEncoder(torch.nn.Module):
    """Sum of a key embedding and a value embedding (GATv2's lookup)."""

    def __init__(self, k: int, hidden: int):
        super().__init__()
        self.key = torch.nn.Embedding(k + 1, hidden)
        self.value = torch.nn.Embedding(k + 1, hidden)

    def forward(self, x):
        return self.key(x[:, 0]) + self.value(x[:, 1])


def _train(model, loader, loss_fn: Callable, epochs: int, lr: float,
           desc: str) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        model.train()
        for batch in loader:
            optimizer.zero_grad()
            loss_fn(model, batch).backward()
            optimizer.step()


def lookup_task(model: str, k: int, sizes: Dict, cache: Path,
                seed: int) -> Dict[str, float]:
    """Train and test node accuracy on DictionaryLookup with ``k`` keys."""
    train, test = cached(cache, f"lookup-k{k}-n{sizes['lookup_graphs']}-s"
                          f"{seed}", lambda: dictionary_lookup(
                              k, sizes["lookup_graphs"], seed))
    seed_everything(seed)
    net = SuiteNet(model, KeyValueEncoder(k, 64), 64, 1, k,
                   deg=degree_histogram(train))

    def loss(net, batch):
        mask = batch.train_mask
        return F.cross_entropy(net(batch)[mask], batch.y[mask])

    loader = DataLoader(train, 64, shuffle=True)  # same step budget for all k
    _train(net, loader, loss, math.ceil(sizes["lookup_steps"] / len(loader)),
           1e-3, f"lookup k={k} {model}")

    @torch.no_grad()
    def accuracy(graphs):
        net.eval()
        correct = total = 0
        for batch in DataLoader(graphs, 256):
            queries = batch.y >= 0
            correct += int((net(batch)[queries].argmax(-1) ==
                            batch.y[queries]).sum())
            total += int(queries.sum())
        return correct / total

    return {"train_acc": accuracy(train), "test_acc": accuracy(test)}


def multitask_task(model: str, sizes: Dict, cache: Path,
                   seed: int) -> Dict[str, float]:
    """log10 MSE per PNA task (targets standardised on the training set),
    on test graphs of 15-24 nodes and on larger ones (25-40)."""
    train = cached(cache, f"multitask-train-{sizes['multitask_train']}-s"
                    f"{seed}", lambda: multitask_graphs(
                        sizes["multitask_train"], seed=seed))
    tests = {"": cached(cache, f"multitask-test-{sizes['multitask_test']}-s"
                         f"{seed}", lambda: multitask_graphs(
                             sizes["multitask_test"], seed=seed + 1)),
             "large_": cached(cache, f"multitask-large-"
                               f"{sizes['multitask_test']}-s{seed}",
                               lambda: multitask_graphs(
                                   sizes["multitask_test"], 25, 40,
                                   seed=seed + 2))}
    node_y = torch.cat([g.y_node for g in train])
    graph_y = torch.cat([g.y_graph for g in train])
    node_stats = (node_y.mean(0), node_y.std(0).clamp(min=1e-6))
    graph_stats = (graph_y.mean(0), graph_y.std(0).clamp(min=1e-6))
    seed_everything(seed)
    net = SuiteNet(model, torch.nn.Linear(2, 64), 64, 3, len(NODE_TASKS),
                   len(GRAPH_TASKS), deg=degree_histogram(train))

    def errors(net, batch):
        node_out, graph_out = net(batch)
        node_err = (node_out - (batch.y_node - node_stats[0]) /
                    node_stats[1]) ** 2
        graph_err = (graph_out - (batch.y_graph - graph_stats[0]) /
                     graph_stats[1]) ** 2
        return node_err, graph_err

    _train(net, DataLoader(train, 32, shuffle=True),
           lambda net, b: sum(e.mean() for e in errors(net, b)),
           sizes["multitask_epochs"], 1e-3, f"multitask {model}")
    out = {}
    net.eval()
    with torch.no_grad():
        for prefix, graphs in tests.items():
            batch = next(iter(DataLoader(graphs, len(graphs))))
            node_err, graph_err = errors(net, batch)
            mse = torch.cat([node_err.mean(0), graph_err.mean(0)])
            for name, value in zip(NODE_TASKS + GRAPH_TASKS, mse.tolist()):
                out[f"{prefix}{name}"] = math.log10(value)
            out[f"{prefix}average"] = math.log10(float(mse.mean()))
    return out


#: degree-extrapolation targets of the suite: table title, training degrees
EXTRAPOLATION = {
    "mean": ("Degree extrapolation, mean of neighbours (MSE)", range(1, 11)),
    "second_min": ("Degree extrapolation, second-smallest neighbour (MSE; "
                   "ms = one forward pass at 1,000 neighbours)",
                   range(2, 11)),
}


def extrapolation_task(model: str, sizes: Dict, cache: Path, seed: int,
                       target: str = "mean") -> Dict[str, float]:
    """MSE of a function of the neighbours' values (``target``, see
    :data:`EXTRAPOLATION`), trained on at most 10 neighbours, tested at 10,
    100 and 1,000. ``second_min`` also times one forward pass over the
    1,000-neighbour test stars (``ms_d1000``): O(d) sequential steps for a
    recurrent aggregator, O(log d) levels for LCM."""
    degrees = list(EXTRAPOLATION[target][1])
    train = cached(cache, f"extrap-{target}-train-"
                    f"{sizes['extrapolation_train']}-s{seed}",
                    lambda: degree_extrapolation(
                        degrees, sizes["extrapolation_train"], target, seed))
    seed_everything(seed)
    net = SuiteNet(model, torch.nn.Linear(1, 32), 32, 1, 1,
                   deg=degree_histogram(train))

    def loss(net, batch):
        return F.mse_loss(net(batch)[batch.center], batch.y)

    _train(net, DataLoader(train, 64, shuffle=True), loss,
           sizes["extrapolation_epochs"], 3e-3,
           f"extrapolation {target} {model}")
    out = {}
    net.eval()
    with torch.no_grad():
        for d in (10, 100, 1000):
            test = degree_extrapolation([d], sizes["extrapolation_test"],
                                        target, seed=seed + d)
            batch = next(iter(DataLoader(test, len(test))))
            out[f"mse_d{d}"] = float(loss(net, batch))
        if target == "second_min":
            times = []
            for _ in range(3):
                start = time.perf_counter()
                net(batch)
                times.append(time.perf_counter() - start)
            out["ms_d1000"] = 1000 * sorted(times)[1]
    return out


def _save(path: Path, results: Dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)


def _load(path: Path) -> Dict:
    """The results saved so far; a damaged file is set aside (kept as
    ``<name>.corrupt-<time>``, with a warning) and its tasks are rerun."""
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
        if not isinstance(results, dict) or not all(
                isinstance(v, dict) for v in results.values()):
            raise ValueError("not a table of results per task")
        return results
    except ValueError as error:  # JSONDecodeError is one
        kept = set_aside(path)
        warnings.warn(f"{path} is damaged ({error}); kept as {kept}, its "
                      f"tasks will be run again", stacklevel=2)
        return {}


def suite_tables(results: Dict) -> str:
    """Markdown tables, one per task, a row per model."""
    tables = []
    for task, by_model in results.items():
        columns = list(next(iter(by_model.values())))
        lines = [f"### {task}", "",
                 "| model | " + " | ".join(columns) + " |",
                 "|---" * (len(columns) + 1) + "|"]
        for model, metrics in by_model.items():
            lines.append(f"| {model} | " + " | ".join(
                f"{metrics[c]:.3f}" for c in columns) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def run_suite(out_dir: str, quick: bool = False, seed: int = 0,
              models: Sequence[str] = SUITE_MODELS) -> Dict:
    """Run every task for every model not yet in ``out_dir/suite.json``
    (``suite-quick.json`` for ``quick``; ``-seed<N>`` added for a seed other
    than 0, so each seed keeps its own results)."""
    sizes: Dict[str, Any] = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("-quick" if quick else "") + (f"-seed{seed}" if seed else "")
    path = out / f"suite{suffix}.json"
    results = _load(path)
    cache = out / "cache"
    tasks: Dict[str, Callable[[str], Dict[str, float]]] = {
        f"DictionaryLookup k={k} (accuracy)": partial(
            lookup_task, k=k, sizes=sizes, cache=cache, seed=seed)
        for k in sizes["lookup_k"]}
    tasks["PNA multitask (log10 MSE)"] = partial(
        multitask_task, sizes=sizes, cache=cache, seed=seed)
    for target, (title, _) in EXTRAPOLATION.items():
        tasks[title] = partial(extrapolation_task, sizes=sizes, cache=cache,
                               seed=seed, target=target)
    for task, run in tasks.items():
        for model in tqdm(models, desc=task):
            if model in results.get(task, {}):
                continue
            results.setdefault(task, {})[model] = run(model)
            _save(path, results)
    board = suite_tables(results)
    tmp = out / f"leaderboard{suffix}.md.tmp"
    tmp.write_text(board)
    os.replace(tmp, out / f"leaderboard{suffix}.md")
    print(board)
    return results
