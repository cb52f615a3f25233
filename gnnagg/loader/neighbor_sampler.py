r"""PyG's :class:`~torch_geometric.loader.NeighborLoader`, on any install.

PyG samples neighbours with ``pyg-lib`` or ``torch-sparse``, compiled
packages that have no wheels for every torch. :class:`NeighborSampler`
keeps PyG's sampler (its CSC graph, :class:`~torch_geometric.sampler.
SamplerOutput`, and everything the loader builds from it) and uses those
packages when installed; without them, homogeneous sampling runs on
:func:`gnnagg.loader.sample_neighbors` (pure torch, uniform without
replacement).
"""
from __future__ import annotations

import warnings
from typing import List, Optional

import torch_geometric.typing
from torch import Tensor
from torch_geometric.loader import NeighborLoader
from torch_geometric.sampler import NeighborSampler as PyGNeighborSampler
from torch_geometric.sampler import SamplerOutput

from .sampling import sample_neighbors


def has_compiled_sampler() -> bool:
    """Whether PyG can sample with ``pyg-lib`` or ``torch-sparse``."""
    return bool(torch_geometric.typing.WITH_PYG_LIB
                or torch_geometric.typing.WITH_TORCH_SPARSE)


class NeighborSampler(PyGNeighborSampler):
    """PyG's ``NeighborSampler``, falling back to gnnagg's pure-torch kernel
    when no compiled sampler is installed (homogeneous graphs, without
    replacement, no time or weights, not disjoint)."""

    def __init__(self, data, num_neighbors: List[int], **kwargs):
        with warnings.catch_warnings():  # the "install pyg-lib" warning
            warnings.filterwarnings("ignore", message=".*pyg-lib.*")
            super().__init__(data, num_neighbors, **kwargs)
        if not has_compiled_sampler():
            unsupported = [name for name, used in (
                ("heterogeneous graphs", self.is_hetero),
                ("replace=True", self.replace),
                ("disjoint=True", self.disjoint),
                ("temporal sampling", self.is_temporal),
                ("weighted sampling", self.edge_weight is not None),
                ("subgraph_type='induced'",
                 self.subgraph_type.value == "induced")) if used]
            if unsupported:
                raise ValueError(
                    f"{', '.join(unsupported)} need pyg-lib or torch-sparse; "
                    "gnnagg's built-in sampler covers uniform homogeneous "
                    "sampling without replacement")

    def _sample(self, seed: Tensor, seed_time: Optional[Tensor] = None,
                **kwargs) -> SamplerOutput:
        if has_compiled_sampler():
            return super()._sample(seed, seed_time, **kwargs)
        out = sample_neighbors(self.colptr, self.row, seed,
                               self.num_neighbors.get_mapped_values())
        return SamplerOutput(
            node=out.node, row=out.row, col=out.col, edge=out.edge,
            batch=None, num_sampled_nodes=out.num_sampled_nodes,
            num_sampled_edges=out.num_sampled_edges)


def neighbor_loader(data, num_neighbors: List[int],
                    input_nodes: Optional[Tensor] = None,
                    is_sorted: bool = False, **kwargs) -> NeighborLoader:
    """``NeighborLoader(data, num_neighbors, input_nodes, **kwargs)`` with
    :class:`NeighborSampler`; ``kwargs`` go to the loader (``batch_size``,
    ``shuffle``, ``sampler``, ``num_workers``, ...). ``is_sorted``: the edges
    are sorted by destination already; PyG keeps their order within each
    neighbourhood instead of re-sorting (which an order-sensitive
    aggregator such as LCM sees)."""
    sampler = NeighborSampler(
        data, num_neighbors, is_sorted=is_sorted,
        share_memory=kwargs.get("num_workers", 0) > 0)
    return NeighborLoader(data, num_neighbors, input_nodes=input_nodes,
                          neighbor_sampler=sampler, **kwargs)
