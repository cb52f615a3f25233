"""Whole training epochs of the same model built from gnnagg's layers and
from PyG's, same weights and same batches, side by side.

    python benchmarks/train_speed.py                       # every case
    python benchmarks/train_speed.py --cases pna-molhiv --rounds 3
    python benchmarks/train_speed.py --json out.json

Cases:

* ``gat-cora``: the GAT paper's Cora network (2 layers, 8 heads x 8,
  dropout 0.6, Adam lr 0.005, weight decay 5e-4), one full-batch step per
  epoch; needs the raw Cora files (``--raw-dir``, default
  ``../shared/datasets/planetoid``).
* ``gatv2-arxiv``: PyG's ``GAT`` model with ``v2=True`` (3 layers, 4 heads x
  32, 128 input features, 40 classes) against gnnagg's ``GAT`` (same
  arguments), full batch on a random graph at ogbn-arxiv scale.
* ``pna-molhiv``: the PNA repository's ogbg-molhiv network (4 layers x 80,
  batch 128; ``gnnagg.bench.reproduce.pna_molhiv``) with gnnagg's and with
  PyG's ``DegreeScalerAggregation``, on ``--molhiv-batches`` batches of the
  real training split (``--root``, prepared with ``gnnagg prepare``),
  collated before timing; the epoch time is the time per batch times the
  258 batches of an epoch.

Each side runs in its own process (peak resident memory above the prepared
data, as in ``speed.py``); ``--rounds R`` pairs R such measurements and
reports medians. Ratios are gnnagg / PyG.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (_peak, _reset_peak, format_row, make_row,  # noqa: E402
                   positive_int, random_graph, write_rows)

ROOT = Path(__file__).resolve().parents[1]


def _gat_cora(impl: str, args) -> Tuple[Callable[[], None], int]:
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures
    from gnnagg.bench.data import link_planetoid_raw
    from gnnagg.models import GATPaperNet
    root = link_planetoid_raw(args.raw_dir, args.cache / "Planetoid", "Cora")
    data = Planetoid(str(root), "Cora", transform=NormalizeFeatures())[0]
    torch.manual_seed(0)
    model = GATPaperNet(data.num_features, 8, 7)
    if impl == "pyg":
        from torch_geometric.nn import GATConv
        reference = GATPaperNet(data.num_features, 8, 7)
        reference.conv1 = GATConv(data.num_features, 8, heads=8, dropout=0.6)
        reference.conv2 = GATConv(64, 7, heads=1, concat=False, dropout=0.6)
        reference.load_state_dict(model.state_dict())
        model = reference
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005,
                                 weight_decay=5e-4)

    def epoch():
        model.train()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return epoch, 1


def _gatv2_arxiv(impl: str, args) -> Tuple[Callable[[], None], int]:
    from torch_geometric.nn.models import GAT as PyGGAT
    from gnnagg.models import GAT
    num_nodes = 169_343
    edge_index = random_graph(num_nodes, 2_315_598)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(num_nodes, 128, generator=gen)
    y = torch.randint(0, 40, (num_nodes,), generator=gen)
    torch.manual_seed(0)
    model = GAT(128, 128, 3, 40, v2=True, heads=4)
    if impl == "pyg":
        reference = PyGGAT(128, 128, 3, 40, v2=True, heads=4)
        reference.load_state_dict(model.state_dict())
        model = reference
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def epoch():
        model.train()
        loss = F.cross_entropy(model(x, edge_index), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return epoch, 1


def _pna_molhiv(impl: str, args) -> Tuple[Callable[[], None], int]:
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    from torch_geometric.loader import DataLoader
    from gnnagg.bench.ogb import load_ogb
    from gnnagg.bench.reproduce.pna_molhiv import PNAMolhivNet
    from gnnagg.nn.aggr import degree_histogram
    dataset = load_ogb("ogbg-molhiv", args.root)
    train = dataset[dataset.get_idx_split()["train"]]
    torch.manual_seed(0)
    loader = DataLoader(train, 128, shuffle=True)
    batches = [b for _, b in zip(range(args.molhiv_batches), loader)]
    torch.manual_seed(0)
    model = PNAMolhivNet(degree_histogram(train), backend=impl)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01,
                                 weight_decay=3e-6)

    def epoch():
        model.train()
        for batch in batches:
            out = model(batch.x, batch.edge_index, batch.batch)
            loss = F.binary_cross_entropy_with_logits(out, batch.y.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epoch, len(loader) / len(batches)


CASES: Dict[str, Callable] = {"gat-cora": _gat_cora,
                              "gatv2-arxiv": _gatv2_arxiv,
                              "pna-molhiv": _pna_molhiv}


def worker(case: str, impl: str, args) -> dict:
    """Build the case, run one warm-up epoch, then time ``repeats`` epochs
    (seconds per full epoch: the measured part times ``scale``)."""
    epoch, scale = CASES[case](impl, args)
    epoch()
    baseline = _reset_peak(torch.device("cpu"))
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        epoch()
        times.append((time.perf_counter() - start) * scale)
    return {"time_s": statistics.median(times),
            "peak_bytes": _peak(torch.device("cpu")) - baseline}


def run_isolated(case: str, impl: str, argv: List[str]) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__),
                           "--worker", case, impl] + argv,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{case}/{impl} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=positive_int, default=1)
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed epochs per measurement (median)")
    parser.add_argument("--raw-dir", default=str(
        ROOT.parent / "shared" / "datasets" / "planetoid"))
    parser.add_argument("--root", default=str(ROOT / "data" / "ogb"),
                        help="OGB root holding ogbg_molhiv")
    parser.add_argument("--molhiv-batches", type=positive_int, default=40)
    parser.add_argument("--cache", type=Path,
                        default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return []
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    passed = ["--repeats", str(args.repeats), "--raw-dir", args.raw_dir,
              "--root", args.root, "--molhiv-batches",
              str(args.molhiv_batches), "--cache", str(args.cache)]
    print("| model | data | PyG epoch (s) | gnnagg epoch (s) | time ratio | "
          "PyG peak (MB) | gnnagg peak (MB) | memory ratio |\n"
          "|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for case in cases:
        pyg, ours = [], []
        for _ in range(args.rounds):
            pyg.append(run_isolated(case, "pyg", passed))
            ours.append(run_isolated(case, "gnnagg", passed))
        model, data = case.split("-")
        rows.append(make_row(model, data, "cpu", pyg, ours))
        print(format_row(rows[-1]), flush=True)
    if args.json:
        write_rows(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
