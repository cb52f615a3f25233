"""Native torch against torch-scatter, per segment reduction.

    python benchmarks/backends.py [--device cpu|cuda]

Times gnnagg's native segment reduction (on the CPU a sparse product with
reduction for float sums, means, maxima and minima, else
``torch.segment_reduce``) and ``torch_scatter.segment_csr`` (forward and
backward) for each reduction on the CSR view of an ogbn-arxiv-scale random
graph with 4 x 32 features per edge, and prints the time ratio
torch-scatter / native. A reduction where the ratio is below 1 belongs in
``gnnagg.ops.backend.TORCH_SCATTER_FASTER`` for that device.
"""
import argparse
import statistics

import torch

from gnnagg.ops import csr_view, has_torch_scatter, segment_reduce, set_backend
from gnnagg.ops.backend import REDUCTIONS
from speed import timings


def _time(fn, repeats=5):
    return statistics.median(timings(fn, repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nodes", type=int, default=169_343)
    parser.add_argument("--edges", type=int, default=2_315_598)
    args = parser.parse_args()
    if not has_torch_scatter():
        raise SystemExit("torch-scatter is not installed: "
                         "pip install --no-build-isolation torch-scatter")
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, args.nodes, (2, args.edges), generator=gen)
    csr = csr_view(edge_index.to(args.device), args.nodes)
    src = torch.randn(args.edges, 128, generator=gen).to(args.device)
    src.requires_grad_()
    print("| reduction | native (s) | torch-scatter (s) | ratio |\n|---|---|---|---|")
    for reduce in REDUCTIONS:
        times = {}
        for backend in ("torch", "torch_scatter"):
            set_backend(backend)
            times[backend] = _time(lambda reduce=reduce: segment_reduce(
                src, csr.rowptr, reduce).sum().backward())
        set_backend("auto")
        print(f"| {reduce} | {times['torch']:.3f} | "
              f"{times['torch_scatter']:.3f} | "
              f"{times['torch_scatter'] / times['torch']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
