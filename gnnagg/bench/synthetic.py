"""Synthetic tasks of the papers, generated deterministically from a seed.

* :func:`dictionary_lookup` (GATv2 paper): a query must find the key node
  with its key and return that node's value; only dynamic attention can rank
  key nodes differently for every query.
* :func:`multitask_graphs` (PNA paper): random graphs of ten generator
  families with three node tasks and three graph tasks.
* :func:`degree_extrapolation` ("Some Might Say All You Need Is Sum"): a
  node's target is the mean (or max) of its neighbours' values; train on
  small neighbourhoods, test on ones up to 100x larger. With the target
  ``second_min`` (the LCM paper's argument) it is a function no single
  sum/mean/max computes but a two-dimensional commutative monoid does
  exactly: the pair of the two smallest values, merged pairwise.
"""
from __future__ import annotations

import itertools
import math
import random
from typing import List, Tuple

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import Data


def dictionary_lookup(k: int, max_graphs: int = 32_000, seed: int = 0,
                      train_fraction: float = 0.8
                      ) -> Tuple[List[Data], List[Data]]:
    """Bipartite graphs of ``k`` key nodes (key ``j``, value ``perm[j]``)
    and ``k`` query nodes (key ``i``, no value), every key node linked to
    every query node; query ``i`` must predict ``perm[i]``.

    ``x[:, 0]`` is the key id, ``x[:, 1]`` the value id (``k`` = none);
    ``y`` is -1 on key nodes. All ``k!`` permutations when there are at
    most ``max_graphs``, else ``max_graphs`` random ones (drawn with
    replacement). The split is the paper's code's: a random
    ``train_fraction ** (1 / k)`` of the ``k^2`` (key, value) pairs is
    allowed, graphs made only of allowed pairs train (about
    ``train_fraction`` of them), and every other graph, holding at least one
    pair never seen in training, tests.
    """
    rng = random.Random(seed)
    if math.factorial(k) <= max_graphs:
        perms = [list(p) for p in itertools.permutations(range(k))]
    else:
        perms = [rng.sample(range(k), k) for _ in range(max_graphs)]
    pairs = [(i, v) for i in range(k) for v in range(k)]
    allowed = set(rng.sample(pairs, int(train_fraction ** (1 / k) * k * k)))
    src = torch.arange(k).repeat_interleave(k)
    dst = torch.arange(k, 2 * k).repeat(k)
    edge_index = torch.stack([src, dst])
    train: List[Data] = []
    test: List[Data] = []
    for perm in perms:
        keys = torch.cat([torch.arange(k), torch.arange(k)])
        values = torch.cat([torch.tensor(perm), torch.full((k,), k)])
        y = torch.cat([torch.full((k,), -1), torch.tensor(perm)])
        graph = Data(x=torch.stack([keys, values], 1), edge_index=edge_index,
                     y=y, num_nodes=2 * k)
        seen = all((i, v) in allowed for i, v in enumerate(perm))
        (train if seen else test).append(graph)
    rng.shuffle(train)
    return train, test


GENERATORS = ("erdos_renyi", "barabasi_albert", "grid", "caveman", "tree",
              "ladder", "line", "star", "caterpillar", "lobster")

#: node tasks then graph tasks, in the order of ``y_node`` / ``y_graph``
NODE_TASKS = ("shortest_path", "eccentricity", "laplacian")
GRAPH_TASKS = ("connected", "diameter", "spectral_radius")


