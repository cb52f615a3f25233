"""Input handling shared by gnnagg's layers: the edge-index forms PyG
accepts, and feature checks with clear errors."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex

from ...debug import check_finite

_EDGE_INDEX_ATTR = "_gnnagg_edge_index"


def as_edge_index(edge_index) -> Tuple[Tensor, Optional[Tuple[int, int]]]:
    """``(edge_index, (num_src, num_dst) or None)`` for a ``(2, E)`` tensor,
    an :class:`EdgeIndex`, or a transposed torch.sparse adjacency (rows =
    destinations), as PyG's layers accept."""
    if isinstance(edge_index, EdgeIndex):
        return edge_index.as_tensor(), edge_index.sparse_size()
    if not isinstance(edge_index, Tensor):
        raise TypeError("edge_index must be a LongTensor of shape (2, E), an "
                        "EdgeIndex or a torch.sparse adjacency, got "
                        f"{type(edge_index).__name__}")
    if edge_index.layout == torch.strided:
        return edge_index, None
    cached = getattr(edge_index, _EDGE_INDEX_ATTR, None)
    if cached is None:
        coo = edge_index.to_sparse_coo().coalesce()
        dst, src = coo.indices()
        cached = torch.stack([src, dst])
        setattr(edge_index, _EDGE_INDEX_ATTR, cached)
    return cached, (edge_index.size(1), edge_index.size(0))


def check_features(name: str, x: Tensor, channels: int) -> None:
    """``ValueError`` unless ``x`` is a float ``(N, channels)`` matrix
    (any width for ``channels=-1``, a lazily sized layer)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got "
                        f"{type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got "
                         f"dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (num_nodes, {channels}), "
                         f"got {tuple(x.shape)}")
    if channels >= 0 and x.size(1) != channels:
        raise ValueError(f"{name} has {x.size(1)} features per node, but the "
                         f"layer was built for {channels}")
    check_finite(name, x)


def check_edge_features(edge_attr: Tensor, edge_dim: Optional[int],
                        num_edges: int) -> None:
    """``ValueError`` unless ``edge_attr`` is ``(num_edges, edge_dim)`` and
    the layer was built with an ``edge_dim``."""
    if edge_dim is None:
        raise ValueError("edge_attr was given, but the layer was built "
                         "without edge_dim")
    if edge_attr.dim() != 2 or edge_attr.size(0) != num_edges:
        raise ValueError(f"edge_attr has shape {tuple(edge_attr.shape)}, "
                         f"expected {num_edges} rows (one per edge)")
    if edge_attr.size(1) != edge_dim:
        raise ValueError(f"edge_attr has {edge_attr.size(1)} features, but "
                         f"the layer was built for {edge_dim}")
    check_finite("edge_attr", edge_attr)
