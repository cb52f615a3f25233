"""OGB leaderboards under the OGB protocol: official loaders, splits and
``Evaluator``; per seed, the test score at the epoch of best validation;
mean +- std over seeds."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, Optional

os.environ.setdefault("OUTDATED_IGNORE", "1")  # ogb's PyPI check at import

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ..models import build_model, check_model  # noqa: E402
from ..nn.aggr import degree_histogram  # noqa: E402
from .results import ResultStore  # noqa: E402
from .training import fit, run_seeds  # noqa: E402

GRAPH_DATASETS = ("ogbg-molhiv", "ogbg-molpcba")
NODE_DATASETS = ("ogbn-arxiv", "ogbn-proteins")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"


def load_config(dataset: str, model: str,
                path: Optional[str] = None) -> Dict:
    """Hyperparameters: the file's ``default`` entry updated by its entry
    for ``model``. Without ``path``, ``benchmarks/configs/<dataset>.json``
    when it exists."""
    if path is None:
        candidate = CONFIG_DIR / f"{dataset}.json"
        if not candidate.is_file():
            return {}
        path = candidate
    try:
        with open(path) as handle:
            table = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") \
            from None
    except json.JSONDecodeError as error:
        raise ValueError(f"config file {path} is not valid JSON: {error}") \
            from None
    return dict(table.get("default", {}), **table.get(model, {}))


def _pyg_safe_globals():
    """PyG classes inside OGB's processed files, allowed for
    ``torch.load(weights_only=True)`` (torch >= 2.6)."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    return torch.serialization.safe_globals([DataEdgeAttr, DataTensorAttr,
                                             GlobalStorage])


def load_ogb(name: str, root: str):
    """OGB's own PyG dataset class for ``name`` under ``root`` (it downloads
    when the data are missing and the network allows)."""
    if name in GRAPH_DATASETS:
        from ogb.graphproppred import PygGraphPropPredDataset as Dataset
    elif name in NODE_DATASETS:
        from ogb.nodeproppred import PygNodePropPredDataset as Dataset
    else:
        hint = (" (Planetoid data sets: `gnnagg planetoid`)"
                if name in ("Cora", "CiteSeer", "PubMed") else "")
        raise ValueError(f"unknown OGB data set {name!r}; choose one of "
                         f"{', '.join(GRAPH_DATASETS + NODE_DATASETS)}{hint}")
    folder = Path(root) / name.replace("-", "_")
    existed = folder.exists()
    try:
        with _pyg_safe_globals():
            return Dataset(name, root)
    except (OSError, EOFError) as error:
        if not existed:  # leave no half-made folder behind
            shutil.rmtree(folder, ignore_errors=True)
        prepare = (f" or build it with `gnnagg prepare {name} --from HIV.csv "
                   f"--root {root}`" if name == "ogbg-molhiv" else "")
        raise FileNotFoundError(
            f"{name} is not under {root} and could not be downloaded "
            f"({error.__class__.__name__}): pass --root to its folder"
            f"{prepare}") from None


def _graph_task(dataset, model_name: str, config: Dict, device: str):
    from ogb.graphproppred import Evaluator
    from torch_geometric.loader import DataLoader
    split = dataset.get_idx_split()
    evaluator = Evaluator(dataset.name)
    batch_size = config.get("batch_size", 128)
    train = DataLoader(dataset[split["train"]], batch_size, shuffle=True)
    loaders = {k: DataLoader(dataset[split[k]], batch_size)
               for k in ("valid", "test")}
    deg = degree_histogram(dataset[split["train"]]) if model_name == "pna" \
        else None
    model = build_model(model_name, dataset.num_features, dataset.num_tasks,
                        graph_level=True, molecular=True, deg=deg,
                        **config.get("model", {})).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.get("lr",
                                                                   1e-3))

    def train_epoch() -> float:
        model.train()
        total, count = 0.0, 0
        for batch in train:
            batch = batch.to(device)
            out = model(batch.x, batch.edge_index, batch.edge_attr,
                        batch.batch)
            labelled = batch.y == batch.y  # molpcba has missing labels
            loss = F.binary_cross_entropy_with_logits(
                out[labelled], batch.y[labelled].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss) * batch.num_graphs, \
                count + batch.num_graphs
        return total / max(count, 1)

    @torch.no_grad()
    def evaluate() -> Dict[str, float]:
        model.eval()
        scores = {}
        for key, loader in loaders.items():
            preds, labels = [], []
            for batch in loader:
                batch = batch.to(device)
                preds.append(model(batch.x, batch.edge_index, batch.edge_attr,
                                   batch.batch).cpu())
                labels.append(batch.y.cpu())
            result = evaluator.eval({"y_true": torch.cat(labels),
                                     "y_pred": torch.cat(preds)})
            scores[key] = float(result[evaluator.eval_metric])
        return scores

    return model, train_epoch, evaluate, evaluator.eval_metric


