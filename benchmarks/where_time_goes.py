"""Where one forward+backward step of a layer spends its time, gnnagg's and
PyG's side by side: ``torch.profiler``'s operators sorted by device time
(CUDA) or CPU time, and on CUDA the host time of each operator beside its
device time, which shows a host-bound (launch-bound) kernel.

    python benchmarks/where_time_goes.py --layers GATv2Conv,PNAConv --device cuda
    python benchmarks/where_time_goes.py --layers GATConv --graphs molecules

The layers, graphs, weights and inputs are ``benchmarks/speed.py``'s.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import speed


def profile_step(case: str, impl: str, graph: torch.Tensor,
                 device: torch.device, steps: int, rows: int) -> str:
    """The profiler's table of ``steps`` forward+backward steps after three
    warm-up steps."""
    build, make_inputs = speed.CASES[case]
    module = build(impl, graph).to(device)
    args, kwargs = make_inputs(graph, device)
    with torch.no_grad():
        grad = torch.randn_like(module(*args, **kwargs))

    def step():
        module(*args, **kwargs).backward(grad)
        module.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows,
                                     max_name_column_width=60)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="GATConv,GATv2Conv,PNAConv",
                        help=f"comma-separated, from {list(speed.CASES)}")
    parser.add_argument("--graphs", default="arxiv",
                        help=f"comma-separated, from {list(speed.GRAPHS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=speed.positive_int, default=3)
    parser.add_argument("--rows", type=speed.positive_int, default=15)
    args = parser.parse_args(argv)
    cases, graphs = args.layers.split(","), args.graphs.split(",")
    unknown = [c for c in cases if c not in speed.CASES] + \
        [g for g in graphs if g not in speed.GRAPHS]
    if unknown:
        parser.error(f"unknown layer or graph: {', '.join(unknown)}")
    device = torch.device(args.device)
    for graph_name in graphs:
        graph = speed.GRAPHS[graph_name]()
        for case in cases:
            for impl in ("pyg", "gnnagg"):
                print(f"===== {case} on {graph_name}, {impl}, {args.steps} "
                      f"steps on {device}", flush=True)
                print(profile_step(case, impl, graph, device, args.steps,
                                   args.rows), flush=True)


if __name__ == "__main__":
    main()
