"""Mini-batch training throughput of GAT and PNA with 1 and 2 processes.

A synthetic power-law graph (2M nodes, 40M directed edges by default;
endpoints drawn in chunks from a Zipf-like law, hubs in both directions) is
generated once into a cache file and memory-mapped by every process. Each
configuration trains with PyG's ``NeighborLoader`` (fanout 15,10,5, global
batch 1024) under ``DistributedDataParallel`` (gloo) with the processes
sharing this machine's cores, and reports training seed nodes per second,
the median step split into sampling, CSR build, forward and backward
(+ optimiser step and gradient all-reduce), and each process's peak RSS
(the memory-mapped graph counts in every process that touched it).

    python benchmarks/scaling.py                                  # full size
    python benchmarks/scaling.py --nodes 200000 --edges 4000000   # quick
    python benchmarks/scaling.py --json scaling.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gnnagg.bench.distributed import Process, leave_distributed  # noqa: E402
from gnnagg.loader import neighbor_loader  # noqa: E402
from gnnagg.models import build_model, check_model  # noqa: E402
from gnnagg.nn.aggr import degree_histogram  # noqa: E402
from gnnagg.ops import csr_view  # noqa: E402
from speed import positive_int  # noqa: E402


def powerlaw_graph(num_nodes: int, num_edges: int, exponent: float = 3.0,
                   chunk: int = 4_000_000, seed: int = 0) -> torch.Tensor:
    """``(2, E)`` edges sorted by destination; sources and destinations
    drawn independently with P(node of rank r) ~ r^(-1/(exponent-1)) under
    two random rankings, ``chunk`` edges at a time."""
    gen = torch.Generator().manual_seed(seed)
    rank = torch.arange(1, num_nodes + 1, dtype=torch.float64)
    cdf = torch.cumsum(rank.pow(-1.0 / (exponent - 1.0)), 0)
    cdf /= cdf[-1].clone()
    rankings = [torch.randperm(num_nodes, generator=gen) for _ in range(2)]
    edge_index = torch.empty(2, num_edges, dtype=torch.long)
    for start in range(0, num_edges, chunk):
        size = min(chunk, num_edges - start)
        for side in (0, 1):
            draw = torch.searchsorted(cdf, torch.rand(
                size, generator=gen, dtype=torch.float64))
            edge_index[side, start:start + size] = \
                rankings[side][draw.clamp_(max=num_nodes - 1)]
    order = torch.argsort(edge_index[1], stable=True)
    return edge_index[:, order]


def load_graph(args) -> dict:
    """The cached graph (built on first use), memory-mapped."""
    path = Path(args.cache_dir) / (f"powerlaw_{args.nodes}_{args.edges}_"
                                   f"{args.exponent}_{args.features}.pt")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(1)
        graph = {"edge_index": powerlaw_graph(args.nodes, args.edges,
                                              args.exponent),
                 "x": torch.randn(args.nodes, args.features, generator=gen),
                 "y": torch.randint(0, args.classes, (args.nodes,),
                                    generator=gen)}
        tmp = path.with_suffix(".tmp")
        torch.save(graph, tmp)
        os.replace(tmp, path)
    return torch.load(path, mmap=True)


def worker(rank: int, world_size: int, model_name: str, args,
           results: dict) -> None:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler
    from torch_geometric.data import Data
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    if world_size > 1:
        torch.distributed.init_process_group(
            "gloo", rank=rank, world_size=world_size,
            init_method=f"tcp://127.0.0.1:{args.port}")
    graph = load_graph(args)
    data = Data(x=graph["x"], y=graph["y"], edge_index=graph["edge_index"],
                num_nodes=args.nodes)
    train_idx = torch.randperm(args.nodes, generator=torch.Generator()
                               .manual_seed(2))[:args.nodes // 10]
    sampler = DistributedSampler(range(train_idx.numel()), world_size, rank,
                                 shuffle=True, seed=0)
    loader = neighbor_loader(data, args.fanout, input_nodes=train_idx,
                             batch_size=args.batch_size // world_size,
                             sampler=sampler, is_sorted=True)
    torch.manual_seed(0)
    deg = degree_histogram([data]) if model_name == "pna" else None
    model = build_model(model_name, args.features, args.classes, deg=deg,
                        hidden_channels=args.hidden,
                        num_layers=len(args.fanout), heads=4)
    net = DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    parts = {"sampling": [], "csr": [], "forward": [], "backward": []}
    seeds = 0  # trained seed nodes in the timed steps (a last batch is short)
    batches = _epochs(loader, sampler)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            wall = time.perf_counter()
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        csr_view(batch.edge_index, batch.num_nodes,
                 self_loops=model_name in ("gat", "gatv2"))
        t2 = time.perf_counter()
        out = net(batch.x, batch.edge_index)[:batch.batch_size]
        loss = torch.nn.functional.cross_entropy(out,
                                                 batch.y[:batch.batch_size])
        t3 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t4 = time.perf_counter()
        if step >= args.warmup:
            seeds += batch.batch_size
            for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2,
                                            t4 - t3)):
                parts[key].append(seconds)
    wall = time.perf_counter() - wall
    row = {key: statistics.median(values) for key, values in parts.items()}
    row.update(wall=wall, peak_rss_gb=resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 2**20,
        subgraph_nodes=batch.num_nodes, subgraph_edges=batch.num_edges,
        seeds=seeds)
    results[rank] = row
    leave_distributed(Process(rank, world_size))


def _epochs(loader, sampler):
    """The loader's batches, epoch after epoch (a new shuffle each), so that
    any number of steps can be timed on a small graph."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def run(model_name: str, world_size: int, args) -> dict:
    import torch.multiprocessing as mp
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, (world_size, model_name, args, results),
                 nprocs=world_size)
        ranks = [results[r] for r in range(world_size)]
    wall = max(r["wall"] for r in ranks)
    step = {key: statistics.mean(r[key] for r in ranks)
            for key in ("sampling", "csr", "forward", "backward")}
    seeds = sum(r["seeds"] for r in ranks)
    return {"model": model_name, "processes": world_size, "seeds": seeds,
            "seeds_per_s": seeds / wall,
            "step_s": step, "peak_rss_gb": [r["peak_rss_gb"] for r in ranks],
            "subgraph": (ranks[0]["subgraph_nodes"],
                         ranks[0]["subgraph_edges"])}


