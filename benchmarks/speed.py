"""Speed and peak memory of gnnagg's layers against PyG's, side by side.

On the CPU each (layer, graph, implementation) runs in its own subprocess,
because the peak memory of a process cannot be reset for torch's CPU
allocator (on CUDA the allocator's counter resets, and both run in this
process): the worker builds its inputs, returns freed memory to the OS, resets the
kernel's high-water mark (``/proc/self/clear_refs``), then times
forward+backward passes. Peak memory is the high-water mark of resident
memory above what the inputs already held (``max_memory_allocated`` on
CUDA). Both implementations get the same weights (PyG's ``state_dict`` is
loaded into gnnagg's layer) and the same inputs (same seed), and warm up
until their per-graph caches are built (PyG's in one step, gnnagg's CSR view
its head blocks after ``gnnagg.ops.spmm.HEAD_BLOCKS_AFTER`` more): the
times are those of a training step on a graph already seen.

    python benchmarks/speed.py                 # ogbn-arxiv-scale graph
    python benchmarks/speed.py --quick         # small graph, a minute
    python benchmarks/speed.py --json out.json # also write the rows as JSON
    python benchmarks/speed.py --compile       # both sides torch.compile'd
    python benchmarks/speed.py --layers aggr=sum,aggr=multi --graphs arxiv
    python benchmarks/speed.py --device cuda   # CUDA time, max_memory_allocated
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/speed.py  # huge pages, both sides

The workers inherit the environment, so allocator settings (huge pages,
glibc's ``MALLOC_*``) apply to both sides alike; at ogbn-arxiv scale they
move PyG's time more than gnnagg's (docs/RESULTS.md).

Reported: median forward+backward time and peak memory of each, and the
ratios gnnagg / PyG (below 1 means gnnagg is faster / leaner).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch

def random_graph(num_nodes: int, num_edges: int, seed: int = 0):
    """A random directed graph with uniformly drawn endpoints."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_nodes, (2, num_edges), generator=gen)


def molecule_batch(num_graphs: int = 128, seed: int = 0):
    """A batch of molecule-sized graphs (15-35 atoms: a random spanning
    tree plus two ring bonds, both directions), like ogbg-molhiv's
    25.5 atoms and 55 directed bonds on average."""
    gen = torch.Generator().manual_seed(seed)
    edges, offset = [], 0
    for _ in range(num_graphs):
        n = int(torch.randint(15, 36, (1,), generator=gen))
        child = torch.arange(1, n)
        parent = (torch.rand(n - 1, generator=gen) * child).long()
        ring = torch.randint(0, n, (2, 2), generator=gen)
        bonds = torch.cat([torch.stack([child, parent]), ring], dim=1)
        edges.append(torch.cat([bonds, bonds.flip(0)], dim=1) + offset)
        offset += n
    return torch.cat(edges, dim=1)


def barabasi_albert(num_nodes: int = 50_000, m: int = 5, seed: int = 0):
    """networkx's Barabasi-Albert graph, both directions: hubs of degree in
    the thousands."""
    import networkx as nx
    edges = torch.tensor(list(nx.barabasi_albert_graph(num_nodes, m,
                                                       seed=seed).edges)).t()
    return torch.cat([edges, edges.flip(0)], dim=1)


GRAPHS = {
    # ogbn-arxiv: 169,343 nodes, 1,166,243 edges, made undirected: 2.3M.
    "arxiv": lambda: random_graph(169_343, 2_315_598),
    "small": lambda: random_graph(20_000, 200_000),
    "molecules": molecule_batch,
    "ba": barabasi_albert,
    # arxiv's average in-degree (13.7) at 10k and 100k nodes
    "n10k": lambda: random_graph(10_000, 137_000),
    "n100k": lambda: random_graph(100_000, 1_370_000),
}


def _node_features(graph, device, channels):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(int(graph.max()) + 1, channels, generator=gen)
    return (x.to(device), graph.to(device)), {}


def _attention_case(name: str, in_channels=128, heads=4, out_channels=32):
    def build(impl: str, graph):
        import torch_geometric.nn as pyg_nn
        import gnnagg.nn as ours_nn
        torch.manual_seed(0)
        reference = getattr(pyg_nn, name)(in_channels, out_channels,
                                          heads=heads)
        if impl == "pyg":
            return reference
        layer = getattr(ours_nn, name)(in_channels, out_channels, heads=heads)
        layer.load_state_dict(reference.state_dict())
        return layer

    return build, lambda graph, device: _node_features(graph, device,
                                                       in_channels)


