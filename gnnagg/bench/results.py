"""Run results: a JSON-lines file written atomically after every run, so an
interrupted job resumes where it stopped, plus the leaderboard (Markdown)
and learning curves (PNG) written beside it."""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
import warnings
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set

import torch


#: fields every run record has; a line without them is not a record
REQUIRED_FIELDS = frozenset({"dataset", "model", "seed", "test", "valid"})


def _parse_record(line: str) -> Optional[dict]:
    """The record a ``results.jsonl`` line holds, or None if it holds no
    whole one (truncated, garbage, a field missing)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if isinstance(record, dict) and REQUIRED_FIELDS <= record.keys():
        return record
    return None


class ResultStore:
    """``results.jsonl`` in ``out_dir``: one record per finished run
    (dataset, model, seed, scores, curves)."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / "results.jsonl"

    def records(self) -> List[dict]:
        """Every good record. Lines that are not a whole record (truncated,
        garbage) are set aside: the file as it was is kept as
        ``results.jsonl.corrupt-<time>``, a warning names both, and
        ``results.jsonl`` keeps the good lines, so a resumed job loses no
        finished run and redoes only the damaged ones."""
        if not self.path.exists():
            return []
        good, bad = [], []
        for number, line in enumerate(self.path.read_text(
                errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                bad.append(number)
            else:
                good.append(record)
        if bad:
            kept = set_aside(self.path)
            atomic_write(self.path, "".join(json.dumps(r) + "\n"
                                             for r in good))
            warnings.warn(f"{self.path}: line(s) {bad} are not whole "
                          f"records; the file as it was is kept as {kept} "
                          f"and those runs will be redone", stacklevel=2)
        return good

    def completed_seeds(self, dataset: str, model: str,
                        config: dict) -> Set[int]:
        """Seeds already finished for this dataset, model and config."""
        return {r["seed"] for r in self.records()
                if r["dataset"] == dataset and r["model"] == model
                and r.get("config") == config}

    def adopt(self, path: str | os.PathLike) -> int:
        """Take the finished runs recorded in ``path`` (another
        ``results.jsonl``, such as a committed copy) as this store's: each
        record whose dataset, model, seed and config this store lacks is
        appended, so its run is not run again. Returns how many were.
        A line of ``path`` that is not a whole record is a ``ValueError``
        (the file is not this store's to repair)."""
        adopted = []
        for number, line in enumerate(Path(path).read_text().splitlines(),
                                      start=1):
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                raise ValueError(f"records: line {number} of {path} is not "
                                 f"a whole record")
            adopted.append(record)

        def run_of(record: dict) -> tuple:
            return (record["dataset"], record["model"], record["seed"],
                    config_tag(record.get("config", {})))

        known = {run_of(r) for r in self.records()}
        new = [r for r in adopted if run_of(r) not in known]
        if new:
            text = self.path.read_text() if self.path.exists() else ""
            atomic_write(self.path, text + "".join(json.dumps(r) + "\n"
                                                   for r in new))
        return len(new)

    def append(self, record: dict) -> None:
        """Add one record: the whole file is rewritten to a temporary file
        and renamed over the old one, so a kill never leaves half a line."""
        text = self.path.read_text() if self.path.exists() else ""
        atomic_write(self.path, text + json.dumps(record) + "\n")

    def write_reports(self, metric: str) -> None:
        """``leaderboard.md`` and ``curves.png`` from all records."""
        records = self.records()
        atomic_write(self.out_dir / "leaderboard.md",
                      leaderboard(records, metric))
        plot_curves(records, self.out_dir / "curves.png", metric)


def cached(cache: str | os.PathLike, name: str, make: Callable):
    """Generated data, kept in ``cache/name.pt`` (written atomically; a
    damaged file is set aside and the data made again)."""
    cache = Path(cache)
    path = cache / f"{name}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=False)  # our own cache
        except Exception as error:  # any damage: set aside, make again
            kept = set_aside(path)
            warnings.warn(f"{path} is damaged ({type(error).__name__}); "
                          f"kept as {kept}, made again", stacklevel=2)
    data = make()
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return data


def set_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt-<time>`` (never deleted:
    the user may want it) and return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
    os.replace(path, target)
    return target


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (``<name>.tmp``, which no pattern
    for the finished files matches) to write to; when the block ends it is
    renamed over ``path``, so a kill leaves the old file or the new one,
    never half of one. If the block raises, the temporary file is removed
    and ``path`` untouched."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save a matplotlib figure as ``path`` atomically (in the format of
    its suffix) and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110)
    plt.close(fig)


def config_tag(config: dict) -> str:
    """A short hash naming one hyperparameter configuration."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()) \
        .hexdigest()[:10]


def _mean_std(values: List[float]) -> str:
    """``mean +- std``, or the single value of one run (no spread)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def leaderboard(records: Iterable[dict], metric: str) -> str:
    """Markdown table: mean +- std (x100) of test and validation score at
    the epoch of best validation, per dataset, model and configuration (a
    model run with several configurations is listed once per configuration,
    tagged ``model [config tag]``), best test first."""
    groups: Dict[tuple, List[dict]] = defaultdict(list)
    for record in records:
        groups[(record["dataset"], record["model"],
                config_tag(record.get("config", {})))].append(record)
    configs = Counter((dataset, model) for dataset, model, _ in groups)
    rows = []
    for (dataset, model, tag), runs in groups.items():
        if configs[(dataset, model)] > 1:
            model = f"{model} [{tag}]"
        tests = [100 * r["test"] for r in runs]
        rows.append((dataset, -statistics.mean(tests), (
            f"| {dataset} | {model} | {_mean_std(tests)} | "
            f"{_mean_std([100 * r['valid'] for r in runs])} | {len(runs)} | "
            f"{runs[0]['params']:,} | "
            f"{statistics.mean(r['time_per_epoch_s'] for r in runs):.2f} |")))
    header = (f"| data set | model | test {metric} | valid {metric} | runs | "
              "parameters | s / epoch |\n|---|---|---|---|---|---|---|")
    return "\n".join([header] + [row for *_, row in sorted(rows)]) + "\n"


def plot_curves(records: Iterable[dict], path: Path, metric: str) -> None:
    """Validation curves (mean over seeds) per dataset and model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves: Dict[tuple, List[List[float]]] = defaultdict(list)
    for record in records:
        curves[(record["dataset"], record["model"])].append(
            record["curve"]["valid"])
    datasets = sorted({d for d, _ in curves})
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), squeeze=False,
                             figsize=(5 * len(datasets), 3.5))
    for ax, dataset in zip(axes[0], datasets):
        for (d, model), runs in sorted(curves.items()):
            if d != dataset:
                continue
            length = min(len(c) for c in runs)
            mean = [statistics.mean(c[i] for c in runs)
                    for i in range(length)]
            ax.plot(range(1, length + 1), mean, label=model)
        ax.set(title=dataset, xlabel="epoch", ylabel=f"valid {metric}")
        ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
