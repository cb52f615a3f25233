"""``gnnagg bench``: the papers' synthetic tasks, every layer kind side by
side, on CPU and without downloads.

A run is one size preset (:data:`PRESETS`: ``quick``, ``default``,
``full``) and one seed. Its folder ``OUT/<preset>-seed<N>-<config tag>/``
(the tag hashes the sizes, so results made with other sizes are never
mixed in) holds ``suite.json``, rewritten after every (task, model) pair so
a killed run resumes, ``leaderboard.md`` and three figures:
``lookup.png``, ``extrapolation.png`` and ``multitask.png``."""
from __future__ import annotations

import json
import math
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_max_pool, global_mean_pool
from torch_geometric import seed_everything
from tqdm.auto import tqdm

from ..models import LAYER_KINDS, make_conv
from ..nn import TANGNNConv
from ..nn.aggr import degree_histogram
from .results import atomic_write, cached, config_tag, save_figure, set_aside
from .synthetic import (GRAPH_TASKS, NODE_TASKS, degree_extrapolation,
                        dictionary_lookup, multitask_graphs)

#: sizes of each preset: ``default`` is the main job (at most 3 minutes on
#: 2 idle cores), ``full`` the longer suite, ``quick`` a smoke run
PRESETS: Dict[str, Dict[str, Any]] = {
    "full": {"lookup_k": [5, 10, 20], "lookup_graphs": 1000,
             "lookup_steps": 600, "multitask_train": 512,
             "multitask_test": 256, "multitask_epochs": 30,
             "extrapolation_train": 100, "extrapolation_test": 10,
             "extrapolation_epochs": 60},
    "default": {"lookup_k": [5, 10, 20], "lookup_graphs": 300,
                "lookup_steps": 250, "multitask_train": 192,
                "multitask_test": 128, "multitask_epochs": 30,
                "extrapolation_train": 40, "extrapolation_test": 5,
                "extrapolation_epochs": 30},
    "quick": {"lookup_k": [4], "lookup_graphs": 24, "lookup_steps": 6,
              "multitask_train": 40, "multitask_test": 20,
              "multitask_epochs": 2, "extrapolation_train": 10,
              "extrapolation_test": 2, "extrapolation_epochs": 2},
}


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
            if isinstance(conv, TANGNNConv):  # global attention per graph
                h = F.relu(conv(h, batch.edge_index, batch.batch))
            else:
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
        queries = batch.y >= 0
        return F.cross_entropy(net(batch)[queries], batch.y[queries])

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


LOOKUP_TITLE = "DictionaryLookup k={} (accuracy)"
MULTITASK_TITLE = "PNA multitask (log10 MSE)"


