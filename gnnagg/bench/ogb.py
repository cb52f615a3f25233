"""OGB leaderboards under the OGB protocol: official loaders, splits and
``Evaluator``; per seed, the test score at the epoch of best validation;
mean +- std over seeds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import build_model, check_model
from ..nn.aggr import degree_histogram
from .checkpoint import Checkpoint
from .distributed import (Process, broadcast, global_mean, init_distributed,
                          leave_distributed, main_first)
from .results import ResultStore, config_tag
from .training import check_positive, fit, run_seeds

GRAPH_DATASETS = ("ogbg-molhiv", "ogbg-molpcba")
NODE_DATASETS = ("ogbn-arxiv", "ogbn-products", "ogbn-proteins")
#: the OGB hyperparameter files, shipped with the package
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_config(dataset: str, model: str,
                path: Optional[str | Path] = None) -> Dict:
    """Hyperparameters: the file's ``default`` entry updated by its entry
    for ``model``. Without ``path``, the package's
    ``gnnagg/bench/configs/<dataset>.json`` when it exists."""
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


class TrainingRun(NamedTuple):
    """A model built for one seed, its optimiser, and the two callables
    :func:`fit` drives."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_epoch: Callable[[int], float]
    evaluate: Callable[[], Dict[str, float]]


def _data_parallel(model: torch.nn.Module,
                   process: Process) -> torch.nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` under torchrun."""
    if not process.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [process.device] if process.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def _rank_batch_size(config: Dict, process: Process) -> int:
    batch_size = int(config.get("batch_size", 128))
    if batch_size < process.world_size or batch_size % process.world_size:
        raise ValueError(f"batch size {batch_size} must be a multiple of the "
                         f"number of processes ({process.world_size})")
    return batch_size // process.world_size


def _shards(size: int, process: Process, seed: int):
    """Each rank's share of ``size`` training items, reshuffled per epoch
    (``set_epoch``); rank r's batches are the r-th slices of the global
    batches a single process would take."""
    from torch.utils.data import DistributedSampler
    return DistributedSampler(range(size),  # type: ignore[arg-type]
                              num_replicas=process.world_size,
                              rank=process.rank, shuffle=True, seed=seed)


def _minibatch_epoch(net: torch.nn.Module, loader, sampler,
                     optimizer: torch.optim.Optimizer, process: Process,
                     batch_loss: Callable) -> Callable[[int], float]:
    """One pass over this rank's shard of ``loader`` per epoch;
    ``batch_loss(batch)`` gives ``(loss, number of examples)``. Returns the
    loss averaged over every example of every rank."""
    def train_epoch(epoch: int) -> float:
        sampler.set_epoch(epoch)
        net.train()
        total, count = 0.0, 0
        for batch in loader:
            loss, size = batch_loss(batch.to(process.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * size
            count += size
        return global_mean(total, count, process)
    return train_epoch


def _evaluate_on_main(scores: Callable[[], Dict[str, float]],
                      process: Process) -> Callable[[], Dict[str, float]]:
    """Rank 0 evaluates (parameters are equal on every rank), every rank
    gets its scores, so all ranks stop at the same epoch."""
    def evaluate() -> Dict[str, float]:
        return broadcast(scores() if process.is_main else None, process)
    return evaluate


def _graph_task(dataset, model_name: str, config: Dict, process: Process,
                seed: int) -> TrainingRun:
    from ogb.graphproppred import Evaluator
    from torch_geometric.loader import DataLoader
    device = process.device
    split = dataset.get_idx_split()
    evaluator = Evaluator(dataset.name)
    train_set = dataset[split["train"]]
    sampler = _shards(len(train_set), process, seed)
    train = DataLoader(train_set, _rank_batch_size(config, process),
                       sampler=sampler)
    loaders = {k: DataLoader(dataset[split[k]], config.get("batch_size", 128))
               for k in ("valid", "test")}
    deg = degree_histogram(train_set) if model_name == "pna" else None
    model = build_model(model_name, dataset.num_features, dataset.num_tasks,
                        graph_level=True, molecular=True, deg=deg,
                        **config.get("model", {})).to(device)
    net = _data_parallel(model, process)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.get("lr",
                                                                   1e-3))

    def batch_loss(batch):
        out = net(batch.x, batch.edge_index, batch.edge_attr, batch.batch)
        labelled = batch.y == batch.y  # molpcba has missing labels
        return F.binary_cross_entropy_with_logits(
            out[labelled], batch.y[labelled].float()), batch.num_graphs

    train_epoch = _minibatch_epoch(net, train, sampler, optimizer, process,
                                   batch_loss)

    @torch.no_grad()
    def scores() -> Dict[str, float]:
        model.eval()
        out = {}
        for key, loader in loaders.items():
            preds, labels = [], []
            for batch in loader:
                batch = batch.to(device)
                preds.append(model(batch.x, batch.edge_index, batch.edge_attr,
                                   batch.batch).cpu())
                labels.append(batch.y.cpu())
            result = evaluator.eval({"y_true": torch.cat(labels),
                                     "y_pred": torch.cat(preds)})
            out[key] = float(result[evaluator.eval_metric])
        return out

    return TrainingRun(model, optimizer, train_epoch,
                       _evaluate_on_main(scores, process))


def _node_data(dataset):
    """The graph of an OGB node data set as the runners train on it:
    ogbn-proteins gets node features from the mean of incident edge
    features (OGB's examples), the others an undirected graph."""
    from torch_geometric.utils import scatter, to_undirected
    data = dataset[0]
    if dataset.name == "ogbn-proteins":
        data.x = scatter(data.edge_attr, data.edge_index[0], 0,
                         dim_size=data.num_nodes, reduce="mean")
    else:
        data.edge_index = to_undirected(data.edge_index,
                                        num_nodes=data.num_nodes)
    return data


def _layer_fanout(config: Dict, model: torch.nn.Module) -> List[int]:
    """Neighbours sampled per hop, one entry per layer of ``model``: the
    config's ``fanout`` (checked against the depth), else 15, 10, 5."""
    layers = len(getattr(model, "convs", ()))
    fanout = [int(f) for f in config.get("fanout", [15, 10, 5][:layers])]
    if layers and len(fanout) != layers:
        raise ValueError(f"--fanout gives {len(fanout)} hops but the model "
                         f"has {layers} layers: give one number per layer")
    return fanout


def _node_task(dataset, model_name: str, config: Dict, process: Process,
               seed: int) -> TrainingRun:
    """Full-batch training, or with ``batch_size`` in the config mini-batches
    of PyG's ``NeighborLoader`` (``fanout`` neighbours per hop) and
    full-neighbour layer-wise inference for evaluation."""
    from ogb.nodeproppred import Evaluator
    from torch_geometric.data import Data
    from ..loader import neighbor_loader
    device = process.device
    data = _node_data(dataset)
    split = dataset.get_idx_split()
    evaluator = Evaluator(dataset.name)
    multilabel = dataset.name == "ogbn-proteins"
    out_channels = dataset.num_tasks if multilabel else dataset.num_classes
    deg = degree_histogram([data]) if model_name == "pna" else None
    model = build_model(model_name, data.num_features, out_channels,
                        deg=deg, **config.get("model", {})).to(device)
    net = _data_parallel(model, process)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.get("lr",
                                                                   1e-2))
    train_idx = split["train"]
    mini_batch = config.get("batch_size") is not None
    if process.distributed and not mini_batch:
        raise ValueError("data-parallel training splits mini-batches across "
                         "processes: pass --batch-size")

    def loss_of(out: Tensor, y: Tensor) -> Tensor:
        return (F.binary_cross_entropy_with_logits(out, y.float())
                if multilabel else F.cross_entropy(out, y.view(-1)))

    if mini_batch:
        sampler = _shards(train_idx.numel(), process, seed)
        train = neighbor_loader(data, _layer_fanout(config, model),
                                input_nodes=train_idx,
                                batch_size=_rank_batch_size(config, process),
                                sampler=sampler)
        layerwise = hasattr(model, "inference")
        hops = neighbor_loader(Data(edge_index=data.edge_index,
                                    num_nodes=data.num_nodes), [-1],
                               batch_size=config.get("eval_batch_size", 4096))

        def batch_loss(batch):
            size = batch.batch_size
            out = net(batch.x, batch.edge_index)[:size]
            return loss_of(out, batch.y[:size]), size

        train_epoch = _minibatch_epoch(net, train, sampler, optimizer,
                                       process, batch_loss)
    else:
        data = data.to(device)
        layerwise = False
        idx = train_idx.to(device)

        def train_epoch(epoch: int) -> float:
            net.train()
            loss = loss_of(net(data.x, data.edge_index)[idx], data.y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return float(loss.detach())

    @torch.no_grad()
    def scores() -> Dict[str, float]:
        model.eval()
        x = data.x.to(device)
        out = (model.inference(x, hops)  # type: ignore[operator]
               if layerwise
               else model(x, data.edge_index.to(device)))
        pred = out if multilabel else out.argmax(-1, keepdim=True)
        return {key: float(evaluator.eval({
            "y_true": data.y[split[key]].cpu(),
            "y_pred": pred[split[key]].cpu()})[evaluator.eval_metric])
            for key in ("valid", "test")}

    return TrainingRun(model, optimizer, train_epoch,
                       _evaluate_on_main(scores, process))


def run_ogb(dataset_name: str, model: str, runs: int = 10,
            epochs: Optional[int] = None, root: str = "data/ogb",
            out_dir: str = "results/ogb", device: str = "cpu",
            config_path: Optional[str] = None,
            overrides: Optional[Dict] = None) -> ResultStore:
    """``runs`` seeds of ``model`` on an OGB data set; each finished seed is
    appended to ``out_dir/results.jsonl`` and skipped when run again, and
    every seed is checkpointed every epoch under ``out_dir/checkpoints``
    (the file of a finished seed holds its last epoch), and a seed in
    progress resumes from there. Under ``torchrun`` the
    processes train one model data-parallel; rank 0 writes."""
    check_model(model)
    process = init_distributed(device)
    config = dict(load_config(dataset_name, model, config_path),
                  **(overrides or {}))
    config["epochs"] = config.get("epochs", 100) if epochs is None else epochs
    check_positive(epochs=config["epochs"], runs=runs)
    dataset = main_first(lambda: load_ogb(dataset_name, root), process)
    task = _graph_task if dataset_name in GRAPH_DATASETS else _node_task
    store = ResultStore(out_dir)
    metric = {"ogbg-molhiv": "rocauc", "ogbg-molpcba": "ap",
              "ogbn-arxiv": "acc", "ogbn-products": "acc",
              "ogbn-proteins": "rocauc"}[dataset_name]

    def run_one(seed: int) -> dict:
        run = task(dataset, model, config, process, seed)
        checkpoint = Checkpoint(
            store.out_dir / "checkpoints" /
            f"{dataset_name}-{model}-seed{seed}-{config_tag(config)}.pt",
            run.model, run.optimizer, process)
        result = fit(run.train_epoch, run.evaluate, config["epochs"],
                     config.get("patience"), desc=f"seed {seed}",
                     checkpoint=checkpoint, show_progress=process.is_main)
        return dict(result, params=sum(p.numel()
                                       for p in run.model.parameters()),
                    processes=process.world_size)

    run_seeds(store, dataset_name, model, config, runs, run_one, metric,
              process)
    leave_distributed(process)
    return store