def _node_task(dataset, model_name: str, config: Dict, device: str):
    from ogb.nodeproppred import Evaluator
    from torch_geometric.utils import scatter, to_undirected
    data = dataset[0]
    split = dataset.get_idx_split()
    evaluator = Evaluator(dataset.name)
    multilabel = dataset.name == "ogbn-proteins"
    if multilabel:  # node features: mean of incident edge features
        data.x = scatter(data.edge_attr, data.edge_index[0], 0,
                         dim_size=data.num_nodes, reduce="mean")
    else:
        data.edge_index = to_undirected(data.edge_index, num_nodes=data.num_nodes)
    data = data.to(device)
    out_channels = dataset.num_tasks if multilabel else dataset.num_classes
    deg = degree_histogram([data]) if model_name == "pna" else None
    model = build_model(model_name, data.num_features, out_channels,
                        deg=deg, **config.get("model", {})).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.get("lr",
                                                                   1e-2))
    train_idx = split["train"].to(device)

    def train_epoch() -> float:
        model.train()
        out = model(data.x, data.edge_index)[train_idx]
        loss = (F.binary_cross_entropy_with_logits(
                    out, data.y[train_idx].float()) if multilabel else
                F.cross_entropy(out, data.y[train_idx].view(-1)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    @torch.no_grad()
    def evaluate() -> Dict[str, float]:
        model.eval()
        out = model(data.x, data.edge_index)
        pred = out if multilabel else out.argmax(-1, keepdim=True)
        return {key: float(evaluator.eval({
            "y_true": data.y[split[key]].cpu(),
            "y_pred": pred[split[key]].cpu()})[evaluator.eval_metric])
            for key in ("valid", "test")}

    return model, train_epoch, evaluate, evaluator.eval_metric


def run_ogb(dataset_name: str, model: str, runs: int = 10,
            epochs: Optional[int] = None, root: str = "data/ogb",
            out_dir: str = "results/ogb", device: str = "cpu",
            config_path: Optional[str] = None) -> ResultStore:
    """``runs`` seeds of ``model`` on an OGB data set; each finished seed is
    appended to ``out_dir/results.jsonl`` and skipped when run again."""
    check_model(model)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not "
                         "available on this machine")
    config = load_config(dataset_name, model, config_path)
    epochs = epochs or config.get("epochs", 100)
    dataset = load_ogb(dataset_name, root)
    task = _graph_task if dataset_name in GRAPH_DATASETS else _node_task
    store = ResultStore(out_dir)
    metric = {"ogbg-molhiv": "rocauc", "ogbg-molpcba": "ap",
              "ogbn-arxiv": "acc", "ogbn-proteins": "rocauc"}[dataset_name]

    def run_one(seed: int) -> dict:
        net, train_epoch, evaluate, _ = task(dataset, model, config, device)
        result = fit(train_epoch, evaluate, epochs, config.get("patience"),
                     desc=f"seed {seed}")
        return dict(result, params=sum(p.numel() for p in net.parameters()))

    run_seeds(store, dataset_name, model, dict(config, epochs=epochs), runs,
              run_one, metric)
    return store
