"""Exact-match accuracy of trained ``lcm-second-min`` models by set size and
tree shape: why PyG's ``LCMAggregation`` fails on large sets.

PyG's LCM pads every batch to its largest set with zero vectors
(``to_dense_batch``) and reduces ``2^depth`` slots in a binary tree of GRU
merges. Trained on batches of sets of 2-16 elements, it sees one shape: 16
slots, 4 levels, zero leaves where a set is short. gnnagg's LCM reduces
every set over a tree of its own size (1-4 levels in training). This script
evaluates a checkpoint of the reproduction (``gnnagg reproduce
lcm-second-min`` keeps one per run while it trains, under
``OUT/lcm-second-min/checkpoints/``) on fresh sets of each size, each set
over its own tree and, for PyG's LCM, also padded to the given number of
slots (``max_num_elements``): a monoid would not care; a merge learned for
one shape does.

    python benchmarks/lcm_tree_shapes.py \\
        --checkpoint lcm-pyg=second-min-lcm-pyg-seed0-....pt \\
        --checkpoint lcm=second-min-lcm-seed0-....pt
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from gnnagg.bench.reproduce.lcm_second_min import (SecondMinimum, SetNet,
                                                   make_aggregation,
                                                   second_minimum_sets)

SIZES = [2, 3, 4, 6, 8, 12, 16, 17, 24, 32, 64]
PADS = [16, 32, 64]


def load_net(model: str, path: str) -> Tuple[SetNet, int]:
    """The reproduction's network for ``model``, with the weights of the
    checkpoint at ``path``, in evaluation mode, and the checkpoint's
    epoch."""
    checkpoint = torch.load(path, weights_only=False)
    protocol = SecondMinimum().protocol(False)
    net = SetNet(make_aggregation(model, protocol["dim"],
                                  protocol["associativity_samples"]),
                 protocol["bits"], protocol["dim"])
    net.load_state_dict(checkpoint["model"])
    return net.eval(), checkpoint["loop"]["epoch"]


def logits(net: SetNet, batch, pad: Optional[int] = None) -> Tensor:
    """``net``'s logits for the sets of ``batch``; with ``pad``, PyG's LCM
    reduces ``pad`` slots per set (the set's elements, then zero vectors)."""
    if pad is None:
        return net(batch.x, batch.batch, batch.num_graphs)
    h = sum(emb(column) for emb, column in zip(net.bits, batch.x.t()))
    h = net.aggr(net.encoder(h), batch.batch, dim_size=batch.num_graphs,
                 max_num_elements=pad)
    return net.decoder(h)


@torch.no_grad()
def accuracy(net: SetNet, sets, pad: Optional[int] = None,
             batch_size: int = 128) -> float:
    """Exact-match accuracy of :func:`logits` on ``sets``."""
    correct = 0
    for batch in DataLoader(sets, batch_size):
        predicted = logits(net, batch, pad) > 0
        correct += int((predicted == batch.y.bool()).all(-1).sum())
    return correct / len(sets)


def table(net: SetNet, sizes: Sequence[int], pads: Sequence[int],
          num_sets: int, paddable: bool) -> List[Dict[str, Optional[float]]]:
    """One row per set size: accuracy over each set's own tree
    (``"own"``), and padded to each of ``pads`` slots (``"pad N"``; where
    ``paddable``, PyG's LCM, and the sets fit; else None)."""
    rows = []
    for size in sizes:
        # seeds 100 + size: neither the training (0), validation (1) nor
        # the reproduction's test sets (2 + size)
        sets = second_minimum_sets(num_sets, 8, size, size, 100 + size)
        row: Dict[str, Optional[float]] = {"size": size,
                                           "own": accuracy(net, sets)}
        for pad in pads:
            row[f"pad {pad}"] = (accuracy(net, sets, pad)
                                 if paddable and pad >= size else None)
        rows.append(row)
    return rows


def markdown(name: str, rows: List[Dict[str, Optional[float]]]) -> str:
    columns = list(rows[0])
    lines = [f"| {name}: set size | " + " | ".join(columns[1:]) + " |",
             "|---" * len(columns) + "|"]
    for row in rows:
        cells = ["-" if row[c] is None else f"{100 * row[c]:.1f}%"
                 for c in columns[1:]]
        lines.append(f"| {row['size']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True,
                        metavar="MODEL=PATH",
                        help="a model of the reproduction (lcm, lcm-pyg, "
                        "gru, ...) and its checkpoint; repeatable")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--pads", default=",".join(map(str, PADS)))
    parser.add_argument("--sets", type=int, default=512,
                        help="sets per size")
    args = parser.parse_args(argv)
    if args.sets < 1:
        parser.error("--sets must be at least 1")
    sizes = [int(s) for s in args.sizes.split(",")]
    pads = [int(p) for p in args.pads.split(",") if p]
    if min(sizes) < 2:
        parser.error("--sizes must be at least 2 (a second minimum)")
    torch.manual_seed(0)
    results = {}
    for spec in args.checkpoint:
        model, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--checkpoint takes MODEL=PATH, got {spec!r}")
        net, epoch = load_net(model, path)
        results[model] = table(net, sizes, pads,
                               args.sets, paddable=model == "lcm-pyg")
        print(f"{model}, checkpoint of epoch {epoch}, {args.sets} sets per "
              "size:\n")
        print(markdown(model, results[model]) + "\n")
    return results


if __name__ == "__main__":
    main()
