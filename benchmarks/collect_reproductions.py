"""Copy each reproduction's results (``results/reproduce/NAME/``) into
``benchmarks/results/NAME.{json,md,png}``, its finished runs' records into
``NAME.jsonl`` (which ``gnnagg reproduce NAME --records`` adopts, so a
fresh checkout does not run them again), the latest checkpoint of each
unfinished run into ``checkpoints/NAME/`` (which ``reproduce_all.sh``
resumes from on a fresh checkout; those of runs now finished are removed),
and print the README's table.

    python benchmarks/collect_reproductions.py [--out results/reproduce]
"""
import argparse
import json
import shutil
from pathlib import Path

from gnnagg.bench.reproduce import REPRODUCTIONS
from gnnagg.bench.reproduce.base import checkpoint_name
from gnnagg.bench.results import ResultStore

RESULTS = Path(__file__).resolve().parent / "results"


def keep_unfinished_checkpoints(folder: Path, kept: Path) -> None:
    """Copy the checkpoints in ``folder/checkpoints`` of the runs without a
    record in ``folder/results.jsonl`` into ``kept``; drop from ``kept``
    those of finished runs."""
    if not folder.is_dir():
        return
    finished = {checkpoint_name(r["task"], r["model"], r["seed"], r["config"])
                for r in ResultStore(folder).records()}
    for path in sorted(kept.glob("*.pt")):
        if path.name in finished:
            path.unlink()
    for path in sorted((folder / "checkpoints").glob("*.pt")):
        if path.name in finished or path.stem.endswith(".previous"):
            continue
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, kept / path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/reproduce")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    rows = ["| reproduction | paper | ours | runs, hours | command |",
            "|---|---|---|---|---|"]
    for name in REPRODUCTIONS:
        folder = Path(args.out) / name
        keep_unfinished_checkpoints(folder, RESULTS / "checkpoints" / name)
        if not (folder / "results.json").is_file():
            continue
        for source, suffix in (("results.json", "json"), ("results.md", "md"),
                               ("figure.png", "png"),
                               ("results.jsonl", "jsonl")):
            if (folder / source).is_file():
                shutil.copyfile(folder / source, RESULTS / f"{name}.{suffix}")
        summary = json.loads((folder / "results.json").read_text())
        rows.append(
            f"| [{name}](benchmarks/results/{name}.md) | "
            f"{summary['headline']['paper']} | {summary['headline']['ours']} "
            f"| {summary['runs']}, {summary['hours']:.1f} | "
            f"`gnnagg reproduce {name}` |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
