"""Input handling shared by gnnagg's layers: the edge-index forms PyG
accepts, and feature checks with clear errors."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex

from ...debug import check_finite

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
    dst, src = edge_index.to_sparse_coo().coalesce().indices()
    return torch.stack([src, dst]), (edge_index.size(1), edge_index.size(0))


def edge_index_and_sizes(edge_index, num_src: int, num_dst: Optional[int],
                         size: Optional[Tuple[int, int]] = None
                         ) -> Tuple[Tensor, int, int]:
    """``(edge_index, num_src, num_dst)`` from any form :func:`as_edge_index`
    takes, the node counts given by the features (``num_dst=None``: not
    known from them) and a ``size`` argument. A ``size``, or the size an
    ``EdgeIndex`` or sparse adjacency carries, must agree with the features
    (``ValueError`` naming it, as PyG's); it sets ``num_dst`` where the
    features do not."""
    edge_index, sparse_size = as_edge_index(edge_index)
    given, name = size, "size"
    if given is None and sparse_size is not None:
        given, name = sparse_size, "the size of edge_index"
    if given is not None:
        if len(given) != 2:
            raise ValueError(f"{name} must be (num_src, num_dst), got "
                             f"{given!r}")
        for side, count, rows in (("source", given[0], num_src),
                                  ("destination", given[1], num_dst)):
            if count is not None and rows is not None and count != rows:
                raise ValueError(f"{name} says {count} {side} nodes, but "
                                 f"the {side} features have {rows} rows")
        if num_dst is None and given[1] is not None:
            num_dst = int(given[1])
    return edge_index, num_src, num_src if num_dst is None else num_dst


def check_dtype(name: str, x: Tensor, dtype: Optional[torch.dtype]) -> None:
    """``ValueError`` unless ``x`` is floating-point; ``TypeError`` unless it
    has the layer's ``dtype`` (outside ``torch.autocast``, which casts)."""
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got "
                         f"dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype and \
            not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{name} has dtype {x.dtype}, but the layer's "
                        f"weights are {dtype}; convert one of them (e.g. "
                        f"x.to({dtype}) or layer.to({x.dtype}))")


def layer_dtype(module: torch.nn.Module) -> Optional[torch.dtype]:
    """The dtype of a module's first floating-point parameter, or None."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return None


def check_features(name: str, x: Tensor, channels: int,
                   dtype: Optional[torch.dtype] = None) -> None:
    """``ValueError`` unless ``x`` is a float ``(N, channels)`` matrix
    (any width for ``channels=-1``, a lazily sized layer) of the layer's
    ``dtype`` (:func:`check_dtype`)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got "
                        f"{type(x).__name__}")
    check_dtype(name, x, dtype)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (num_nodes, {channels}), "
                         f"got {tuple(x.shape)}")
    if channels >= 0 and x.size(1) != channels:
        raise ValueError(f"{name} has {x.size(1)} features per node, but the "
                         f"layer was built for {channels}")
    check_finite(name, x)


def check_edge_features(edge_attr: Tensor, edge_dim: Optional[int],
                        num_edges: int,
                        dtype: Optional[torch.dtype] = None) -> None:
    """``ValueError`` unless ``edge_attr`` is ``(num_edges, edge_dim)`` and
    the layer was built with an ``edge_dim``; its dtype as
    :func:`check_dtype`."""
    if edge_dim is None:
        raise ValueError("edge_attr was given, but the layer was built "
                         "without edge_dim")
    if not isinstance(edge_attr, Tensor):
        raise TypeError("edge_attr must be a torch.Tensor, got "
                        f"{type(edge_attr).__name__}")
    check_dtype("edge_attr", edge_attr, dtype)
    if edge_attr.dim() != 2 or edge_attr.size(0) != num_edges:
        raise ValueError(f"edge_attr has shape {tuple(edge_attr.shape)}, "
                         f"expected {num_edges} rows (one per edge)")
    if edge_attr.size(1) != edge_dim:
        raise ValueError(f"edge_attr has {edge_attr.size(1)} features, but "
                         f"the layer was built for {edge_dim}")
    check_finite("edge_attr", edge_attr)