def _load(path: Path) -> Dict:
    """The results saved so far; a damaged file is set aside (kept as
    ``<name>.corrupt-<time>``, with a warning) and its tasks are rerun."""
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())["results"]
        if not isinstance(results, dict) or not all(
                isinstance(v, dict) for v in results.values()):
            raise ValueError("not a table of results per task")
        return results
    except (ValueError, KeyError, TypeError) as error:
        kept = set_aside(path)
        warnings.warn(f"{path} is damaged ({error!r}); kept as {kept}, its "
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


def suite_figures(results: Dict, sizes: Dict, folder: Path) -> List[Path]:
    """The suite's figures, written atomically into ``folder``: test
    accuracy against k on DictionaryLookup, error against the number of
    neighbours (log axes) for each extrapolation target, and the average
    log10 MSE of each model on PNA's multitask benchmark."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    models = list(dict.fromkeys(m for by_model in results.values()
                                for m in by_model))
    ks = [k for k in sizes["lookup_k"] if LOOKUP_TITLE.format(k) in results]
    if ks:
        fig, ax = plt.subplots(figsize=(6, 4))
        for model in models:
            points = [(k, results[LOOKUP_TITLE.format(k)][model]["test_acc"])
                      for k in ks if model in results[LOOKUP_TITLE.format(k)]]
            ax.plot(*zip(*points), marker="o", label=model)
        ax.plot(ks, [1 / k for k in ks], "k:", label="chance (1/k)")
        ax.set(xlabel="k (keys)", ylabel="test accuracy", ylim=(0, 1.02),
               title="DictionaryLookup (GATv2 paper)", xticks=ks)
        ax.legend(fontsize="small", ncol=2)
        fig.tight_layout()
        written.append(folder / "lookup.png")
        save_figure(fig, written[-1])
    targets = [(t, title) for t, (title, _) in EXTRAPOLATION.items()
               if title in results]
    if targets:
        fig, axes = plt.subplots(1, len(targets), squeeze=False,
                                 figsize=(5.5 * len(targets), 4))
        for ax, (target, title) in zip(axes[0], targets):
            for model, metrics in results[title].items():
                degrees = [int(c[len("mse_d"):]) for c in metrics
                           if c.startswith("mse_d")]
                ax.plot(degrees, [max(metrics[f"mse_d{d}"], 1e-8)
                                  for d in degrees], marker="o", label=model)
            trained = list(EXTRAPOLATION[target][1])
            ax.axvspan(trained[0], trained[-1], color="grey", alpha=0.15,
                       label="training degrees")
            ax.set(xscale="log", yscale="log", xlabel="neighbours",
                   ylabel="test MSE", title=f"extrapolation: {target}")
            ax.legend(fontsize="x-small", ncol=2)
        fig.tight_layout()
        written.append(folder / "extrapolation.png")
        save_figure(fig, written[-1])
    if MULTITASK_TITLE in results:
        by_model = results[MULTITASK_TITLE]
        fig, ax = plt.subplots(figsize=(6, 4))
        names = list(by_model)
        width = 0.4
        for offset, (column, label) in enumerate(
                (("average", "15-24 nodes (as trained)"),
                 ("large_average", "25-40 nodes"))):
            ax.bar([i + (offset - 0.5) * width for i in range(len(names))],
                   [by_model[m][column] for m in names], width, label=label)
        ax.set_xticks(range(len(names)), names, rotation=45)
        ax.axhline(0, color="k", linewidth=0.5)
        ax.set(ylabel="average log10 MSE (lower is better)",
               title="PNA multitask benchmark")
        ax.legend(fontsize="small")
        fig.tight_layout()
        written.append(folder / "multitask.png")
        save_figure(fig, written[-1])
    return written


def suite_folder(out_dir: str | Path, preset: str, seed: int) -> Path:
    """Where one preset and seed keep their results: the folder name carries
    the preset, the seed and a hash of the sizes."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of "
                         f"{', '.join(PRESETS)}")
    return Path(out_dir) / (f"{preset}-seed{seed}-"
                            f"{config_tag(PRESETS[preset])}")


def run_suite(out_dir: str | Path, preset: str = "default", seed: int = 0,
              models: Sequence[str] = LAYER_KINDS) -> Dict:
    """Run every task for every model not yet in the run's ``suite.json``
    (:func:`suite_folder`), then write the leaderboard and the figures and
    print them. Returns ``results`` (task -> model -> metrics), the run's
    ``folder``, the ``figures`` written and the ``seconds`` each (task,
    model) pair trained in this call."""
    folder = suite_folder(out_dir, preset, seed)
    sizes = PRESETS[preset]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.json"
    results = _load(path)
    cache = Path(out_dir) / "cache"
    tasks: Dict[str, Callable[[str], Dict[str, float]]] = {
        LOOKUP_TITLE.format(k): partial(lookup_task, k=k, sizes=sizes,
                                        cache=cache, seed=seed)
        for k in sizes["lookup_k"]}
    tasks[MULTITASK_TITLE] = partial(multitask_task, sizes=sizes,
                                     cache=cache, seed=seed)
    for target, (title, _) in EXTRAPOLATION.items():
        tasks[title] = partial(extrapolation_task, sizes=sizes, cache=cache,
                               seed=seed, target=target)
    seconds = {}
    for task, run in tasks.items():
        for model in tqdm(models, desc=task):
            if model in results.get(task, {}):
                continue
            start = time.perf_counter()
            results.setdefault(task, {})[model] = run(model)
            seconds[f"{task} / {model}"] = time.perf_counter() - start
            atomic_write(path, json.dumps(
                {"preset": preset, "seed": seed, "sizes": sizes,
                 "results": results}, indent=1))
    board = suite_tables(results)
    atomic_write(folder / "leaderboard.md", board)
    figures = suite_figures(results, sizes, folder)
    print(board)
    print(f"results: {path}\ntables: {folder / 'leaderboard.md'}\n"
          f"figures: " + ", ".join(str(f) for f in figures))
    return {"results": results, "folder": folder, "figures": figures,
            "seconds": seconds}