def _counts(text: str) -> list:
    """argparse type of ``--processes``: comma-separated counts of at least
    1."""
    return [positive_int(count) for count in text.split(",")]


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2_000_000)
    parser.add_argument("--edges", type=int, default=40_000_000)
    parser.add_argument("--exponent", type=float, default=3.0,
                        help="degree exponent: P(degree k) ~ k^-exponent")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--fanout", type=lambda s: [int(f) for f in
                                                    s.split(",")],
                        default=[15, 10, 5])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=positive_int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default="gat,pna")
    parser.add_argument("--processes", default="1,2",
                        type=_counts,
                        help="comma-separated process counts")
    parser.add_argument("--port", type=int, default=29511)
    parser.add_argument("--cache-dir", default=str(
        Path(__file__).resolve().parent / ".cache"))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        models = [check_model(name) for name in args.models.split(",")]
    except ValueError as error:
        parser.error(f"--models: {error}")
    if args.nodes < 10 * max(args.processes):
        parser.error("--nodes: at least 10 per process (a tenth of the "
                     "nodes are the seeds)")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    start = time.perf_counter()
    load_graph(args)
    print(f"graph ready ({args.nodes:,} nodes, {args.edges:,} edges) in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    rows = [run(model, world, args) for model in models
            for world in args.processes]
    print("| model | processes | seeds / s | sampling | CSR build | forward "
          "| backward+step | sampled nodes / edges per rank | peak RSS per "
          "process (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        step = row["step_s"]
        total = sum(step.values())
        shares = " | ".join(f"{step[k]:.3f} s ({100 * step[k] / total:.0f}%)"
                            for k in ("sampling", "csr", "forward",
                                      "backward"))
        print(f"| {row['model']} | {row['processes']} | "
              f"{row['seeds_per_s']:.0f} | {shares} | "
              f"{row['subgraph'][0]:,} / {row['subgraph'][1]:,} | "
              f"{', '.join(f'{g:.2f}' for g in row['peak_rss_gb'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
