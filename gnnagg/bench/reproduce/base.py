"""What every reproduction shares: the loop over seeds, tasks and models,
per-epoch checkpoints (a stopped run resumes at its last finished epoch),
one record per finished run, and the summary beside the paper's numbers:
``results.json``, ``results.md`` and a figure."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch_geometric import seed_everything
from tqdm.auto import tqdm

from ..checkpoint import Checkpoint
from ..results import ResultStore, atomic_write, config_tag, save_figure
from ..training import check_positive, fit


class Run(NamedTuple):
    """One model built for one seed: what :func:`~gnnagg.bench.training.fit`
    drives, an optional LR ``scheduler`` (checkpointed with the optimiser;
    ``evaluate`` steps it) and ``final``, scores computed once on the
    weights of the last epoch."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_epoch: Callable[[int], float]
    evaluate: Callable[[], Dict[str, float]]
    scheduler: Any = None
    final: Optional[Callable[[], Dict[str, float]]] = None


class Reproduction:
    """A paper's protocol. Subclasses set the class attributes and
    implement :meth:`protocol`, :meth:`build`, :meth:`metrics` and
    :meth:`figure`."""

    #: command name
    name: str = ""
    #: the paper, with its link
    paper: str = ""
    #: what is compared, one line
    compares: str = ""
    #: the paper's numbers: ``{model: {metric: value or "not available"}}``
    paper_results: Dict[str, Dict[str, Any]] = {}
    #: seeds of the full protocol (``--quick`` runs one)
    default_seeds: int = 1
    #: models that run only when asked for (``models=``)
    extra_models: List[str] = []

    def protocol(self, quick: bool) -> Dict[str, Any]:
        """Every setting of the run; ``quick`` gives a seconds-long one.
        Must hold ``models``, ``tasks``, ``epochs`` and ``patience``
        (``None``: no early stopping); ``model_epochs`` may give some models
        their own number of epochs, ``min_delta`` and ``stop_at`` refine the
        stopping rule (:func:`~gnnagg.bench.training.fit`)."""
        raise NotImplementedError

    def build(self, task: Any, model: str, seed: int,
              protocol: Dict[str, Any], cache: Path) -> Run:
        raise NotImplementedError

    def metrics(self, record: Dict[str, Any]) -> Dict[str, float]:
        """The summarised metrics of one finished run (named with its task
        where there are several)."""
        raise NotImplementedError

    def figure(self, summary: Dict[str, Any],
               records: List[Dict]) -> Any:
        """The paper's figure for ``summary``: a matplotlib ``Figure``."""
        raise NotImplementedError

    def headline(self, summary: Dict[str, Any]) -> Tuple[str, str]:
        """The paper's headline result and ours, one line each (the
        README's table)."""
        raise NotImplementedError


def ours_text(summary: Dict[str, Any], model: str, metric: str,
              scale: float = 1.0) -> str:
    """``mean +- std`` of one of our metrics (times ``scale``), or ``—``
    before it has a run."""
    value = summary["ours"].get(model, {}).get(metric)
    if value is None:
        return "—"
    text = f"{scale * value['mean']:.3g}"
    if value["n"] > 1:
        text += f" ± {scale * value['std']:.2g}"
    return text


