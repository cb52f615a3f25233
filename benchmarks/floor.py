"""How far each layer is from what the machine allows: its forward+backward
time as a multiple of a floor measured on the same machine in the same run.

    python benchmarks/floor.py                        # arxiv and molecules
    python benchmarks/floor.py --layers GATConv --graphs arxiv --rounds 3

The floor of a layer counts only what any implementation must do:

* its dense matrix products, forward and backward (the weight gradient,
  and the input gradient where the input needs one), each timed as one
  ``torch.mm`` of the same shape; PNA's message network on ``[x_i, x_j]``
  counts as two node-level products (it is linear);
* one streaming pass over the gathered neighbour rows per sparse product,
  forward and backward, each timed as a CSR sparse-dense product
  (``torch.sparse.mm``, MKL) of the graph with the rows' width: forward
  ``A X``, backward ``A^T G``. GATConv and PNAConv have one such product
  (the weighted sum; the statistics of all aggregators in one pass),
  GATv2Conv two (its scores read the neighbours' rows too).

Element-wise work (attention scores, softmax, scalers, activations) and
everything else are left out, so no implementation can reach the floor;
the multiple says how much time goes beyond the unavoidable products.
Each floor term is the best of ``--repeats`` runs; layer times come from
``speed.py``'s isolated workers (median of ``--repeats``), gnnagg's and
PyG's in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (GRAPHS, measure_side, positive_int, timings,  # noqa: E402
                   write_rows)

#: layer -> (dense products as (rows, inner, cols, input needs grad),
#:           sparse passes, width of the gathered rows); ``N`` = nodes
LAYERS = {
    # lin: N x 128 -> 4 heads x 32
    "GATConv": ([("N", 128, 128, False)], 1, 128),
    # lin_l, lin_r
    "GATv2Conv": ([("N", 128, 128, False), ("N", 128, 128, False)], 2, 128),
    # pre network [x_i, x_j] -> 64 as two node-level maps; post network on
    # [x, 4 aggregators x 3 scalers] -> 64; the output map 64 -> 64
    "PNAConv": ([("N", 64, 64, False), ("N", 64, 64, False),
                 ("N", 13 * 64, 64, True), ("N", 64, 64, True)], 1, 64),
}


def best(fn, repeats: int) -> float:
    return min(timings(fn, repeats))


def dense_floor(products, num_nodes: int, repeats: int) -> float:
    """Forward ``x W``, backward ``x^T g`` (and ``g W^T`` where the input
    needs a gradient), each at its best."""
    total = 0.0
    for rows, inner, cols, input_grad in products:
        rows = num_nodes if rows == "N" else rows
        x, w = torch.randn(rows, inner), torch.randn(inner, cols)
        g = torch.randn(rows, cols)
        total += best(lambda x=x, w=w: x @ w, repeats)
        total += best(lambda x=x, g=g: x.t() @ g, repeats)
        if input_grad:
            total += best(lambda g=g, w=w: g @ w.t(), repeats)
    return total


def sparse_floor(edge_index: torch.Tensor, num_nodes: int, width: int,
                 passes: int, repeats: int) -> float:
    """``passes`` forward products ``A X`` and as many backward ``A^T G``,
    each a CSR sparse-dense product at its best."""
    values = torch.rand(edge_index.size(1))
    adjacency = torch.sparse_coo_tensor(edge_index.flip(0), values,
                                        (num_nodes, num_nodes),
                                        check_invariants=False).coalesce()
    forward = adjacency.to_sparse_csr()
    backward = adjacency.t().coalesce().to_sparse_csr()
    x = torch.randn(num_nodes, width)
    one = best(lambda: torch.sparse.mm(forward, x), repeats) + \
        best(lambda: torch.sparse.mm(backward, x), repeats)
    return passes * one


def measure(layer: str, graph: str, repeats: int,
            rounds: int) -> Dict:
    edge_index = GRAPHS[graph]()
    num_nodes = int(edge_index.max()) + 1
    products, passes, width = LAYERS[layer]
    dense = dense_floor(products, num_nodes, repeats)
    sparse = sparse_floor(edge_index, num_nodes, width, passes, repeats)
    times = {"pyg": [], "gnnagg": []}
    for _ in range(rounds):
        for impl in times:
            times[impl].append(measure_side(layer, impl, graph, "cpu",
                                            repeats, 16.0)["time_s"])
    floor = dense + sparse
    row = {"layer": layer, "graph": graph, "floor_s": floor,
           "dense_s": dense, "sparse_s": sparse}
    for impl, values in times.items():
        row[f"{impl}_s"] = statistics.median(values)
        row[f"{impl}_multiple"] = row[f"{impl}_s"] / floor
    return row


def main(argv=None) -> List[Dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--graphs", default="arxiv,molecules")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--rounds", type=positive_int, default=1)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    layers, graphs = args.layers.split(","), args.graphs.split(",")
    unknown = [x for x in layers if x not in LAYERS] + \
        [g for g in graphs if g not in GRAPHS]
    if unknown:
        parser.error(f"unknown layer or graph: {unknown}")
    print("| layer | graph | floor (s) | dense | sparse | PyG (s) | PyG / "
          "floor | gnnagg (s) | gnnagg / floor |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for graph in graphs:
        for layer in layers:
            row = measure(layer, graph, args.repeats, args.rounds)
            rows.append(row)
            print(f"| {layer} | {graph} | {row['floor_s']:.4f} | "
                  f"{row['dense_s']:.4f} | {row['sparse_s']:.4f} | "
                  f"{row['pyg_s']:.4f} | {row['pyg_multiple']:.1f} | "
                  f"{row['gnnagg_s']:.4f} | {row['gnnagg_multiple']:.1f} |",
                  flush=True)
    if args.json:
        write_rows(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