def _random_graph(kind: str, n: int, rng: np.random.Generator) -> nx.Graph:
    seed = int(rng.integers(2**31))
    if kind == "erdos_renyi":
        return nx.gnp_random_graph(n, float(rng.uniform(0.1, 0.3)), seed=seed)
    if kind == "barabasi_albert":
        return nx.barabasi_albert_graph(n, int(rng.integers(1, 4)), seed=seed)
    if kind == "grid":
        rows = max(2, int(math.sqrt(n)))
        return nx.convert_node_labels_to_integers(
            nx.grid_2d_graph(rows, max(2, n // rows)))
    if kind == "caveman":
        size = int(rng.integers(3, 6))
        return nx.connected_caveman_graph(max(2, n // size), size)
    if kind == "tree":
        return nx.random_labeled_tree(n, seed=seed) if hasattr(
            nx, "random_labeled_tree") else nx.random_tree(n, seed=seed)
    if kind == "ladder":
        return nx.ladder_graph(max(2, n // 2))
    if kind == "line":
        return nx.path_graph(n)
    if kind == "star":
        return nx.star_graph(n - 1)
    if kind == "caterpillar":
        spine = max(2, n // 2)
        g = nx.path_graph(spine)
        for leaf in range(spine, n):
            g.add_edge(leaf, int(rng.integers(spine)))
        return g
    lobster = getattr(nx, "random_lobster_graph", None) or nx.random_lobster
    graph = lobster(max(2, n // 3), 0.7, 0.5, seed=seed)
    return nx.convert_node_labels_to_integers(graph)


def _multitask_example(g: nx.Graph, rng: np.random.Generator) -> Data:
    n = g.number_of_nodes()
    value = rng.uniform(0, 1, n)
    source = int(rng.integers(n))
    lengths = nx.single_source_shortest_path_length(g, source)
    sssp = np.array([lengths.get(i, n) for i in range(n)], dtype=float)
    eccentricity = np.zeros(n)
    diameter = 0.0
    for component in nx.connected_components(g):
        ecc = nx.eccentricity(g.subgraph(component))
        for node, e in ecc.items():
            eccentricity[node] = e
        diameter = max(diameter, max(ecc.values()))
    laplacian = nx.laplacian_matrix(g, nodelist=range(n)).toarray()
    adjacency = nx.to_numpy_array(g, nodelist=range(n))
    edges = torch.tensor(list(g.edges), dtype=torch.long).t().reshape(2, -1)
    is_source = np.zeros(n)
    is_source[source] = 1.0
    return Data(
        x=torch.tensor(np.stack([value, is_source], 1), dtype=torch.float),
        edge_index=torch.cat([edges, edges.flip(0)], 1),
        y_node=torch.tensor(np.stack([sssp, eccentricity, laplacian @ value],
                                     1), dtype=torch.float),
        y_graph=torch.tensor([[float(nx.is_connected(g)), diameter,
                               float(max(abs(np.linalg.eigvals(adjacency))))
                               ]], dtype=torch.float),
        num_nodes=n)


def multitask_graphs(count: int, min_nodes: int = 15, max_nodes: int = 24,
                     seed: int = 0) -> List[Data]:
    """``count`` graphs, generator families in turn, ``min_nodes`` to
    ``max_nodes`` nodes; ``x`` = (value in [0, 1], source flag); ``y_node``
    = (shortest-path length from the source, eccentricity, ``L x``);
    ``y_graph`` = (connected, diameter, spectral radius)."""
    rng = np.random.default_rng(seed)
    graphs = []
    for i in range(count):
        kind = GENERATORS[i % len(GENERATORS)]
        n = int(rng.integers(min_nodes, max_nodes + 1))
        g = _random_graph(kind, n, rng)
        if g.number_of_nodes() < 2:  # a degenerate random draw
            g = nx.path_graph(n)
        graphs.append(_multitask_example(g, rng))
    return graphs


#: the PNA multitask benchmark's generator families and their frequencies
PNA_FAMILIES = {"erdos_renyi": 0.2, "barabasi_albert": 0.2, "tree": 0.15,
                "caterpillar": 0.1, "lobster": 0.1, "grid": 0.05,
                "caveman": 0.05, "ladder": 0.05, "line": 0.05, "star": 0.05}


def _toggle_edges(g: nx.Graph, count: int, rng: np.random.Generator) -> None:
    """Flip ``count`` random node pairs (an edge is removed, a non-edge
    added), then join every isolated node to a random other node."""
    n = g.number_of_nodes()
    for _ in range(count):
        u, v = (int(i) for i in rng.choice(n, 2, replace=False))
        if g.has_edge(u, v):
            g.remove_edge(u, v)
        else:
            g.add_edge(u, v)
    for node in [v for v in g if g.degree(v) == 0]:
        other = int(rng.integers(n - 1))
        g.add_edge(node, other + (other >= node))


def pna_multitask_graphs(sizes: List[int], per_size: int, seed: int = 0,
                         toggle_fraction: float = 0.1) -> List[Data]:
    """The PNA paper's multitask benchmark: ``per_size`` graphs of every
    node count in ``sizes``, families drawn with the :data:`PNA_FAMILIES`
    frequencies, ``toggle_fraction * n`` random node pairs flipped, no
    isolated node; features, node and graph targets as
    :func:`multitask_graphs` (labels unscaled)."""
    rng = np.random.default_rng(seed)
    families, weights = zip(*PNA_FAMILIES.items())
    graphs = []
    for n in sizes:
        for _ in range(per_size):
            kind = families[int(rng.choice(len(families), p=weights))]
            g = nx.convert_node_labels_to_integers(_random_graph(kind, n, rng))
            g.add_nodes_from(range(g.number_of_nodes(), n))  # exactly n
            g = g.subgraph(range(n)).copy()
            _toggle_edges(g, int(toggle_fraction * n), rng)
            graphs.append(_multitask_example(g, rng))
    return graphs


#: targets of :func:`degree_extrapolation`: neighbour values -> target
EXTRAPOLATION_TARGETS = {
    "mean": lambda v: v.mean(),
    "max": lambda v: v.max(),
    "second_min": lambda v: v.view(-1).kthvalue(2).values,
}


def degree_extrapolation(degrees: List[int], count_per_degree: int,
                         target: str = "mean", seed: int = 0) -> List[Data]:
    """Stars: node 0 has ``d`` neighbours with values uniform in [0, 1];
    its target is their ``mean``, ``max`` or ``second_min`` (the second
    smallest; needs ``d >= 2``); other nodes have no target."""
    if target not in EXTRAPOLATION_TARGETS:
        raise ValueError(f"target must be one of "
                         f"{sorted(EXTRAPOLATION_TARGETS)}, got {target!r}")
    smallest = 2 if target == "second_min" else 1
    if min(degrees, default=smallest) < smallest:
        raise ValueError(f"target {target!r} needs degrees >= {smallest}, "
                         f"got {min(degrees)}")
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for d in degrees:
        for _ in range(count_per_degree):
            values = torch.rand(d, 1, generator=gen)
            x = torch.cat([torch.zeros(1, 1), values])
            y = EXTRAPOLATION_TARGETS[target](values)
            graphs.append(Data(
                x=x, edge_index=torch.stack([torch.arange(1, d + 1),
                                             torch.zeros(d, dtype=torch.long)]),
                y=y.view(1, 1), center=torch.tensor([True] + [False] * d),
                num_nodes=d + 1))
    return graphs