def _portable(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so a stored
    protocol compares equal to a fresh one."""
    return json.loads(json.dumps(value))


def summarise(reproduction: Reproduction, protocol: Dict,
              records: List[Dict]) -> Dict[str, Any]:
    """``{"paper", "ours": {model: {metric: {mean, std, n}}}, "protocol",
    "epochs_run": {model: mean epochs}, "seconds_per_epoch": {...},
    "hours": training and evaluation time of all runs, "runs"}``."""
    values: Dict[str, Dict[str, List[float]]] = {}
    epochs: Dict[str, List[int]] = {}
    seconds: Dict[str, List[float]] = {}
    hours = 0.0
    for record in records:
        per_model = values.setdefault(record["model"], {})
        for metric, value in reproduction.metrics(record).items():
            per_model.setdefault(metric, []).append(float(value))
        epochs.setdefault(record["model"], []).append(record["epochs"])
        seconds.setdefault(record["model"], []).append(
            record["time_per_epoch_s"])
        hours += record.get("wall_seconds", 0.0) / 3600
    ours = {model: {metric: {
        "mean": statistics.mean(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
        for metric, v in metrics.items()} for model, metrics in values.items()}
    return {"name": reproduction.name, "paper_reference": reproduction.paper,
            "paper": reproduction.paper_results, "ours": ours,
            "protocol": protocol,
            "epochs_run": {m: statistics.mean(e) for m, e in epochs.items()},
            "seconds_per_epoch": {m: statistics.mean(s)
                                  for m, s in seconds.items()},
            "hours": hours, "runs": len(records)}


def _number(value: float) -> str:
    if abs(value) >= 1000 and float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _cell(value: Any) -> str:
    """``mean +- std (n=runs)`` of a summary (ours, or the paper's
    ``{"mean", "std"}``), a plain number, or text."""
    if isinstance(value, dict):
        text = _number(value["mean"])
        if value.get("std"):
            text += f" +- {value['std']:.2g}"
        return text + (f" (n={value['n']})" if "n" in value else "")
    if isinstance(value, (int, float)):
        return _number(value)
    return "—" if value is None else str(value)


def markdown_table(summary: Dict[str, Any]) -> str:
    """One row per (model, metric): the paper's value beside ours."""
    paper, ours = summary["paper"], summary["ours"]
    lines = [f"# {summary['name']}", "", summary["paper_reference"], "",
             f"- paper: {summary['headline']['paper']}",
             f"- ours: {summary['headline']['ours']}", "",
             "| model | metric | paper | ours |", "|---|---|---|---|"]
    for model in list(dict.fromkeys(list(paper) + list(ours))):
        metrics = list(dict.fromkeys(list(paper.get(model, {})) +
                                     list(ours.get(model, {}))))
        for metric in metrics:
            lines.append(f"| {model} | {metric} | "
                         f"{_cell(paper.get(model, {}).get(metric))} | "
                         f"{_cell(ours.get(model, {}).get(metric))} |")
    seconds = summary["seconds_per_epoch"]
    lines += ["", f"{summary['runs']} runs, {summary['hours']:.2f} hours of "
              "training and evaluation.", "",
              "Epochs run (mean over runs) and seconds per training "
              "epoch:", ""] + [
        f"- {model}: {summary['epochs_run'][model]:.0f} epochs, "
        f"{seconds[model]:.2f} s/epoch" for model in seconds]
    return "\n".join(lines) + "\n"


def checkpoint_name(task: str, model: str, seed: int,
                    protocol: Dict[str, Any]) -> str:
    """The file name of one run's checkpoint in ``OUT/NAME/checkpoints``."""
    return f"{task}-{model}-seed{seed}-{config_tag(protocol)}.pt"


def reproduce(reproduction: Reproduction, out_dir: str | Path,
              quick: bool = False, seeds: Optional[int] = None,
              models: Optional[List[str]] = None,
              records: Optional[str | Path] = None) -> Dict[str, Any]:
    """Run ``seeds`` seeds of every task and model of ``reproduction``'s
    protocol not yet recorded in ``OUT/NAME/results.jsonl`` (``NAME-quick``
    for ``quick``), resuming a stopped run from its checkpoint; after every
    finished run write ``results.json``, ``results.md`` and ``figure.png``
    there. Seeds go outermost, so a stopped job has as many seeds of every
    model. ``records``: a ``results.jsonl`` of runs finished elsewhere (the
    committed ``benchmarks/results/NAME.jsonl``), adopted first
    (:meth:`ResultStore.adopt`)."""
    protocol = _portable(reproduction.protocol(quick))
    if seeds is None:
        seeds = 1 if quick else reproduction.default_seeds
    check_positive(seeds=seeds)
    chosen = protocol["models"] if models is None else models
    available = protocol["models"] + reproduction.extra_models
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown} for "
                         f"{reproduction.name}; choose from {available}")
    folder = Path(out_dir) / (reproduction.name + ("-quick" if quick else ""))
    store = ResultStore(folder)
    if records is not None:
        store.adopt(records)
    jobs = [(seed, task, model) for seed in range(seeds)
            for task in protocol["tasks"] for model in chosen]
    for seed, task, model in tqdm(jobs, desc=reproduction.name):
        key = f"{reproduction.name}/{task}"
        if seed in store.completed_seeds(key, model, protocol):
            continue
        seed_everything(seed)
        run = reproduction.build(task, model, seed, protocol,
                                 folder / "cache")
        checkpoint = Checkpoint(
            folder / "checkpoints" / checkpoint_name(task, model, seed,
                                                     protocol),
            run.model, run.optimizer, scheduler=run.scheduler)
        epochs = protocol.get("model_epochs", {}).get(model,
                                                      protocol["epochs"])
        result = fit(run.train_epoch, run.evaluate, epochs,
                     protocol["patience"], desc=f"{task} {model} seed {seed}",
                     checkpoint=checkpoint,
                     min_delta=protocol.get("min_delta", 0.0),
                     stop_at=protocol.get("stop_at"))
        store.append({
            "dataset": key, "task": task, "model": model, "seed": seed,
            "config": protocol, **result,
            "final": run.final() if run.final is not None else {},
            "params": sum(p.numel() for p in run.model.parameters())})
        write_summary(reproduction, protocol, store)
    return write_summary(reproduction, protocol, store)


def write_summary(reproduction: Reproduction, protocol: Dict,
                  store: ResultStore) -> Dict[str, Any]:
    """``results.json``, ``results.md`` and ``figure.png`` from the runs of
    ``protocol`` in ``store``."""
    records = [r for r in store.records() if r.get("config") == protocol]
    summary = summarise(reproduction, protocol, records)
    summary["headline"] = dict(zip(("paper", "ours"),
                                   reproduction.headline(summary)))
    atomic_write(store.out_dir / "results.json",
                 json.dumps(summary, indent=1))
    atomic_write(store.out_dir / "results.md", markdown_table(summary))
    if records:
        import matplotlib
        matplotlib.use("Agg")
        save_figure(reproduction.figure(summary, records),
                    store.out_dir / "figure.png")
    return summary