def _pna_case(channels=64):
    aggregators = ["mean", "min", "max", "std"]
    scalers = ["identity", "amplification", "attenuation"]

    def build(impl: str, graph):
        import torch_geometric.nn as pyg_nn
        import gnnagg.nn as ours_nn
        from gnnagg.nn.aggr import degree_histogram
        from torch_geometric.data import Data
        deg = degree_histogram([Data(edge_index=graph,
                                     num_nodes=int(graph.max()) + 1)])
        torch.manual_seed(0)
        reference = pyg_nn.PNAConv(channels, channels, aggregators, scalers,
                                   deg)
        if impl == "pyg":
            return reference
        layer = ours_nn.PNAConv(channels, channels, aggregators, scalers, deg)
        layer.load_state_dict(reference.state_dict())
        return layer

    return build, lambda graph, device: _node_features(graph, device,
                                                       channels)


def _lcm_case(channels=64):
    def build(impl: str, graph):
        import torch_geometric.nn.aggr as pyg_aggr
        import gnnagg.nn.aggr as ours_aggr
        torch.manual_seed(0)
        module = (pyg_aggr if impl == "pyg" else ours_aggr).LCMAggregation
        return module(channels, channels)

    def inputs(graph, device):
        index = torch.sort(graph[1]).values  # PyG's needs a sorted index
        gen = torch.Generator().manual_seed(1)
        messages = torch.randn(index.numel(), channels, generator=gen)
        return (messages.to(device).requires_grad_(), index.to(device)), \
            {"dim_size": int(graph.max()) + 1}

    return build, inputs


def _messages(graph, device, channels):
    gen = torch.Generator().manual_seed(1)
    messages = torch.randn(graph.size(1), channels, generator=gen)
    return (messages.to(device).requires_grad_(), graph[1].to(device)), \
        {"dim_size": int(graph.max()) + 1}


def _topm_case(channels=64, m=32):
    def build(impl: str, graph):
        import torch_geometric.nn.aggr as pyg_aggr
        from gnnagg.nn.aggr import TopMAttentionAggregation
        torch.manual_seed(0)
        if impl == "pyg":
            return pyg_aggr.SoftmaxAggregation(learn=True)
        return TopMAttentionAggregation(channels, m=m)

    return build, lambda graph, device: _messages(graph, device, channels)


class GlobalAttention(torch.nn.Module):
    """Full attention of every node over every node (the O(N^2) baseline
    TANGNN's top-m attention replaces)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(channels, 1,
                                                     batch_first=True)

    def forward(self, x, edge_index):
        return self.attention(x[None], x[None], x[None],
                              need_weights=False)[0][0]


def _tangnn_case(channels=64, m=32):
    def build(impl: str, graph):
        from gnnagg.nn import TANGNNConv
        torch.manual_seed(0)
        if impl == "pyg":
            return GlobalAttention(channels)
        return TANGNNConv(channels, channels, m=m)

    return build, lambda graph, device: _node_features(graph, device,
                                                       channels)


def _sage_case(aggregation: str, channels=64, sorted_edges=False):
    """PyG's SAGEConv with the aggregation of each side as ``aggr=``; with
    ``sorted_edges`` the edges come as PyG's ``EdgeIndex`` sorted by
    destination, so that ``MessagePassing`` hands both the CSR ``ptr``."""
    def make(impl: str):
        if impl == "pyg":
            import torch_geometric.nn.aggr as pyg_aggr
            if aggregation == "multi":
                return pyg_aggr.MultiAggregation(["mean", "min", "max",
                                                  "std"])
            return {"softmax": lambda: pyg_aggr.SoftmaxAggregation(
                learn=True), "powermean": lambda: pyg_aggr.
                PowerMeanAggregation(learn=True)}.get(
                    aggregation, lambda: aggregation)()
        import gnnagg.nn.aggr as ours_aggr
        if aggregation == "multi":
            return ours_aggr.MultiAggregation(["mean", "min", "max", "std"])
        return {"softmax": lambda: ours_aggr.SoftmaxAggregation(learn=True),
                "powermean": lambda: ours_aggr.PowerMeanAggregation(
                    learn=True)}.get(aggregation, lambda: ours_aggr.
                                     resolve_aggregation(aggregation))()

    def build(impl: str, graph):
        from torch_geometric.nn import SAGEConv
        torch.manual_seed(0)
        reference = SAGEConv(channels, channels, aggr=make("pyg"))
        if impl == "pyg":
            return reference
        layer = SAGEConv(channels, channels, aggr=make(impl))
        layer.load_state_dict(reference.state_dict())
        return layer

    def inputs(graph, device):
        # the aggregation reads x itself: x needs a gradient for the
        # aggregation's backward to run (and be timed)
        (x, edge_index), kwargs = _node_features(graph, device, channels)
        if sorted_edges:
            from torch_geometric import EdgeIndex
            num_nodes = x.size(0)
            edge_index = EdgeIndex(edge_index, sparse_size=(
                num_nodes, num_nodes)).sort_by("col")[0]
        return (x.requires_grad_(), edge_index), kwargs

    return build, inputs


#: layer name -> (build(impl, edge_index) -> module,
#:                inputs(edge_index, device) -> (args, kwargs))
CASES: Dict[str, Tuple[Callable, Callable]] = {
    "GATConv": _attention_case("GATConv"),
    "GATv2Conv": _attention_case("GATv2Conv"),
    "PNAConv": _pna_case(),
    "LCMAggregation": _lcm_case(),
    # PyG's SoftmaxAggregation of the same messages
    "TopMAttentionAggregation": _topm_case(),
    # the "pyg" column is full global attention (torch MultiheadAttention)
    "TANGNNConv": _tangnn_case(),
    # aggregations as aggr= of PyG's SAGEConv (64 features), gnnagg's
    # against PyG's of the same name
    **{f"aggr={name}": _sage_case(name) for name in (
        "sum", "mean", "min", "max", "var", "std", "softmax", "powermean",
        "multi")},
    # the same with the edges sorted by destination (an EdgeIndex): the
    # aggregations get PyG's CSR ``ptr`` and reduce contiguous segments
    **{f"aggr={name}-sorted": _sage_case(name, sorted_edges=True)
       for name in ("sum", "mean", "max")},
}


def positive_int(text: str) -> int:
    """argparse type of counts (repeats, rounds, steps): an int of at
    least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def timings(fn: Callable[[], object], repeats: int) -> List[float]:
    """Seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def write_rows(rows: List[dict], path: str) -> None:
    """The rows as a JSON list, written atomically to ``path``."""
    # imported here: the measuring workers run this file too and load only
    # their own side's modules
    from gnnagg.bench.results import atomic_write
    atomic_write(path, json.dumps(rows, indent=1))


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak(device: torch.device) -> int:
    """Reset the peak-memory counter; return the memory in use now."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _rss_bytes("VmRSS")


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    return _rss_bytes("VmHWM")


def worker(case: str, impl: str, graph_name: str, device_name: str,
           repeats: int, memory_cap_gb: float, compile: bool = False) -> dict:
    """Time and measure one implementation in this process, under an
    address-space cap of ``memory_cap_gb`` (CPU): running out of it is
    reported as ``{"oom": true}``."""
    import resource
    cap = int(memory_cap_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        return _measure(case, impl, graph_name, torch.device(device_name),
                        repeats, compile)
    except (MemoryError, RuntimeError) as error:
        if isinstance(error, MemoryError) or "alloc" in str(error).lower() \
                or "out of memory" in str(error).lower():
            return {"oom": True}
        raise


def _measure(case: str, impl: str, graph_name: str, device: torch.device,
             repeats: int, compile: bool = False) -> dict:
    build, make_inputs = CASES[case]
    graph = GRAPHS[graph_name]()
    module = build(impl, graph).to(device)
    if compile:
        # self-loop removal has a data-dependent size (both libraries)
        torch._dynamo.config.capture_dynamic_output_shape_ops = True
        module = torch.compile(module)
    args, kwargs = make_inputs(graph, device)
    with torch.no_grad():
        grad = torch.randn_like(module(*args, **kwargs))
    from gnnagg.ops.spmm import HEAD_BLOCKS_AFTER
    # warm up (and compile) until each side's per-graph caches are built:
    # gnnagg's CSR view builds its head blocks after a few uses
    warmups = (2 if compile else 1) + (HEAD_BLOCKS_AFTER if impl == "gnnagg"
                                       else 0)
    for _ in range(warmups):
        module(*args, **kwargs).backward(grad)
        module.zero_grad(set_to_none=True)
    baseline = _reset_peak(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        module(*args, **kwargs).backward(grad)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        module.zero_grad(set_to_none=True)
    return {"time_s": statistics.median(times),
            "peak_bytes": _peak(device) - baseline}


def measure_side(case: str, impl: str, graph: str, device: str,
                 repeats: int, memory_cap_gb: float,
                 compile: bool = False) -> dict:
    """One side's measurement: on the CPU in a fresh process (its peak
    resident memory cannot be reset), on CUDA in this one, where the
    allocator's peak counter resets and a process would only add CUDA's
    start-up; running out of device memory is reported as ``{"oom":
    true}``."""
    if torch.device(device).type == "cuda":
        if compile:
            torch._dynamo.reset()
        try:
            return _measure(case, impl, graph, torch.device(device), repeats,
                            compile)
        except torch.cuda.OutOfMemoryError:
            return {"oom": True}
        finally:
            torch.cuda.empty_cache()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", case, impl,
           "--graphs", graph, "--device", device, "--repeats", str(repeats),
           "--memory-cap-gb", str(memory_cap_gb)] + \
        (["--compile"] if compile else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{case}/{impl} on {graph} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_row(case: str, graph: str, device: str, pyg: List[dict],
             ours: List[dict]) -> dict:
    """One comparison from ``rounds`` paired measurements (one dict per
    round and side): times, peaks and ratios are medians over the rounds;
    ``time_ratios`` keeps every round's ratio. A side that ran out of memory
    has no time or peak, and no ratio is formed with it."""
    row = {"layer": case, "graph": graph, "device": device,
           "rounds": len(pyg),
           "pyg_status": "OOM" if pyg[0].get("oom") else "ok",
           "gnnagg_status": "OOM" if ours[0].get("oom") else "ok"}
    for name, results in (("pyg", pyg), ("gnnagg", ours)):
        ok = not results[0].get("oom")
        row[f"{name}_time_s"] = statistics.median(
            r["time_s"] for r in results) if ok else None
        row[f"{name}_peak_mb"] = statistics.median(
            r["peak_bytes"] for r in results) / 2**20 if ok else None
    both = row["pyg_status"] == row["gnnagg_status"] == "ok"
    row["time_ratios"] = [o["time_s"] / p["time_s"] for p, o in
                          zip(pyg, ours)] if both else None
    row["time_ratio"] = (statistics.median(row["time_ratios"]) if both
                         else None)
    row["memory_ratio"] = statistics.median(
        o["peak_bytes"] / max(p["peak_bytes"], 1) for p, o in
        zip(pyg, ours)) if both else None
    return row


def compare(cases: List[str], graphs: List[str], device: str, repeats: int,
            memory_cap_gb: float, rounds: int = 1,
            compile: bool = False) -> List[dict]:
    """Every case on every graph: ``rounds`` times PyG then gnnagg, each in
    a fresh process on the CPU, so a slow spell of a shared machine hits one
    round's ratio, not the figure."""
    rows = []
    for graph in graphs:
        for case in cases:
            pyg, ours = [], []
            for _ in range(rounds):
                pyg.append(measure_side(case, "pyg", graph, device, repeats,
                                        memory_cap_gb, compile))
                ours.append(measure_side(case, "gnnagg", graph, device,
                                         repeats, memory_cap_gb, compile))
            rows.append(make_row(case + (" (compiled)" if compile else ""),
                                 graph, device, pyg, ours))
            print(format_row(rows[-1]), flush=True)
    return rows


HEADER = ("| layer | graph | PyG time (s) | gnnagg time (s) | time ratio | "
          "PyG peak (MB) | gnnagg peak (MB) | memory ratio |\n"
          "|---|---|---|---|---|---|---|---|")


def format_row(row: dict) -> str:
    def cell(value, digits):
        return "OOM" if value is None else f"{value:.{digits}f}"

    return (f"| {row['layer']} | {row['graph']} | "
            f"{cell(row['pyg_time_s'], 3)} | {cell(row['gnnagg_time_s'], 3)} | "
            f"{cell(row['time_ratio'], 2)} | {cell(row['pyg_peak_mb'], 0)} | "
            f"{cell(row['gnnagg_peak_mb'], 0)} | "
            f"{cell(row['memory_ratio'], 2)} |")


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(CASES),
                        help="comma-separated layers (default: all)")
    parser.add_argument("--graphs", default="arxiv",
                        help=f"comma-separated graphs from {list(GRAPHS)}")
    parser.add_argument("--quick", action="store_true",
                        help="small graph, 2 repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--rounds", type=positive_int, default=1,
                        help="paired PyG/gnnagg measurements per row; the "
                        "row reports their medians")
    parser.add_argument("--memory-cap-gb", type=float, default=16.0,
                        help="address-space cap of each measured process; "
                        "exceeding it is reported as OOM")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both sides (compilation not "
                        "timed)")
    parser.add_argument("--json", metavar="FILE",
                        help="write the rows as a JSON list to FILE")
    parser.add_argument("--worker", nargs=2, metavar=("LAYER", "IMPL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.graphs, args.device,
                                args.repeats, args.memory_cap_gb,
                                args.compile)))
        return []
    cases = args.layers.split(",")
    graphs = ["small"] if args.quick else args.graphs.split(",")
    unknown = [c for c in cases if c not in CASES] + \
        [g for g in graphs if g not in GRAPHS]
    if unknown:
        parser.error(f"unknown layer or graph: {', '.join(unknown)}")
    repeats = 2 if args.quick else args.repeats
    print(HEADER, flush=True)
    rows = compare(cases, graphs, args.device, repeats, args.memory_cap_gb,
                   1 if args.quick else args.rounds, args.compile)
    if args.json:
        write_rows(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
